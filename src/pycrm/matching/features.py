"""What the matcher compares: a record's identifying values, folded once.

:func:`features` turns a customer, contact or lead (or a row parsed like one)
into a :class:`Features` of plain strings and sets, so that comparing two
records is string work only: names split into a given name and a surname (a
comma means "Surname, Given"; CJK names without spaces are family name first),
emails as provider-folded keys, phones in E.164 with mobiles told apart,
addresses as house number, street words (abbreviations spelt out), second line,
city, postcode, region and country, and the record's identifying custom fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import phonenumbers

from pycrm.domain.contact_points import PointKind
from pycrm.domain.normalise import (
    company_key,
    given_family_parts,
    name_parts,
    person_key,
    phonetic_key,
    spelled_tokens,
    street_key,
)

__all__ = ["IDENTIFIER_KINDS", "Features", "features", "fold_identifier"]

#: How an identifying custom field is compared: ``date`` (birth dates: typos and
#: swapped day and month count as close), ``identifier`` (tax, VAT, passport
#: numbers: exact after dropping spaces and punctuation, or one slip),
#: ``text`` (fuzzy) and ``number`` (equal or within 5%).
IDENTIFIER_KINDS = ("date", "identifier", "text", "number")

_MOBILE = (phonenumbers.PhoneNumberType.MOBILE,)
_TYPE_CACHE: dict[str, bool] = {}


def _is_mobile(e164: str) -> bool:
    """Whether an E.164 number is a mobile (the type is decided by its leading digits)."""
    prefix = e164[:8]
    known = _TYPE_CACHE.get(prefix)
    if known is None:
        try:
            number = phonenumbers.parse(e164, None)
            known = phonenumbers.number_type(number) in _MOBILE
        except phonenumbers.NumberParseException:
            known = False
        if len(_TYPE_CACHE) < 100_000:
            _TYPE_CACHE[prefix] = known
    return known


class Features:
    """The comparable values of one record (all folded; empty string or set: unknown)."""

    __slots__ = (
        "city",
        "company",
        "country",
        "email_parts",
        "emails",
        "given",
        "ids",
        "is_company",
        "line2",
        "mobiles",
        "name",
        "phones",
        "postcode",
        "record_id",
        "record_type",
        "region",
        "street",
        "street_number",
        "surname",
        "website",
    )

    def __init__(self, record_type: str, record_id: str) -> None:
        self.record_type = record_type
        self.record_id = record_id
        self.is_company = record_type == "customer"
        self.name = ""
        self.given = ""
        self.surname = ""
        self.emails: frozenset[str] = frozenset()
        self.email_parts: tuple[tuple[str, str], ...] = ()
        self.phones: frozenset[str] = frozenset()
        self.mobiles: frozenset[str] = frozenset()
        self.street_number = ""
        self.street = ""
        self.line2 = ""
        self.city = ""
        self.postcode = ""
        self.region = ""
        self.country = ""
        self.company = ""
        self.website = ""
        self.ids: dict[str, str] = {}

    def phonetic(self) -> tuple[str, str]:
        """Sound-alike keys of the given name and the surname."""
        return phonetic_key(self.given), phonetic_key(self.surname)

    def __repr__(self) -> str:
        return f"Features({self.record_type} {self.record_id}: {self.name!r})"


def fold_identifier(kind: str, value: Any) -> str:
    """An identifying custom value folded for comparison ('' for none)."""
    if value is None or value == "":
        return ""
    text = str(value)
    if kind == "date":
        return "".join(ch for ch in text if ch.isdigit())
    if kind == "identifier":
        return "".join(ch for ch in text.upper() if ch.isalnum())
    if kind == "number":
        return text.strip()
    return " ".join(spelled_tokens(text))


@lru_cache(maxsize=65536)
def _folded(text: str | None) -> str:
    """Words folded for comparison (cities, regions and second lines repeat a lot)."""
    return " ".join(spelled_tokens(text))


@lru_cache(maxsize=65536)
def _person(name: str) -> str:
    return person_key(name)


def _website(url: str | None) -> str:
    if not url:
        return ""
    host = url.casefold().split("//", 1)[-1].split("/", 1)[0]
    return host.removeprefix("www.")


def features(record: Any, identifying: Mapping[str, str] | None = None) -> Features:
    """The comparable values of a customer, contact or lead.

    ``identifying`` names the custom fields that identify a record of this
    kind, with how each is compared (see :data:`IDENTIFIER_KINDS`).
    """
    f = Features(record.resource, record.id)
    name = record.name
    if f.is_company:
        f.name = company_key(name)
        f.website = _website(getattr(record, "website", None))
    else:
        f.name = _person(name)
        given, family = getattr(record, "given_name", None), getattr(record, "family_name", None)
        # Parts the record knows apart beat the ones read out of the whole name.
        f.given, f.surname = (
            given_family_parts(given, family) if given or family else name_parts(name)
        )
        company = getattr(record, "company", None)
        if company:
            f.company = company_key(company)
        elif getattr(record, "customer_id", None):
            f.company = "id:" + record.customer_id
    emails: list[str] = []
    phones: list[str] = []
    mobiles: list[str] = []
    for point in record.contact_points:
        if not point.valid:
            continue
        key = point.match_key()
        if point.kind is PointKind.EMAIL:
            emails.append(key)
        else:
            phones.append(key)
            if _is_mobile(key):
                mobiles.append(key)
    if emails:
        f.emails = frozenset(emails)
        f.email_parts = tuple(tuple(e.rpartition("@")[::2]) for e in f.emails)  # type: ignore[misc]
    if phones:
        f.phones = frozenset(phones)
        f.mobiles = frozenset(mobiles)
    address = getattr(record, "address", None)
    if address is not None:
        f.street_number, f.street = street_key(address.line1)
        f.line2 = _folded(address.line2)
        f.city = _folded(address.city)
        f.postcode = "".join((address.postcode or "").split()).upper()
        f.region = _folded(address.region)
        f.country = address.country or ""
    if identifying:
        custom = getattr(record, "custom", None) or {}
        for key, kind in identifying.items():
            folded = fold_identifier(kind, custom.get(key))
            if folded:
                f.ids[key] = folded
    return f
