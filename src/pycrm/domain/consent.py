"""Consent: who agreed to be contacted or profiled, for what, how, and with what proof.

Consent is kept per person (a lead or a contact), per *purpose* (``marketing``,
``profiling``, ``phone_calls`` …) and per *channel* (``email``, ``phone``,
``sms``, ``post``, or ``any``). Every grant and every withdrawal is a
:class:`Consent` record of its own, never changed afterwards: the history is
the evidence. For one person, purpose and channel the record with the latest
``at`` wins (of two at the same moment, the one recorded later).

A record for the channel ``any`` speaks for every channel: whether a person
may be reached for a purpose on a channel is decided by the latest record
for that channel *or* for ``any`` (:func:`decides`).

:class:`ConsentState` rows hold that answer per person, purpose and channel,
so that a campaign's query can ask for it in the database (:func:`consented`).
They are derived data, written with each consent in the same transaction, as
match keys are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar

import attrs

from pycrm.domain.query import And, Eq, Filter, Not, Or, Related
from pycrm.domain.records import Record
from pycrm.errors import ValidationError

__all__ = [
    "ANY",
    "METHODS",
    "Consent",
    "ConsentState",
    "check_proof",
    "check_slug",
    "consented",
    "current",
    "decides",
    "next_state",
]

#: The channel a consent for every channel is recorded for.
ANY = "any"

#: How consent is usually captured (any other lower-case slug is accepted too).
METHODS = ("form", "double_opt_in", "import", "call", "email", "api")

_SLUG = re.compile(r"[a-z][a-z0-9_]*")
_SLUG_LIMIT = 40
_PROOF_ITEMS = 20
_PROOF_TEXT = 2000


def check_slug(field: str, value: Any) -> str:
    """A lower-case slug: a letter, then letters, digits or ``_``; at most 40 characters.

    :raises ValidationError: naming ``field``.
    """
    if not isinstance(value, str):
        raise ValidationError(field, value, f"must be text, not {type(value).__name__}")
    if len(value) > _SLUG_LIMIT:
        raise ValidationError(field, value, f"is longer than {_SLUG_LIMIT} characters")
    if not _SLUG.fullmatch(value):
        raise ValidationError(
            field, value, "must be a lower-case slug: a letter, then letters, digits or _"
        )
    return value


def check_proof(field: str, value: Any) -> dict[str, str] | None:
    """None, or a mapping of text to text (at most 20 items of 2,000 characters).

    :raises ValidationError: naming ``field`` or ``field.key``.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError(field, value, "must be a mapping of text to text")
    if len(value) > _PROOF_ITEMS:
        raise ValidationError(field, value, f"has more than {_PROOF_ITEMS} items")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key.strip() or len(key) > 100:
            raise ValidationError(field, key, "keys must be non-empty text (100 characters)")
        where = f"{field}.{key}"
        if not isinstance(item, str):
            raise ValidationError(where, item, f"must be text, not {type(item).__name__}")
        if len(item) > _PROOF_TEXT:
            raise ValidationError(where, item, f"is longer than {_PROOF_TEXT} characters")
        if any(not c.isprintable() and c not in "\t\n" for c in key + item) or any(
            0xD800 <= ord(c) <= 0xDFFF for c in key + item
        ):
            raise ValidationError(where, item, "contains control characters or surrogates")
        out[key] = item
    return out


@attrs.frozen(kw_only=True)
class Consent(Record):
    """One grant or withdrawal of consent by a lead or a contact.

    Never changed once recorded: a change of mind is a new record. Whoever
    records one needs a grant on ``consent`` and must be able to read the
    person it is about; reading one needs the same.
    """

    resource: ClassVar[str] = "consent"
    about: ClassVar[tuple[str, str] | None] = ("subject_type", "subject_id")
    about_kinds: ClassVar[tuple[str, ...]] = ("contact", "lead")
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (("subject_id", "purpose", "channel", "at"),)

    subject_type: str
    """``lead`` or ``contact``."""
    subject_id: str
    """The lead or contact."""
    purpose: str
    """What for: ``marketing``, ``profiling``, ``phone_calls`` … (a lower-case slug)."""
    channel: str
    """How they may be reached: ``email``, ``phone``, ``sms``, ``post``, or ``any``."""
    granted: bool
    """True for a grant, False for a withdrawal."""
    at: datetime
    """When the person gave or withdrew it (UTC); it may be earlier than when it was recorded."""
    method: str
    """How it was captured: ``form``, ``double_opt_in``, ``import``, ``call``, ``email``, ``api`` …"""
    proof: dict[str, str] | None = None
    """The evidence: the form, the IP address, when a double opt-in was confirmed …"""
    recorded_by: str
    """The actor who recorded it."""


@attrs.frozen(kw_only=True)
class ConsentState(Record):
    """Whether one person may be reached for one purpose on one channel now (derived data).

    One row per person, purpose and channel that has consent records (and
    one for ``any``). A channel's row holds the latest record for that
    channel or for ``any``; the ``any`` row the latest record for ``any``.
    Written by the consent service with every consent, in the same
    transaction, and not audited apart from it: the consents are the history.
    """

    resource: ClassVar[str] = "consent_state"
    about: ClassVar[tuple[str, str] | None] = ("subject_type", "subject_id")
    about_kinds: ClassVar[tuple[str, ...]] = ("contact", "lead")
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (("subject_id", "purpose", "channel"),)

    subject_type: str
    """``lead`` or ``contact``."""
    subject_id: str
    """The lead or contact."""
    purpose: str
    """The purpose."""
    channel: str
    """The channel, or ``any``."""
    granted: bool
    """What the deciding record says."""
    at: datetime
    """When the deciding record says it happened."""
    consent_id: str
    """The deciding :class:`Consent` record."""


def _order(consent: Consent | ConsentState) -> tuple[datetime, str]:
    """Which of two records for the same question wins: the later ``at``, then the later id."""
    return consent.at, consent.id if isinstance(consent, Consent) else consent.consent_id


def current(history: Iterable[Consent]) -> list[Consent]:
    """The latest record per (purpose, channel) of one person's ``history``, by purpose and channel."""
    latest: dict[tuple[str, str], Consent] = {}
    for consent in history:
        key = (consent.purpose, consent.channel)
        if key not in latest or _order(consent) > _order(latest[key]):
            latest[key] = consent
    return [latest[key] for key in sorted(latest)]


def decides(history: Iterable[Consent], purpose: str, channel: str) -> Consent | None:
    """The record that decides ``purpose`` on ``channel``: the latest for it or for ``any``."""
    found = [c for c in history if c.purpose == purpose and c.channel in (channel, ANY)]
    return max(found, key=_order, default=None)


def consented(purpose: str, channel: str) -> Filter:
    """A filter on leads or contacts: those whose consent for ``purpose`` on ``channel`` holds.

    That is, whose deciding record (see :func:`decides`) is a grant.

    It reads :class:`ConsentState` rows, so the SQL adapter answers it with
    index probes inside the query (an ``EXISTS`` or ``NOT EXISTS`` per condition).
    """

    def states(low: int | None, high: int | None, *where: Filter) -> Related:
        return Related(
            ConsentState.resource, "subject_id", "count", None, low, high, And((*where,))
        )

    of = Eq("purpose", purpose)
    any_grant = states(1, None, of, Eq("channel", ANY), Eq("granted", True))
    if channel == ANY:
        return any_grant
    own_grant = states(1, None, of, Eq("channel", channel), Eq("granted", True))
    no_own = Not(states(1, None, of, Eq("channel", channel)))
    return Or((own_grant, And((no_own, any_grant))))


def next_state(
    state: ConsentState | None, consent: Consent, any_state: ConsentState | None
) -> dict[str, Any] | None:
    """The fields a channel's state row takes after ``consent`` (None: it stays as it is).

    ``state`` is the row for ``consent``'s channel or, for a consent for
    ``any``, any row of the same person and purpose; ``any_state`` the
    ``any`` row, consulted when a channel gets its first row.
    """
    winner: Consent | ConsentState = consent
    if state is None and any_state is not None and _order(any_state) > _order(consent):
        winner = any_state
    if state is not None and _order(state) >= _order(consent):
        return None
    if isinstance(winner, Consent):
        return {"granted": winner.granted, "at": winner.at, "consent_id": winner.id}
    return {"granted": winner.granted, "at": winner.at, "consent_id": winner.consent_id}
