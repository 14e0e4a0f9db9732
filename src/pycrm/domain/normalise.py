"""Match keys: what two spellings of the same person, company or address share.

Display values are stored as the user typed them (cleaned); these keys are
computed beside them and indexed, so that "ACME Ltd." and "Acme Limited",
"Bob+news@Example.com" and "bob@example.com", or "Smith, John" and "john
smith" meet in one index probe. Every function here is idempotent:
``key(key(x)) == key(x)``.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = [
    "LEGAL_SUFFIXES",
    "address_key",
    "company_key",
    "email_key",
    "given_family_parts",
    "is_cjk",
    "name_parts",
    "person_key",
    "phonetic_key",
    "place_key",
    "sound_key",
    "spelled_tokens",
    "street_key",
]

#: Legal-form words dropped from the end of company names for matching.
LEGAL_SUFFIXES = frozenset(
    [
        "ab",
        "ag",
        "as",
        "asa",
        "bv",
        "bvba",
        "co",
        "company",
        "corp",
        "corporation",
        "cv",
        "gbr",
        "gmbh",
        "inc",
        "incorporated",
        "kft",
        "kg",
        "kgaa",
        "kk",
        "limited",
        "llc",
        "llp",
        "lp",
        "ltd",
        "mbh",
        "nv",
        "oao",
        "ohg",
        "oy",
        "oyj",
        "plc",
        "pte",
        "pty",
        "sa",
        "sab",
        "sae",
        "sal",
        "sarl",
        "sas",
        "sasu",
        "spa",
        "sp",
        "srl",
        "sro",
        "ug",
        "ulc",
        "zao",
        "ooo",
        "se",
        "ev",
        "eg",
        "e.v",
        "ltda",
        "cia",
        "gk",
        "ky",
        "bhd",
        "sdn",
        "tbk",
        "pt",
    ]
)

#: Legal-form endings of Chinese, Japanese and Korean company names.
CJK_SUFFIXES = (
    "股份有限公司", "有限责任公司", "有限責任公司", "有限公司", "集团公司", "集團公司", "集团", "集團",
    "公司", "株式会社", "有限会社", "合同会社", "주식회사", "유한회사",
)  # fmt: skip

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def is_cjk(text: str) -> bool:
    """True if ``text`` contains Chinese, Japanese or Korean characters."""
    return bool(_CJK.search(text))


def _tokens(text: str) -> list[str]:
    return _PUNCT.sub(" ", _fold(text)).split()


def spelled_tokens(name: str | None) -> list[str]:
    """A name's tokens folded (NFKC, case, punctuation), in the order written."""
    return _tokens(name) if name else []


def person_key(name: str | None) -> str:
    """A person's name, case-folded, without punctuation, tokens sorted (so order does not matter).

    CJK names are written without spaces ("王芳" and "王 芳" are one key).
    """
    if not name:
        return ""
    tokens = _tokens(name)
    if is_cjk("".join(tokens)):  # after NFKC: half-width katakana is CJK too
        return "".join(tokens)
    return " ".join(sorted(tokens))


def company_key(name: str | None) -> str:
    """A company name without case, punctuation or legal form ("ACME Ltd." → "acme")."""
    if not name:
        return ""
    folded = _fold(name)
    compact = _PUNCT.sub("", re.sub(r"\s+", "", folded))
    if is_cjk(compact):
        changed = True
        while changed:
            changed = False
            for suffix in CJK_SUFFIXES:
                if compact.endswith(suffix) and len(compact) > len(suffix):
                    compact = compact[: -len(suffix)]
                    changed = True
        return compact
    tokens = _PUNCT.sub(lambda m: "" if m.group() == "." else " ", folded).split()
    # "S. A." and "e. V." are suffixes too: join runs of single letters ("s a" → "sa").
    joined: list[str] = []
    in_run = False
    for token in tokens:
        if len(token) == 1 and in_run:
            joined[-1] += token
        else:
            joined.append(token)
            in_run = len(token) == 1
    tokens = joined
    # Strip legal forms and a dangling "and" until neither is left ("Smith and Co Ltd").
    while len(tokens) > 1 and (tokens[-1] in LEGAL_SUFFIXES or tokens[-1] == "and"):
        tokens.pop()
    return " ".join(tokens)


#: Mail domains that are another name of one provider's mailboxes.
EMAIL_ALIASES = {"googlemail.com": "gmail.com"}

#: Providers that ignore dots in the local part ("j.smith@gmail.com" is "jsmith@gmail.com").
DOTLESS_LOCAL = frozenset(["gmail.com"])


def email_key(email: str | None) -> str:
    """An email case-folded, without a ``+tag``, with the provider's own equivalences.

    "Bob+news@Example.com" → "bob@example.com"; "J.Smith@googlemail.com" →
    "jsmith@gmail.com" (Gmail ignores dots and answers on both domains).
    """
    if not email or "@" not in email:
        return (email or "").casefold()
    local, _, domain = _fold(email).rpartition("@")
    local = local.split("+", 1)[0]
    domain = EMAIL_ALIASES.get(domain, domain)
    if domain in DOTLESS_LOCAL:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def address_key(
    line1: str | None, postcode: str | None, city: str | None, country: str | None
) -> str:
    """Street, postcode, city and country folded into one comparable string ('' if no street)."""
    parts = [" ".join(_tokens(p or "")) for p in (line1, city, country)]
    if not parts[0]:  # no street, or a placeholder such as "-"
        return ""
    post = re.sub(r"\s+", "", _fold(postcode or ""))
    return "|".join([parts[0], post, parts[1], parts[2]])


def _ascii(text: str) -> str:
    """Latin letters without accents ("Müller" → "muller", "Straße" → "strasse")."""
    if text.isascii():
        return text.lower()
    folded = _fold(text).replace("ß", "ss").replace("æ", "ae").replace("ø", "o")
    return "".join(
        ch for ch in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(ch)
    )


_SOUNDEX = str.maketrans("bfpvcgjkqsxzdtlmnr", "111122222222334556")


@lru_cache(maxsize=65536)
def phonetic_key(token: str | None) -> str:
    """A sound-alike key of one name token (Soundex, four characters; CJK as written).

    "Smith" and "Smyth", "Meier" and "Mayer" share a key. Used for blocking:
    records whose names sound alike are compared.
    """
    if not token:
        return ""
    text = _ascii(token)
    if is_cjk(text):
        return "".join(_tokens(text))
    letters = [ch for ch in text if "a" <= ch <= "z"]
    if not letters:
        return "".join(ch for ch in text if ch.isalnum())[:8]
    first, out, last = letters[0], [], letters[0].translate(_SOUNDEX)
    for ch in letters[1:]:
        code = ch.translate(_SOUNDEX)
        if code.isdigit() and code != last:
            out.append(code)
        if ch not in "hw":
            last = code
    return (first + "".join(out) + "000")[:4]


#: Street-type words and their abbreviations, folded to one spelling for matching.
STREET_WORDS = {
    "st": "street", "str": "strasse", "strasse": "strasse", "straße": "strasse",
    "rd": "road", "ave": "avenue", "av": "avenue", "avenue": "avenue", "blvd": "boulevard",
    "dr": "drive", "drv": "drive", "ln": "lane", "pl": "place", "plc": "place", "ct": "court",
    "crt": "court", "cres": "crescent", "cr": "crescent", "cct": "circuit", "gdns": "gardens",
    "gdn": "garden", "tce": "terrace", "terr": "terrace", "pde": "parade", "sq": "square",
    "hwy": "highway", "pkwy": "parkway", "cl": "close", "mt": "mount", "grv": "grove",
    "gr": "grove", "wy": "way", "pk": "park", "esp": "esplanade", "cnr": "corner",
    "n": "north", "s": "south", "e": "east", "w": "west", "nth": "north", "sth": "south",
    "apt": "apartment", "fl": "floor", "ste": "suite", "bldg": "building",
}  # fmt: skip


@lru_cache(maxsize=65536)
def street_key(line: str | None) -> tuple[str, str]:
    """A street line as ``(house number, street words)``, both folded for matching.

    Abbreviations become words ("Graham Gdns" → "graham gardens"), accents and
    case go, and a German ``-str.`` suffix is spelt out. The number is every
    token with a digit in it, in order ("12a", "3-5").
    """
    if not line:
        return "", ""
    numbers: list[str] = []
    words: list[str] = []
    for token in _tokens(_ascii(line)):
        if any(ch.isdigit() for ch in token):
            numbers.append(token)
            continue
        word = STREET_WORDS.get(token, token)
        if word == token and len(token) > 6 and token.endswith("str"):
            word = token[:-3] + "strasse"
        words.append(word)
    return " ".join(numbers), " ".join(words)


#: Words before or after a name that say nothing about who it is.
HONORIFICS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "miss",
        "dr",
        "prof",
        "herr",
        "frau",
        "mme",
        "mlle",
        "sir",
        "dame",
        "jr",
        "sr",
        "ii",
        "iii",
        "phd",
        "md",
    ]
)


@lru_cache(maxsize=65536)
def name_parts(name: str | None) -> tuple[str, str]:
    """A person's ``(given name, surname)``, folded; a one-word name is a surname.

    "Smith, John" → ("john", "smith"); "Dr. Anna Maria Schmidt" → ("anna",
    "schmidt"); "王芳" → ("芳", "王") (family name first); hyphenated names stay
    one word ("Lillie-Hinrichs" → "lilliehinrichs").
    """
    if not name:
        return "", ""
    name = name.replace("-", "")
    if "," in name:
        head, _, tail = name.partition(",")
        family = [t for t in _tokens(head) if t not in HONORIFICS]
        rest = [t for t in _tokens(tail) if t not in HONORIFICS]
        if family and rest:
            return rest[0], family[-1]
    tokens = [t for t in _tokens(name) if t not in HONORIFICS]
    if not tokens:
        return "", ""
    if len(tokens) == 1:
        token = tokens[0]
        if is_cjk(token) and 2 <= len(token) <= 4:
            return token[1:], token[0]
        return "", token
    return tokens[0], tokens[-1]


def given_family_parts(given: str | None, family: str | None) -> tuple[str, str]:
    """``(given name, surname)`` from a name given in parts, folded as :func:`name_parts` folds.

    The first word of the given names and the last of the family name, as
    ``name_parts("Schmidt, Anna Maria")`` would take them; either may be ''.
    """

    def words(text: str | None) -> list[str]:
        return [t for t in _tokens(text.replace("-", "")) if t not in HONORIFICS] if text else []

    given_words, family_words = words(given), words(family)
    return (given_words[0] if given_words else "", family_words[-1] if family_words else "")


def sound_key(name: str | None) -> str:
    """How a person's name sounds, order-free: the phonetic keys of given name and surname.

    "Jon Smyth" and "Smith, John" share ``"j500|s530"``. '' for a one-word name.
    """
    given, surname = name_parts(name)
    if not given or not surname:
        return ""
    return "|".join(sorted((phonetic_key(given), phonetic_key(surname))))


def place_key(line1: str | None, postcode: str | None) -> str:
    """A building: postcode and house number ("10115|12"); '' without both."""
    number, _ = street_key(line1)
    post = "".join((postcode or "").split()).upper()
    if not number or not post:
        return ""
    return f"{post}|{number}"
