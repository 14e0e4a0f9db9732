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

__all__ = [
    "LEGAL_SUFFIXES",
    "address_key",
    "company_key",
    "email_key",
    "is_cjk",
    "person_key",
    "spelled_tokens",
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


def email_key(email: str | None) -> str:
    """An email case-folded, without a ``+tag`` ("Bob+news@Example.com" → "bob@example.com")."""
    if not email or "@" not in email:
        return (email or "").casefold()
    local, _, domain = _fold(email).rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def address_key(
    line1: str | None, postcode: str | None, city: str | None, country: str | None
) -> str:
    """Street, postcode, city and country folded into one comparable string ('' if no street)."""
    parts = [" ".join(_tokens(p or "")) for p in (line1, city, country)]
    if not parts[0]:  # no street, or a placeholder such as "-"
        return ""
    post = re.sub(r"\s+", "", _fold(postcode or ""))
    return "|".join([parts[0], post, parts[1], parts[2]])
