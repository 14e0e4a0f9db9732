"""Consent per lead and contact, purpose and channel: records, permissions, conversion, campaigns."""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pycrm
from pycrm import signals
from pycrm.domain.consent import Consent, ConsentState
from pycrm.domain.events import Event
from pycrm.domain.permissions import DEFAULT_POLICY, Policy
from pycrm.errors import NotFound, PermissionDenied, ValidationError
from pycrm.session import Session
from pycrm.testing import FakeClock
from support import snapshot, staff


def lead(s: Session, name: str = "Ann") -> str:
    return s.leads.capture(name, source="webform", email=f"{name.lower()}@example.com").id


def contact(s: Session, name: str = "Bo") -> str:
    customer = s.customers.create(f"{name} GmbH", on_duplicate="allow")
    return s.contacts.create(name, customer_id=customer.id, on_duplicate="allow").id


def said(consents: list[Consent]) -> list[tuple[str, str, bool]]:
    return [(c.purpose, c.channel, c.granted) for c in consents]


# -- what is recorded and what it answers ------------------------------------------------------


def test_a_grant_is_recorded_with_how_when_and_the_proof(
    system: Session, fake_clock: FakeClock
) -> None:
    ann = lead(system)
    proof = {"form": "contact-us", "ip": "203.0.113.9"}
    given_at = fake_clock.now() - timedelta(hours=2)
    got = system.consent.grant(ann, "marketing", method="form", proof=proof, at=given_at)
    assert (got.subject_type, got.subject_id, got.purpose, got.channel) == (
        "lead",
        ann,
        "marketing",
        "email",
    )
    assert (got.granted, got.at, got.method, got.proof) == (True, given_at, "form", proof)
    assert got.recorded_by == "system"
    assert system.consent.history(ann) == [got]
    assert system.consent.allows(ann, "marketing")
    assert not system.consent.allows(ann, "marketing", "phone")
    assert not system.consent.allows(ann, "profiling")


def test_the_latest_record_wins_and_a_withdrawal_ends_a_grant(
    system: Session, fake_clock: FakeClock
) -> None:
    bo = contact(system)
    system.consent.grant(bo, "marketing")
    fake_clock.advance(minutes=5)
    system.consent.withdraw(bo, "marketing", method="email")
    assert not system.consent.allows(bo, "marketing")
    fake_clock.advance(minutes=5)
    system.consent.grant(bo, "marketing", method="double_opt_in")
    assert system.consent.allows(bo, "marketing")
    assert len(system.consent.history(bo)) == 3
    assert said(system.consent.current(bo)) == [("marketing", "email", True)]


def test_a_record_dated_before_the_latest_one_does_not_override_it(
    system: Session, fake_clock: FakeClock
) -> None:
    bo = contact(system)
    system.consent.grant(bo, "marketing")
    late = system.consent.withdraw(bo, "marketing", at=fake_clock.now() - timedelta(days=3))
    assert system.consent.allows(bo, "marketing")
    assert system.consent.history(bo)[0] == late  # oldest first, by when it happened
    assert said(system.consent.current(bo)) == [("marketing", "email", True)]


def test_two_records_at_the_same_moment_are_decided_by_the_one_recorded_later(
    system: Session, fake_clock: FakeClock
) -> None:
    bo = contact(system)
    moment = fake_clock.now() - timedelta(hours=1)
    system.consent.grant(bo, "marketing", at=moment)
    system.consent.withdraw(bo, "marketing", at=moment)
    assert not system.consent.allows(bo, "marketing")
    system.consent.grant(bo, "marketing", at=moment)
    assert system.consent.allows(bo, "marketing")


def test_the_any_channel_speaks_for_every_channel_until_a_later_record_for_one(
    system: Session, fake_clock: FakeClock
) -> None:
    bo = contact(system)
    system.consent.grant(bo, "marketing", channel="any")
    assert all(system.consent.allows(bo, "marketing", c) for c in ("email", "sms", "post", "any"))
    fake_clock.advance(minutes=1)
    system.consent.withdraw(bo, "marketing", channel="sms")
    assert system.consent.allows(bo, "marketing", "email")
    assert not system.consent.allows(bo, "marketing", "sms")
    fake_clock.advance(minutes=1)
    system.consent.withdraw(bo, "marketing", channel="any")
    assert not system.consent.allows(bo, "marketing", "email")
    assert said(system.consent.current(bo)) == [
        ("marketing", "any", False),
        ("marketing", "sms", False),
    ]


def test_a_timezone_given_is_stored_as_utc(system: Session, fake_clock: FakeClock) -> None:
    bo = contact(system)
    from zoneinfo import ZoneInfo

    berlin = (fake_clock.now() - timedelta(hours=1)).astimezone(ZoneInfo("Europe/Berlin"))
    got = system.consent.grant(bo, "marketing", at=berlin)
    assert got.at == berlin
    assert got.at.utcoffset() == timedelta(0)


def test_a_form_captures_the_lead_and_its_consent_in_one_unit_of_work(crm: pycrm.CRM) -> None:
    def capture_then_fail() -> None:
        with crm.session(actor=crm.system_actor) as s:
            ann = lead(s)
            s.consent.grant(ann, "marketing", method="form", proof={"form": "newsletter"})
            raise RuntimeError("the web request failed")

    before = snapshot(crm)
    with pytest.raises(RuntimeError):
        capture_then_fail()
    assert snapshot(crm) == before
    with crm.session(actor=crm.system_actor) as s:
        ann = lead(s)
        s.consent.grant(ann, "marketing", method="form", proof={"form": "newsletter"})
    with crm.session(actor=crm.system_actor) as s:
        assert [c.proof for c in s.consent.history(ann)] == [{"form": "newsletter"}]


def test_every_grant_and_withdrawal_is_audited_and_announced_after_commit(
    crm: pycrm.CRM,
) -> None:
    heard: list[Event] = []

    def receiver(sender: Any, event: Event) -> None:
        heard.append(event)

    signals.consent_changed.connect(receiver, weak=False)
    try:
        with crm.session(actor=crm.system_actor) as s:
            bo = contact(s)
            given_ = s.consent.grant(bo, "marketing")
            taken = s.consent.withdraw(bo, "marketing")
            assert heard == []
        assert [(e.record_id, e.after and e.after["granted"]) for e in heard] == [
            (given_.id, True),
            (taken.id, False),
        ]
        with crm.session(actor=crm.system_actor) as s:
            actions = [e.action for e in s.audit.find(record_id=given_.id)]
            actions += [e.action for e in s.audit.find(record_id=taken.id)]
        assert actions == ["grant", "withdraw"]
    finally:
        signals.consent_changed.disconnect(receiver)


# -- bad input: a ValidationError naming the argument, nothing stored ------------------------------

BAD: list[tuple[dict[str, Any], str]] = [
    ({"purpose": "Marketing"}, "purpose"),
    ({"purpose": "mar keting"}, "purpose"),
    ({"purpose": ""}, "purpose"),
    ({"purpose": 7}, "purpose"),
    ({"purpose": "x" * 41}, "purpose"),
    ({"channel": "E-mail"}, "channel"),
    ({"channel": None}, "channel"),
    ({"method": "web form"}, "method"),
    ({"method": ["form"]}, "method"),
    ({"proof": "the form"}, "proof"),
    ({"proof": {"form": 3}}, "proof.form"),
    ({"proof": {"ip": "1\x00"}}, "proof.ip"),
    ({"proof": {"": "x"}}, "proof"),
    ({"at": datetime(2026, 1, 1, 9, 0)}, "at"),  # naive
    ({"at": "2026-01-01"}, "at"),
    ({"at": datetime(2999, 1, 1, tzinfo=UTC)}, "at"),  # in the future
]


@pytest.mark.parametrize("verb", ["grant", "withdraw"])
def test_bad_arguments_are_refused_naming_them_and_nothing_is_stored(
    crm: pycrm.CRM, verb: str
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        bo = contact(s)
    before = snapshot(crm)
    with crm.session(actor=crm.system_actor) as s:
        for change, field in BAD:
            arguments = {"purpose": "marketing", **change}
            with pytest.raises(ValidationError) as refused:
                getattr(s.consent, verb)(bo, **arguments)
            assert field in [e.field for e in refused.value.errors], (change, refused.value)
    assert snapshot(crm) == before


def test_every_bad_argument_of_one_call_is_reported_at_once(system: Session) -> None:
    bo = contact(system)
    with pytest.raises(ValidationError) as refused:
        system.consent.grant(bo, "Bad Purpose", channel="SMS!", method="?")
    assert sorted(e.field for e in refused.value.errors) == ["channel", "method", "purpose"]


def test_an_unknown_or_malformed_subject_is_refused(crm: pycrm.CRM) -> None:
    with crm.session(actor=crm.system_actor) as s:
        customer = s.customers.create("Acme GmbH").id
    before = snapshot(crm)
    with crm.session(actor=crm.system_actor) as s:
        for subject in ("0" * 32, customer):  # nobody; a customer is no person
            with pytest.raises(NotFound):
                s.consent.grant(subject, "marketing")
            with pytest.raises(NotFound):
                s.consent.allows(subject, "marketing")
        for subject in (None, 42, ["x"], "a\x00b"):
            with pytest.raises(ValidationError) as refused:
                s.consent.grant(subject, "marketing")  # type: ignore[arg-type]
            assert refused.value.field == "subject_id"
    assert snapshot(crm) == before


def test_allows_refuses_a_bad_purpose_or_channel_naming_it(system: Session) -> None:
    bo = contact(system)
    for arguments, field in (((bo, "Bad"), "purpose"), ((bo, "marketing", 5), "channel")):
        with pytest.raises(ValidationError) as refused:
            system.consent.allows(*arguments)
        assert refused.value.field == field


# -- permissions -----------------------------------------------------------------------------------


def test_the_front_line_records_and_reads_consent_and_finance_does_neither(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm, mia="marketing", sam="sales", sia="service", fin="finance")
    with crm.session(actor=crm.system_actor) as s:
        bo = contact(s)
        ann = lead(s)
    for who in (people.mia, people.sam, people.sia):
        with crm.session(actor=who.id) as s:
            s.consent.grant(bo, "marketing")
            assert s.consent.allows(bo, "marketing")
            assert said(s.consent.current(bo)) == [("marketing", "email", True)]
    with crm.session(actor=people.mia.id) as s:
        s.consent.grant(ann, "profiling")
    before = snapshot(crm)
    with crm.session(actor=people.fin.id) as s:
        with pytest.raises(PermissionDenied):
            s.consent.grant(bo, "marketing")
        with pytest.raises(PermissionDenied):
            s.consent.history(bo)
        with pytest.raises(PermissionDenied):
            s.consent.allows(bo, "marketing")
        with pytest.raises(NotFound):  # finance may not read leads at all
            s.consent.history(ann)
    assert {k: v for k, v in snapshot(crm).items() if k != "audit_entry"} == {
        k: v for k, v in before.items() if k != "audit_entry"
    }


def test_the_privacy_role_reads_every_consent_and_records_none(crm: pycrm.CRM) -> None:
    people = staff(crm, pia=("legal", ["privacy"]), leo="legal")
    with crm.session(actor=crm.system_actor) as s:
        ann = lead(s)
        bo = contact(s)
        s.consent.grant(ann, "marketing")
        s.consent.withdraw(bo, "profiling", channel="any")
    with crm.session(actor=people.pia.id) as s:
        assert said(s.consent.history(ann)) == [("marketing", "email", True)]
        assert said(s.consent.history(bo)) == [("profiling", "any", False)]
        with pytest.raises(PermissionDenied):
            s.consent.grant(bo, "marketing")
    with crm.session(actor=people.leo.id) as s, pytest.raises(PermissionDenied):
        s.consent.history(bo)  # legal without the role


def test_consent_about_a_person_the_actor_may_not_read_stays_out_of_reach(
    connect_crm: Any,
) -> None:
    own_leads = Policy.from_dict(
        {
            "grants": [
                {"roles": ["sales"], "resources": ["lead"], "actions": ["read"], "scope": "own"},
                {
                    "roles": ["sales"],
                    "resources": ["consent", "consent_state"],
                    "actions": ["read", "create"],
                    "scope": "all",
                },
            ]
        }
    )
    crm = connect_crm(policy=own_leads)
    people = staff(crm, sam="sales", sue="sales")
    with crm.session(actor=crm.system_actor) as s:
        mine, theirs = lead(s, "Mine"), lead(s, "Theirs")
        s.leads.assign(mine, people.sam.id)
        s.leads.assign(theirs, people.sue.id)
        s.consent.grant(theirs, "marketing")
    with crm.session(actor=people.sam.id) as s:
        s.consent.grant(mine, "marketing")
        with pytest.raises(NotFound):
            s.consent.grant(theirs, "marketing")
        with pytest.raises(NotFound):
            s.consent.history(theirs)
        assert s.read(Consent).find() == s.consent.history(mine)
        assert {c.subject_id for c in s.read(ConsentState).find()} == {mine}


# -- conversion ------------------------------------------------------------------------------------


def test_conversion_copies_the_leads_consents_in_force_to_the_contact(
    system: Session, fake_clock: FakeClock
) -> None:
    rep = system.org.create_user("Sam", "sam@corp.example", "sales")
    ann = system.leads.capture("Ann", source="webform", email="ann@example.com", company="Acme")
    system.consent.grant(ann.id, "marketing", method="form", proof={"form": "contact-us"})
    fake_clock.advance(minutes=1)
    system.consent.withdraw(ann.id, "marketing", method="email")
    system.consent.grant(ann.id, "profiling", channel="any", method="call")
    system.leads.assign(ann.id, rep.id)
    system.leads.mark_contacted(ann.id)
    system.leads.qualify(ann.id)
    in_force = system.consent.current(ann.id)
    _, person, _ = system.leads.convert(ann.id)
    copied = system.consent.current(person.id)
    assert [(c.purpose, c.channel, c.granted, c.at, c.method) for c in copied] == [
        (c.purpose, c.channel, c.granted, c.at, c.method) for c in in_force
    ]
    assert [c.proof for c in copied] == [{**(c.proof or {}), "from_lead": ann.id} for c in in_force]
    assert {c.subject_type for c in copied} == {"contact"}
    assert not system.consent.allows(person.id, "marketing")
    assert system.consent.allows(person.id, "profiling", "phone")
    assert len(system.consent.history(ann.id)) == 3  # the lead keeps its own


def test_conversion_copies_consent_even_for_a_salesperson_without_consent_grants(
    connect_crm: Any,
) -> None:
    grants = tuple(g for g in DEFAULT_POLICY.grants if "consent" not in g.resources)
    crm = connect_crm(policy=Policy(grants, DEFAULT_POLICY.fields))
    people = staff(crm, sam="sales")
    with crm.session(actor=crm.system_actor) as s:
        ann = s.leads.capture("Ann", source="webform", email="ann@example.com", company="Acme")
        s.consent.grant(ann.id, "marketing")
        s.leads.assign(ann.id, people.sam.id)
        s.leads.mark_contacted(ann.id)
        s.leads.qualify(ann.id)
    with crm.session(actor=people.sam.id) as s:
        with pytest.raises(PermissionDenied):
            s.consent.history(ann.id)
        _, person, _ = s.leads.convert(ann.id)
    with crm.session(actor=crm.system_actor) as s:
        assert s.consent.allows(person.id, "marketing")
        assert [e.actor_id for e in s.audit.find(record_type="consent", action="grant")] == [
            "system",
            people.sam.id,
        ]


# -- campaigns -------------------------------------------------------------------------------------


def test_a_customer_segment_cannot_be_for_a_purpose(system: Session) -> None:
    system.campaigns.create_segment(
        "All", "customer", {"field": "status", "op": "eq", "value": "active"}
    )
    campaign = system.campaigns.create("Spring", channel="email", segment="All")
    for call in (
        lambda: system.campaigns.members("All", purpose="marketing"),
        lambda: system.campaigns.count("All", purpose="marketing"),
        lambda: system.campaigns.snapshot(campaign.id, purpose="marketing"),
    ):
        with pytest.raises(ValidationError) as refused:
            call()
        assert refused.value.field == "purpose"
    with pytest.raises(ValidationError) as refused:
        system.campaigns.members("All", purpose="marketing", channel="E mail")
    assert refused.value.field == "channel"


_tenants = itertools.count()
EXAMPLES = int(os.environ.get("PYCRM_CONSENT_EXAMPLES", "25"))
PURPOSES = ("marketing", "profiling")
CHANNELS = ("email", "sms", "any")
#: A consent event: (person index, purpose, channel, granted, minutes before now).
events = st.tuples(
    st.integers(0, 5),
    st.sampled_from(PURPOSES),
    st.sampled_from(CHANNELS),
    st.booleans(),
    st.sampled_from([0, 1, 2, 5]),  # few moments, so records often tie
)


def deciding(
    history: list[tuple[int, str, str, bool, int]], person: int, purpose: str, channel: str
) -> bool:
    """The oracle: the latest (by ``at``, then by recording order) record for the channel or any."""
    found = [
        (-minutes, order, granted)
        for order, (who, p, c, granted, minutes) in enumerate(history)
        if who == person and p == purpose and c in (channel, "any")
    ]
    return bool(found) and max(found)[2]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_campaign_for_a_purpose_takes_exactly_the_people_whose_consent_holds(
    crm: pycrm.CRM, fake_clock: FakeClock, data: st.DataObject
) -> None:
    """Property: never a member without a grant in force; every matching person with one."""
    history = data.draw(st.lists(events, max_size=25), label="history")
    purpose = data.draw(st.sampled_from(PURPOSES), label="purpose")
    channel = data.draw(st.sampled_from(CHANNELS), label="channel")
    in_segment = data.draw(st.lists(st.booleans(), min_size=6, max_size=6), label="in segment")
    tenant = f"consent{next(_tenants)}"
    now = fake_clock.now()
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        acme = s.customers.create("Acme GmbH").id
        people = [
            s.contacts.create(f"P{i}", customer_id=acme, title="buyer" if inside else "other").id
            for i, inside in enumerate(in_segment)
        ]
        leads = [lead(s, f"L{i}") for i in range(6)]
        for who, p, c, granted, minutes in history:
            record = s.consent.grant if granted else s.consent.withdraw
            at = now - timedelta(minutes=minutes)
            record(people[who], p, channel=c, at=at)
            record(leads[who], p, channel=c, at=at)
        rule = {"field": "title", "op": "eq", "value": "buyer"}
        s.campaigns.create_segment("Buyers", "contact", rule)
        campaign = s.campaigns.create("Spring", channel="email", segment="Buyers")
        taken = s.campaigns.snapshot(campaign.id, purpose=purpose, channel=channel)
        members = {m.contact_id for m in s.campaigns.campaign_members(campaign.id)}
        listed = {c.id for c in s.campaigns.members("Buyers", purpose=purpose, channel=channel)}
        counted = s.campaigns.count("Buyers", purpose=purpose, channel=channel)
        asked = [s.consent.allows(x, purpose, channel) for x in people]
        asked_leads = [s.consent.allows(x, purpose, channel) for x in leads]
    holds = [deciding(history, i, purpose, channel) for i in range(6)]
    want = {people[i] for i in range(6) if in_segment[i] and holds[i]}
    assert members == want
    assert listed == want
    assert taken == counted == len(want)
    assert asked == holds
    assert asked_leads == holds
