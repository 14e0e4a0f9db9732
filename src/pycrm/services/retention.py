"""Retention: run the tenant's retention rules, in batches, audited.

The rules are the tenant's ``retention`` setting (see
:mod:`pycrm.domain.retention`). :meth:`RetentionService.preview` says what
each rule selects now; :meth:`RetentionService.run` acts on it, a batch at a
time, each batch in a transaction of its own, so a long run holds no lock for
long and a run that stops midway keeps what it finished: the next run selects
only what is left (deleted leads are gone, erased people carry their
pseudonym, cleared tickets are marked in the audit trail).

People under a legal hold (``s.privacy.on_hold``) are skipped and counted.
Every action is audited as ``retention:<rule>``, and every run that is not a
dry run as one ``retention`` entry with its counts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import attrs

from pycrm.domain.audit import CHECKPOINT, AuditEntry, compact
from pycrm.domain.customers import Contact
from pycrm.domain.ids import new_id
from pycrm.domain.leads import Lead
from pycrm.domain.outbox import OutboxMessage
from pycrm.domain.privacy import LegalHold
from pycrm.domain.query import (
    And,
    Contains,
    Eq,
    Filter,
    In,
    Not,
    Or,
    OrderBy,
    Range,
    Related,
    all_of,
)
from pycrm.domain.records import Record
from pycrm.domain.retention import NEVER_SELECTED, RetentionRule, parse_rules
from pycrm.domain.settings import Setting
from pycrm.domain.tickets import Ticket, TicketStatus
from pycrm.errors import ConfigurationError, CRMError, NotFound, ValidationError
from pycrm.serialization import to_dict
from pycrm.services.records import Service, write
from pycrm.session import Session

__all__ = [
    "RetentionPlan",
    "RetentionReport",
    "RetentionService",
    "RuleOutcome",
    "RulePlan",
    "selection",
]

#: The record class of each kind a rule may name.
_CLASSES: dict[str, type[Record]] = {"lead": Lead, "contact": Contact, "ticket": Ticket}

#: What a person's "last activity" is measured on, besides their own ``updated_at``:
#: (related kind, the field naming the person, the moment).
_ACTIVITY: dict[str, tuple[tuple[str, str, str], ...]] = {
    "lead": (
        ("behaviour_event", "lead_id", "occurred_at"),
        ("task", "related_id", "updated_at"),
        ("consent", "subject_id", "at"),
    ),
    "contact": (
        ("activity", "contact_id", "occurred_at"),
        ("behaviour_event", "contact_id", "occurred_at"),
        ("ticket", "contact_id", "updated_at"),
        ("task", "related_id", "updated_at"),
        ("consent", "subject_id", "at"),
    ),
}

#: What an erased person's name starts with (see :func:`pycrm.domain.privacy.pseudonym`).
_PSEUDONYM = "erased:"
#: The audit actions of retention: ``retention:<rule>`` per action, ``retention`` per run.
_ACTION = "retention:"
#: What a cleared text's old value reads as in the audit entry of the clearing.
_CLEARED = "[cleared]"
_MAX_BATCH = 10_000
_MAX_LIMIT = 10_000


@attrs.frozen
class RulePlan:
    """What one rule selects now (see :meth:`RetentionService.preview`)."""

    rule: RetentionRule
    """The rule."""
    cutoff: datetime
    """Records measured before this moment are due."""
    count: int
    """How many records the rule selects."""
    ids: tuple[str, ...]
    """The first of them by id (at most the preview's ``limit``)."""


@attrs.frozen
class RetentionPlan:
    """What the retention rules would act on, per rule."""

    at: datetime
    """When the plan was made (the rules' periods end here)."""
    rules: tuple[RulePlan, ...]
    """One plan per rule, in the rules' order."""


@attrs.frozen
class RuleOutcome:
    """What one rule did in a run (or, in a dry run, would do)."""

    rule: str
    """The rule's name."""
    action: str
    """``erase``, ``delete`` or ``clear_bodies``."""
    selected: int = 0
    """Records the rule selected."""
    done: int = 0
    """Records acted on (in a dry run: that would be)."""
    skipped_on_hold: int = 0
    """People (or tickets of people) under a legal hold, left alone."""
    failed: int = 0
    """Records the action refused; each is in :attr:`failures`."""
    batches: int = 0
    """Batches (transactions) that held records."""
    failures: tuple[tuple[str, str], ...] = ()
    """``(record id, reason)`` of each refusal (at most 100 are kept)."""
    held: tuple[str, ...] = ()
    """The ids skipped for a legal hold (at most 100 are kept)."""


@attrs.frozen
class RetentionReport:
    """What a run did, per rule."""

    at: datetime
    """When the run started (the rules' periods end here)."""
    dry_run: bool
    """True when nothing was changed: the counts say what would have been done."""
    rules: tuple[RuleOutcome, ...]
    """One outcome per rule run, in the rules' order."""

    def total(self, what: str) -> int:
        """The sum of one count (``selected``, ``done``, ``skipped_on_hold``, ``failed``) over the rules."""
        return sum(int(getattr(outcome, what)) for outcome in self.rules)


@attrs.define
class _Tally:
    """A rule's counts while it runs."""

    rule: RetentionRule
    selected: int = 0
    done: int = 0
    held: list[str] = attrs.field(factory=list)
    failures: list[tuple[str, str]] = attrs.field(factory=list)
    batches: int = 0

    def outcome(self) -> RuleOutcome:
        return RuleOutcome(
            rule=self.rule.name,
            action=self.rule.action,
            selected=self.selected,
            done=self.done,
            skipped_on_hold=len(self.held),
            failed=len(self.failures),
            batches=self.batches,
            failures=tuple(self.failures[:100]),
            held=tuple(self.held[:100]),
        )


def selection(
    rule: RetentionRule, now: datetime, *, since: datetime | None = None
) -> tuple[type[Record], Filter]:
    """The record class ``rule`` applies to and the filter of the records due at ``now``.

    Besides the rule's ``when`` and its period, it leaves out what the action
    already did (erased people; tickets cleared and not written to since
    ``since``, when the last complete run of the rule started) and what no
    rule selects (converted and merged leads, merged contacts: see
    :data:`~pycrm.domain.retention.NEVER_SELECTED`; only closed tickets are cleared).
    """
    cutoff = rule.after.before(now)
    cls = _CLASSES[rule.record_type]
    parts: list[Filter | None] = [In(field, values) for field, values in rule.when.items()]
    if NEVER_SELECTED[rule.record_type]:
        parts.append(Not(In("status", NEVER_SELECTED[rule.record_type])))
    if rule.action == "erase":
        parts.append(Not(Contains("name", _PSEUDONYM)))
    if rule.action == "clear_bodies":
        parts.append(Eq("status", TicketStatus.CLOSED))
        ours = And((Eq("record_type", "ticket"), Contains("action", _ACTION)))
        cleared = Related("audit_entry", "record_id", "count", None, 1, None, ours)
        # Text may come back after a clearing (a reply, a reopening): a ticket written
        # since the last complete run started is looked at again.
        others = all_of(
            [Eq("record_type", "ticket"), Not(Contains("action", _ACTION)), Range("at", since)]
        )
        written = Related("audit_entry", "record_id", "count", None, 1, None, others)
        parts.append(Or((Not(cleared), written)))
    if rule.measured_from == "last_activity":
        parts.append(Range("updated_at", None, cutoff))
        for resource, key, moment in _ACTIVITY[rule.record_type]:
            parts.append(Not(Related(resource, key, "max", moment, cutoff)))
    else:
        parts.append(Range(rule.measured_from, None, cutoff))
    where = all_of(parts)
    assert where is not None
    return cls, where


class RetentionService(Service):
    """The tenant's retention rules: keep them, preview them, run them.

    Keeping the rules needs the grants on the ``retention`` setting (the
    default policy gives them to admins and the ``privacy`` role); previewing
    and running them needs the same, and the right to read every record of
    the kinds the rules name. The actions themselves are the rules' doing:
    they need no grant of their own on the records.
    """

    def rules(self) -> tuple[RetentionRule, ...]:
        """The tenant's retention rules (none until some are stored).

        :raises PermissionDenied: without a read grant on the ``retention`` setting.
        """
        rules: tuple[RetentionRule, ...] = self._s.settings.get("retention")
        return rules

    @write
    def set_rules(
        self, rules: Sequence[RetentionRule | dict[str, Any]], *, version: int | None = None
    ) -> tuple[RetentionRule, ...]:
        """Store ``rules`` as the tenant's retention rules (all of them; ``[]`` for none).

        The same as ``s.settings.set("retention", rules)``: audited and
        announced by ``settings_changed``.

        :param rules: :class:`~pycrm.domain.retention.RetentionRule` s or their JSON forms.
        :param version: the version of the stored setting this change is based on.
        :raises ValidationError: naming the bad part (``rules[0].after``).
        :raises PermissionDenied: without the grants on the ``retention`` setting.
        """
        parsed = parse_rules(list(rules) if isinstance(rules, tuple) else rules, "rules")
        self._s.settings.set("retention", list(parsed), version=version)
        return parsed

    def preview(self, rule_name: str | None = None, *, limit: int = 100) -> RetentionPlan:
        """What each rule (or the one named) selects now: a count and the first ``limit`` ids.

        Each count is one query; nothing is changed and nothing is audited.

        :raises ValidationError: for an unknown ``rule_name`` or a bad ``limit``.
        :raises PermissionDenied: without the grants :class:`RetentionService` needs.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= _MAX_LIMIT:
            raise ValidationError("limit", limit, f"must be a whole number from 0 to {_MAX_LIMIT}")
        rules = self._chosen(rule_name)
        now = self._s._now()
        plans = []
        for rule in rules:
            cls, where = selection(rule, now, since=self._since(rule))
            repo = self._s._uow.repo(cls)
            found = repo.find(where, order_by=[OrderBy("id")], limit=limit) if limit else []
            plans.append(
                RulePlan(
                    rule, rule.after.before(now), repo.count(where), tuple(r.id for r in found)
                )
            )
        return RetentionPlan(now, tuple(plans))

    def run(
        self, rule_name: str | None = None, *, batch: int = 500, dry_run: bool = False
    ) -> RetentionReport:
        """Apply each rule (or the one named) to what it selects, ``batch`` records at a time.

        Each batch is a transaction of its own, committed before the next is
        read, so call it in a session without uncommitted writes. If the run
        stops midway (a crash, a lost connection), the batches committed stay
        done and a later run carries on with what is left. An action the
        store refuses for one record (a ``CRMError``) is counted as failed,
        and the others go on. An ``erase`` rule erases a batch's people
        (those not under a legal hold) with one ``s.privacy.erase_many``;
        when that is refused, the batch is erased one person at a time, so
        only the person refused fails. With ``dry_run`` nothing is written:
        the counts say what would be done.

        :raises ValidationError: for an unknown ``rule_name`` or a bad ``batch``.
        :raises PermissionDenied: without the grants :class:`RetentionService` needs.
        :raises ConfigurationError: in a session with uncommitted writes (not for a dry run),
            or for an ``erase`` rule while ``s.privacy`` is not available.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= _MAX_BATCH:
            raise ValidationError("batch", batch, f"must be a whole number from 1 to {_MAX_BATCH}")
        if not isinstance(dry_run, bool):
            raise ValidationError("dry_run", dry_run, "must be True or False")
        rules = self._chosen(rule_name)
        if not dry_run and (self._s._wrote or getattr(self._s._uow, "joined", False)):
            raise ConfigurationError(
                "s.retention.run commits batch by batch in transactions of its own: call it in "
                "a session of its own, without uncommitted writes (commit this session's work)"
            )
        if any(rule.action == "erase" for rule in rules) and not hasattr(self._s, "privacy"):
            raise ConfigurationError("erase rules need s.privacy, which this pycrm lacks")
        now = self._s._now()
        tallies = [_Tally(rule) for rule in rules]
        try:
            for tally in tallies:
                self._run_rule(tally, now, batch, dry_run)
        except BaseException:
            if not dry_run:
                with contextlib.suppress(Exception):  # the first failure is the one to report
                    self._summary(tallies, now, batch, complete=False)
            raise
        if not dry_run:
            self._summary(tallies, now, batch, complete=True)
        return RetentionReport(now, dry_run, tuple(t.outcome() for t in tallies))

    # -- inside -------------------------------------------------------------------------

    def _chosen(self, rule_name: str | None) -> tuple[RetentionRule, ...]:
        """The rules to work on, once the actor is known to be allowed to."""
        self._require()
        rules = self._s.settings._value("retention")
        if rule_name is None:
            chosen: tuple[RetentionRule, ...] = rules
        else:
            named = [rule for rule in rules if rule.name == rule_name]
            if not named:
                known = ", ".join(rule.name for rule in rules) or "none is stored"
                raise ValidationError("rule_name", rule_name, f"is not a rule: {known}")
            chosen = tuple(named)
        guard = self._s._guard
        for rule in chosen:
            if guard.filter(_CLASSES[rule.record_type], quiet=True) is not None:
                guard.deny(
                    "read", rule.record_type, None, "retention needs the right to read every one"
                )
        return chosen

    def _since(self, rule: RetentionRule) -> datetime | None:
        """When the last complete run of ``rule`` started (None: never, or long ago)."""
        if rule.action != "clear_bodies":
            return None
        runs = self._s._uow.repo(AuditEntry).find(
            And((Eq("action", "retention"), Eq("record_type", Setting.resource))),
            order_by=[OrderBy("at", descending=True)],
            limit=100,
        )
        for run in runs:
            facts = {name: pair[-1] for name, pair in run.changes.items() if pair}
            if facts.get("complete") is True and rule.name in (facts.get("rules") or ()):
                try:
                    return datetime.fromisoformat(str(facts.get("started")))
                except ValueError:
                    continue
        return None

    def _require(self) -> None:
        """Refuse unless the actor may change the retention rules."""
        s = self._s
        probe = Setting(**s._stamp(name="retention"))
        if not s._guard.allows(probe, "update"):
            s._guard.deny("update", "setting", None, "retention needs the retention setting")

    def _run_rule(self, tally: _Tally, now: datetime, batch: int, dry_run: bool) -> None:
        """Work through what one rule selects, a batch (a transaction) at a time."""
        cls, where = selection(tally.rule, now, since=self._since(tally.rule))
        after: str | None = None
        while True:
            # Keyset paging by id: records left alone (held, refused) are not read again.
            page = all_of([where, Range("id", after + "0", None) if after else None])
            if dry_run:
                found = self._s._uow.repo(cls).find(page, order_by=[OrderBy("id")], limit=batch)
                if found:
                    tally.batches += 1
                    with self._s._guard.bypass():  # holds are checked whoever may read them
                        self._apply(self._s, tally, found, dry_run=True)
            else:
                crm = self._s.crm
                with crm.session(actor=self._s.actor, tenant=self._s.tenant_id) as session:
                    found = session._uow.repo(cls).find(page, order_by=[OrderBy("id")], limit=batch)
                    if found:
                        tally.batches += 1
                        with session._guard.bypass():  # the rule's doing, checked above
                            self._apply(session, tally, found, dry_run=False)
            if len(found) < batch:
                return
            after = found[-1].id

    def _apply(
        self, s: Session, tally: _Tally, records: Iterable[Record], *, dry_run: bool
    ) -> None:
        rule = tally.rule
        # One query per batch: with no legal hold in force, nobody needs asking about one.
        holds = s._uow.repo(LegalHold).count(Eq("active", True)) > 0
        todo: list[Record] = []
        for record in records:
            if rule.action == "clear_bodies" and not _cleared(record):  # type: ignore[arg-type]
                continue  # cleared before and not written to since: nothing to do
            tally.selected += 1
            if holds and self._held(s, record):
                tally.held.append(record.id)
                continue
            if dry_run:
                tally.done += 1
                continue
            todo.append(record)
        if rule.action == "erase" and len(todo) > 1:
            # One pass through the tenant for the whole batch; should one person's data
            # refuse, the batch falls back to one erasure each, so only that one fails.
            try:
                with s._atomic():
                    s.privacy.erase_many([r.id for r in todo], reason=_reason(rule))
                    for record in todo:
                        self._audit(s, rule, record)
            except CRMError:
                pass
            else:
                tally.done += len(todo)
                return
        for record in todo:
            try:
                with s._atomic():
                    self._act(s, rule, record)
            except CRMError as exc:
                if self._held(s, record):  # placed in the meantime
                    tally.held.append(record.id)
                else:
                    tally.failures.append((record.id, str(exc)))
                continue
            tally.done += 1

    def _held(self, s: Session, record: Record) -> bool:
        """Whether the person ``record`` is (or, for a ticket, is about) is under a legal hold."""
        privacy = getattr(s, "privacy", None)
        if privacy is None:
            return False
        person = record.contact_id if isinstance(record, Ticket) else record.id
        if person is None:
            return False
        try:
            return bool(privacy.on_hold(person))
        except NotFound:
            return False

    def _act(self, s: Session, rule: RetentionRule, record: Record) -> None:
        """Apply ``rule``'s action to ``record`` and audit it as ``retention:<rule>``."""
        if rule.action == "clear_bodies":
            assert isinstance(record, Ticket)
            self._clear(s, rule, record)
            return
        if rule.action == "erase":
            s.privacy.erase(record.id, reason=_reason(rule))
        else:
            s.leads.delete(record.id)
        self._audit(s, rule, record)

    def _audit(self, s: Session, rule: RetentionRule, record: Record) -> None:
        """Audit ``rule``'s action on ``record`` as ``retention:<rule>``."""
        s._uow.repo(AuditEntry).add(
            AuditEntry(
                id=new_id(),
                tenant_id=s.tenant_id,
                at=s._now(),
                actor_id=s.actor.id,
                department=s.actor.department,
                action=_ACTION + rule.name,
                record_type=record.resource,
                # The record's own entries say what changed; this one names it in its
                # changes, so it never counts as a write of the record (see ``as_of``).
                record_id="",
                changes={"record_id": [None, record.id], "action": [None, rule.action]},
            )
        )

    def _clear(self, s: Session, rule: RetentionRule, ticket: Ticket) -> None:
        """Blank the ticket's free text; its dates, SLA figures and CSAT score stay.

        The texts go from the ticket's earlier audit entries and outbox
        events too. The audit entry of the clearing (``retention:<rule>``)
        holds the new values; the old ones read ``[cleared]``.
        """
        changes = _cleared(ticket)
        audit = s._uow.repo(AuditEntry)
        for entry in audit.find(
            And((Eq("record_id", ticket.id), Eq("record_type", ticket.resource)))
        ):
            snapshot = None if entry.snapshot is None else _blank(entry.snapshot)
            blanked = {
                name: [_blank_field(name, side) for side in pair]
                if isinstance(pair, list)
                else pair
                for name, pair in entry.changes.items()
            }
            if snapshot != entry.snapshot or blanked != entry.changes:
                audit.replace(attrs.evolve(entry, snapshot=snapshot, changes=blanked), 0)
        outbox = s._uow.repo(OutboxMessage)
        for message in outbox.find(Eq("record_id", ticket.id)):
            payload = dict(message.payload)
            for side in ("before", "after"):
                if isinstance(payload.get(side), dict):
                    payload[side] = _blank(payload[side])
            if payload != message.payload:
                outbox.replace(
                    attrs.evolve(
                        message,
                        payload=payload,
                        version=message.version + 1,
                        updated_at=s._now(),
                    ),
                    message.version,
                )
        updated = attrs.evolve(
            ticket,
            **changes,
            version=ticket.version + 1,
            updated_at=s._now(),
            updated_by=s.actor.id,
        )
        s._replace(updated, ticket)
        after = to_dict(updated)
        s._uow.repo(AuditEntry).add(
            AuditEntry(
                id=new_id(),
                tenant_id=s.tenant_id,
                at=updated.updated_at,
                actor_id=s.actor.id,
                department=s.actor.department,
                action=_ACTION + rule.name,
                record_type=ticket.resource,
                record_id=ticket.id,
                changes={name: [_CLEARED, after.get(name)] for name in changes},
                snapshot=compact(after) if updated.version % CHECKPOINT == 0 else None,
            )
        )

    def _summary(
        self, tallies: Sequence[_Tally], started: datetime, batch: int, *, complete: bool
    ) -> None:
        """Audit the run as one ``retention`` entry: its rules, counts and whether it finished."""
        facts: dict[str, Any] = {
            "started": started.isoformat(),
            "rules": [t.rule.name for t in tallies],
            "batch": batch,
            "complete": complete,
        }
        for what in ("selected", "done", "skipped_on_hold", "failed"):
            facts[what] = {t.rule.name: getattr(t.outcome(), what) for t in tallies}
        crm = self._s.crm
        with crm.session(actor=self._s.actor, tenant=self._s.tenant_id) as session:
            session._uow.repo(AuditEntry).add(
                AuditEntry(
                    id=new_id(),
                    tenant_id=session.tenant_id,
                    at=session._now(),
                    actor_id=session.actor.id,
                    department=session.actor.department,
                    action="retention",
                    record_type=Setting.resource,
                    record_id="",
                    changes={name: [None, value] for name, value in facts.items()},
                )
            )


def _blank_field(name: str, value: Any) -> Any:
    """A ticket field's JSON form with its free text blanked (other fields as they are)."""
    if value is None:
        return None
    if name in ("description", "csat_comment"):
        return None
    if name == "messages" and isinstance(value, list):
        return [{**m, "body": ""} if isinstance(m, dict) else m for m in value]
    return value


def _blank(form: dict[str, Any]) -> dict[str, Any]:
    """A ticket's (whole or partial) JSON form with its free text blanked."""
    return {name: _blank_field(name, value) for name, value in form.items()}


def _cleared(ticket: Ticket) -> dict[str, Any]:
    """The changes that blank ``ticket``'s free text (empty when it holds none)."""
    changes: dict[str, Any] = {}
    if ticket.description is not None:
        changes["description"] = None
    if any(message.body for message in ticket.messages):
        changes["messages"] = tuple(attrs.evolve(m, body="") for m in ticket.messages)
    if ticket.csat_comment is not None:
        changes["csat_comment"] = None
    return changes


def _reason(rule: RetentionRule) -> str:
    """The reason an erasure by ``rule`` gives."""
    return f"retention rule {rule.name}"
