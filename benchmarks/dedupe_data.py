"""Synthetic CRM contacts with known duplicates and look-alikes that are not duplicates.

``generate(n, seed)`` returns ``n`` rows, the ground truth (every pair of rows
describing one person) and the look-alike pairs (different people who share a
lot). It is deterministic for a given ``(n, seed)``.

People live in households in six countries (DE, AT, CH, NL, GB, US) and many
work for companies. Each row is a dict with ``name``, ``emails``, ``phones``,
``company``, ``title``, ``address`` (``line1``, ``postcode``, ``city``,
``country``) and ``birth_date`` (ISO text or None): what
:meth:`ContactService.create` takes, the birth date being a custom field.

Look-alikes (the hard negatives):

``household``  members of one household: same address and landline, mostly the same
               surname, their own first names, birth dates, mobiles and emails
``colleague``  people of one company sharing its switchboard or office address
``namesake``   different people with the same first name and surname

Duplicates are copies of a row changed in one to three of these ways (the *kinds*):

``typo``             a slip in the first name or surname
``case_space``       random casing and extra whitespace
``swapped_names``    "Last, First", "LAST First"; CJK names in the other order or spaced
``no_first_name``    only the surname (or initial and surname)
``phone_national``   phones written in the country's national format, no country code
``email_variant``    Gmail dots, googlemail.com, a +tag, upper case, or a slip in the domain
``street_variant``   the street abbreviated, spelt out or misspelt
``country_spelling`` the country as a name, an ISO-3 code or the local name
``missing_fields``   email, phones, address or birth date left out
``moved``            a new address and landline (email and mobile kept)
``company_suffix``   the company with another legal form

Run it to print a sample: ``python benchmarks/dedupe_data.py 20``.
"""

from __future__ import annotations

import random
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from itertools import accumulate, combinations
from typing import Any

import phonenumbers

__all__ = ["KINDS", "LOOKALIKES", "Dataset", "generate"]

KINDS = (
    "typo",
    "case_space",
    "swapped_names",
    "no_first_name",
    "phone_national",
    "email_variant",
    "street_variant",
    "country_spelling",
    "missing_fields",
    "moved",
    "company_suffix",
)
LOOKALIKES = ("household", "colleague", "namesake")

FIRST_NAMES = """
Anna Maria Laura Julia Sarah Lisa Katharina Lena Hannah Sophie Emma Mia Lea Johanna
Clara Paula Marie Charlotte Luise Helena Greta Frieda Ida Nora Elena Sofia Isabel Lucia
Carmen Emily Olivia Grace Chloe Amelia Jessica Rachel Megan Alice Ingrid Astrid
Sanne Femke Thomas Michael Andreas Stefan Christian Martin Peter Markus Alexander Daniel
Tobias Florian Sebastian Jan Lukas Felix Jonas Leon Paul Max Moritz Niklas Tim Finn Ben
Elias Noah Erik Johannes Matthias Wolfgang Klaus Jürgen Dieter Uwe Frank Holger Ralf
Bernd Karl Heinz John James Robert David William Richard Joseph Charles George Edward
Henry Oliver Jack Harry Samuel Benjamin Lucas Hugo Louis Antoine Pierre Luca Marco
Giovanni Pablo Diego Javier Carlos Miguel Sergio Mateo Lars Nils Sven Bjorn Piotr Tomasz
Jakub Ahmed Omar Ali Mehmet Emre Yusuf Raj Arjun Vikram Wei Hiroshi Kenji Yuki Ana
Beatriz Francesca Giulia Daan Sem Lotte Tess Noor Fleur Ruben Thijs Bram
""".split()  # noqa: SIM905

_SURNAME_HEADS = """
Mül Schmi Schnei Fisch Web Mey Wag Beck Schul Hoff Schä Koch Bau Rich Kle Wolf Schrö Neu
Schwarz Zimmer Braun Krü Hof Hart Lang Schmitt Wer Schmitz Krau Mei Leh Schmid Schulz
Mai Köh Herr König Wal Mayer Hu Kai Fuchs Pe Scholz Möl Weiß Jung Hahn Schu Vog
Fried Kel Gün Frank Berg Wink Roth Haas Schrei Graf Dietz Jans Bak Vis Smit Mul De
Thom Wil John Rob Ander Tay Whit Harr Mart Clark Lew Walk Hall Youn Alls Wright
""".split()  # noqa: SIM905
_SURNAME_TAILS = "er mann ler ner ke ig hardt berg feld mayer bach horst rich sen stein dorf son ton ley ing".split()  # noqa: SIM905
_CJK_FAMILY = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_CJK_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"

_COMPANY_WORDS = """
Acme Nordwind Alpen Rhein Elbe Hansa Atlas Orion Vega Delta Sigma Apex Vertex Nova Terra
Blau Grün Stahl Holz Glas Papier Werk Technik Logistik Systeme Software Maschinen Bau
Handel Medien Energie Solar Wind Wasser Chemie Pharma Bio Agrar Textil Möbel Druck Metall
""".split()  # noqa: SIM905
_SUFFIXES = [
    ["GmbH", "GMBH", "Gmbh", "G.m.b.H."],
    ["Ltd", "Ltd.", "Limited", "LTD"],
    ["Inc", "Inc.", "Incorporated", "INC."],
    ["AG", "A.G.", "Ag"],
    ["B.V.", "BV", "B.V"],
    ["LLC", "L.L.C.", "Llc"],
]
_STREET_WORDS = """
Linden Eichen Birken Ahorn Garten Schiller Goethe Bahnhof Kirch Schul Berg Wald Rosen
Mozart Park Markt Feld Wiesen Sonnen Mühlen Graham Victoria Albert King Queen Church
Station Mill Bridge Oak Elm Maple Cedar Hill Lake River Spring Meadow Highland Chester
""".split()  # noqa: SIM905
#: Street types per country: (spelt out, abbreviated).
_STREET_TYPES = {
    "DE": [("straße", "str."), ("weg", "weg"), ("allee", "allee"), ("platz", "pl.")],
    "AT": [("gasse", "gasse"), ("straße", "str."), ("weg", "weg")],
    "CH": [("strasse", "str."), ("weg", "weg"), ("platz", "pl.")],
    "NL": [("straat", "str."), ("laan", "ln"), ("weg", "weg"), ("plein", "pln")],
    "GB": [(" Street", " St"), (" Road", " Rd"), (" Gardens", " Gdns"), (" Avenue", " Ave")],
    "US": [(" Street", " St"), (" Avenue", " Ave"), (" Boulevard", " Blvd"), (" Drive", " Dr")],
}
_CITIES = {
    "DE": ["Berlin", "Hamburg", "München", "Köln", "Frankfurt", "Stuttgart", "Leipzig"],
    "AT": ["Wien", "Graz", "Linz", "Salzburg", "Innsbruck"],
    "CH": ["Zürich", "Bern", "Basel", "Genf", "Luzern"],
    "NL": ["Amsterdam", "Rotterdam", "Utrecht", "Den Haag", "Eindhoven"],
    "GB": ["London", "Manchester", "Leeds", "Bristol", "Glasgow"],
    "US": ["New York", "Boston", "Chicago", "Seattle", "Austin"],
}
#: How a country may be written in a duplicate.
_COUNTRY_SPELLINGS = {
    "DE": ["Germany", "DEU", "Deutschland", "de"],
    "AT": ["Austria", "AUT", "Österreich"],
    "CH": ["Switzerland", "CHE", "Schweiz"],
    "NL": ["Netherlands", "NLD", "Nederland"],
    "GB": ["United Kingdom", "GBR", "UK"],
    "US": ["United States", "USA", "U.S.A."],
}
_COUNTRIES = ["DE"] * 5 + ["AT", "CH", "NL", "GB", "US"]
_FREE_MAIL = ["gmail.com", "gmail.com", "web.example", "mail.example", "outlook.example"]
_TITLES = ["Buyer", "CEO", "CTO", "Head of Purchasing", "Engineer", "Office Manager", None]
SURNAME_SKEW = 0.6
FIRST_NAME_SKEW = 0.5


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
    lookalikes: dict[str, set[tuple[int, int]]] = field(default_factory=dict)
    """Pairs of rows of different people who share a lot, by kind (see :data:`LOOKALIKES`)."""

    def kind_counts(self) -> Counter[str]:
        """How many original-duplicate pairs carry each kind."""
        return Counter(k for ks in self.kinds.values() for k in ks)


@cache
def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
    return "".join(c for c in folded if c.isascii() and c.isalnum()).lower()


@cache
def _template(region: str, mobile: bool) -> str:
    kind = (
        phonenumbers.PhoneNumberType.MOBILE if mobile else phonenumbers.PhoneNumberType.FIXED_LINE
    )
    number = phonenumbers.example_number_for_type(region, kind)
    assert number is not None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


class _Maker:
    def __init__(self, rng: random.Random, n: int) -> None:
        self.rng = rng
        surnames = [h + t for h in _SURNAME_HEADS for t in _SURNAME_TAILS]
        rng.shuffle(surnames)
        self.surnames = surnames
        self.surname_weights = list(
            accumulate(1 / (r + 1) ** SURNAME_SKEW for r in range(len(surnames)))
        )
        self.first_weights = list(
            accumulate(1 / (r + 1) ** FIRST_NAME_SKEW for r in range(len(FIRST_NAMES)))
        )
        self.used: set[str] = set()
        self.serial = 0
        self.companies = [self._company(i) for i in range(max(20, n // 30))]

    def phone(self, region: str, *, mobile: bool) -> str:
        template = _template(region, mobile)
        # Keep the country code and two digits of the area or mobile prefix; the rest
        # is random, so each country has millions of numbers to draw from.
        code = str(phonenumbers.parse(template).country_code)
        keep = 1 + len(code) + 2
        tries = 0
        while True:
            tries += 1
            if tries % 500 == 0 and keep > 1 + len(code):
                keep -= 1  # that prefix is spent: draw one more digit at random
            candidate = template[:keep] + "".join(
                self.rng.choice("0123456789") for _ in range(len(template) - keep)
            )
            if candidate in self.used:
                continue
            number = phonenumbers.parse(candidate)
            if phonenumbers.is_valid_number(number):
                self.used.add(candidate)
                return candidate

    def address(self, country: str) -> dict[str, Any]:
        rng = self.rng
        word = rng.choice(_STREET_WORDS)
        kind = rng.randrange(len(_STREET_TYPES[country]))
        full = _STREET_TYPES[country][kind][0]
        street = f"{word}{full}"
        number = str(rng.randrange(1, 180)) + (rng.choice(["", "", "", "a", "b"]))
        line1 = f"{number} {street}" if country in ("GB", "US") else f"{street} {number}"
        if country == "NL":
            postcode = (
                f"{rng.randrange(1000, 9999)} {rng.choice('ABCDEFGHJK')}{rng.choice('LMNPRSTVWX')}"
            )
        elif country == "GB":
            postcode = f"{rng.choice(['SW', 'NW', 'EC', 'M', 'LS', 'BS'])}{rng.randrange(1, 20)} {rng.randrange(1, 9)}{rng.choice('ABDEFGHJ')}{rng.choice('LNPQRSTUWXYZ')}"
        elif country in ("AT", "CH"):
            postcode = str(rng.randrange(1000, 9999))
        else:
            postcode = f"{rng.randrange(1000, 99999):05d}"
        return {
            "line1": line1,
            "postcode": postcode,
            "city": rng.choice(_CITIES[country]),
            "country": country,
            "_street": (word, kind, number),
            "_country": country,
        }

    def _company(self, i: int) -> dict[str, Any]:
        rng = self.rng
        words = rng.sample(_COMPANY_WORDS, rng.choice([1, 2, 2, 3]))
        country = rng.choice(_COUNTRIES)
        group = rng.randrange(len(_SUFFIXES))
        return {
            "base": " ".join(words) + (f" {i}" if rng.random() < 0.3 else ""),
            "group": group,
            "suffix": _SUFFIXES[group][0],
            "domain": _ascii(words[0]) + str(i) + ".example",
            "switchboard": self.phone(country, mobile=False),
            "office": self.address(country),
        }

    def names(self) -> tuple[str, str, bool]:
        rng = self.rng
        if rng.random() < 0.04:
            return (
                rng.choice(_CJK_GIVEN) + rng.choice(["", *_CJK_GIVEN]),
                rng.choice(_CJK_FAMILY),
                True,
            )
        first = rng.choices(FIRST_NAMES, cum_weights=self.first_weights)[0]
        last = rng.choices(self.surnames, cum_weights=self.surname_weights)[0]
        return first, last, False

    def household(self) -> list[dict[str, Any]]:
        rng = self.rng
        country = rng.choice(_COUNTRIES)
        home = self.address(country)
        size = rng.choices([1, 2, 3, 4], [55, 25, 12, 8])[0]
        landline = self.phone(country, mobile=False) if size > 1 or rng.random() < 0.3 else None
        _, surname, cjk = self.names()
        year = rng.randrange(1950, 1995)
        members = []
        for m in range(size):
            first, last, is_cjk = self.names()
            if cjk:
                last, is_cjk = surname, True
                first = rng.choice(_CJK_GIVEN) + rng.choice(["", *_CJK_GIVEN])
            elif m == 0 or rng.random() < 0.8:
                last = surname
                if is_cjk:
                    first, is_cjk = (
                        rng.choices(FIRST_NAMES, cum_weights=self.first_weights)[0],
                        False,
                    )
            born = date(year if m < 2 else year + rng.randrange(22, 35), 1, 1) + timedelta(
                days=rng.randrange(365)
            )
            members.append(self.person(first, last, is_cjk, country, home, landline, born))
        return members

    def person(
        self,
        first: str,
        last: str,
        cjk: bool,
        country: str,
        home: dict[str, Any],
        landline: str | None,
        born: date,
    ) -> dict[str, Any]:
        rng = self.rng
        self.serial += 1
        company = rng.choice(self.companies) if rng.random() < 0.7 else None
        emails: list[str] = []
        phones: list[str] = []
        handle = f"user{self.serial}" if cjk else f"{_ascii(first)}.{_ascii(last)}"
        if rng.random() < 0.85:
            if company is not None and rng.random() < 0.5:
                emails.append(f"{handle}@{company['domain']}")
            else:
                emails.append(f"{handle}{self.serial}@{rng.choice(_FREE_MAIL)}")
        if rng.random() < 0.75:
            phones.append(self.phone(country, mobile=True))
        if landline is not None and rng.random() < 0.6:
            phones.append(landline)
        office = company is not None and rng.random() < 0.4
        if company is not None and (office or rng.random() < 0.1):
            phones.append(company["switchboard"])
        if not emails and not phones:
            phones.append(self.phone(country, mobile=True))
        address = company["office"] if office and company else home
        name = (last + first) if cjk else f"{first} {last}"
        return {
            "name": name,
            "first": first,
            "last": last,
            "cjk": cjk,
            "emails": emails,
            "phones": phones,
            "company": f"{company['base']} {company['suffix']}" if company else None,
            "company_ref": company,
            "title": rng.choice(_TITLES),
            "address": dict(address),
            "birth_date": born.isoformat() if rng.random() < 0.7 else None,
            "landline": landline,
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


def _national(e164: str) -> str:
    number = phonenumbers.parse(e164)
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL))


def _email_variant(rng: random.Random, email: str) -> str:
    local, _, domain = email.partition("@")
    if domain == "gmail.com" and rng.random() < 0.6:
        choice = rng.choice(["dots", "googlemail", "typo"])
        if choice == "dots":
            return local.replace(".", "") + "@gmail.com"
        if choice == "googlemail":
            return f"{local}@googlemail.com"
        return f"{local}@gmail.con"
    if rng.random() < 0.2:
        return f"{local}@{_typo(rng, domain.split('.')[0])}.{domain.split('.', 1)[1]}"
    tag = rng.choice(["news", "crm", "shop", "2024"])
    local = f"{local}+{tag}" if rng.random() < 0.6 else local
    return _recase(rng, local) + "@" + (domain.upper() if rng.random() < 0.5 else domain)


def _street_variant(rng: random.Random, address: dict[str, Any]) -> dict[str, Any]:
    word, kind, number = address["_street"]
    country = address["_country"]
    full, short = _STREET_TYPES[country][kind]
    choice = rng.choice(["abbreviate", "typo", "typo"])
    if choice == "abbreviate" and full != short:
        street = f"{word}{short}"
    else:
        street = f"{_typo(rng, word)}{full}"
    line1 = f"{number} {street}" if country in ("GB", "US") else f"{street} {number}"
    return {**address, "line1": line1}


def _apply(maker: _Maker, orig: dict[str, Any], dup: dict[str, Any], kind: str) -> None:
    rng = maker.rng
    if kind == "typo":
        if orig["cjk"]:
            name = dup["name"].replace(" ", "")
            i = rng.randrange(len(name))
            dup["name"] = name[:i] + rng.choice(_CJK_GIVEN) + name[i + 1 :]
        elif rng.random() < 0.5:
            dup["name"] = f"{orig['first']} {_typo(rng, orig['last'])}"
        else:
            dup["name"] = f"{_typo(rng, orig['first'])} {orig['last']}"
    elif kind == "case_space":
        words = dup["name"].split() if " " in dup["name"] else [dup["name"]]
        dup["name"] = "  ".join(_recase(rng, w) for w in words) + " "
    elif kind == "swapped_names":
        if orig["cjk"]:
            dup["name"] = rng.choice(
                [f"{orig['first']} {orig['last']}", f"{orig['last']} {orig['first']}"]
            )
        else:
            last = orig["last"].upper() if rng.random() < 0.3 else orig["last"]
            dup["name"] = f"{last}{rng.choice([', ', ' '])}{orig['first']}"
    elif kind == "no_first_name":
        if orig["cjk"]:
            dup["name"] = orig["last"] + orig["first"]
        else:
            dup["name"] = rng.choice([orig["last"], f"{orig['first'][0]}. {orig['last']}"])
    elif kind == "phone_national":
        dup["phones"] = [_national(p) for p in orig["phones"]]
    elif kind == "email_variant":
        dup["emails"] = [_email_variant(rng, e) for e in orig["emails"]]
    elif kind == "street_variant" and dup["address"] is not None:
        dup["address"] = _street_variant(rng, dup["address"])
    elif kind == "country_spelling" and dup["address"] is not None:
        dup["address"] = {
            **dup["address"],
            "country": rng.choice(_COUNTRY_SPELLINGS[dup["address"]["_country"]]),
        }
    elif kind == "missing_fields":
        drop = rng.sample(["emails", "phones", "address", "birth_date", "company"], 2)
        for item in drop:
            dup[item] = [] if item in ("emails", "phones") else None
    elif kind == "moved":
        country = rng.choice(_COUNTRIES)
        dup["address"] = maker.address(country)
        dup["phones"] = [p for p in orig["phones"] if p != orig["landline"]]
    elif kind == "company_suffix" and orig["company_ref"] is not None:
        ref = orig["company_ref"]
        others = [s for s in _SUFFIXES[ref["group"]] if s != ref["suffix"]]
        dup["company"] = f"{ref['base']}{rng.choice([' ', ', '])}{rng.choice(others)}"


def _feasible(orig: dict[str, Any], kind: str) -> bool:
    if kind == "email_variant":
        return bool(orig["emails"])
    if kind == "phone_national":
        return bool(orig["phones"])
    if kind == "company_suffix":
        return orig["company_ref"] is not None
    return True


def _enough(orig: dict[str, Any], dup: dict[str, Any]) -> bool:
    """Whether a person could tell the copy is the same person."""
    own = set(orig["phones"]) - {orig["landline"]}
    if orig["company_ref"]:
        own.discard(orig["company_ref"]["switchboard"])
    shared_channel = bool(dup["emails"]) or any(
        p in own or p.replace(" ", "") in {_national(x).replace(" ", "") for x in own}
        for p in dup["phones"]
    )
    return shared_channel or bool(dup["birth_date"] and dup["address"])


def generate(
    n: int,
    seed: int = 0,
    *,
    duplicate_rate: float = 0.1,
    namesake_rate: float = 0.03,
    lookalikes: bool = True,
) -> Dataset:
    """``n`` contacts, about ``duplicate_rate`` of them injected duplicates of others.

    Without ``lookalikes`` the look-alike pairs are not listed (a scale run needs
    no scoring, and a million people have hundreds of millions of them).
    """
    rng = random.Random(f"pycrm-dedupe-v2-{seed}-{n}")
    maker = _Maker(rng, n)
    groups: list[list[tuple[dict[str, Any], tuple[str, ...]]]] = []
    households: list[list[int]] = []
    total = 0
    while total < n:
        members = maker.household()
        if rng.random() < namesake_rate and not members[0]["cjk"]:
            twin = maker.household()[0]
            twin.update(first=members[0]["first"], last=members[0]["last"], name=members[0]["name"])
            twin["emails"] = [e.replace("@", f"{rng.randrange(100, 999)}@") for e in twin["emails"]]
            members_twin = [twin]
        else:
            members_twin = []
        house: list[int] = []
        for orig in [*members, *members_twin]:
            if total >= n:
                break
            group: list[tuple[dict[str, Any], tuple[str, ...]]] = [(orig, ())]
            total += 1
            copies = 0
            if rng.random() < duplicate_rate / 1.15:
                copies = 2 if rng.random() < 0.15 else 1
            for _ in range(copies):
                if total >= n:
                    break
                feasible = [k for k in KINDS if _feasible(orig, k)]
                chosen = rng.sample(feasible, rng.choices([1, 2, 3], [60, 30, 10])[0])
                dup = {k: (list(v) if isinstance(v, list) else v) for k, v in orig.items()}
                dup["address"] = dict(orig["address"]) if orig["address"] else None
                for kind in chosen:
                    _apply(maker, orig, dup, kind)
                if not _enough(orig, dup):
                    dup["emails"] = list(orig["emails"]) or dup["emails"]
                    if not dup["emails"]:
                        dup["birth_date"] = orig["birth_date"]
                        dup["address"] = dup["address"] or dict(orig["address"])
                        dup["phones"] = dup["phones"] or list(orig["phones"])
                group.append((dup, tuple(chosen)))
                total += 1
            if orig not in members_twin:
                house.append(len(groups))
            groups.append(group)
        if len(house) > 1:
            households.append(house)
    order = [(g, m) for g, group in enumerate(groups) for m in range(len(group))]
    rng.shuffle(order)
    rows: list[dict[str, Any]] = []
    entity: list[int] = []
    where: dict[tuple[int, int], int] = {}
    for g, m in order:
        row, _ = groups[g][m]
        where[(g, m)] = len(rows)
        address = row["address"]
        rows.append(
            {
                "name": row["name"],
                "emails": list(row["emails"]),
                "phones": list(row["phones"]),
                "company": row["company"],
                "title": row["title"],
                "address": None
                if address is None
                else {k: v for k, v in address.items() if not k.startswith("_")},
                "birth_date": row["birth_date"],
            }
        )
        entity.append(g)
    truth: set[tuple[int, int]] = set()
    kinds: dict[tuple[int, int], tuple[str, ...]] = {}
    rows_of: dict[int, list[int]] = {}
    for g, group in enumerate(groups):
        placed = [where[(g, m)] for m in range(len(group))]
        rows_of[g] = placed
        for a, b in combinations(placed, 2):
            truth.add((min(a, b), max(a, b)))
        for m in range(1, len(group)):
            pair = (min(placed[0], placed[m]), max(placed[0], placed[m]))
            kinds[pair] = group[m][1]
    found: dict[str, set[tuple[int, int]]] = {k: set() for k in LOOKALIKES}
    if not lookalikes:
        return Dataset(rows, truth, kinds, entity, found)
    for house in households:
        for ga, gb in combinations(house, 2):
            for a in rows_of[ga]:
                for b in rows_of[gb]:
                    found["household"].add((min(a, b), max(a, b)))
    by_place: dict[str, list[int]] = {}
    by_name: dict[str, list[int]] = {}
    for g, group in enumerate(groups):
        orig = group[0][0]
        ref = orig["company_ref"]
        if ref is not None:
            if ref["switchboard"] in orig["phones"]:
                by_place.setdefault("p" + ref["switchboard"], []).append(g)
            if orig["address"] is not None and orig["address"]["line1"] == ref["office"]["line1"]:
                by_place.setdefault("o" + ref["base"], []).append(g)
        if not orig["cjk"]:
            by_name.setdefault(orig["first"] + " " + orig["last"], []).append(g)
    for kind, index in (("colleague", by_place), ("namesake", by_name)):
        for people in index.values():
            for ga, gb in combinations(people[:60], 2):
                a, b = rows_of[ga][0], rows_of[gb][0]
                found[kind].add((min(a, b), max(a, b)))
    return Dataset(rows, truth, kinds, entity, found)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    data = generate(count, seed=1)
    for i, row in enumerate(data.rows):
        print(i, row)
    print("duplicate pairs:", len(data.truth), dict(data.kind_counts()))
    print("look-alike pairs:", {k: len(v) for k, v in data.lookalikes.items()})
