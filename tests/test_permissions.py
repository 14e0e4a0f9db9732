"""Permission contract tests, on every backend.

Reads are filtered inside the query; hidden fields never leave the service;
read-only fields and grant conditions hold for writes; private activities stay
private on every read path; deactivating a user hands on their work; the audit
trail is append-only and each user sees only their own part of it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import attrs
import pytest

import pycrm
from pycrm import Money, signals
from pycrm.domain.audit import AuditEntry
from pycrm.domain.customers import Customer
from pycrm.domain.deals import DealStatus, StageVisit
from pycrm.domain.merging import Merge
from pycrm.domain.org import User
from pycrm.domain.permissions import DEFAULT_POLICY, Policy
from pycrm.domain.query import Eq, Related
from pycrm.domain.receivables import Receivable
from pycrm.domain.tasks import TaskStatus
from pycrm.domain.tickets import TicketStatus
from pycrm.errors import InvalidTransition, NotFound, PermissionDenied
from pycrm.serialization import to_dict
from pycrm.services.audit import AuditService
from pycrm.session import Session
from pycrm.testing import FakeClock
from support import snapshot, staff

EUR = "EUR"


def eur(amount: str) -> Money:
    return Money.of(amount, EUR)


def _as(crm: pycrm.CRM, user: User | str) -> Session:
    return crm.session(actor=user if isinstance(user, str) else user.id)


@attrs.frozen
class Sale:
    customer_id: str
    deal_id: str
    contract_id: str
    receivable_ids: tuple[str, ...]


def _sale(s: Session, owner: User, name: str, *, instalments: int = 2) -> Sale:
    """A customer with a won deal owned by ``owner``, a signed contract and its receivables."""
    customer = s.customers.create(name, owner_id=owner.id)
    deal = s.deals.create(
        f"{name} deal", customer_id=customer.id, amount=eur("1200"), owner_id=owner.id
    )
    s.deals.win(deal.id)
    contract = s.contracts.draft(
        deal.id, instalments=instalments, first_due=date(2026, 3, 1), list_amount=eur("1500")
    )
    s.contracts.submit(contract.id)
    s.contracts.sign(contract.id)
    receivables = s.receivables.list(contract_id=contract.id)
    return Sale(customer.id, deal.id, contract.id, tuple(r.id for r in receivables))


def _system(crm: pycrm.CRM) -> Session:
    """A system-actor session (commits when its ``with`` block ends)."""
    return crm.session(actor=crm.system_actor)


@pytest.fixture
def org(crm: pycrm.CRM) -> dict[str, User]:
    """A small organisation: two sales teams, and one user per other department (committed)."""
    people: dict[str, User] = {}
    with _system(crm) as system:
        north = system.org.create_team("North", "sales")
        south = system.org.create_team("South", "sales")

        def user(key: str, department: str, *, roles: tuple[str, ...] = (), **more: Any) -> None:
            people[key] = system.org.create_user(
                name=key.title(),
                email=f"{key}@perm.example",
                department=department,
                roles=list(roles),
                **more,
            )

        user("admin", "admin", roles=("admin",))
        user("boss", "sales", roles=("sales_manager",), team_ids=[north.id])
        user("rep", "sales", roles=("sales_rep",), team_ids=[north.id],
             manager_id=people["boss"].id)  # fmt: skip
        user("mate", "sales", roles=("sales_rep",), team_ids=[north.id])
        user("rival", "sales", roles=("sales_rep",), team_ids=[south.id])
        user("marketer", "marketing")
        user("agent", "service")
        user("clerk", "finance")
        user("lawyer", "legal", roles=("legal",))
    return people


# -- reads are filtered in the query -----------------------------------------------


def test_sales_rep_lists_only_receivables_of_their_own_deals(
    crm: pycrm.CRM, org: dict[str, User]
) -> None:
    with _system(crm) as system:
        mine = _sale(system, org["rep"], "Mine AG")
        mates = _sale(system, org["mate"], "Mate AG")
        rivals = _sale(system, org["rival"], "Rival AG")
    with _as(crm, org["rep"]) as s:
        assert {r.id for r in s.receivables.list()} == set(mine.receivable_ids)
        assert s.read(Receivable).count() == len(mine.receivable_ids)
        for other in (mates, rivals):
            assert s.receivables.list(customer_id=other.customer_id) == []
            assert s.receivables.list(contract_id=other.contract_id) == []
            for rid in other.receivable_ids:
                with pytest.raises(NotFound):
                    s.receivables.get(rid)
            # the customer itself is readable, but its receivables section is filtered
            view = s.customers.view(other.customer_id)
            assert view.receivables == ()
            assert view.outstanding == {}
        view = s.customers.view(mine.customer_id)
        assert {r.id for r in view.receivables} == set(mine.receivable_ids)
    with _as(crm, org["clerk"]) as s:
        everything = {*mine.receivable_ids, *mates.receivable_ids, *rivals.receivable_ids}
        assert {r.id for r in s.receivables.list()} == everything
        assert s.read(Receivable).count() == len(everything)


def _team_customers_policy() -> Policy:
    """The default policy, except that sales reads customers and contacts of its teams only."""
    data = DEFAULT_POLICY.to_dict()
    data["grants"] = [
        g
        for g in data["grants"]
        if not (g["roles"] == ["*"] and "customer" in g["resources"] and "read" in g["actions"])
    ]
    data["grants"] += [
        {"roles": ["*"], "resources": ["assessment"], "actions": ["read"], "scope": "all"},
        {"roles": ["sales"], "resources": ["customer", "contact"], "actions": ["read"],
         "scope": "team"},
    ]  # fmt: skip
    return Policy.from_dict(data)


def test_counts_searches_gets_and_360_views_never_include_forbidden_rows(
    connect_crm: Any,
) -> None:
    crm = connect_crm(policy=_team_customers_policy(), on_duplicate="allow")
    with crm.session(actor=crm.system_actor) as s:
        north = s.org.create_team("North", "sales")
        south = s.org.create_team("South", "sales")
        rep = s.org.create_user(
            name="Rep", email="rep@t.example", department="sales", team_ids=[north.id]
        )
        mate = s.org.create_user(
            name="Mate", email="mate@t.example", department="sales", team_ids=[north.id]
        )
        rival = s.org.create_user(
            name="Rival", email="rival@t.example", department="sales", team_ids=[south.id]
        )
        # forbidden rows sort first by name, so a page filled after loading would come back empty
        forbidden = [
            s.customers.create(f"Aaa Hidden {i} Corp", owner_id=rival.id) for i in range(3)
        ]
        forbidden.append(s.customers.create("Aab Unowned Corp"))
        mine = s.customers.create("Zed Mine Corp", owner_id=rep.id)
        mates = s.customers.create("Zed Mate Corp", owner_id=mate.id)
        for customer in [*forbidden, mine, mates]:
            s.contacts.create(
                f"Person at {customer.name}", customer_id=customer.id, owner_id=customer.owner_id
            )
            s.activities.log("call", f"Call {customer.name}", customer_id=customer.id)
    visible = {mine.id, mates.id}
    with crm.session(actor=rep.id) as s:
        assert s.customers.count() == 2
        assert {c.id for c in s.customers.search()} == visible
        assert {c.id for c in s.customers.search("corp")} == visible
        assert [c.id for c in s.customers.search(limit=1)] == [mates.id]
        assert s.customers.search(owner_id=rival.id) == []
        assert {c.customer_id for c in s.contacts.search()} == visible
        assert s.contacts.search(company="Hidden") == []
        for customer in forbidden:
            with pytest.raises(NotFound):
                s.customers.get(customer.id)
            with pytest.raises(NotFound):
                s.customers.view(customer.id)
            with pytest.raises(NotFound):
                s.customers.timeline(customer.id)
        view = s.customers.view(mine.id)
        assert [c.name for c in view.contacts] == ["Person at Zed Mine Corp"]
    with crm.session(actor=rival.id) as s:
        assert s.customers.count() == 3
        assert {c.id for c in s.customers.search()} == {c.id for c in forbidden[:3]}


def test_a_department_without_read_grant_is_refused_lists_but_sees_empty_360_sections(
    crm: pycrm.CRM, org: dict[str, User]
) -> None:
    with _system(crm) as system:
        sale = _sale(system, org["rep"], "Acme AG")
        system.tickets.open("Broken", channel="email", customer_id=sale.customer_id)
    with _as(crm, org["marketer"]) as s:
        for call in (s.receivables.list, s.contracts.list, s.tickets.list):
            with pytest.raises(PermissionDenied):
                call()
        view = s.customers.view(sale.customer_id)
        assert view.customer.id == sale.customer_id
        assert view.contracts == view.receivables == view.tickets == ()
        assert [d.id for d in view.deals] == [sale.deal_id]  # marketing reads deals
        with pytest.raises(NotFound):
            s.contracts.get(sale.contract_id)
    with _as(crm, org["admin"]) as s:
        refused = s.audit.find(actor_id=org["marketer"].id, action="denied:read")
    assert {e.record_type for e in refused} == {"receivable", "contract", "ticket"}


# -- hidden fields -------------------------------------------------------------------


def test_payments_are_hidden_from_everyone_but_finance(
    crm: pycrm.CRM, org: dict[str, User]
) -> None:
    with _system(crm) as system:
        sale = _sale(system, org["rep"], "Acme AG")
    first = sale.receivable_ids[0]
    with _as(crm, org["clerk"]) as s:
        paid = s.receivables.record_payment(
            first, eur("700"), reference="BANK-SECRET-1", allow_overpayment=True
        )
        assert [p.reference for p in paid.payments] == ["BANK-SECRET-1"]
        assert paid.overpaid == eur("100")
    with _as(crm, org["rep"]) as s:
        got = s.receivables.get(first)
        listed = next(r for r in s.receivables.list() if r.id == first)
        in_view = next(r for r in s.customers.view(sale.customer_id).receivables if r.id == first)
        for receivable in (got, listed, in_view):
            assert receivable.payments == ()
            assert receivable.overpaid is None
            assert receivable.paid == eur("600")  # not hidden
            data = to_dict(receivable)
            assert data.get("payments") in (None, [])
            assert data.get("overpaid") is None
            assert "BANK-SECRET-1" not in json.dumps(data)
    with _as(crm, org["clerk"]) as s:  # redaction never writes back
        assert [p.reference for p in s.receivables.get(first).payments] == ["BANK-SECRET-1"]
    with _as(crm, org["admin"]) as s:
        assert s.receivables.get(first).overpaid == eur("100")


def test_contract_list_amount_is_hidden_from_service(crm: pycrm.CRM, org: dict[str, User]) -> None:
    with _system(crm) as system:
        sale = _sale(system, org["rep"], "Acme AG")
    with _as(crm, org["agent"]) as s:
        assert s.contracts.get(sale.contract_id).list_amount is None
        assert to_dict(s.contracts.list()[0]).get("list_amount") is None
        assert s.customers.view(sale.customer_id).contracts[0].list_amount is None
    for key in ("rep", "clerk", "lawyer"):
        with _as(crm, org[key]) as s:
            assert s.contracts.get(sale.contract_id).list_amount == eur("1500")


def test_history_and_as_of_do_not_reveal_hidden_fields(
    crm: pycrm.CRM, org: dict[str, User], fake_clock: FakeClock
) -> None:
    with _system(crm) as system:
        sale = _sale(system, org["rep"], "Acme AG")
    first = sale.receivable_ids[0]
    fake_clock.advance(minutes=1)
    with _as(crm, org["clerk"]) as s:
        s.receivables.record_payment(first, eur("100"), reference="BANK-SECRET-2")
    fake_clock.advance(minutes=1)
    with _as(crm, org["rep"]) as s:
        changes = [attrs.asdict(change) for change in s.receivables.history(first)]
        assert "BANK-SECRET-2" not in json.dumps(changes, default=str)
        assert s.receivables.as_of(first, fake_clock.now()).payments == ()


# -- read-only and hidden fields on writes ---------------------------------------------


def test_a_read_only_field_rejects_updates_by_roles_that_may_update_the_record(
    connect_crm: Any,
) -> None:
    policy = DEFAULT_POLICY.extend(
        {"fields": [{"resource": "customer", "field": "grade", "read_only": True,
                     "allowed": ["sales_manager"]}]}
    )  # fmt: skip
    crm = connect_crm(policy=policy)
    with crm.session(actor=crm.system_actor) as s:
        rep = s.org.create_user(name="Rep", email="rep@ro.example", department="sales")
        boss = s.org.create_user(
            name="Boss", email="boss@ro.example", department="sales", roles=["sales_manager"]
        )
        acme = s.customers.create("Acme AG", grade="B")
    with crm.session(actor=rep.id) as s:
        assert s.customers.get(acme.id).grade == "B"  # readable
        assert s.customers.update(acme.id, industry="machinery").industry == "machinery"
        with pytest.raises(PermissionDenied) as refusal:
            s.customers.update(acme.id, grade="A")
        assert refusal.value.resource == f"customer {acme.id}"  # names the record
        with pytest.raises(PermissionDenied):
            s.customers.update(acme.id, grade="A", industry="tools")
        with pytest.raises(PermissionDenied):
            s.customers.create("Newco GmbH", grade="A")
        assert s.customers.update(acme.id, grade="B").grade == "B"  # no change, no write
        current = s.customers.get(acme.id)
    assert (current.grade, current.industry) == ("B", "machinery")
    with crm.session(actor=boss.id) as s:
        assert s.customers.update(acme.id, grade="A").grade == "A"
    with crm.session(actor=crm.system_actor) as s:
        refused = s.audit.find(actor_id=rep.id, action="denied:update")
    assert refused
    assert all("grade" in str(e.changes) for e in refused)


def test_a_hidden_field_is_neither_readable_nor_writable(connect_crm: Any) -> None:
    policy = DEFAULT_POLICY.extend(
        {"fields": [{"resource": "customer", "field": "website", "hidden": True,
                     "allowed": ["sales"]}]}
    )  # fmt: skip
    crm = connect_crm(policy=policy)
    with crm.session(actor=crm.system_actor) as s:
        agent = s.org.create_user(name="Agent", email="agent@h.example", department="service")
        rep = s.org.create_user(name="Rep", email="rep@h.example", department="sales")
        acme = s.customers.create("Acme AG", website="https://acme.example")
    with crm.session(actor=agent.id) as s:
        assert s.customers.get(acme.id).website is None
        assert s.customers.search("acme")[0].website is None
        s.customers.update(acme.id, industry="tools")  # the record's other fields are writable
        with pytest.raises(PermissionDenied):
            s.customers.update(acme.id, website="https://evil.example")
        with pytest.raises(PermissionDenied):
            s.customers.create("Evil AG", website="https://evil.example")
    with crm.session(actor=rep.id) as s:
        current = s.customers.get(acme.id)
    assert (current.website, current.industry) == ("https://acme.example", "tools")


def test_a_write_does_not_return_hidden_fields(connect_crm: Any) -> None:
    policy = DEFAULT_POLICY.extend(
        {"fields": [{"resource": "customer", "field": "website", "hidden": True,
                     "allowed": ["sales"]}]}
    )  # fmt: skip
    crm = connect_crm(policy=policy)
    with crm.session(actor=crm.system_actor) as s:
        agent = s.org.create_user(name="Agent", email="agent@h.example", department="service")
        acme = s.customers.create("Acme AG", website="https://acme.example")
    with crm.session(actor=agent.id) as s:
        assert s.customers.update(acme.id, industry="tools").website is None


def test_only_admins_change_a_users_capacity(crm: pycrm.CRM, org: dict[str, User]) -> None:
    for key in ("boss", "rep", "clerk"):
        with _as(crm, org[key]) as s:
            with pytest.raises(PermissionDenied):
                s.org.update_user(org["rep"].id, capacity=5)
            assert s.org.get_user(org["rep"].id).capacity is None
    with _as(crm, org["admin"]) as s:
        assert s.org.update_user(org["rep"].id, capacity=5).capacity == 5


# -- conditions ------------------------------------------------------------------------


def test_service_may_update_an_open_deal_but_not_a_won_one(
    crm: pycrm.CRM, org: dict[str, User]
) -> None:
    with _system(crm) as system:
        acme = system.customers.create("Acme AG")
        open_deal = system.deals.create(
            "Open", customer_id=acme.id, amount=eur("10"), owner_id=org["rep"].id
        )
        won = system.deals.create(
            "Won", customer_id=acme.id, amount=eur("10"), owner_id=org["rep"].id
        )
        won = system.deals.win(won.id)
    with _as(crm, org["agent"]) as s:
        assert s.deals.update(open_deal.id, name="Helped").name == "Helped"
        won_now = s.deals.get(won.id)
        assert won_now.status is DealStatus.WON
        assert s._guard.allows(s.deals.get(open_deal.id), "update")
        assert not s._guard.allows(won_now, "update")
        with pytest.raises((PermissionDenied, InvalidTransition)):
            s.deals.update(won.id, name="Meddled")
    with _as(crm, org["rep"]) as s:
        assert s._guard.allows(s.deals.get(won.id), "update")  # the owner's grant has no condition
        assert s.deals.get(won.id).name == "Won"


def test_when_and_unless_conditions_limit_writes(connect_crm: Any) -> None:
    policy = DEFAULT_POLICY.extend(
        {"grants": [
            {"roles": ["finance"], "resources": ["customer"], "actions": ["update"],
             "scope": "all", "when": {"industry": "banking"}},
            {"roles": ["marketing"], "resources": ["customer"], "actions": ["update"],
             "scope": "all", "unless": {"status": "archived"}},
        ]}
    )  # fmt: skip
    crm = connect_crm(policy=policy)
    with crm.session(actor=crm.system_actor) as s:
        clerk = s.org.create_user(name="Clerk", email="clerk@c.example", department="finance")
        marketer = s.org.create_user(name="Mia", email="mia@c.example", department="marketing")
        bank = s.customers.create("Bank AG", industry="banking")
        mill = s.customers.create("Mill AG", industry="machinery")
        gone = s.customers.create("Gone AG", industry="machinery")
        s.customers.archive(gone.id)
    with crm.session(actor=clerk.id) as s:
        assert s.customers.update(bank.id, region="EMEA").region == "EMEA"
        with pytest.raises(PermissionDenied):
            s.customers.update(mill.id, region="EMEA")
    with crm.session(actor=marketer.id) as s:
        assert s.customers.update(mill.id, tags=["newsletter"]).tags == ("newsletter",)
        with pytest.raises(PermissionDenied):
            s.customers.update(gone.id, tags=["newsletter"])


def test_an_unless_condition_on_an_empty_field_reads_alike_in_lists_and_get(
    connect_crm: Any, backend: str, request: pytest.FixtureRequest
) -> None:
    policy = DEFAULT_POLICY.extend(
        {"grants": [{"roles": ["auditor"], "resources": ["receivable"], "actions": ["read"],
                     "scope": "all", "unless": {"written_off_reason": "fraud"}}]}
    )  # fmt: skip
    crm = connect_crm(policy=policy)
    with crm.session(actor=crm.system_actor) as s:
        s.org.create_department("audit", "Audit")
        auditor = s.org.create_user(
            name="Aud", email="aud@u.example", department="audit", roles=["auditor"]
        )
        rep = s.org.create_user(name="Rep", email="rep@u.example", department="sales")
        sale = _sale(s, rep, "Acme AG", instalments=3)
        fraud, bankrupt, untouched = sale.receivable_ids
        s.receivables.write_off(fraud, "fraud")
        s.receivables.write_off(bankrupt, "bankrupt")
    with crm.session(actor=auditor.id) as s:
        readable = set()
        for rid in sale.receivable_ids:
            with contextlib.suppress(NotFound):
                readable.add(s.receivables.get(rid).id)
        assert readable == {bankrupt, untouched}
        assert {r.id for r in s.receivables.list()} == readable
        assert {r.id for r in s.customers.view(sale.customer_id).receivables} == readable


# -- private activities ------------------------------------------------------------------


def test_a_private_activity_is_visible_to_its_author_only_on_every_read_path(
    crm: pycrm.CRM, org: dict[str, User]
) -> None:
    with _system(crm) as system:
        acme = system.customers.create("Acme AG")
        ada = system.contacts.create("Ada Buyer", customer_id=acme.id)
    with _as(crm, org["rep"]) as s:
        secret = s.activities.log(
            "note", "Thinks our price is too high", contact_id=ada.id, private=True
        )
        public = s.activities.log("call", "Discussed the offer", contact_id=ada.id)

    def seen(s: Session) -> dict[str, set[str]]:
        def ids(rows: Any) -> set[str]:
            return {a.id for a in rows}

        paths = {
            "list": ids(s.activities.list()),
            "list by customer": ids(s.activities.list(customer_id=acme.id)),
            "list by contact": ids(s.activities.list(contact_id=ada.id)),
            "customer timeline": ids(s.customers.timeline(acme.id)),
            "contact timeline": ids(s.contacts.timeline(ada.id)),
            "360 view": ids(s.customers.view(acme.id).activities),
        }
        got = set()
        for activity in (secret, public):
            with contextlib.suppress(NotFound):
                got.add(s.activities.get(activity.id).id)
        paths["get"] = got
        return paths

    with _as(crm, org["rep"]) as s:
        assert all(found == {secret.id, public.id} for found in seen(s).values()), seen(s)
    for key in ("mate", "boss", "admin", "agent"):
        with _as(crm, org[key]) as s:
            assert all(found == {public.id} for found in seen(s).values()), (key, seen(s))
            with pytest.raises(NotFound):
                s.activities.update(secret.id, subject="Peeked")
    with crm.session(actor=crm.system_actor) as s:
        assert [a.id for a in s.activities.list(customer_id=acme.id)] == [public.id]


# -- user lifecycle ----------------------------------------------------------------------


@pytest.fixture
def workload(crm: pycrm.CRM, org: dict[str, User]) -> dict[str, Any]:
    """The rep's open and closed work."""
    with _system(crm) as system:
        rep = org["rep"].id
        acme = system.customers.create("Acme AG")
        work: dict[str, Any] = {}
        lead = system.leads.capture("Open Lead", source="webform")
        work["open_lead"] = system.leads.assign(lead.id, rep)
        lead = system.leads.capture("Dead Lead", source="webform")
        system.leads.assign(lead.id, rep)
        work["closed_lead"] = system.leads.disqualify(lead.id, "no budget")
        work["open_deal"] = system.deals.create(
            "Open deal", customer_id=acme.id, amount=eur("5"), owner_id=rep
        )
        won = system.deals.create("Won deal", customer_id=acme.id, amount=eur("5"), owner_id=rep)
        work["closed_deal"] = system.deals.win(won.id)
        work["open_task"] = system.tasks.create("Call back", assignee_id=rep)
        done = system.tasks.create("Done thing", assignee_id=rep)
        work["closed_task"] = system.tasks.complete(done.id)
        ticket = system.tickets.open("Help", channel="email", customer_id=acme.id)
        work["open_ticket"] = system.tickets.assign(ticket.id, rep)
        ticket = system.tickets.open("Solved", channel="email", customer_id=acme.id)
        system.tickets.assign(ticket.id, rep)
        system.tickets.start(ticket.id)
        work["closed_ticket"] = system.tickets.resolve(ticket.id)
        assert work["closed_ticket"].status is TicketStatus.RESOLVED
    return work


def _holders(crm: pycrm.CRM, work: dict[str, Any]) -> dict[str, str | None]:
    with crm.session(actor=crm.system_actor) as s:
        return {
            "open_lead": s.leads.get(work["open_lead"].id).owner_id,
            "closed_lead": s.leads.get(work["closed_lead"].id).owner_id,
            "open_deal": s.deals.get(work["open_deal"].id).owner_id,
            "closed_deal": s.deals.get(work["closed_deal"].id).owner_id,
            "open_task": s.tasks.get(work["open_task"].id).assignee_id,
            "closed_task": s.tasks.get(work["closed_task"].id).assignee_id,
            "open_ticket": s.tickets.get(work["open_ticket"].id).assignee_id,
            "closed_ticket": s.tickets.get(work["closed_ticket"].id).assignee_id,
        }


@pytest.fixture
def deactivations(crm: pycrm.CRM) -> Iterator[list[Any]]:
    sent: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        sent.append(kwargs.get("event"))

    with signals.user_deactivated.connected_to(receiver, sender=crm):
        yield sent


def test_deactivating_a_user_hands_open_work_to_their_manager(
    crm: pycrm.CRM,
    org: dict[str, User],
    workload: dict[str, Any],
    deactivations: list[Any],
) -> None:
    rep, boss = org["rep"].id, org["boss"].id
    with _as(crm, org["admin"]) as s:
        assert not s.org.deactivate_user(rep).active
        assert deactivations == []  # only after the commit
    assert [e.record_id for e in deactivations] == [rep]
    assert [e.name for e in deactivations] == ["user_deactivated"]
    assert _holders(crm, workload) == {
        "open_lead": boss,
        "closed_lead": rep,
        "open_deal": boss,
        "closed_deal": rep,
        "open_task": boss,
        "closed_task": rep,
        "open_ticket": boss,
        "closed_ticket": rep,
    }
    with crm.session(actor=crm.system_actor) as s:
        lead = s.leads.get(workload["open_lead"].id)
        assert "deactivated" in (lead.assignment_reason or "")
        assert s.tasks.get(workload["open_task"].id).status is TaskStatus.OPEN
        reassigned = s.audit.find(action="reassign", limit=1000)
    handed_on = {e.record_id for e in reassigned}
    assert handed_on >= {
        workload[k].id for k in ("open_lead", "open_deal", "open_task", "open_ticket")
    }
    assert not handed_on & {
        workload[k].id for k in ("closed_lead", "closed_deal", "closed_task", "closed_ticket")
    }
    with crm.session(actor=crm.system_actor) as s:  # e.g. the lead's first-contact reminder
        others = [s.tasks.get(id) for id in handed_on - {w.id for w in workload.values()}]
    assert all(t.assignee_id == boss for t in others)
    with pytest.raises(PermissionDenied):
        crm.session(actor=rep)
    with _as(crm, boss) as s:  # the heir can work on what they were handed
        assert s.deals.update(workload["open_deal"].id, name="Taken over").owner_id == boss


def test_deactivating_with_reassign_to_hands_work_to_that_user(
    crm: pycrm.CRM, org: dict[str, User], workload: dict[str, Any], deactivations: list[Any]
) -> None:
    rep, mate = org["rep"].id, org["mate"].id
    with _as(crm, org["admin"]) as s:
        s.org.deactivate_user(rep, reassign_to=mate)
    holders = _holders(crm, workload)
    assert {k: v for k, v in holders.items() if k.startswith("open")} == {
        "open_lead": mate, "open_deal": mate, "open_task": mate, "open_ticket": mate,
    }  # fmt: skip
    assert {v for k, v in holders.items() if k.startswith("closed")} == {rep}
    assert len(deactivations) == 1
    with pytest.raises(PermissionDenied):
        crm.session(actor=rep)
    with _as(crm, org["admin"]) as s:  # deactivating twice changes nothing
        assert not s.org.deactivate_user(rep).active
    assert len(deactivations) == 1


def test_only_admins_deactivate_users(
    crm: pycrm.CRM, org: dict[str, User], workload: dict[str, Any], deactivations: list[Any]
) -> None:
    for key in ("boss", "mate", "clerk"):
        with _as(crm, org[key]) as s, pytest.raises(PermissionDenied):
            s.org.deactivate_user(org["rep"].id)
    assert deactivations == []
    with _as(crm, org["rep"]) as s:
        assert s.org.get_user(org["rep"].id).active
    assert _holders(crm, workload)["open_deal"] == org["rep"].id


# -- audit -----------------------------------------------------------------------------


def test_the_audit_trail_cannot_be_changed_through_the_api(
    crm: pycrm.CRM, org: dict[str, User]
) -> None:
    with _system(crm) as system:
        system.customers.create("Acme AG")
    public = {name for name in dir(AuditService) if not name.startswith("_")}
    assert public == {"find", "iter"}  # both only read
    with _as(crm, org["admin"]) as s:
        entry = s.audit.find(record_type="customer")[0]
        for name in ("update", "delete", "remove", "add", "record", "replace", "purge"):
            assert not hasattr(s.audit, name)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        entry.action = "forged"  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        entry.actor_id = "someone-else"  # type: ignore[misc]
    assert attrs.has(AuditEntry)
    assert AuditEntry.__setattr__ is not object.__setattr__


def test_changing_a_returned_audit_entry_does_not_change_the_trail(
    crm: pycrm.CRM, backend: str, request: pytest.FixtureRequest
) -> None:
    with _system(crm) as system:
        acme = system.customers.create("Acme AG")
    with crm.session(actor=crm.system_actor) as s:
        entry = s.audit.find(record_id=acme.id)[0]
        entry.changes["name"] = [None, "Forged"]
        if entry.snapshot is not None:
            entry.snapshot["name"] = "Forged"
    with crm.session(actor=crm.system_actor) as s:
        again = s.audit.find(record_id=acme.id)[0]
        assert again.changes == {}  # a creation is its snapshot
        assert again.field_changes()["name"] == [None, "Acme AG"]
        assert again.snapshot is not None
        assert again.snapshot["name"] == "Acme AG"
        assert [c.new for c in s.customers.history(acme.id, "name")] == ["Acme AG"]


def test_audit_find_filters_by_actor_record_kind_action_and_period(
    crm: pycrm.CRM, org: dict[str, User], fake_clock: FakeClock
) -> None:
    fake_clock.advance(minutes=1)  # after the organisation was set up
    start = fake_clock.now()
    with _as(crm, org["rep"]) as s:
        acme = s.customers.create("Acme AG")
    fake_clock.advance(hours=1)
    middle = fake_clock.now()
    with _as(crm, org["agent"]) as s:
        s.customers.update(acme.id, industry="tools")
        beta = s.customers.create("Beta AG")
    fake_clock.advance(hours=1)
    with _as(crm, org["admin"]) as s:
        audit = s.audit
        by_rep = audit.find(actor_id=org["rep"].id)
        assert [(e.action, e.record_id) for e in by_rep] == [("create", acme.id)]
        assert [e.actor_id for e in audit.find(record_id=acme.id)] == [
            org["rep"].id,
            org["agent"].id,
        ]
        assert [e.record_id for e in audit.find(record_id=acme.id, action="update")] == [acme.id]
        assert {e.record_id for e in audit.find(record_type="customer", since=start)} == {
            acme.id,
            beta.id,
        }
        in_first_hour = audit.find(since=start, until=middle)
        assert {e.actor_id for e in in_first_hour} == {org["rep"].id}
        assert all(start <= e.at < middle for e in in_first_hour)
        later = audit.find(since=middle)
        assert {e.actor_id for e in later} == {org["agent"].id}
        assert audit.find(since=fake_clock.now()) == []
        assert audit.find(actor_id=org["agent"].id, until=middle) == []
        page = audit.find(limit=2)
        assert len(page) == 2
        assert audit.find(limit=2, offset=2)[0].id not in {e.id for e in page}


def test_non_admins_see_only_their_own_audit_entries(crm: pycrm.CRM, org: dict[str, User]) -> None:
    with _as(crm, org["rep"]) as s:
        mine = s.customers.create("Mine AG")
    with _as(crm, org["mate"]) as s:
        theirs = s.customers.create("Theirs AG")
        s.customers.update(mine.id, industry="tools")
    with _as(crm, org["rep"]) as s:
        seen = s.audit.find(limit=1000)
        assert seen
        assert {e.actor_id for e in seen} == {org["rep"].id}
        assert s.audit.find(actor_id=org["mate"].id) == []
        assert s.audit.find(record_id=theirs.id) == []
        assert [e.action for e in s.audit.find(record_id=mine.id)] == ["create"]
    for key in ("boss", "clerk", "agent"):
        with _as(crm, org[key]) as s:
            assert s.audit.find(record_id=mine.id) == []
    with _as(crm, org["admin"]) as s:
        assert [e.actor_id for e in s.audit.find(record_id=mine.id)] == [
            org["rep"].id,
            org["mate"].id,
        ]


# -- contract approvals and the policy ------------------------------------------------------


def test_a_sales_rep_submits_their_own_standard_contract(
    crm: pycrm.CRM, org: dict[str, User]
) -> None:
    with _system(crm) as system:
        acme = system.customers.create("Acme AG")
        deal = system.deals.create(
            "Deal", customer_id=acme.id, amount=eur("100"), owner_id=org["rep"].id
        )
        system.deals.win(deal.id)
    with _as(crm, org["rep"]) as s:
        contract = s.contracts.draft(deal.id)
        assert s.contracts.submit(contract.id).status.value == "approved"


def test_a_legal_department_member_approves_the_legal_step(
    crm: pycrm.CRM, org: dict[str, User]
) -> None:
    with _system(crm) as system:
        counsel = system.org.create_user(
            name="Counsel", email="counsel@l.example", department="legal"
        )
        acme = system.customers.create("Acme AG")
        deal = system.deals.create("Deal", customer_id=acme.id, amount=eur("100"))
        system.deals.win(deal.id)
        contract = system.contracts.draft(deal.id, standard_terms=False)
        system.contracts.submit(contract.id)
    with _as(crm, counsel) as s:
        assert s._guard.allows(s.contracts.get(contract.id), "approve")
        assert s.contracts.approve(contract.id).status.value == "approved"


def test_approvers_decide_only_their_own_step(crm: pycrm.CRM, org: dict[str, User]) -> None:
    with _system(crm) as system:
        acme = system.customers.create("Acme AG")
        deal = system.deals.create(
            "Deal", customer_id=acme.id, amount=eur("100"), owner_id=org["rep"].id
        )
        system.deals.win(deal.id)
        contract = system.contracts.draft(deal.id, discount_percent=20, standard_terms=False)
        system.contracts.submit(contract.id)
    with _as(crm, org["rep"]) as s, pytest.raises(PermissionDenied):
        s.contracts.approve(contract.id)
    with _as(crm, org["lawyer"]) as s:
        step = s.contracts.approve(contract.id)
        assert step.status.value == "pending_approval"
        with pytest.raises(PermissionDenied):  # the sales-manager step is not theirs
            s.contracts.approve(contract.id)
    with _as(crm, org["boss"]) as s:
        assert s.contracts.approve(contract.id).status.value == "approved"
    with _as(crm, org["admin"]) as s:
        decided = {a.role: a.decided_by for a in s.contracts.get(contract.id).approvals}
    assert decided == {"legal": org["lawyer"].id, "sales_manager": org["boss"].id}


def test_redaction_keeps_the_whole_record_for_finance_after_a_rep_reads_it(
    crm: pycrm.CRM, org: dict[str, User]
) -> None:
    with _system(crm) as system:
        sale = _sale(system, org["rep"], "Acme AG", instalments=1)
    (rid,) = sale.receivable_ids
    with _as(crm, org["clerk"]) as s:
        s.receivables.record_payment(rid, eur("100"), reference="BANK-1")
    with _as(crm, org["rep"]) as s:
        s.receivables.get(rid)
        s.receivables.list()
    with _as(crm, org["clerk"]) as s:
        again = s.receivables.record_payment(rid, eur("100"), reference="BANK-1")  # idempotent
        assert [p.reference for p in again.payments] == ["BANK-1"]
        assert again.paid == eur("100")


def test_deactivated_users_keep_their_history_and_can_be_reactivated(
    crm: pycrm.CRM, org: dict[str, User], fake_clock: FakeClock
) -> None:
    with _as(crm, org["rep"]) as s:
        acme = s.customers.create("Acme AG")
    fake_clock.advance(timedelta(minutes=5))
    with _as(crm, org["admin"]) as s:
        s.org.deactivate_user(org["rep"].id)
        assert [e.actor_id for e in s.audit.find(record_id=acme.id)] == [org["rep"].id]
        s.org.reactivate_user(org["rep"].id)
    with _as(crm, org["rep"]) as s:
        assert s.customers.get(acme.id).created_by == org["rep"].id


# -- a "none" grant gives nothing --------------------------------------------------------


def test_a_none_scope_grant_gives_no_records(connect_crm: Any) -> None:
    policy = Policy.from_dict(
        {
            "grants": [
                {"roles": ["*"], "resources": ["user"], "actions": ["read"], "scope": "all"},
                {"roles": ["sales"], "resources": ["customer"], "actions": ["read", "update"],
                 "scope": "own"},
                {"roles": ["sales"], "resources": ["customer"],
                 "actions": ["read", "update", "delete"], "scope": "none"},
            ]
        }
    )  # fmt: skip
    crm = connect_crm(policy=policy)
    with _system(crm) as s:
        rep = s.org.create_user(name="Rep", email="rep@none.example", department="sales")
        mate = s.org.create_user(name="Mate", email="mate@none.example", department="sales")
        mine = s.customers.create("Mine GmbH", owner_id=rep.id)
        theirs = s.customers.create("Theirs GmbH", owner_id=mate.id)
    with _as(crm, rep) as s:
        # The own grant reaches the rep's customer; the none grant adds no colleague's.
        assert [c.id for c in s.customers.search()] == [mine.id]
        with pytest.raises(NotFound):
            s.customers.get(theirs.id)
        with pytest.raises(NotFound):
            s.customers.update(theirs.id, industry="tools")
        # A none grant alone is no grant.
        with pytest.raises(PermissionDenied):
            s.customers.archive(mine.id)
    with _system(crm) as s:
        assert s.customers.get(theirs.id).industry is None
        assert s.customers.get(mine.id).archived_at is None


# -- a merge deletes the duplicates ------------------------------------------------------


def test_merging_needs_delete_on_every_duplicate(connect_crm: Any) -> None:
    # Stewards may merge and update every customer, but delete only their own.
    policy = DEFAULT_POLICY.extend(
        {
            "grants": [
                {"roles": ["steward"], "resources": ["merge"],
                 "actions": ["create", "read", "update"], "scope": "all"},
                {"roles": ["steward"], "resources": ["customer"], "actions": ["delete"],
                 "scope": "own"},
            ]
        }
    )  # fmt: skip
    crm = connect_crm(policy=policy, on_duplicate="allow")
    with _system(crm) as s:
        steward = s.org.create_user(
            name="Stew", email="stew@merge.example", department="sales", roles=["steward"]
        )
        other = s.org.create_user(name="Other", email="other@merge.example", department="sales")
        survivor = s.customers.create("Acme GmbH", owner_id=steward.id)
        own_copy = s.customers.create("ACME GmbH", owner_id=steward.id)
        their_copy = s.customers.create("Acme G.m.b.H.", owner_id=other.id)
    before = snapshot(crm)
    with _as(crm, steward) as s:
        with pytest.raises(PermissionDenied):
            s.dedupe.merge(survivor.id, [own_copy.id, their_copy.id])
        with pytest.raises(PermissionDenied):
            s.dedupe.merge(survivor.id, [their_copy.id])
    assert snapshot(crm) == before
    with _as(crm, steward) as s:
        assert s.dedupe.merge(survivor.id, [own_copy.id]).merged_ids == (own_copy.id,)


# -- the guard's checks in Python agree with its queries ---------------------------------


def _every_audit_entry(crm: pycrm.CRM) -> list[AuditEntry]:
    """The whole audit trail, refused attempts included, as the store holds it."""
    uow = crm.store.begin("default")
    try:
        found: list[AuditEntry] = uow.repo(AuditEntry).find()
        return found
    finally:
        uow.rollback()


def test_an_audit_entry_read_by_id_is_one_the_audit_list_shows(connect_crm: Any) -> None:
    # Sales reads its own customers and the whole audit trail, marketing no audit at all.
    crm = connect_crm(
        policy={
            "grants": [
                {"roles": ["*"], "resources": ["customer"], "actions": ["read"], "scope": "own"},
                {"roles": ["sales"], "resources": ["audit_entry"], "actions": ["read"],
                 "scope": "all"},
            ]
        }
    )  # fmt: skip
    people = staff(crm, sam="sales", kim="sales", mia="marketing")
    with _system(crm) as s:
        mine = s.customers.create("Mine AG", owner_id=people.sam.id)
        theirs = s.customers.create("Theirs AG", owner_id=people.kim.id)
    with _as(crm, people.mia) as s, pytest.raises(PermissionDenied):
        s.audit.find()  # audited as a refused read of the audit trail: the trail's readers see it
    with _as(crm, people.sam) as s, pytest.raises(PermissionDenied):
        s.deals.list()  # audited about no deal: nothing to hide
    with _as(crm, people.sam) as s, pytest.raises(PermissionDenied):
        s.customers.create("Newco AG")  # audited about a customer never stored
    every = _every_audit_entry(crm)
    with _as(crm, people.sam) as s:
        listed = {e.id for e in s.audit.find(limit=1000)}
        by_id = {e.id for e in every if s.read(AuditEntry).get(e.id) is not None}
    about = {e.id: (e.record_type, e.record_id, e.action) for e in every}
    assert sorted(about[i] for i in by_id) == sorted(about[i] for i in listed)
    assert sorted(about[i][::2] for i in listed) == [
        ("audit_entry", "denied:read"),
        ("customer", "create"),
        ("customer", "denied:create"),
        ("deal", "denied:read"),
    ]
    assert ("customer", mine.id, "create") in {about[i] for i in listed}
    assert {e.record_id for e in every} >= {theirs.id, ""}


def test_merge_before_images_show_readable_records_without_their_hidden_fields(
    connect_crm: Any,
) -> None:
    crm = connect_crm(
        policy=DEFAULT_POLICY.extend(
            {
                "fields": [
                    {"resource": "customer", "field": "grade", "hidden": True, "allowed": ["admin"]}
                ]
            }
        ),
        on_duplicate="allow",
    )
    people = staff(crm, max=("sales", ["sales_manager"]))
    with _system(crm) as s:
        acme = s.customers.create("Acme GmbH", grade="A")
        twin = s.customers.create("ACME GmbH", grade="B")
    with _as(crm, people.max) as s:
        s.dedupe.merge(acme.id, [twin.id])
    with _as(crm, people.max) as s:
        merges = s.read(Merge).find()
        entries = s.audit.find(record_type="merge")
    with _system(crm) as s:
        whole = s.read(Merge).find()
    assert len(merges) == len(whole) == 1
    assert len(entries) == 1
    shown = {c.record_id: c.before for c in merges[0].changes}
    logged = {c["record_id"]: c["before"] for c in (entries[0].snapshot or {})["changes"]}
    kept = {c.record_id: c.before for c in whole[0].changes}
    assert {kept[acme.id]["grade"], kept[twin.id]["grade"]} == {"A", "B"}
    for images in (shown, logged):
        assert images.keys() == kept.keys() >= {acme.id, twin.id}
        for record_id, before in images.items():
            assert before == {k: v for k, v in kept[record_id].items() if k != "grade"}


def test_routing_candidates_are_listed_with_the_fields_hidden_from_the_reader_empty(
    connect_crm: Any,
) -> None:
    crm = connect_crm(
        policy=DEFAULT_POLICY.extend(
            {
                "fields": [
                    {"resource": "user", "field": field, "hidden": True, "allowed": ["admin"]}
                    for field in ("email", "on_leave", "team_ids")
                ]
            }
        )
    )
    people = staff(crm, sam="sales", kim="sales")
    with _system(crm) as s:
        everyone = s.leads.candidates()
    with _as(crm, people.sam) as s:
        seen = s.leads.candidates()
    assert [u.id for u in seen] == [u.id for u in everyone]
    assert len(seen) == 2
    assert {u.email for u in everyone} == {people.sam.email, people.kim.email}
    for user in seen:
        assert (user.email, user.on_leave, user.team_ids) == (None, None, ())


def test_checks_on_any_grant_let_the_system_and_granted_users_through(
    crm: pycrm.CRM, org: dict[str, User]
) -> None:
    with _system(crm) as s:
        s.org.create_department("hr", "Human resources")
        hal = s.org.create_user(name="Hal", email="hal@perm.example", department="hr", roles=["hr"])
        funnel = s.analytics.stage_funnel()  # the system actor needs no deal grant
    with _as(crm, hal) as s:  # HR's grant on users, though not an admin
        made = s.org.create_user(name="Newbie", email="new@perm.example", department="sales")
    assert made.department == "sales"
    with _as(crm, org["rep"]) as s:
        assert s.analytics.stage_funnel() == funnel  # sales reads deals
    read: list[int] = []

    def rows() -> Iterator[dict[str, str]]:
        read.append(1)
        yield {"name": "Never", "email": "never@x.example"}

    with _as(crm, org["clerk"]) as s, pytest.raises(PermissionDenied) as refusal:
        s.importer.leads(rows())
    assert read == [], "refused before reading a row"
    denied = refusal.value
    assert (denied.actor, denied.action, denied.resource) == (org["clerk"].id, "create", "lead")
    assert str(denied).startswith(f"{org['clerk'].id} may not create lead: ")  # with a reason
    with _system(crm) as s:
        customer = s.customers.create("Mate's AG", owner_id=org["mate"].id)
        deal = s.deals.create(
            "Mate's deal", customer_id=customer.id, amount=eur("100"), owner_id=org["mate"].id
        )
    with _as(crm, org["rep"]) as s, pytest.raises(PermissionDenied) as refusal:
        s.deals.update(deal.id, name="Mine now")  # sales updates its own deals only
    denied = refusal.value
    assert (denied.actor, denied.action, denied.resource) == (
        org["rep"].id,
        "update",
        f"deal {deal.id}",
    )
    assert str(denied).startswith(f"{org['rep'].id} may not update deal {deal.id}: ")


def test_a_merge_shows_the_before_image_of_a_record_deleted_since_by_that_image(
    connect_crm: Any,
) -> None:
    # Only a record no longer stored is judged by its before-image: sales reads leads, so
    # the deleted survivor's image stays; finance reads no leads, so it goes.
    crm = connect_crm(
        policy=DEFAULT_POLICY.extend(
            {"grants": [{"roles": ["*"], "resources": ["merge"], "actions": ["read"],
                         "scope": "all"}]}
        ),
        on_duplicate="allow",
    )  # fmt: skip
    people = staff(crm, sam="sales", fay="finance")
    with _system(crm) as s:
        first = s.leads.capture("Ann Example", source="webform", email="ann@x.example")
        second = s.leads.capture("Ann Example", source="import", email="ann@x.example")
        s.dedupe.merge(first.id, [second.id], record_type="lead")
        s.leads.delete(first.id)
    for who, expected in ((people.sam, {first.id, second.id}), (people.fay, set())):
        with _as(crm, who) as s:
            (merge,) = s.read(Merge).find()
        shown = {c.record_id: c.before for c in merge.changes if c.record_type == "lead"}
        assert shown.keys() == expected
        for before in shown.values():
            assert before["name"] == "Ann Example"


def test_stage_visits_hide_what_the_deals_hidden_fields_would_tell(connect_crm: Any) -> None:
    # The deal's stage is hidden from all but admins, and so are the visits' stage fields;
    # a field hidden on the visits themselves stays hidden as well.
    crm = connect_crm(
        policy=DEFAULT_POLICY.extend(
            {
                "fields": [
                    {"resource": "deal", "field": "stage", "hidden": True, "allowed": ["admin"]},
                    {"resource": "stage_visit", "field": "pipeline_id", "hidden": True,
                     "allowed": ["admin"]},
                ]
            }
        )
    )  # fmt: skip
    people = staff(crm, sam="sales")
    with _system(crm) as s:
        customer = s.customers.create("Acme AG")
        deal = s.deals.create(
            "Acme deal", customer_id=customer.id, amount=eur("100"), owner_id=people.sam.id
        )
        s.deals.win(deal.id)
        whole = s.read(StageVisit).find()
    with _as(crm, people.sam) as s:
        seen = s.read(StageVisit).find()
        with pytest.raises(PermissionDenied):
            s.read(StageVisit).find(Eq("position", 0))
        assert s.read(StageVisit).count(Eq("owner_id", people.sam.id)) == len(whole)
    assert len(whole) == len(seen) == 2
    hidden = ("stage", "position", "reached_before", "entered_at", "left_at", "moved_by")
    for visit in sorted(seen, key=lambda v: v.id):
        stored = next(v for v in whole if v.id == visit.id)
        assert all(getattr(stored, f) is not None for f in ("stage", "position", "pipeline_id"))
        assert [getattr(visit, f) for f in (*hidden, "pipeline_id")] == [None] * 7
        assert (visit.deal_id, visit.owner_id, visit.opened_at) == (
            deal.id,
            people.sam.id,
            stored.opened_at,
        )


def test_a_condition_over_related_records_keeps_its_own_condition_and_field_checks(
    connect_crm: Any,
) -> None:
    crm = connect_crm(
        policy=DEFAULT_POLICY.extend(
            {"fields": [{"resource": "contact", "field": "source", "hidden": True,
                         "allowed": ["admin"]}]}
        )
    )  # fmt: skip
    people = staff(crm, sam="sales", mia="marketing")
    with _system(crm) as s:
        acme = s.customers.create("Acme AG")
        beta = s.customers.create("Beta AG")
        sale = _sale(s, people.sam, "Gamma AG")
        s.contacts.create("Carla Cto", customer_id=acme.id, title="CTO", source="fair")
        s.contacts.create("Ivan Intern", customer_id=beta.id, title="Intern")
    with_cto = Related("contact", "customer_id", "count", low=1, where=Eq("title", "CTO"))
    by_source = Related("contact", "customer_id", "count", low=1, where=Eq("source", "fair"))
    with _as(crm, people.sam) as s:
        assert [c.id for c in s.read(Customer).find(with_cto)] == [acme.id]
        with pytest.raises(PermissionDenied):
            s.read(Customer).find(by_source)  # would tell where the hidden sources say
    # Marketing reads no contracts: a plain read refuses a condition on them, a quiet one
    # (as segments use) sees none of them.
    with_contract = Related("contract", "customer_id", "count", low=1)
    with _as(crm, people.mia) as s:
        with pytest.raises(PermissionDenied):
            s.read(Customer).find(with_contract)
        assert s.read(Customer, quiet=True).find(with_contract) == []
    with _as(crm, people.sam) as s:
        assert [c.id for c in s.read(Customer, quiet=True).find(with_contract)] == [
            sale.customer_id
        ]
