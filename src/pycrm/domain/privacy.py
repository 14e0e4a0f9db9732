"""Privacy: legal holds, requests about a person, and the rules of pseudonymisation.

A *person* is a lead or a contact, together with the leads and contacts that
are the same person: a lead and the contact it converted into, duplicates
merged into either. :class:`LegalHold` keeps a person's data from being
erased; :class:`PrivacyRequest` records each access request and erasure.

Erasure pseudonymises: identifying values are replaced by a stable token
(:func:`pseudonym`) or emptied, while ids, amounts, dates, statuses, owners
and stage history stay, so reports keep their figures. The functions here
work on records' JSON forms (see :mod:`pycrm.serialization`), so the same
rules rewrite a record, an audit entry's snapshot and changes, a merge's
before-images and an event's payload:

* :func:`erase_json` applies the field rules of :data:`PERSON_FIELDS` to a
  person's own records and of :data:`LINKED_FIELDS` to the records linked to
  them (activities, tickets, tasks, consents, behaviour events, documents);
* a :class:`Scrubber` replaces the person's identifying values wherever they
  are mentioned in text (a deal named after them, a note on their company);
  :class:`Scrubbers` does so for several people at once.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Container, Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar

import attrs
import phonenumbers

from pycrm.domain.normalise import email_key
from pycrm.domain.records import Record

__all__ = [
    "ERASED",
    "LINKED_FIELDS",
    "PERSON_FIELDS",
    "PERSON_KINDS",
    "Identity",
    "LegalHold",
    "PrivacyRequest",
    "Scrubber",
    "Scrubbers",
    "empty_checksum",
    "erase_json",
    "is_pseudonym",
    "pseudonym",
]

#: The record kinds that are a person.
PERSON_KINDS = ("contact", "lead")

#: What an erased free text reads as (a ticket message's body, an old value in an audit entry).
ERASED = "[erased]"

_PREFIX = "erased:"


def pseudonym(record_id: str) -> str:
    """The stable token an erased person record's name becomes: ``erased:`` and 12 hex digits.

    Made from the record's id (never from the erased values, which a hash
    would let anyone confirm by guessing), so erasing again writes the same
    token and changes nothing.
    """
    return _PREFIX + hashlib.sha256(record_id.encode()).hexdigest()[:12]


def is_pseudonym(value: Any) -> bool:
    """Whether ``value`` is a token made by :func:`pseudonym`."""
    return isinstance(value, str) and re.fullmatch(r"erased:[0-9a-f]{12}", value) is not None


def empty_checksum() -> str:
    """The SHA-256 of no bytes: what an erased document's checksum and blob key become."""
    return hashlib.sha256(b"").hexdigest()


@attrs.frozen(kw_only=True)
class LegalHold(Record):
    """A legal hold on a person: while it is active, their data may not be erased.

    One row per lead or contact it was placed on; releasing it keeps the row
    (inactive), and placing it again reactivates it. The audit trail keeps
    every placement and release.
    """

    resource: ClassVar[str] = "legal_hold"
    about: ClassVar[tuple[str, str] | None] = ("subject_type", "subject_id")
    about_kinds: ClassVar[tuple[str, ...]] = PERSON_KINDS
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (("subject_id",),)
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (("active",),)

    subject_type: str
    """``lead`` or ``contact``."""
    subject_id: str
    """The lead or contact it was placed on (it holds the whole person)."""
    active: bool = True
    """Whether it holds now."""
    reason: str
    """Why it was placed (a case, a litigation, a regulator's request)."""
    placed_at: datetime
    """When it was last placed (UTC)."""
    placed_by: str
    """Who placed it."""
    released_at: datetime | None = None
    """When it was last released."""
    released_by: str | None = None
    """Who released it."""
    release_reason: str | None = None
    """Why it was released."""


@attrs.frozen(kw_only=True)
class PrivacyRequest(Record):
    """One access request or erasure handled for a person, as evidence that it was.

    It names the person's records by id and counts what was done; it holds
    none of the person's values.
    """

    resource: ClassVar[str] = "privacy_request"
    about: ClassVar[tuple[str, str] | None] = ("subject_type", "subject_id")
    about_kinds: ClassVar[tuple[str, ...]] = PERSON_KINDS
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (("subject_id",),)

    kind: str
    """``access`` or ``erasure``."""
    subject_type: str
    """``lead`` or ``contact``: the record the request named."""
    subject_id: str
    """That record's id."""
    person_ids: tuple[str, ...] = ()
    """Every lead and contact that is the same person."""
    reason: str | None = None
    """Why (an erasure's reason, with the person's values taken out)."""
    counts: dict[str, int] = attrs.field(factory=dict)
    """What was found (an access request: records per kind) or changed (an erasure: per place)."""


#: Fields of a person's own records (leads and contacts) an erasure empties, and what they
#: become: ``name`` the pseudonym, ``address`` its country alone, the rest None or empty.
#: Custom fields whose definition is marked ``personal`` are removed too.
PERSON_FIELDS: Mapping[str, tuple[str, ...]] = {
    "contact": (
        "name", "given_name", "family_name", "name_order", "title", "contact_points", "address",
    ),
    "lead": (
        "name", "given_name", "family_name", "name_order", "title", "contact_points", "needs",
    ),
}  # fmt: skip

#: Fields of the records linked to a person that an erasure empties: the bodies of
#: activities and tickets about them, task notes, consent proof, tracked behaviour and
#: documents attached to their records. Custom fields marked ``personal`` go too.
LINKED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "activity": ("subject", "body"),
    "ticket": ("subject", "description", "messages", "csat_comment"),
    "task": ("notes",),
    "consent": ("proof",),
    "behaviour_event": ("properties",),
    "document": ("name", "checksum", "blob_key", "size"),
}


def _erased_value(resource: str, field: str, value: Any, token: str) -> Any:
    """What ``field`` of an erased ``resource`` becomes (``value``: its JSON form now)."""
    if value is None or value == ERASED:
        return value
    if field in ("name", "subject"):
        return token
    if field == "address":
        country = value.get("country") if isinstance(value, Mapping) else None
        if not country:
            return None
        return {k: (v if k == "country" else None) for k, v in value.items()}
    if field == "messages" and isinstance(value, list):
        return [{**m, "body": ERASED} if isinstance(m, Mapping) else m for m in value]
    if field in ("checksum", "blob_key"):
        return empty_checksum()
    if field == "size":
        return 0
    if isinstance(value, list):
        return []
    if isinstance(value, Mapping):
        return {}
    return None


@attrs.frozen
class Identity:
    """The values that identify one person, gathered from their records and their history."""

    names: tuple[str, ...] = ()
    """Full names as written."""
    parts: tuple[str, ...] = ()
    """Given and family names."""
    emails: tuple[str, ...] = ()
    """Email addresses."""
    phones: tuple[str, ...] = ()
    """Phone numbers (E.164)."""
    texts: tuple[str, ...] = ()
    """Other values copied verbatim elsewhere: address lines, what a lead needs."""

    @classmethod
    def gather(cls, forms: Iterable[Mapping[str, Any]]) -> Identity:
        """The identity in the JSON forms (whole or partial) of a person's records.

        Pseudonyms and empty values are left out, so a person erased already
        has no identity left to find.
        """
        names: dict[str, None] = {}
        parts: dict[str, None] = {}
        emails: dict[str, None] = {}
        phones: dict[str, None] = {}
        texts: dict[str, None] = {}

        def keep(into: dict[str, None], value: Any) -> None:
            if (
                isinstance(value, str)
                and value.strip()
                and value != ERASED
                and not is_pseudonym(value)
            ):
                into[unicodedata.normalize("NFKC", value.strip())] = None

        for form in forms:
            keep(names, form.get("name"))
            keep(parts, form.get("given_name"))
            keep(parts, form.get("family_name"))
            keep(texts, form.get("needs"))
            address = form.get("address")
            if isinstance(address, Mapping):
                keep(texts, address.get("line1"))
                keep(texts, address.get("line2"))
            for point in form.get("contact_points") or ():
                if not isinstance(point, Mapping):
                    continue
                keep(emails if point.get("kind") == "email" else phones, point.get("value"))
        return cls(*(tuple(sorted(d)) for d in (names, parts, emails, phones, texts)))

    def __bool__(self) -> bool:
        return any((self.names, self.parts, self.emails, self.phones, self.texts))


_WIDE = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\u3040-\u30ff]")
_SEP = r"[\s\-().\/]{0,2}"
_STRUCTURAL = re.compile(
    r"[0-9a-f]{32}|-?\d+(\.\d+)?|\d{4}-\d\d-\d\d([T ][0-9:.]+([+-]\d\d:\d\d|Z)?)?"
)
#: Keys whose values are ids, keys or bookkeeping, never text about a person.
_KEYS = frozenset(
    {"id", "tenant_id", "created_by", "updated_by", "record_type", "resource", "blob_key",
     "checksum", "document_key", "version", "name_order", "kind", "status", "currency"}
)  # fmt: skip


def _bounded(pattern: str, text: str) -> str:
    """``pattern`` as a whole word, unless ``text`` is written without spaces (CJK)."""
    return pattern if _WIDE.search(text) else rf"(?<!\w){pattern}(?!\w)"


def _spaced(text: str) -> str:
    return r"\s+".join(re.escape(t) for t in text.split())


def _words(text: str) -> tuple[str, ...]:
    """The words of ``text``, case-folded, longest first."""
    return tuple(sorted({_fold(w) for w in text.split()}, key=len, reverse=True))


def _fold(text: str) -> str:
    """``text`` case-folded, without the dot ``İ`` folds to (ignoring case, ``i`` matches ``İ``)."""
    return text.casefold().replace("\u0307", "")


def _number_digits(number: str) -> str:
    """The digits every match of :func:`_phone`'s pattern for ``number`` holds in a row."""
    try:
        return phonenumbers.national_significant_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return re.sub(r"\D", "", number)


def _phone(number: str) -> str | None:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        digits = re.sub(r"\D", "", number)
        return _SEP.join(digits) if len(digits) >= 6 else None
    national = phonenumbers.national_significant_number(parsed)
    body = _SEP.join(re.escape(d) for d in national)
    prefix = rf"(?:(?:\+|00){_SEP}{parsed.country_code}{_SEP}(?:\(0\){_SEP})?|0{_SEP})?"
    return rf"(?<![\d+]){prefix}{body}(?!\d)"


class Scrubber:
    """Replaces one person's identifying values in text with their pseudonym.

    ``wide`` (for records linked to the person) also replaces their given
    and family names on their own, as whole words; everywhere else only full
    names (in either order), emails, phone numbers (however they are
    written: ``+49 30 1234567``, ``030/1234567``), address lines and other
    values copied verbatim are replaced, so an unrelated record that merely
    shares a first name is left alone. Matching ignores case.
    """

    def __init__(self, identity: Identity, token: str, *, wide: bool = False) -> None:
        self.token = token
        patterns: list[str] = []
        # The words every match of a pattern holds (case-folded), and the digits of each
        # phone number: a text holding none of these cannot be mentioning the person.
        literals: list[tuple[str, ...]] = []
        numbers: list[str] = []
        for name in identity.names:
            if len(name) >= 2:
                literals.append(_words(name))
                patterns.append(_bounded(_spaced(name), name))
                tokens = name.split()
                if len(tokens) == 2:
                    reverse = rf"{re.escape(tokens[1])},?\s+{re.escape(tokens[0])}"
                    patterns.append(_bounded(reverse, name))
        if wide:
            patterns += [_bounded(_spaced(p), p) for p in identity.parts if len(p) >= 2]
            literals += [_words(p) for p in identity.parts if len(p) >= 2]
        for email in identity.emails:
            patterns.append(re.escape(email))
            literals.append((_fold(email),))
            key = email_key(email)
            if key and key != email.casefold():
                patterns.append(re.escape(key))
                literals.append((_fold(key),))
        for phone in identity.phones:
            pattern = _phone(phone)
            if pattern:
                patterns.append(pattern)
                numbers.append(_number_digits(phone))
        texts = [t for t in identity.texts if len(t) >= 6]
        patterns += [_spaced(t) for t in texts]
        literals += [_words(t) for t in texts]
        self._literals = tuple(dict.fromkeys(literals))
        self._numbers = tuple(dict.fromkeys(numbers))
        # Longest first, so a full name is replaced before a part of it.
        patterns.sort(key=len, reverse=True)
        self._pattern = re.compile("|".join(patterns), re.IGNORECASE) if patterns else None

    @staticmethod
    def prepare(value: str) -> tuple[str, str]:
        """``value`` as :meth:`may_mention` reads it: case-folded, and its digits alone."""
        normal = unicodedata.normalize("NFKC", value)
        return _fold(normal), re.sub(r"\D", "", normal)

    def may_mention(self, prepared: tuple[str, str]) -> bool:
        """Whether a text (made ready by :meth:`prepare`) may mention the person.

        A quick test on literals alone: False means :meth:`mentions` is False;
        True is to be checked with the patterns.
        """
        if self._pattern is None:
            return False
        folded, digits = prepared
        return any(n in digits for n in self._numbers) or any(
            all(word in folded for word in words) for words in self._literals
        )

    def text(self, value: str) -> str:
        """``value`` with every mention replaced by the pseudonym."""
        if self._pattern is None or is_pseudonym(value):
            return value
        normal = unicodedata.normalize("NFKC", value)
        if not self._pattern.search(normal):
            return value
        return self._pattern.sub(self.token, normal)

    def mentions(self, value: str) -> bool:
        """Whether ``value`` (any text, JSON included) mentions the person."""
        return self._pattern is not None and bool(
            self._pattern.search(unicodedata.normalize("NFKC", value))
        )

    def json(self, value: Any, key: str | None = None) -> Any:
        """A JSON value with every text in it scrubbed (ids, dates and amounts left alone)."""
        if isinstance(value, str):
            if key is not None and (key in _KEYS or key.endswith(("_id", "_ids", "_at"))):
                return value
            return value if _STRUCTURAL.fullmatch(value) else self.text(value)
        if isinstance(value, Mapping):
            if set(value) == {"amount", "currency"}:
                return value
            return {k: self.json(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v, key) for v in value]
        return value


class Scrubbers:
    """Several people's scrubbers, applied one after another in the order given.

    An erasure of several people asks once which of them a text may mention
    (:meth:`concerned`, a quick test on literals) and replaces each person's
    values by that person's pseudonym (:meth:`text`), as erasing them one by
    one in that order would.
    """

    def __init__(self, scrubbers: Iterable[Scrubber]) -> None:
        self._each = tuple(scrubbers)

    def text(self, value: str) -> str:
        """``value`` with every person's mentions replaced by their pseudonyms."""
        for scrubber in self._each:
            value = scrubber.text(value)
        return value

    def concerned(self, value: str) -> list[int]:
        """The positions of the scrubbers whose person ``value`` may mention.

        Those left out certainly are not mentioned (see :meth:`Scrubber.may_mention`).
        """
        prepared = Scrubber.prepare(value)
        return [i for i, scrubber in enumerate(self._each) if scrubber.may_mention(prepared)]


def erase_json(
    resource: str,
    record_id: str,
    data: Mapping[str, Any],
    *,
    erased: Mapping[str, str],
    near: Container[str],
    personal: Callable[[str], frozenset[str]],
    scrub: Callable[[str, Any], Any],
    pairs: bool = False,
) -> dict[str, Any]:
    """The JSON form ``data`` of record ``resource`` ``record_id`` with the person erased.

    ``erased`` maps the ids of the records whose fields are emptied (the
    person's own and those linked to them) to their kind; records in
    ``near`` (those and the others about the person, such as their deals)
    lose the custom fields ``personal`` names for their kind; ``scrub`` is
    applied to what is left (given the record's id). ``data`` may be whole or
    partial (a compact snapshot), or, with ``pairs``, an audit entry's
    changes (field → ``[old, new]``). A merge's before-images are erased by
    the rules of the records they show.
    """
    rules: tuple[str, ...] = ()
    if erased.get(record_id) == resource:
        rules = PERSON_FIELDS.get(resource, LINKED_FIELDS.get(resource, ()))
    secret = personal(resource) if record_id in near else frozenset()
    token = pseudonym(record_id)

    def one(field: str, value: Any) -> Any:
        if field in rules:
            value = _erased_value(resource, field, value, token)
        elif field == "custom" and secret and isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if k not in secret}
        elif field == "changes" and resource == "merge" and isinstance(value, list):
            value = [_merge_change(c, erased, near, personal, scrub) for c in value]
        return value

    out: dict[str, Any] = {}
    for field, value in data.items():
        if pairs and isinstance(value, list) and len(value) == 2:
            out[field] = [one(field, side) for side in value]
        else:
            out[field] = one(field, value)
    return scrub(record_id, out)  # type: ignore[no-any-return]


def _merge_change(
    change: Any,
    erased: Mapping[str, str],
    near: Container[str],
    personal: Callable[[str], frozenset[str]],
    scrub: Callable[[str, Any], Any],
) -> Any:
    if not isinstance(change, Mapping) or not isinstance(change.get("before"), Mapping):
        return change
    kind, id = str(change.get("record_type")), str(change.get("record_id"))
    before = erase_json(
        kind, id, change["before"], erased=erased, near=near, personal=personal, scrub=scrub
    )
    return {**change, "before": before}
