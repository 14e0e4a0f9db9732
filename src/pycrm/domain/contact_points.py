"""Contact points and addresses, normalised at the door.

Phones are stored in E.164 (``+4930123456``) and emails in their normalised
form (the domain lower-cased and IDNA-decoded, as email-validator gives it);
the check is syntax only and never touches the network.
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Iterable
from typing import Any

import attrs
import email_validator
import phonenumbers

from pycrm.domain.normalise import email_key
from pycrm.errors import ValidationError

__all__ = [
    "Address",
    "ContactPoint",
    "PointKind",
    "Reachable",
    "clean_text",
    "email_point",
    "normalise_email",
    "normalise_phone",
    "phone_point",
    "primary_point",
    "search_key",
]

MAX_TEXT = 2000


def clean_text(
    value: Any, field: str, *, required: bool = False, limit: int = 500, multiline: bool = False
) -> str | None:
    """Return ``value`` NFKC-normalised with runs of whitespace folded to one space.

    With ``multiline``, line breaks and indentation are kept (only trailing
    spaces and surrounding blank lines go), for notes and descriptions.
    Refuses non-strings, control characters and text longer than ``limit``
    with a :class:`ValidationError` naming ``field``. Empty text becomes None
    (or is refused when ``required``).
    """
    if value is None:
        if required:
            raise ValidationError(field, value, "is required")
        return None
    if not isinstance(value, str):
        raise ValidationError(field, value, f"must be text, not {type(value).__name__}")
    normal = unicodedata.normalize("NFKC", value)
    if multiline:
        lines = [
            line.rstrip() for line in normal.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        ]
        text = "\n".join(lines).strip("\n")
        checked = text.replace("\n", "").replace("\t", "")
    else:
        text = checked = " ".join(normal.split())
    plain = checked.isascii() and checked.isprintable()  # the usual case, checked in C
    if not plain and any(unicodedata.category(ch) in ("Cc", "Cs", "Co") for ch in checked):
        raise ValidationError(field, value, "contains control or unassigned characters")
    if not text:
        if required:
            raise ValidationError(field, value, "is required and may not be blank")
        return None
    if len(text) > limit:
        raise ValidationError(field, value, f"is longer than {limit} characters")
    return text


def normalise_phone(value: Any, *, region: str | None = None, field: str = "phone") -> str:
    """Return ``value`` as an E.164 phone number.

    ``region`` (ISO 3166 alpha-2, e.g. ``"DE"``) is used for numbers written
    without a country code; without it such numbers are refused. A number that
    cannot be valid raises :class:`ValidationError` saying why.
    """
    if not isinstance(value, str):
        raise ValidationError(field, value, f"must be text, not {type(value).__name__}")
    text = unicodedata.normalize("NFKC", value).strip()
    if not text:
        raise ValidationError(field, value, "is empty")
    if len(text) > 64:
        raise ValidationError(field, value, "is too long to be a phone number")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        reason = {
            phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: (
                "has no valid country code; write it as +<country code> or set a default region"
            ),
            phonenumbers.NumberParseException.NOT_A_NUMBER: "is not a phone number",
            phonenumbers.NumberParseException.TOO_SHORT_NSN: "is too short",
            phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "is too short",
            phonenumbers.NumberParseException.TOO_LONG: "is too long",
        }.get(exc.error_type, "cannot be read as a phone number")
        raise ValidationError(field, value, reason) from None
    if not phonenumbers.is_possible_number(number):
        raise ValidationError(field, value, "has the wrong number of digits for its country")
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(field, value, "is not a valid number in its country's numbering plan")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(value: Any, *, field: str = "email") -> str:
    """Return ``value`` as a normalised email address (syntax check only, no DNS)."""
    if not isinstance(value, str):
        raise ValidationError(field, value, f"must be text, not {type(value).__name__}")
    text = unicodedata.normalize("NFKC", value).strip()
    if len(text) > 320:
        raise ValidationError(field, value, "is longer than 320 characters")
    try:
        result = email_validator.validate_email(
            text, check_deliverability=False, allow_smtputf8=True
        )
    except email_validator.EmailNotValidError as exc:
        raise ValidationError(field, value, str(exc)) from None
    return str(result.normalized)


class PointKind(enum.StrEnum):
    """The kind of a contact point."""

    EMAIL = "email"
    PHONE = "phone"


@attrs.frozen
class ContactPoint:
    """A way to reach a customer or contact: one email address or one phone number.

    Build them with :func:`email_point` and :func:`phone_point`, which
    normalise; the constructor trusts its input (it is used when loading).
    """

    kind: PointKind
    """Email or phone."""
    value: str
    """The normalised value: an E.164 number or a normalised email address."""
    label: str = "work"
    """What the point is for: ``work``, ``home``, ``mobile``, … (free text)."""
    valid: bool = True
    """False when stored as typed in lenient mode because it failed validation."""
    primary: bool = False
    """The one to use first of its kind (at most one email and one phone are primary)."""

    def match_key(self) -> str:
        """The key duplicates are found by: the E.164 phone, the email case-folded without +tag."""
        if not self.valid:
            return ""
        return email_key(self.value) if self.kind is PointKind.EMAIL else self.value


def primary_point(points: Iterable[ContactPoint], kind: PointKind) -> str | None:
    """The value of the valid point of ``kind`` marked primary, else of the first valid one."""
    first: str | None = None
    for point in points:
        if point.kind is kind and point.valid:
            if point.primary:
                return point.value
            if first is None:
                first = point.value
    return first


class Reachable:
    """Records with contact points: their primary email and phone.

    Mixed into the record classes that hold ``contact_points``.
    """

    __slots__ = ()

    contact_points: tuple[ContactPoint, ...]

    @property
    def primary_email(self) -> str | None:
        """The email to write to: the one marked primary, else the first (None: no valid email)."""
        return primary_point(self.contact_points, PointKind.EMAIL)

    @property
    def primary_phone(self) -> str | None:
        """The phone to call (E.164): the one marked primary, else the first (None: no valid phone)."""
        return primary_point(self.contact_points, PointKind.PHONE)


def email_point(value: Any, label: str = "work", *, field: str = "email") -> ContactPoint:
    """Return a normalised email contact point."""
    return ContactPoint(PointKind.EMAIL, normalise_email(value, field=field), _label(label, field))


def phone_point(
    value: Any, label: str = "work", *, region: str | None = None, field: str = "phone"
) -> ContactPoint:
    """Return a normalised (E.164) phone contact point."""
    return ContactPoint(
        PointKind.PHONE, normalise_phone(value, region=region, field=field), _label(label, field)
    )


def _label(label: Any, field: str) -> str:
    return clean_text(label, f"{field}.label", required=True, limit=40) or "work"


@attrs.frozen
class Address:
    """A postal address. Every part is optional; ``country`` is ISO 3166 alpha-2."""

    line1: str | None = None
    """Street and number."""
    line2: str | None = None
    """Building, floor, c/o."""
    city: str | None = None
    """City or town."""
    region: str | None = None
    """State, province or county."""
    postcode: str | None = None
    """Postal code, upper-cased with its spaces folded."""
    country: str | None = None
    """ISO 3166-1 alpha-2 code, upper case."""

    @classmethod
    def parse(cls, value: Any, field: str = "address") -> Address | None:
        """Build a cleaned Address from a mapping (or return an Address/None as is)."""
        if value is None or isinstance(value, Address):
            return value
        if not isinstance(value, dict):
            raise ValidationError(field, value, "must be a mapping of address parts")
        known = {a.name for a in attrs.fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValidationError(field, value, f"unknown parts {sorted(map(str, unknown))}")
        parts = {key: clean_text(value.get(key), f"{field}.{key}", limit=200) for key in known}
        if parts["postcode"]:
            parts["postcode"] = parts["postcode"].upper()
        country = parts["country"]
        if country is not None:
            country = country.upper()
            if len(country) != 2 or not country.isascii() or not country.isalpha():
                raise ValidationError(
                    f"{field}.country", value.get("country"), "must be a two-letter ISO 3166 code"
                )
            parts["country"] = country
        return cls(**parts)


def search_key(text: str | None) -> str:
    """Return ``text`` NFKC-normalised, case-folded and whitespace-folded, for searching."""
    if not text:
        return ""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())
