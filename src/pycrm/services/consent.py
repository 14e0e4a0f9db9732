"""``s.consent``: grants and withdrawals of consent by leads and contacts, with their proof.

Each call records one :class:`~pycrm.domain.consent.Consent` in the caller's
session, so a form that captures a lead and its consent commits both or
neither::

    lead = s.leads.capture("Ann", source="webform", email="ann@example.com")
    s.consent.grant(lead.id, "marketing", method="form", proof={"form": "contact-us"})

The latest record per person, purpose and channel wins; a record for the
channel ``any`` speaks for every channel (see :mod:`pycrm.domain.consent`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from pycrm.domain.consent import (
    ANY,
    Consent,
    ConsentState,
    check_proof,
    check_slug,
    current,
    decides,
    next_state,
)
from pycrm.domain.customers import Contact
from pycrm.domain.fields import Checks, check_id
from pycrm.domain.leads import Lead
from pycrm.domain.query import And, Eq, In, OrderBy, all_of
from pycrm.domain.records import Record
from pycrm.errors import NotFound, ValidationError
from pycrm.services.records import Service, check_when, write

__all__ = ["ConsentService"]

#: The signal every recorded grant or withdrawal sends.
CHANGED = "consent_changed"

_OLDEST_FIRST = (OrderBy("at"), OrderBy("id"))


class ConsentService(Service):
    """``s.consent``: record, read and ask about consent per person, purpose and channel."""

    def _subject(self, subject_id: Any) -> Record:
        """The lead or contact ``subject_id``, if the actor may read it; NotFound otherwise."""
        check_id("subject_id", subject_id)
        for kind in (Lead, Contact):
            found = self._s.read(kind, quiet=True).get(subject_id)
            if found is not None:
                return found
        raise NotFound("lead or contact", subject_id)

    @write
    def grant(
        self,
        subject_id: str,
        purpose: str,
        *,
        channel: str = "email",
        method: str = "api",
        proof: Mapping[str, str] | None = None,
        at: datetime | None = None,
    ) -> Consent:
        """Record that a lead or contact agreed to ``purpose`` on ``channel``.

        ``purpose``, ``channel`` and ``method`` are lower-case slugs
        (``"marketing"``, ``"email"``, ``"form"``); ``channel="any"`` speaks
        for every channel. ``proof`` is the evidence as text (the form, the
        IP address, when a double opt-in was confirmed). ``at`` is when the
        person agreed (default now; never in the future).

        :raises ValidationError: naming the bad argument; nothing is stored.
        :raises NotFound: when ``subject_id`` is no lead or contact the actor may read.
        :raises PermissionDenied: without a ``create`` grant on ``consent``.
        """
        return self._add(True, subject_id, purpose, channel, method, proof, at)

    @write
    def withdraw(
        self,
        subject_id: str,
        purpose: str,
        *,
        channel: str = "email",
        method: str = "api",
        proof: Mapping[str, str] | None = None,
        at: datetime | None = None,
    ) -> Consent:
        """Record that a lead or contact withdrew consent to ``purpose`` on ``channel``.

        Takes what :meth:`grant` takes; ``channel="any"`` withdraws it on
        every channel.

        :raises ValidationError: naming the bad argument; nothing is stored.
        :raises NotFound: when ``subject_id`` is no lead or contact the actor may read.
        :raises PermissionDenied: without a ``create`` grant on ``consent``.
        """
        return self._add(False, subject_id, purpose, channel, method, proof, at)

    def _add(
        self,
        granted: bool,
        subject_id: Any,
        purpose: Any,
        channel: Any,
        method: Any,
        proof: Any,
        at: Any,
    ) -> Consent:
        now = self._s._now()
        with Checks() as checks:
            fields: dict[str, Any] = {
                "purpose": checks(check_slug, "purpose", purpose),
                "channel": checks(check_slug, "channel", channel),
                "method": checks(check_slug, "method", method),
                "proof": checks(check_proof, "proof", proof),
            }
            when = now if at is None else checks(check_when, "at", at)
            if when is not None and when > now:
                checks.errors.extend(ValidationError("at", at, "is in the future").errors)
        subject = self._subject(subject_id)
        return self._record(subject, granted, when.astimezone(UTC), **fields)

    def _record(
        self,
        subject: Record,
        granted: bool,
        at: datetime,
        *,
        purpose: str,
        channel: str,
        method: str,
        proof: dict[str, str] | None,
    ) -> Consent:
        """Store one checked consent about ``subject`` and bring its state rows up to date."""
        consent = Consent(
            **self._s._stamp(
                subject_type=subject.resource,
                subject_id=subject.id,
                purpose=purpose,
                channel=channel,
                granted=granted,
                at=at,
                method=method,
                proof=proof,
                recorded_by=self._s.actor.id,
            )
        )
        self._s._guard.require(consent, "create")
        self._s._uow.repo(Consent).add(consent)
        self._s._record("grant" if granted else "withdraw", None, consent, event=CHANGED)
        self._update_states(consent)
        return consent

    def _update_states(self, consent: Consent) -> None:
        """Rewrite the state rows ``consent`` decides (derived data, like match keys)."""
        repo = self._s._uow.repo(ConsentState)
        mine = And((Eq("subject_id", consent.subject_id), Eq("purpose", consent.purpose)))
        wanted = None if consent.channel == ANY else In("channel", [consent.channel, ANY])
        rows = {s.channel: s for s in repo.find(And((mine, wanted)) if wanted else mine)}
        channels = list(rows) if consent.channel == ANY else [consent.channel]
        if consent.channel not in channels:
            channels.append(consent.channel)
        for channel in channels:
            row = rows.get(channel)
            changes = next_state(row, consent, None if channel == ANY else rows.get(ANY))
            if changes is None:
                continue
            if row is None:
                repo.add(
                    ConsentState(
                        **self._s._stamp(
                            subject_type=consent.subject_type,
                            subject_id=consent.subject_id,
                            purpose=consent.purpose,
                            channel=channel,
                            **changes,
                        )
                    )
                )
            else:
                changed = attrs.evolve(
                    row,
                    **changes,
                    version=row.version + 1,
                    updated_at=self._s._now(),
                    updated_by=self._s.actor.id,
                )
                repo.replace(changed, row.version)

    def _history(self, subject: Record, purpose: str | None = None) -> list[Consent]:
        where = all_of(
            [Eq("subject_id", subject.id), None if purpose is None else Eq("purpose", purpose)]
        )
        return self._s.read(Consent).find(where, order_by=_OLDEST_FIRST)

    def history(self, subject_id: str) -> list[Consent]:
        """Every grant and withdrawal of a lead or contact, oldest first.

        By ``at`` (when the person gave or withdrew it); of two at the same
        moment, the one recorded first comes first.

        Returns all of them: this list has no pages.

        :raises NotFound: when ``subject_id`` is no lead or contact the actor may read.
        :raises PermissionDenied: without a ``read`` grant on ``consent``.
        """
        return self._history(self._subject(subject_id))

    def current(self, subject_id: str) -> list[Consent]:
        """The record in force per purpose and channel, by purpose and channel.

        The latest by ``at`` (of two at the same moment, the one recorded
        later), withdrawals included.

        :raises NotFound: when ``subject_id`` is no lead or contact the actor may read.
        :raises PermissionDenied: without a ``read`` grant on ``consent``.
        """
        return current(self._history(self._subject(subject_id)))

    def allows(self, subject_id: str, purpose: str, channel: str = "email") -> bool:
        """Whether a lead or contact may be reached for ``purpose`` on ``channel`` now.

        True when the latest record for that channel or for ``any`` is a
        grant; False when it is a withdrawal or there is none.

        :raises ValidationError: naming a bad ``purpose`` or ``channel``.
        :raises NotFound: when ``subject_id`` is no lead or contact the actor may read.
        :raises PermissionDenied: without a ``read`` grant on ``consent``.
        """
        with Checks() as checks:
            checks(check_slug, "purpose", purpose)
            checks(check_slug, "channel", channel)
        found = decides(self._history(self._subject(subject_id), purpose), purpose, channel)
        return found is not None and found.granted

    def _copy(self, lead: Lead, contact: Contact) -> list[Consent]:
        """Give ``contact`` the consents in force for ``lead`` (its conversion).

        Each keeps its purpose, channel, answer, time and method; its proof
        gains ``from_lead``. A side effect of the conversion, so it is not
        checked against the actor's consent grants (it is audited as theirs).
        """
        with self._s._guard.bypass():
            stored = self._s._uow.repo(Consent).find(
                Eq("subject_id", lead.id), order_by=_OLDEST_FIRST
            )
            # Copied oldest first, so the copies' ids break ties of ``at`` as the originals' do.
            found = sorted(current(stored), key=lambda c: (c.at, c.id))
            return [
                self._record(
                    contact,
                    c.granted,
                    c.at,
                    purpose=c.purpose,
                    channel=c.channel,
                    method=c.method,
                    proof={**(c.proof or {}), "from_lead": lead.id},
                )
                for c in found
            ]
