"""Synthetic contacts with a known set of injected duplicates, for the dedupe benchmark.

``generate(n, seed)`` returns ``n`` rows and the ground truth: every pair of rows
that describe the same person. It is deterministic for a given ``(n, seed)``.

Each row is a dict with ``name``, ``emails``, ``phones``, ``company`` and
``title`` (what :meth:`ContactService.create` takes, plus the company name the
loader turns into a customer). Duplicates are copies of an original row changed
in one or two of these ways (the *kinds*):

``typo``            one-letter slip in the first or last name
``case_space``      random casing and extra whitespace in the name, upper-case email
``phone_format``    the phone written another way (national, 0049, dashes, brackets); no email
``email_variant``   the email in other case and with a +tag; no phone
``swapped_names``   "Last, First" or "LAST First"
``missing_fields``  only one of email/phone kept, no title or company
``company_suffix``  the company written with another legal form ("GmbH" → "Ltd.")

Every duplicate keeps at least one email or phone of its original (in some
spelling), so a human could tell it is the same person. The population also
holds hard negatives: namesakes (common names drawn with a Zipf-like skew)
and colleagues sharing their company's switchboard number.

Run it to print a sample: ``python benchmarks/dedupe_data.py 20``.
"""

from __future__ import annotations

import random
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from itertools import accumulate, combinations
from typing import Any

__all__ = ["KINDS", "Dataset", "generate"]

KINDS = (
    "typo",
    "case_space",
    "phone_format",
    "email_variant",
    "swapped_names",
    "missing_fields",
    "company_suffix",
)

FIRST_NAMES = """
Anna Maria Laura Julia Sarah Lisa Katharina Lena Hannah Sophie Emma Mia Lea Johanna
Clara Paula Marie Charlotte Luise Helena Greta Frieda Ida Nora Elena Sofia Isabel Lucia
Carmen Emily Olivia Grace Chloe Amelia Jessica Rachel Megan Laura Alice Ingrid Astrid
Sanne Femke Thomas Michael Andreas Stefan Christian Martin Peter Markus Alexander Daniel
Tobias Florian Sebastian Jan Lukas Felix Jonas Leon Paul Max Moritz Niklas Tim Finn Ben
Elias Noah Erik Johannes Matthias Wolfgang Klaus Jürgen Dieter Uwe Frank Holger Ralf
Bernd Karl Heinz John James Robert David William Richard Joseph Charles George Edward
Henry Oliver Jack Harry Samuel Benjamin Lucas Hugo Louis Antoine Pierre Luca Marco
Giovanni Pablo Diego Javier Carlos Miguel Sergio Mateo Lars Nils Sven Bjorn Piotr Tomasz
Jakub Ahmed Omar Ali Mehmet Emre Yusuf Raj Arjun Vikram Wei Hiroshi Kenji Yuki Ana
Beatriz Francesca Giulia
""".split()  # noqa: SIM905

_SURNAME_HEADS = """
Mül Schmi Schnei Fisch Web Mey Wag Beck Schul Hoff Schä Koch Bau Rich Kle Wolf Schrö Neu
Schwarz Zimmer Braun Krü Hof Hart Lang Schmitt Wer Schmitz Krau Mei Leh Schmid Schulz
Mai Köh Herr König Wal Mayer Hu Kai Fuchs Pe Lang Scholz Möl Weiß Jung Hahn Schu Vog
Fried Kel Gün Frank Berg Wink Roth Beck Lo Sau Stein Ba Brand Haas Schrei Graf Dietz
""".split()  # noqa: SIM905
_SURNAME_TAILS = """
er mann ler ner ke ig hardt berg feld mayer bach horst rich sen stein dorf
""".split()  # noqa: SIM905
_CJK_FAMILY = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_CJK_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"

_COMPANY_WORDS = """
Acme Nordwind Alpen Rhein Elbe Hansa Atlas Orion Vega Delta Sigma Apex Vertex Nova Terra
Blau Grün Stahl Holz Glas Papier Werk Technik Logistik Systeme Software Maschinen Bau
Handel Medien Energie Solar Wind Wasser Chemie Pharma Bio Agrar Textil Möbel Druck
Metall
""".split()  # noqa: SIM905
#: Groups of legal-form spellings that mean "the same kind of company" for a variant.
_SUFFIXES = [
    ["GmbH", "GMBH", "Gmbh", "G.m.b.H."],
    ["Ltd", "Ltd.", "Limited", "LTD"],
    ["Inc", "Inc.", "Incorporated", "INC."],
    ["AG", "A.G.", "Ag"],
    ["LLC", "L.L.C.", "Llc"],
    ["S.A.", "SA", "S.A"],
    ["Co.", "Co", "& Co."],
]
#: Zipf exponents of name popularity: the most common full name is about 0.1% of people.
SURNAME_SKEW = 0.6
FIRST_NAME_SKEW = 0.5
_FREE_MAIL = ["mail.example", "post.example", "webmail.example", "inbox.example"]
_MOBILE = [("151", 8), ("152", 8), ("157", 8), ("160", 8), ("170", 7), ("171", 7), ("176", 8)]
_LAND = [("30", 8), ("40", 8), ("89", 8), ("69", 8), ("221", 7)]
_TITLES = ["Buyer", "CEO", "CTO", "Head of Purchasing", "Engineer", "Office Manager", None, None]


@dataclass
class Dataset:
    """Rows and what is known about them."""

    rows: list[dict[str, Any]]
    """The contacts, in load order."""
    truth: set[tuple[int, int]]
    """Every pair ``(i, j)``, ``i < j``, of rows describing the same person."""
    kinds: dict[tuple[int, int], tuple[str, ...]] = field(default_factory=dict)
    """For each original-duplicate pair, the kinds of change injected."""
    entity: list[int] = field(default_factory=list)
    """The person each row describes."""

    def kind_counts(self) -> Counter[str]:
        """How many original-duplicate pairs carry each kind."""
        return Counter(k for ks in self.kinds.values() for k in ks)


@cache
def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
    return "".join(c for c in folded if c.isascii() and (c.isalnum() or c in ".-")).lower()


class _Maker:
    def __init__(self, rng: random.Random, n: int) -> None:
        self.rng = rng
        surnames = [h + t for h in _SURNAME_HEADS for t in _SURNAME_TAILS]
        rng.shuffle(surnames)
        self.surnames = surnames
        # Zipf-like popularity, so some names are common (namesakes: hard negatives).
        self.surname_weights = list(
            accumulate(1 / (r + 1) ** SURNAME_SKEW for r in range(len(surnames)))
        )
        self.first_weights = list(
            accumulate(1 / (r + 1) ** FIRST_NAME_SKEW for r in range(len(FIRST_NAMES)))
        )
        self.used_phones: set[str] = set()
        self.serial = 0
        self.companies = self._companies(max(20, n // 25))

    def _companies(self, count: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        while len(out) < count:
            words = self.rng.sample(_COMPANY_WORDS, self.rng.choice([1, 2, 2, 3]))
            base = " ".join(words)
            if base in seen:
                base = f"{base} {len(out)}"
            seen.add(base)
            group = self.rng.randrange(len(_SUFFIXES))
            out.append(
                {
                    "base": base,
                    "group": group,
                    "suffix": _SUFFIXES[group][0],
                    "domain": _ascii(words[0]) + str(len(out)) + ".example",
                    "switchboard": self.phone(land=True),
                }
            )
        return out

    def phone(self, *, land: bool = False) -> str:
        while True:
            prefix, length = self.rng.choice(_LAND if land else _MOBILE)
            number = f"+49{prefix}{self.rng.randrange(10 ** (length - 1), 10**length)}"
            if number not in self.used_phones:
                self.used_phones.add(number)
                return number

    def person(self) -> dict[str, Any]:
        rng = self.rng
        self.serial += 1
        company = rng.choice(self.companies)
        if rng.random() < 0.03:
            first, last = (
                rng.choice(_CJK_GIVEN) + rng.choice(["", *_CJK_GIVEN]),
                rng.choice(_CJK_FAMILY),
            )
            name = last + first
            handle = f"user{self.serial}"
        else:
            first = rng.choices(FIRST_NAMES, cum_weights=self.first_weights)[0]
            last = rng.choices(self.surnames, cum_weights=self.surname_weights)[0]
            name = f"{first} {last}"
            handle = f"{_ascii(first)}.{_ascii(last)}"
        emails, phones = [], []
        if rng.random() < 0.85:
            domain = company["domain"] if rng.random() < 0.6 else rng.choice(_FREE_MAIL)
            emails.append(f"{handle}{self.serial}@{domain}")
        if rng.random() < 0.7:
            phones.append(self.phone())
        if rng.random() < 0.08:
            phones.append(company["switchboard"])  # colleagues share it: a hard negative
        if not emails and not phones:
            phones.append(self.phone())
        return {
            "name": name,
            "first": first,
            "last": last,
            "cjk": not name.isascii() and any("\u4e00" <= c <= "\u9fff" for c in name),
            "emails": emails,
            "phones": phones,
            "company": f"{company['base']} {company['suffix']}",
            "company_ref": company,
            "title": rng.choice(_TITLES),
        }


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 4:
        return word + rng.choice("aeiou")
    i = rng.randrange(1, len(word) - 1)
    op = rng.choice(["sub", "del", "ins", "swap"])
    letter = rng.choice("abcdefghiklmnoprstuvw")
    if op == "sub":
        return word[:i] + letter + word[i + 1 :]
    if op == "del":
        return word[:i] + word[i + 1 :]
    if op == "ins":
        return word[:i] + letter + word[i:]
    return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]


def _recase(rng: random.Random, text: str) -> str:
    style = rng.choice(["upper", "lower", "random"])
    if style == "upper":
        return text.upper()
    if style == "lower":
        return text.lower()
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)


def _respace(rng: random.Random, text: str) -> str:
    if " " not in text:  # CJK: "王芳" → "王 芳"
        return " ".join(text)
    spaces = [" ", "  ", "   ", "\t"]
    words = text.split()
    return rng.choice(["", " "]) + "".join(w + rng.choice(spaces) for w in words).rstrip() + " "


def _phone_spelling(rng: random.Random, e164: str) -> str:
    rest = e164[3:]  # after +49
    area_len = 3 if rest.startswith(("15", "16", "17", "22")) else 2
    area, sub = rest[:area_len], rest[area_len:]
    spaced = " ".join([sub[:3], sub[3:]])
    return rng.choice(
        [
            f"0{area} {sub}",
            f"0{area}/{sub}",
            f"(0{area}) {spaced}",
            f"0{area}-{sub[:3]}-{sub[3:]}",
            f"+49 {area} {spaced}",
            f"+49 (0){area} {sub}",
            f"0049 {area} {sub}",
            f"+49-{area}-{sub}",
        ]
    )


def _email_variant(rng: random.Random, email: str) -> str:
    local, _, domain = email.partition("@")
    tag = rng.choice(["news", "crm", "shop", "2024", "x"])
    local = f"{local}+{tag}" if rng.random() < 0.7 else local
    return _recase(rng, local) + "@" + (domain.upper() if rng.random() < 0.5 else domain)


def _apply(rng: random.Random, orig: dict[str, Any], dup: dict[str, Any], kind: str) -> None:
    if kind == "typo":
        if orig["cjk"]:  # one character replaced
            name = dup["name"].replace(" ", "")
            i = rng.randrange(len(name))
            dup["name"] = name[:i] + rng.choice(_CJK_GIVEN) + name[i + 1 :]
        else:
            first, last = dup["name"].split(" ", 1) if " " in dup["name"] else (dup["name"], "")
            if rng.random() < 0.5 and last:
                last = _typo(rng, last)
            else:
                first = _typo(rng, first)
            dup["name"] = f"{first} {last}".strip()
    elif kind == "case_space":
        dup["name"] = _respace(rng, _recase(rng, dup["name"]))
        dup["emails"] = [e.upper() for e in dup["emails"]]
    elif kind == "phone_format":
        dup["phones"] = [_phone_spelling(rng, p) for p in orig["phones"]]
        dup["emails"] = []
    elif kind == "email_variant":
        dup["emails"] = [_email_variant(rng, e) for e in orig["emails"]]
        dup["phones"] = []
    elif kind == "swapped_names":
        if orig["cjk"]:
            dup["name"] = orig["first"] + " " + orig["last"]
        else:
            last = orig["last"].upper() if rng.random() < 0.3 else orig["last"]
            sep = rng.choice([", ", " "])
            dup["name"] = f"{last}{sep}{orig['first']}"
    elif kind == "missing_fields":
        if orig["emails"] and (not orig["phones"] or rng.random() < 0.5):
            dup["phones"] = []
        else:
            dup["emails"] = []
        dup["title"] = None
        dup["company"] = None
    elif kind == "company_suffix":
        ref = orig["company_ref"]
        others = [s for s in _SUFFIXES[ref["group"]] if s != ref["suffix"]]
        base = ref["base"] if rng.random() < 0.5 else ref["base"].upper()
        dup["company"] = f"{base}{rng.choice([' ', ', '])}{rng.choice(others)}"
        if dup["phones"] and dup["emails"]:
            dup["phones"] = []
    # Never leave a duplicate with nothing of its original's to go by.
    if not dup["emails"] and not dup["phones"]:
        if orig["emails"]:
            dup["emails"] = list(orig["emails"])
        else:
            dup["phones"] = [_phone_spelling(rng, orig["phones"][0])]


def _feasible(orig: dict[str, Any], kind: str) -> bool:
    own_phones = [p for p in orig["phones"] if p != orig["company_ref"]["switchboard"]]
    if kind == "phone_format":
        return bool(own_phones)
    if kind == "email_variant":
        return bool(orig["emails"])
    return True


def generate(
    n: int, seed: int = 0, *, duplicate_rate: float = 0.1, double_kind_rate: float = 0.25
) -> Dataset:
    """``n`` contacts, about ``duplicate_rate`` of them injected duplicates of others."""
    rng = random.Random(f"pycrm-dedupe-{seed}-{n}")
    maker = _Maker(rng, n)
    groups: list[list[tuple[dict[str, Any], tuple[str, ...]]]] = []
    total = 0
    while total < n:
        orig = maker.person()
        group: list[tuple[dict[str, Any], tuple[str, ...]]] = [(orig, ())]
        total += 1
        copies = 0
        if rng.random() < duplicate_rate / (1 + 0.15):
            copies = 2 if rng.random() < 0.15 else 1
        for _ in range(copies):
            if total >= n:
                break
            feasible = [k for k in KINDS if _feasible(orig, k)]
            chosen = [rng.choice(feasible)]
            if rng.random() < double_kind_rate:
                extra = [
                    k
                    for k in ("case_space", "phone_format", "email_variant", "missing_fields")
                    if k != chosen[0] and k in feasible
                ]
                chosen.append(rng.choice(extra))
            dup = {
                k: (list(v) if isinstance(v, list) else v)
                for k, v in orig.items()
                if k not in ("first", "last", "cjk", "company_ref")
            }
            for kind in chosen:
                _apply(rng, orig, dup, kind)
            group.append((dup, tuple(chosen)))
            total += 1
        groups.append(group)
    order = [(g, m) for g, group in enumerate(groups) for m in range(len(group))]
    rng.shuffle(order)
    rows: list[dict[str, Any]] = []
    entity: list[int] = []
    where: dict[tuple[int, int], int] = {}
    for g, m in order:
        row, _ = groups[g][m]
        where[(g, m)] = len(rows)
        rows.append(
            {
                "name": row["name"],
                "emails": list(row["emails"]),
                "phones": list(row["phones"]),
                "company": row["company"],
                "title": row["title"],
            }
        )
        entity.append(g)
    truth: set[tuple[int, int]] = set()
    kinds: dict[tuple[int, int], tuple[str, ...]] = {}
    for g, group in enumerate(groups):
        members = [where[(g, m)] for m in range(len(group))]
        for a, b in combinations(members, 2):
            truth.add((min(a, b), max(a, b)))
        for m in range(1, len(group)):
            pair = (min(members[0], members[m]), max(members[0], members[m]))
            kinds[pair] = group[m][1]
    return Dataset(rows, truth, kinds, entity)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    data = generate(count, seed=1)
    for i, row in enumerate(data.rows):
        print(i, row)
    print("duplicate pairs:", len(data.truth), dict(data.kind_counts()))
    for (a, b), ks in list(data.kinds.items())[:10]:
        print(
            ks,
            data.rows[a]["name"],
            "|",
            data.rows[b]["name"],
            data.rows[b]["emails"],
            data.rows[b]["phones"],
        )
