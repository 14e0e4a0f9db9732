"""Retention rules: the model, storage, preview, runs in batches, holds, crashes, the CLI."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import pycrm
from pycrm.cli import main
from pycrm.domain.audit import AuditEntry
from pycrm.domain.leads import LeadStatus
from pycrm.domain.outbox import OutboxMessage
from pycrm.domain.retention import EXAMPLE_RULES, Period, RetentionRule, parse_rules
from pycrm.errors import ConfigurationError, NotFound, PermissionDenied, ValidationError
from pycrm.services.retention import RetentionService
from pycrm.session import Session
from pycrm.testing import FakeClock
from support import snapshot, staff

NEVER_CONVERTED = ["new", "assigned", "contacted", "qualified", "disqualified"]
STALE_LEADS: dict[str, Any] = {
    "name": "stale-leads",
    "record_type": "lead",
    "when": {"status": NEVER_CONVERTED},
    "after": "24 months",
    "measured_from": "last_activity",
    "action": "erase",
}
AGENTS = itertools.count(1)
TICKET_BODIES: dict[str, Any] = {
    "name": "ticket-bodies",
    "record_type": "ticket",
    "after": "5 years",
    "action": "clear_bodies",
}


def lead(s: Session, name: str) -> str:
    return s.leads.capture(name, source="webform", email=f"{name.lower()}@example.com").id


def converted(s: Session, name: str) -> str:
    rep = s.org.create_user(
        name=f"Rep {name}", email=f"rep-{name.lower()}@corp.example", department="sales"
    )
    id = lead(s, name)
    s.leads.assign(id, rep.id)
    s.leads.mark_contacted(id)
    s.leads.qualify(id)
    s.leads.convert(id)
    return id


def closed_ticket(s: Session, text: str, *, contact_id: str | None = None) -> str:
    number = next(AGENTS)
    agent = s.org.create_user(
        name=f"Agent {number}", email=f"agent{number}@corp.example", department="service"
    )
    ticket = s.tickets.open(
        f"About {text[:20]}",
        channel="email",
        description=f"Description: {text}",
        contact_id=contact_id,
    )
    s.tickets.assign(ticket.id, agent.id)
    s.tickets.customer_reply(ticket.id, f"Customer says: {text}")
    s.tickets.reply(ticket.id, f"Agent answers: {text}")
    s.tickets.resolve(ticket.id)
    s.tickets.rate(ticket.id, 4, comment=f"Comment: {text}")
    s.tickets.close(ticket.id)
    return ticket.id


def rules(s: Session, *given: dict[str, Any]) -> None:
    s.retention.set_rules([dict(rule) for rule in given])


# -- the model -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "Stale Leads"}, "name"),
        ({"name": ""}, "name"),
        ({"record_type": "deal"}, "record_type"),
        ({"action": "shred"}, "action"),
        ({"action": "clear_bodies"}, "action"),
        ({"after": "soon"}, "after"),
        ({"after": "0 days"}, "after"),
        ({"after": "200 years"}, "after"),
        ({"after": timedelta(hours=5)}, "after"),
        ({"after": 24}, "after"),
        ({"measured_from": "closed_at"}, "measured_from"),
        ({"measured_from": "yesterday"}, "measured_from"),
        ({"when": {"status": ["won"]}}, "when.status"),
        ({"when": {"colour": ["red"]}}, "when.colour"),
        ({"when": {"status": []}}, "when.status"),
        ({"when": ["new"]}, "when"),
        ({"action": "delete", "when": {"status": ["new", "converted"]}}, "when.status"),
        ({"when": {"status": ["merged"]}}, "when.status"),
        ({"record_type": "contact", "when": {"status": ["merged"]}}, "when.status"),
        ({"description": "x" * 501}, "description"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as made:
        RetentionRule(**{**STALE_LEADS, **change})
    assert made.value.field == field
    with pytest.raises(ValidationError) as parsed:
        parse_rules([TICKET_BODIES, {**STALE_LEADS, **change}], "rules")
    assert parsed.value.field == f"rules[1].{field}"


def test_rules_parse_from_their_json_form_and_names_are_unique() -> None:
    for rule in EXAMPLE_RULES:
        assert RetentionRule.parse(rule.to_json(), "rule") == rule
    ticket = RetentionRule(**TICKET_BODIES)
    assert (ticket.measured_from, ticket.when) == ("closed_at", {})
    assert RetentionRule(**STALE_LEADS).after == Period(months=24)
    with pytest.raises(ValidationError) as twice:
        parse_rules([STALE_LEADS, TICKET_BODIES, STALE_LEADS], "rules")
    assert twice.value.field == "rules[2].name"
    with pytest.raises(ValidationError) as unknown:
        parse_rules([{**STALE_LEADS, "colour": "red"}], "rules")
    assert unknown.value.field == "rules[0].colour"
    with pytest.raises(ValidationError) as missing:
        parse_rules([{"name": "x", "record_type": "lead", "action": "erase"}], "rules")
    assert missing.value.field == "rules[0].after"


def test_periods_count_calendar_months_and_days() -> None:
    end_of_march = datetime(2026, 3, 31, 12, tzinfo=UTC)
    assert Period.parse("1 month", "after").before(end_of_march) == datetime(
        2026, 2, 28, 12, tzinfo=UTC
    )
    assert Period.parse("5 years", "after").before(end_of_march) == datetime(
        2021, 3, 31, 12, tzinfo=UTC
    )
    assert Period.parse("2 weeks", "after").before(end_of_march) == datetime(
        2026, 3, 17, 12, tzinfo=UTC
    )
    assert Period.parse(timedelta(days=90), "after") == Period(days=90)
    assert str(Period(months=24)) == "2 years"
    assert str(Period(months=18, days=1)) == "18 months 1 day"


# -- storage --------------------------------------------------------------------------------


def test_no_rule_is_active_until_one_is_stored(crm: pycrm.CRM) -> None:
    with crm.session(actor=crm.system_actor) as s:
        lead(s, "Ann")
        assert s.retention.rules() == ()
        assert s.retention.preview().rules == ()
    with crm.session(actor=crm.system_actor) as s:
        report = s.retention.run()
    assert report.rules == ()
    with crm.session(actor=crm.system_actor) as s:
        stored = s.retention.set_rules([STALE_LEADS, RetentionRule(**TICKET_BODIES)])
        assert [r.name for r in stored] == ["stale-leads", "ticket-bodies"]
    with crm.session(actor=crm.system_actor) as s:
        assert s.retention.rules() == stored
        assert s.settings.get("retention") == stored
        changes = s.audit.find(record_type="setting", action="set")
        assert changes
        assert changes[-1].field_changes()["config"][1]["value"][0]["name"] == "stale-leads"


def test_bad_rules_are_refused_and_nothing_is_stored(crm: pycrm.CRM) -> None:
    with crm.session(actor=crm.system_actor) as s:
        rules(s, STALE_LEADS)
    before = snapshot(crm)
    with crm.session(actor=crm.system_actor) as s:
        with pytest.raises(ValidationError) as refused:
            s.retention.set_rules([STALE_LEADS, {**TICKET_BODIES, "after": "forever"}])
        assert refused.value.field == "rules[1].after"
        with pytest.raises(ValidationError) as by_settings:
            s.settings.set(
                "retention",
                [{**STALE_LEADS, "action": "delete", "when": {"status": ["converted"]}}],
            )
        assert by_settings.value.field == "value[0].when.status"
        with pytest.raises(ValidationError) as unknown:
            s.retention.run("no-such-rule")
        assert unknown.value.field == "rule_name"
        bad: Any
        for bad in (0, 10_001, True, "5"):
            with pytest.raises(ValidationError) as batch:
                s.retention.run(batch=bad)
            assert batch.value.field == "batch"
        with pytest.raises(ValidationError) as limit:
            s.retention.preview(limit=-1)
        assert limit.value.field == "limit"
    assert snapshot(crm) == before


# -- what the rules select and do -----------------------------------------------------------


def test_stale_leads_never_converted_are_erased_and_the_others_kept(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        stale = lead(s, "Ann")
        won = converted(s, "Bo")
        busy = lead(s, "Cy")
        consented = lead(s, "Di")
        rules(s, STALE_LEADS)
    fake_clock.advance(timedelta(days=700))
    with crm.session(actor=crm.system_actor) as s:
        s.tasks.create(
            "Call Cy back", department="sales", related_type="lead", related_id=busy
        )  # recent activity
        s.consent.grant(consented, "marketing")
        fresh = lead(s, "Eve")
    fake_clock.advance(timedelta(days=60))  # Ann: 760 days since her last activity
    with crm.session(actor=crm.system_actor) as s:
        plan = s.retention.preview()
        assert [(p.rule.name, p.count, p.ids) for p in plan.rules] == [("stale-leads", 1, (stale,))]
        assert plan.rules[0].cutoff == fake_clock.now().replace(year=fake_clock.now().year - 2)
        names = {id: s.leads.get(id).name for id in (won, busy, consented, fresh)}
    with crm.session(actor=crm.system_actor) as s:
        report = s.retention.run()
    (outcome,) = report.rules
    assert (outcome.selected, outcome.done, outcome.skipped_on_hold, outcome.failed) == (1, 1, 0, 0)
    with crm.session(actor=crm.system_actor) as s:
        erased = s.leads.get(stale)
        assert erased.name.startswith("erased:")
        assert erased.contact_points == ()
        assert erased.status is LeadStatus.NEW  # ids, statuses and dates stay
        assert {id: s.leads.get(id).name for id in names} == names
        marks = s.audit.find(action="retention:stale-leads")
        assert [
            (e.record_type, e.changes["record_id"][1], e.changes["action"][1]) for e in marks
        ] == [("lead", stale, "erase")]
        (summary,) = s.audit.find(action="retention")
        assert summary.field_changes()["done"][1] == {"stale-leads": 1}
        assert summary.field_changes()["complete"][1] is True
    with crm.session(actor=crm.system_actor) as s:  # done is done: nothing selected again
        assert s.retention.preview().rules[0].count == 0
        assert s.retention.run().rules[0].selected == 0


def test_no_rule_selects_what_is_part_of_another_records_history(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        stale = lead(s, "Ann")
        won = converted(s, "Bo")
        contact_id = s.leads.get(won).contact_id
        every = {"name": "every-lead", "record_type": "lead", "after": "1 year", "action": "erase"}
        rules(s, every)
    fake_clock.advance(timedelta(days=800))
    with crm.session(actor=crm.system_actor) as s:
        assert s.retention.preview().rules[0].ids == (stale,)
    with crm.session(actor=crm.system_actor) as s:
        assert s.retention.run().rules[0].done == 1
    with crm.session(actor=crm.system_actor) as s:
        assert s.leads.get(won).name == "Bo"
        assert s.contacts.get(contact_id).name == "Bo"  # the person the lead became stays


def test_stale_leads_can_be_deleted_and_converted_ones_never_are(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        gone = [lead(s, name) for name in ("Ann", "Bo")]
        won = converted(s, "Cy")
        rules(s, {**STALE_LEADS, "name": "drop-leads", "action": "delete", "when": {}})
    fake_clock.advance(timedelta(days=800))
    with crm.session(actor=crm.system_actor) as s:
        outcome = s.retention.run().rules[0]
    assert (outcome.selected, outcome.done) == (2, 2)
    with crm.session(actor=crm.system_actor) as s:
        for id in gone:
            with pytest.raises(NotFound):
                s.leads.get(id)
        assert s.leads.get(won).status is LeadStatus.CONVERTED
        assert {e.record_id for e in s.audit.find(action="delete", record_type="lead")} == set(gone)
        assert len(s.audit.find(action="retention:drop-leads")) == 2


def test_closed_tickets_lose_their_texts_and_keep_their_figures(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        customer = s.customers.create("Acme GmbH")
        ann = s.contacts.create("Ann Lee", customer_id=customer.id).id
        old = closed_ticket(s, "my printer eats paper", contact_id=ann)
        still_open = s.tickets.open("Still open", channel="phone", description="open text").id
        rules(s, TICKET_BODIES)
    fake_clock.advance(timedelta(days=5 * 366))
    with crm.session(actor=crm.system_actor) as s:
        young = closed_ticket(s, "the scanner hums")
    fake_clock.advance(timedelta(days=2))
    with crm.session(actor=crm.system_actor) as s:
        figures = s.analytics.service()
        before = s.tickets.get(old)
        assert s.retention.preview().rules[0].ids == (old,)
    with crm.session(actor=crm.system_actor) as s:
        outcome = s.retention.run().rules[0]
    assert (outcome.selected, outcome.done) == (1, 1)
    with crm.session(actor=crm.system_actor) as s:
        after = s.tickets.get(old)
        assert (after.description, after.csat_comment) == (None, None)
        assert [m.body for m in after.messages] == ["", ""]
        assert [(m.author_id, m.public, m.at) for m in after.messages] == [
            (m.author_id, m.public, m.at) for m in before.messages
        ]
        kept = ("subject", "status", "opened_at", "first_response_at", "resolved_at", "closed_at",
                "csat_score", "resolutions", "first_response_breached", "resolution_breached")  # fmt: skip
        assert {f: getattr(after, f) for f in kept} == {f: getattr(before, f) for f in kept}
        assert s.analytics.service() == figures
        assert s.tickets.get(young).description == "Description: the scanner hums"
        assert s.tickets.get(still_open).description == "open text"
        (entry,) = s.audit.find(action="retention:ticket-bodies")
        assert entry.record_id == old
        assert entry.changes["description"] == ["[cleared]", None]
        assert s.tickets.as_of(old, fake_clock.now()) == after
    # The texts are gone from the ticket's history and its events too.
    uow = crm.store.begin("default")
    try:
        history = [e for e in uow.repo(AuditEntry).find() if e.record_id == old]
        events = [m for m in uow.repo(OutboxMessage).find() if m.record_id == old]
    finally:
        uow.rollback()
    assert history
    assert events
    text = json.dumps([[e.snapshot, e.changes] for e in history] + [m.payload for m in events])
    assert "printer eats paper" not in text
    with crm.session(actor=crm.system_actor) as s:  # cleared is cleared
        assert s.retention.preview().rules[0].count == 0
        assert s.retention.run().rules[0].selected == 0
    fake_clock.advance(timedelta(days=1))
    with crm.session(actor=crm.system_actor) as s:  # text written after the clearing goes too
        s.tickets.customer_reply(old, "Customer again: my new address is 1 Main St")
        assert s.tickets.get(old).status.value == "closed"
    fake_clock.advance(timedelta(days=1))
    with crm.session(actor=crm.system_actor) as s:
        assert s.retention.run().rules[0].done == 1
    with crm.session(actor=crm.system_actor) as s:
        assert [m.body for m in s.tickets.get(old).messages] == ["", "", ""]
        assert s.retention.run().rules[0].selected == 0


def test_archived_contacts_are_erased_after_their_last_activity(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH")
        gone = s.contacts.create("Ann Lee", customer_id=acme.id)
        called = s.contacts.create("Bo Berg", customer_id=acme.id)
        active = s.contacts.create("Cy Diaz", customer_id=acme.id)
        s.contacts.archive(gone.id)
        s.contacts.archive(called.id)
        s.retention.set_rules([EXAMPLE_RULES[2]])
    fake_clock.advance(timedelta(days=6 * 366))
    with crm.session(actor=crm.system_actor) as s:
        s.activities.log("call", "Checked in", contact_id=called.id)
    fake_clock.advance(timedelta(days=30))
    with crm.session(actor=crm.system_actor) as s:
        outcome = s.retention.run().rules[0]
        assert (outcome.rule, outcome.done) == ("former-contacts", 1)
    with crm.session(actor=crm.system_actor) as s:
        assert s.contacts.get(gone.id).name.startswith("erased:")
        assert s.contacts.get(called.id).name == "Bo Berg"
        assert s.contacts.get(active.id).name == "Cy Diaz"


def test_a_dry_run_changes_nothing_and_says_what_it_would_do(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        for name in ("Ann", "Bo", "Cy"):
            lead(s, name)
        closed_ticket(s, "a long story")
        rules(s, STALE_LEADS, TICKET_BODIES)
    fake_clock.advance(timedelta(days=6 * 366))
    before = snapshot(crm)
    with crm.session(actor=crm.system_actor) as s:
        report = s.retention.run(dry_run=True, batch=2)
    assert snapshot(crm) == before
    assert report.dry_run
    assert [(o.rule, o.selected, o.done, o.batches) for o in report.rules] == [
        ("stale-leads", 3, 3, 2),
        ("ticket-bodies", 1, 1, 1),
    ]


def test_batches_are_transactions_of_their_own(crm: pycrm.CRM, fake_clock: FakeClock) -> None:
    with crm.session(actor=crm.system_actor) as s:
        ids = [lead(s, name) for name in ("Ann", "Bo", "Cy", "Di", "Eve")]
        rules(s, STALE_LEADS)
    fake_clock.advance(timedelta(days=800))
    commits: list[int] = []
    real = Session.commit

    def counted(self: Session) -> None:
        commits.append(1)
        real(self)

    with crm.session(actor=crm.system_actor) as s:
        pytest.MonkeyPatch.setattr(pytest.MonkeyPatch(), Session, "commit", counted)
        try:
            outcome = s.retention.run(batch=2).rules[0]
        finally:
            Session.commit = real  # type: ignore[method-assign]
    assert (outcome.selected, outcome.done, outcome.batches) == (5, 5, 3)
    assert len(commits) == 3 + 1  # three batches (2, 2, 1) and the summary
    with crm.session(actor=crm.system_actor) as s:
        assert all(s.leads.get(id).name.startswith("erased:") for id in ids)


def test_people_under_a_legal_hold_are_skipped(crm: pycrm.CRM, fake_clock: FakeClock) -> None:
    with crm.session(actor=crm.system_actor) as s:
        kept = lead(s, "Ann")
        other = lead(s, "Bo")
        customer = s.customers.create("Acme GmbH")
        held_contact = s.contacts.create("Cy Diaz", customer_id=customer.id).id
        ticket = closed_ticket(s, "held story", contact_id=held_contact)
        s.privacy.hold(kept, reason="litigation 2026-17")
        s.privacy.hold(held_contact, reason="litigation 2026-17")
        rules(s, STALE_LEADS, TICKET_BODIES)
    fake_clock.advance(timedelta(days=6 * 366))
    with crm.session(actor=crm.system_actor) as s:
        dry = s.retention.run(dry_run=True)
    with crm.session(actor=crm.system_actor) as s:
        report = s.retention.run()
    for run in (dry, report):
        assert [(o.selected, o.done, o.skipped_on_hold, o.held) for o in run.rules] == [
            (2, 1, 1, (kept,)),
            (1, 0, 1, (ticket,)),
        ]
    with crm.session(actor=crm.system_actor) as s:
        assert s.leads.get(kept).name == "Ann"
        assert s.leads.get(other).name.startswith("erased:")
        assert s.tickets.get(ticket).description == "Description: held story"
        s.privacy.release(kept, reason="case closed")
    with crm.session(actor=crm.system_actor) as s:
        outcome = s.retention.run("stale-leads").rules[0]
    assert (outcome.selected, outcome.done) == (1, 1)


def test_a_run_stopped_midway_keeps_its_batches_and_the_next_run_completes(
    crm: pycrm.CRM, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        ids = [lead(s, name) for name in ("Ann", "Bo", "Cy", "Di", "Eve")]
        rules(s, STALE_LEADS)
    fake_clock.advance(timedelta(days=800))
    real = RetentionService._audit
    calls: list[str] = []

    def crashing(self: RetentionService, s: Session, rule: RetentionRule, record: Any) -> None:
        calls.append(record.id)
        real(self, s, rule, record)
        if len(calls) == 3:
            raise RuntimeError("the machine went down")

    monkeypatch.setattr(RetentionService, "_audit", crashing)
    with crm.session(actor=crm.system_actor) as s, pytest.raises(RuntimeError):
        s.retention.run(batch=2)
    monkeypatch.setattr(RetentionService, "_audit", real)
    with crm.session(actor=crm.system_actor) as s:
        erased = [id for id in ids if s.leads.get(id).name.startswith("erased:")]
        assert erased == ids[:2]  # the first batch committed, the second rolled back whole
        (stopped,) = s.audit.find(action="retention")
        assert stopped.changes["complete"] == [None, False]
        assert len(s.audit.find(action="retention:stale-leads")) == 2
    with crm.session(actor=crm.system_actor) as s:
        outcome = s.retention.run(batch=2).rules[0]
    assert (outcome.selected, outcome.done, outcome.batches) == (3, 3, 2)
    with crm.session(actor=crm.system_actor) as s:
        assert all(s.leads.get(id).name.startswith("erased:") for id in ids)
        assert len(s.audit.find(action="retention:stale-leads")) == 5


def test_a_refused_action_is_counted_and_the_others_go_on(
    crm: pycrm.CRM, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        ids = [lead(s, name) for name in ("Ann", "Bo", "Cy")]
        rules(s, {**STALE_LEADS, "action": "delete", "name": "drop"})
    fake_clock.advance(timedelta(days=800))
    from pycrm.services.leads import LeadService

    real = LeadService.delete

    def refusing(self: LeadService, id: str, **kwargs: Any) -> None:
        real(self, id, **kwargs)
        if id == ids[1]:
            raise ConfigurationError("refused for the test")

    monkeypatch.setattr(LeadService, "delete", refusing)
    with crm.session(actor=crm.system_actor) as s:
        outcome = s.retention.run().rules[0]
    assert (outcome.selected, outcome.done, outcome.failed) == (3, 2, 1)
    assert outcome.failures == ((ids[1], "refused for the test"),)
    with crm.session(actor=crm.system_actor) as s:
        assert s.leads.get(ids[1]).name == "Bo"  # its delete was undone whole
        assert [e.changes["record_id"][1] for e in s.audit.find(action="retention:drop")] == [
            ids[0],
            ids[2],
        ]


def test_an_erase_batch_is_one_erase_many_and_one_refused_person_fails_alone(
    crm: pycrm.CRM, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        ids = [lead(s, name) for name in ("Ann", "Bo", "Cy", "Di")]
        rules(s, STALE_LEADS)
    fake_clock.advance(timedelta(days=800))
    from pycrm.services.privacy import PrivacyService

    real_many, real_rewrite = PrivacyService.erase_many, PrivacyService._rewrite
    batches: list[list[str]] = []
    refused = ""

    def counted(self: PrivacyService, subject_ids: list[str], **kwargs: Any) -> Any:
        batches.append(list(subject_ids))
        return real_many(self, subject_ids, **kwargs)

    def refusing(self: PrivacyService, record: Any, *args: Any) -> int:
        if record.id == refused:
            raise ConfigurationError("refused for the test")
        return real_rewrite(self, record, *args)

    monkeypatch.setattr(PrivacyService, "erase_many", counted)
    with crm.session(actor=crm.system_actor) as s:
        first = s.retention.run(batch=2).rules[0]
    assert batches == [ids[:2], ids[2:]]  # one call per batch
    assert (first.selected, first.done, first.failed) == (4, 4, 0)
    with crm.session(actor=crm.system_actor) as s:
        assert all(s.leads.get(id).name.startswith("erased:") for id in ids)

    with crm.session(actor=crm.system_actor) as s:
        more = [lead(s, name) for name in ("Eve", "Fay", "Gus")]
    refused = more[1]
    fake_clock.advance(timedelta(days=800))
    monkeypatch.setattr(PrivacyService, "_rewrite", refusing)
    with crm.session(actor=crm.system_actor) as s:
        outcome = s.retention.run().rules[0]
    assert (outcome.selected, outcome.done, outcome.failed) == (3, 2, 1)
    assert outcome.failures == ((more[1], "refused for the test"),)
    with crm.session(actor=crm.system_actor) as s:
        assert s.leads.get(more[1]).name == "Fay"  # its erasure was undone whole
        assert s.leads.get(more[0]).name.startswith("erased:")
        assert s.leads.get(more[2]).name.startswith("erased:")
        erased = [e.changes["record_id"][1] for e in s.audit.find(action="retention:stale-leads")]
    assert sorted(erased) == sorted([*ids, more[0], more[2]])


def test_run_needs_a_session_of_its_own(crm: pycrm.CRM) -> None:
    with crm.session(actor=crm.system_actor) as s:
        rules(s, STALE_LEADS)
        with pytest.raises(ConfigurationError):
            s.retention.run()
        assert s.retention.run(dry_run=True).rules[0].selected == 0


# -- who may ---------------------------------------------------------------------------------


def test_admins_and_the_privacy_role_keep_and_run_the_rules_others_may_not(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    people = staff(
        crm, ada=("admin", ["admin"]), pia=("legal", ["privacy"]), mia="marketing", sam="sales"
    )
    with crm.session(actor=crm.system_actor) as s:
        lead(s, "Ann")
    with crm.session(actor=people.pia.id) as s:
        s.retention.set_rules([STALE_LEADS])
        assert [r.name for r in s.retention.rules()] == ["stale-leads"]
        with pytest.raises(PermissionDenied):  # the privacy role keeps retention, not routing
            s.settings.set("default_region", "AT")
    fake_clock.advance(timedelta(days=800))
    with crm.session(actor=people.pia.id) as s:
        assert s.retention.preview().rules[0].count == 1
        assert s.retention.run(dry_run=True).rules[0].done == 1
    before = snapshot(crm)
    for who in (people.mia, people.sam):
        with crm.session(actor=who.id) as s:
            with pytest.raises(PermissionDenied):
                s.retention.set_rules([])
            with pytest.raises(PermissionDenied):
                s.retention.preview()
            with pytest.raises(PermissionDenied):
                s.retention.run()
            with pytest.raises(PermissionDenied):
                s.retention.run(dry_run=True)
    assert snapshot(crm) == before
    with crm.session(actor=people.ada.id) as s:
        assert s.retention.run().rules[0].done == 1
    with crm.session(actor=people.ada.id) as s:
        (summary,) = s.audit.find(action="retention")
        assert summary.actor_id == people.ada.id


# -- the command -----------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_the_command_lists_and_runs_the_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'crm.db'}"
    clock = FakeClock(datetime(2015, 3, 1, tzinfo=UTC))
    with pycrm.connect(db, clock=clock) as crm:
        people = staff(crm, pia=("legal", ["privacy"]), mia="marketing")
        with crm.session(actor=crm.system_actor) as s:
            ids = [lead(s, name) for name in ("Ann", "Bo", "Cy")]
            closed_ticket(s, "old text")
    status, out, err = cli(capsys, "retention", "rules", "--db", db)
    assert status == 0
    assert "no retention rules" in err
    with pycrm.connect(db, clock=clock) as crm, crm.session(actor=crm.system_actor) as s:
        rules(s, STALE_LEADS, TICKET_BODIES)
    status, out, _ = cli(capsys, "retention", "rules", "--db", db, "--json")
    assert status == 0
    assert [r["name"] for r in json.loads(out)] == ["stale-leads", "ticket-bodies"]
    status, out, _ = cli(capsys, "retention", "rules", "--db", db)
    assert "stale-leads" in out
    assert "2 years" in out

    status, out, err = cli(
        capsys, "retention", "run", "--db", db, "--as", "pia@corp.example", "--dry-run"
    )
    assert status == 0
    assert "stale-leads: 3 selected, 3 would be erased, 0 skipped on hold, 0 failed" in out
    assert "ticket-bodies: 1 selected, 1 would be cleared" in out
    assert "nothing was changed" in err

    status, out, err = cli(capsys, "retention", "run", "--db", db, "--as", "mia@corp.example")
    assert status == 1
    assert "error:" in err

    status, out, _ = cli(
        capsys, "retention", "run", "--db", db, "--as", "pia@corp.example", "--rule", "stale-leads",
        "--batch", "2", "--json",
    )  # fmt: skip
    assert status == 0
    (outcome,) = json.loads(out)["rules"]
    assert {k: outcome[k] for k in ("rule", "selected", "done", "skipped_on_hold", "failed", "batches")} == {
        "rule": "stale-leads", "selected": 3, "done": 3, "skipped_on_hold": 0, "failed": 0, "batches": 2,
    }  # fmt: skip
    status, out, _ = cli(capsys, "retention", "run", "--db", db)
    assert status == 0
    assert "stale-leads: 0 selected, 0 erased" in out
    assert "ticket-bodies: 1 selected, 1 cleared" in out
    status, _, err = cli(capsys, "retention", "run", "--db", db, "--rule", "nope")
    assert status == 1
    assert "rule_name" in err
    with pycrm.connect(db) as crm, crm.session(actor=people.pia.id) as s:
        assert all(s.leads.get(id).name.startswith("erased:") for id in ids)
