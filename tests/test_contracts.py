"""Contract tests for ``session.contracts`` (DESIGN §4 Contracts), on every backend.

Drafted from a won deal; approval chain by rule (discount over a threshold →
sales manager, non-standard terms → legal); draft → pending_approval →
approved | rejected → signed → active → completed | terminated; a payment
schedule that sums exactly to the amount. Every refused call leaves the
store as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

import pycrm
from pycrm.domain.contracts import ApprovalPolicy, Contract, ContractStatus, Decision
from pycrm.domain.deals import Deal
from pycrm.domain.receivables import ReceivableStatus
from pycrm.domain.tasks import TaskPriority
from pycrm.errors import InvalidTransition, NotFound, PermissionDenied, ValidationError
from pycrm.session import Session
from pycrm.testing import FakeClock
from support import eur, outbox_names, refused

ConnectFn = Callable[..., pycrm.CRM]
Call = Callable[[Session], object]

# -- helpers -------------------------------------------------------------------


def setup(crm: pycrm.CRM) -> SimpleNamespace:
    """A rep, a sales manager, a lawyer, a finance clerk and a customer."""
    with crm.session(actor=crm.system_actor) as s:
        return SimpleNamespace(
            sam=s.org.create_user(name="Sam", email="sam@corp.example", department="sales"),
            max=s.org.create_user(
                name="Max", email="max@corp.example", department="sales", roles=["sales_manager"]
            ),
            lea=s.org.create_user(
                name="Lea", email="lea@corp.example", department="legal", roles=["legal"]
            ),
            fin=s.org.create_user(name="Fin", email="fin@corp.example", department="finance"),
            acme=s.customers.create("Acme GmbH"),
        )


def deal(s: Session, p: SimpleNamespace, amount: str = "1200", *, won: bool = True) -> Deal:
    opened = s.deals.create("Line", customer_id=p.acme.id, amount=eur(amount), owner_id=p.sam.id)
    return s.deals.win(opened.id) if won else opened


# -- drafting --------------------------------------------------------------------


def test_draft_from_a_won_deal_takes_its_amount_customer_and_owner_and_splits_the_schedule(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        won = deal(s, p, "100")
        draft = s.contracts.draft(won.id, instalments=3, first_due=date(2026, 1, 31))
        today = s.contracts.draft(won.id, title="Spares", amount=eur("10"), every_months=2)
        started = s.contracts.draft(
            won.id,
            amount=eur("0.05"),
            instalments=2,
            every_months=6,
            start=date(2026, 4, 1),
            end=date(2027, 3, 31),
        )
    assert (draft.status, draft.title, draft.customer_id, draft.deal_id, draft.owner_id) == (
        ContractStatus.DRAFT,
        "Line",
        p.acme.id,
        won.id,
        p.sam.id,
    )
    assert (draft.amount, draft.discount_percent, draft.standard_terms) == (
        eur("100"),
        Decimal(0),
        True,
    )
    assert [(i.number, i.due, i.amount) for i in draft.schedule] == [
        (1, date(2026, 1, 31), eur("33.34")),
        (2, date(2026, 2, 28), eur("33.33")),
        (3, date(2026, 3, 31), eur("33.33")),
    ]
    assert [(i.due, i.amount) for i in today.schedule] == [(fake_clock.now().date(), eur("10"))]
    assert today.title == "Spares"
    assert [(i.due, i.amount) for i in started.schedule] == [
        (date(2026, 4, 1), eur("0.03")),
        (date(2026, 10, 1), eur("0.02")),
    ]
    with crm.session(actor=p.sam.id) as s:
        assert s.contracts.get(draft.id) == draft


def test_draft_is_refused_for_a_deal_that_is_not_won_and_for_bad_terms(crm: pycrm.CRM) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        open_deal = deal(s, p, won=False)
        lost = s.deals.lose(deal(s, p, won=False).id, "price")
        won = deal(s, p)
    errors = refused(
        crm,
        p.sam.id,
        (ValidationError, lambda s: s.contracts.draft(open_deal.id)),
        (ValidationError, lambda s: s.contracts.draft(lost.id)),
        (ValidationError, lambda s: s.contracts.draft("no-such-deal")),
        (ValidationError, lambda s: s.contracts.draft(won.id, discount_percent=101)),
        (ValidationError, lambda s: s.contracts.draft(won.id, discount_percent=12.5)),
        (ValidationError, lambda s: s.contracts.draft(won.id, discount_percent="1.234")),
        (ValidationError, lambda s: s.contracts.draft(won.id, amount=eur("0"))),
        (ValidationError, lambda s: s.contracts.draft(won.id, instalments=0)),
        (ValidationError, lambda s: s.contracts.draft(won.id, instalments=2.0)),
        (
            ValidationError,
            lambda s: s.contracts.draft(won.id, start=date(2026, 5, 1), end=date(2026, 4, 1)),
        ),
    )
    assert [getattr(e, "field", None) for e in errors] == [
        "deal_id",
        "deal_id",
        "deal_id",
        "discount_percent",
        "discount_percent",
        "discount_percent",
        "amount",
        "instalments",
        "instalments",
        "end",
    ]


def test_an_explicit_schedule_is_kept_only_when_ordered_positive_and_summing_to_the_amount(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        won = deal(s, p, "1000")
        kept = s.contracts.draft(
            won.id,
            schedule=[(date(2026, 2, 1), eur("100")), (date(2026, 8, 1), eur("900"))],
        )
    assert [(i.number, i.due, i.amount) for i in kept.schedule] == [
        (1, date(2026, 2, 1), eur("100")),
        (2, date(2026, 8, 1), eur("900")),
    ]
    jan, feb = date(2026, 1, 1), date(2026, 2, 1)
    bad: list[Any] = [
        [(jan, eur("500")), (feb, eur("499.99"))],  # sums to 999.99
        [(jan, eur("500")), (feb, eur("500.01"))],  # sums to 1000.01
        [(feb, eur("500")), (jan, eur("500"))],  # out of order
        [(jan, eur("1000")), (feb, eur("0"))],  # not positive
        [(jan, eur("1500")), (feb, eur("-500"))],  # negative
        [(jan, pycrm.Money.of("1000", "USD"))],  # wrong currency
        [],
        [(jan,)],
        [("2026-01-01", eur("1000"))],
    ]
    refused(
        crm,
        p.sam.id,
        *[
            (ValidationError, lambda s, plan=plan: s.contracts.draft(won.id, schedule=plan))
            for plan in bad
        ],
    )


# -- approvals ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory"])  # the bug is in the service layer
def test_the_rep_who_drafted_a_contract_needing_no_approval_may_submit_it(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        draft = s.contracts.draft(deal(s, p).id)
    with crm.session(actor=p.sam.id) as s:
        assert s.contracts.submit(draft.id).status is ContractStatus.APPROVED


def test_a_big_discount_and_special_terms_need_a_sales_manager_and_legal_each_on_their_step(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        draft = s.contracts.draft(deal(s, p).id, discount_percent="10.01", standard_terms=False)
        pending = s.contracts.submit(draft.id)
    assert pending.status is ContractStatus.PENDING_APPROVAL
    assert [(a.role, a.reason, a.decision) for a in pending.approvals] == [
        ("sales_manager", "discount 10.01% above 10%", Decision.PENDING),
        ("legal", "non-standard terms", Decision.PENDING),
    ]
    assert outbox_names(crm)[-1] == "contract_submitted"
    with crm.session(actor=p.fin.id) as s:
        assert [c.id for c in s.contracts.awaiting()] == [draft.id]
        assert [c.id for c in s.contracts.awaiting("legal")] == [draft.id]
        assert s.contracts.awaiting("finance_manager") == []
    for outsider in (p.sam, p.fin):
        refused(crm, outsider.id, (PermissionDenied, lambda s: s.contracts.approve(draft.id)))
    fake_clock.advance(hours=2)
    with crm.session(actor=p.lea.id) as s:
        half = s.contracts.approve(draft.id, comment="terms fine")
        assert s.contracts.awaiting("legal") == []
        assert [c.id for c in s.contracts.awaiting("sales_manager")] == [draft.id]
    assert half.status is ContractStatus.PENDING_APPROVAL
    assert [(a.decision, a.decided_by, a.decided_at, a.comment) for a in half.approvals] == [
        (Decision.PENDING, None, None, None),
        (Decision.APPROVED, p.lea.id, fake_clock.now(), "terms fine"),
    ]
    refused(crm, p.lea.id, (PermissionDenied, lambda s: s.contracts.approve(draft.id)))
    with crm.session(actor=p.max.id) as s:
        done = s.contracts.approve(draft.id)
    assert done.status is ContractStatus.APPROVED
    assert [a.decided_by for a in done.approvals] == [p.max.id, p.lea.id]
    assert outbox_names(crm)[-1] == "contract_approved"


def test_the_approval_policy_is_a_setting_and_a_contract_needing_no_step_is_approved_at_once(
    connect_crm: ConnectFn,
) -> None:
    policy = ApprovalPolicy(discount_threshold=Decimal(20), amount_threshold=eur("1000"))
    crm = connect_crm(approval_policy=policy)
    p = setup(crm)
    with crm.session(actor=crm.system_actor) as s:
        won = deal(s, p, "1000")
        big = s.contracts.submit(
            s.contracts.draft(won.id, amount=eur("1000"), discount_percent=15).id
        )
        assert outbox_names(crm)[-1] != "contract_submitted"
    assert outbox_names(crm)[-1] == "contract_submitted"
    with crm.session(actor=crm.system_actor) as s:
        small = s.contracts.submit(
            s.contracts.draft(won.id, amount=eur("999.99"), discount_percent=20).id
        )
        assert [c.id for c in s.contracts.awaiting()] == [big.id]
    assert [(a.role, a.reason) for a in big.approvals] == [
        ("finance_manager", "amount 1,000.00 EUR ≥ 1,000.00 EUR")
    ]
    assert (small.status, small.approvals) == (ContractStatus.APPROVED, ())
    assert outbox_names(crm)[-1] == "contract_approved"


def test_a_rejected_contract_is_revised_back_to_draft_and_resubmitted(crm: pycrm.CRM) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        draft = s.contracts.draft(deal(s, p).id, discount_percent=25, standard_terms=False)
        s.contracts.submit(draft.id)
    refused(
        crm,
        p.max.id,
        (ValidationError, lambda s: s.contracts.reject(draft.id, comment="")),
    )
    with crm.session(actor=p.max.id) as s:
        rejected = s.contracts.reject(draft.id, comment="25 % is too much")
    assert rejected.status is ContractStatus.REJECTED
    assert [(a.role, a.decision, a.comment) for a in rejected.approvals] == [
        ("sales_manager", Decision.REJECTED, "25 % is too much"),
        ("legal", Decision.PENDING, None),
    ]
    assert outbox_names(crm)[-1] == "contract_rejected"
    refused(
        crm,
        p.sam.id,
        (InvalidTransition, lambda s: s.contracts.sign(draft.id)),
        (InvalidTransition, lambda s: s.contracts.submit(draft.id)),
        (ValidationError, lambda s: s.contracts.revise(draft.id, amount=eur("1"))),
        (ValidationError, lambda s: s.contracts.revise(draft.id, discount_percent=-1)),
    )
    with crm.session(actor=p.sam.id) as s:
        revised = s.contracts.revise(
            draft.id, discount_percent=5, standard_terms=True, terms="standard"
        )
        assert (revised.status, revised.approvals) == (ContractStatus.DRAFT, ())
        assert (revised.discount_percent, revised.standard_terms, revised.terms) == (
            Decimal(5),
            True,
            "standard",
        )
    with crm.session(actor=crm.system_actor) as s:
        assert s.contracts.submit(draft.id).status is ContractStatus.APPROVED


# -- status moves ---------------------------------------------------------------------

ALL = set(ContractStatus)
_C = ContractStatus
#: What each call would move a contract to, and the statuses it may start from.
CALLS: dict[str, tuple[set[ContractStatus], Callable[[Session, str], object]]] = {
    "submit": ({_C.DRAFT}, lambda s, i: s.contracts.submit(i)),
    "approve": ({_C.PENDING_APPROVAL}, lambda s, i: s.contracts.approve(i)),
    "reject": ({_C.PENDING_APPROVAL}, lambda s, i: s.contracts.reject(i, comment="no")),
    "revise": ({_C.REJECTED, _C.DRAFT}, lambda s, i: s.contracts.revise(i)),
    "recall": ({_C.PENDING_APPROVAL, _C.APPROVED}, lambda s, i: s.contracts.recall(i)),
    "sign": ({_C.APPROVED}, lambda s, i: s.contracts.sign(i)),
    "activate": ({_C.SIGNED}, lambda s, i: s.contracts.activate(i)),
    "complete": ({_C.ACTIVE}, lambda s, i: s.contracts.complete(i)),
    "terminate": ({_C.SIGNED, _C.ACTIVE}, lambda s, i: s.contracts.terminate(i, "breach")),
}


def contracts_in_every_status(crm: pycrm.CRM, p: SimpleNamespace) -> dict[ContractStatus, str]:
    with crm.session(actor=crm.system_actor) as s:
        won = deal(s, p)

        def new(needs_approval: bool = False) -> Contract:
            return s.contracts.draft(won.id, discount_percent=50 if needs_approval else 0)

        ids = {_C.DRAFT: new().id}
        ids[_C.PENDING_APPROVAL] = s.contracts.submit(new(True).id).id
        ids[_C.REJECTED] = s.contracts.reject(s.contracts.submit(new(True).id).id, comment="no").id
        ids[_C.APPROVED] = s.contracts.submit(new().id).id
        ids[_C.SIGNED] = s.contracts.sign(s.contracts.submit(new().id).id).id
        ids[_C.ACTIVE] = s.contracts.activate(
            s.contracts.sign(s.contracts.submit(new().id).id).id
        ).id
        active = s.contracts.activate(s.contracts.sign(s.contracts.submit(new().id).id).id)
        ids[_C.COMPLETED] = s.contracts.complete(active.id).id
        ids[_C.TERMINATED] = s.contracts.terminate(
            s.contracts.sign(s.contracts.submit(new().id).id).id, "breach"
        ).id
        assert {st: s.contracts.get(i).status for st, i in ids.items()} == {st: st for st in ids}
    return ids


def test_every_undocumented_status_move_is_an_invalid_transition_that_changes_nothing(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    ids = contracts_in_every_status(crm, p)
    cases: list[tuple[type[Exception], Call]] = []
    for status, contract_id in ids.items():
        for name, (sources, call) in CALLS.items():
            if status in sources or (name, status) == ("approve", _C.DRAFT):
                continue  # allowed, or the known bug below
            cases.append((InvalidTransition, lambda s, c=call, i=contract_id: c(s, i)))
    assert len(cases) == 9 * 8 - 12 - 1
    refused(crm, crm.system_actor, *cases)


@pytest.mark.parametrize("backend", ["memory"])  # the bug is in the service layer
def test_approving_a_draft_is_an_invalid_transition(crm: pycrm.CRM) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        draft = s.contracts.draft(deal(s, p).id, discount_percent=50)
    refused(crm, p.max.id, (InvalidTransition, lambda s: s.contracts.approve(draft.id)))


# -- signing and after ------------------------------------------------------------------


def test_signing_gives_finance_one_receivable_per_instalment_summing_to_the_amount(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        won = deal(s, p, "1000")
        draft = s.contracts.draft(won.id, instalments=3, first_due=date(2026, 3, 15))
    with crm.session(actor=crm.system_actor) as s:
        s.contracts.submit(draft.id)
    refused(
        crm,
        p.sam.id,
        (ValidationError, lambda s: s.contracts.sign(draft.id, signed_at=datetime(2026, 1, 1))),
        (NotFound, lambda s: s.contracts.sign("no-such-contract")),
    )
    signed_at = datetime(2026, 1, 4, 17, 30, tzinfo=UTC)
    with crm.session(actor=p.sam.id) as s:
        signed = s.contracts.sign(draft.id, signed_at=signed_at)
    assert (signed.status, signed.signed_at) == (ContractStatus.SIGNED, signed_at)
    with crm.session(actor=p.fin.id) as s:
        receivables = s.receivables.list(contract_id=draft.id)
    assert [
        (r.instalment, r.due, r.amount, r.paid, r.status, r.owner_id, r.deal_id, r.customer_id)
        for r in receivables
    ] == [
        (1, date(2026, 3, 15), eur("333.34"), eur("0"), ReceivableStatus.OPEN, p.sam.id, won.id, p.acme.id),
        (2, date(2026, 4, 15), eur("333.33"), eur("0"), ReceivableStatus.OPEN, p.sam.id, won.id, p.acme.id),
        (3, date(2026, 5, 15), eur("333.33"), eur("0"), ReceivableStatus.OPEN, p.sam.id, won.id, p.acme.id),
    ]  # fmt: skip
    total = sum((r.amount.amount for r in receivables), Decimal(0))
    assert pycrm.Money.of(total, "EUR") == signed.amount
    assert outbox_names(crm)[-4:] == ["contract_signed"] + ["receivable_created"] * 3


def test_a_signed_contract_is_activated_and_completed_or_terminated_with_a_reason(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = setup(crm)
    with crm.session(actor=crm.system_actor) as s:
        won = deal(s, p)
        one = s.contracts.sign(s.contracts.submit(s.contracts.draft(won.id).id).id)
        fake_clock.advance(minutes=1)
        two = s.contracts.sign(s.contracts.submit(s.contracts.draft(won.id).id).id)
    refused(crm, p.sam.id, (ValidationError, lambda s: s.contracts.terminate(two.id, "")))
    fake_clock.advance(days=30)
    with crm.session(actor=p.sam.id) as s:
        active = s.contracts.activate(one.id)
        completed = s.contracts.complete(one.id)
        ended = s.contracts.terminate(two.id, "customer insolvent")
        assert [c.id for c in s.contracts.list(status="completed")] == [one.id]
        assert [c.id for c in s.contracts.list(customer_id=p.acme.id)] == [two.id, one.id]
        assert s.contracts.list(status=ContractStatus.ACTIVE) == []
        with pytest.raises(ValidationError):
            s.contracts.list(status="void")
    assert active.status is ContractStatus.ACTIVE
    assert (completed.status, completed.ended_at, completed.end_reason) == (
        ContractStatus.COMPLETED,
        fake_clock.now(),
        None,
    )
    assert (ended.status, ended.ended_at, ended.end_reason) == (
        ContractStatus.TERMINATED,
        fake_clock.now(),
        "customer insolvent",
    )


# -- the discount, recall and delegation -----------------------------------------------


def test_the_discount_is_applied_to_the_list_price_in_minor_units(crm: pycrm.CRM) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        won = deal(s, p, "1000.05")
        off_deal = s.contracts.draft(won.id, discount_percent=15, instalments=3)
        off_list = s.contracts.draft(won.id, list_amount=eur("2000"), discount_percent="12.5")
        net = s.contracts.draft(won.id, amount=eur("900"), discount_percent=10)
        plain = s.contracts.draft(won.id, list_amount=eur("1500"))
        yen_deal = s.deals.create(
            "Yen", customer_id=p.acme.id, amount=pycrm.Money.of("1", "JPY"), owner_id=p.sam.id
        )
        s.deals.win(yen_deal.id)
        yen = s.contracts.draft(yen_deal.id, discount_percent="12.5")
    # 15 % of 1,000.05 is 150.0075: 150.01 off (half-even to the cent), 850.04 to pay
    assert (off_deal.list_amount, off_deal.amount) == (eur("1000.05"), eur("850.04"))
    assert [i.amount for i in off_deal.schedule] == [eur("283.35"), eur("283.35"), eur("283.34")]
    assert (off_list.list_amount, off_list.amount) == (eur("2000"), eur("1750"))
    assert (net.list_amount, net.amount, net.discount_percent) == (None, eur("900"), Decimal(10))
    assert (plain.list_amount, plain.amount) == (eur("1500"), eur("1000.05"))  # no discount
    assert yen.amount == pycrm.Money.of("1", "JPY")  # 12.5 % of 1 yen rounds to 0 yen off
    refused(
        crm,
        p.sam.id,
        (
            ValidationError,
            lambda s: s.contracts.draft(
                won.id, list_amount=eur("2000"), amount=eur("1800"), discount_percent=15
            ),
        ),
        (ValidationError, lambda s: s.contracts.draft(won.id, discount_percent=100)),
        (
            ValidationError,
            lambda s: s.contracts.draft(
                won.id, list_amount=pycrm.Money.of("5", "USD"), amount=eur("5")
            ),
        ),
    )


def test_revising_the_discount_reprices_the_contract_and_its_schedule(crm: pycrm.CRM) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        won = deal(s, p, "1000")
        listed = s.contracts.draft(won.id, discount_percent=20, instalments=4)
        unlisted = s.contracts.draft(won.id, instalments=2)
        by_hand = s.contracts.draft(
            won.id,
            schedule=[(date(2026, 2, 1), eur("100")), (date(2026, 3, 1), eur("900"))],
        )
        listed = s.contracts.revise(listed.id, discount_percent=10)
        unlisted = s.contracts.revise(unlisted.id, discount_percent=5)
        by_hand = s.contracts.revise(by_hand.id, discount_percent="33.33")
    assert (listed.list_amount, listed.amount) == (eur("1000"), eur("900"))
    assert [i.amount for i in listed.schedule] == [eur("225")] * 4
    assert (unlisted.list_amount, unlisted.amount) == (eur("1000"), eur("950"))
    assert [i.amount for i in unlisted.schedule] == [eur("475"), eur("475")]
    assert by_hand.amount == eur("666.70")
    assert [i.amount for i in by_hand.schedule] == [eur("66.67"), eur("600.03")]  # 1 : 9 kept
    assert [i.due for i in by_hand.schedule] == [date(2026, 2, 1), date(2026, 3, 1)]
    with crm.session(actor=p.sam.id) as s:
        net = s.contracts.draft(won.id, amount=eur("500"), discount_percent=10)
    refused(
        crm,
        p.sam.id,
        (ValidationError, lambda s: s.contracts.revise(net.id, discount_percent=20)),
        (ValidationError, lambda s: s.contracts.revise(listed.id, discount_percent=100)),
    )


def test_the_owner_recalls_a_submitted_contract_to_draft(crm: pycrm.CRM) -> None:
    p = setup(crm)
    with crm.session(actor=crm.system_actor) as s:
        kim = s.org.create_user(name="Kim", email="kim@corp.example", department="sales")
    with crm.session(actor=p.sam.id) as s:
        won = deal(s, p)
        pending = s.contracts.submit(
            s.contracts.draft(won.id, discount_percent=50, standard_terms=False).id
        )
        approved = s.contracts.submit(s.contracts.draft(won.id).id)
        signed = s.contracts.submit(s.contracts.draft(won.id).id)
        draft = s.contracts.draft(won.id)
    with crm.session(actor=crm.system_actor) as s:
        s.contracts.sign(signed.id)
    with crm.session(actor=p.max.id) as s:
        s.contracts.approve(pending.id, comment="ok")  # the manager's step is decided...
    refused(
        crm,
        kim.id,  # another rep, who reads the contract (sales reads all contracts)
        (PermissionDenied, lambda s: s.contracts.recall(pending.id)),
    )
    refused(
        crm,
        p.max.id,
        (PermissionDenied, lambda s: s.contracts.recall(pending.id)),  # the approver neither
    )
    refused(
        crm,
        p.sam.id,
        (InvalidTransition, lambda s: s.contracts.recall(draft.id)),
        (InvalidTransition, lambda s: s.contracts.recall(signed.id)),
        (pycrm.errors.ConcurrencyError, lambda s: s.contracts.recall(approved.id, version=1)),
    )
    with crm.session(actor=p.sam.id) as s:
        back = s.contracts.recall(approved.id)
        changed = s.contracts.recall(pending.id)
        revised = s.contracts.revise(changed.id, discount_percent=5)
        resubmitted = s.contracts.submit(revised.id)
    assert (back.status, back.approvals) == (ContractStatus.DRAFT, ())
    assert (changed.status, changed.approvals) == (ContractStatus.DRAFT, ())
    assert resubmitted.status is ContractStatus.PENDING_APPROVAL
    assert [a.role for a in resubmitted.approvals] == ["legal"]  # 5 %: no manager any more
    assert "contract_recalled" in outbox_names(crm)
    with crm.session(actor=p.sam.id) as s:
        history = [(c.old, c.new) for c in s.contracts.history(pending.id, "status")]
    assert ("pending_approval", "draft") in history


def test_an_approver_delegates_a_pending_step_to_a_colleague(crm: pycrm.CRM) -> None:
    p = setup(crm)
    with crm.session(actor=crm.system_actor) as s:
        deputy = s.org.create_user(name="Dee", email="dee@corp.example", department="sales")
        gone = s.org.create_user(name="Gus", email="gus@corp.example", department="sales")
        s.org.deactivate_user(gone.id)
    with crm.session(actor=p.sam.id) as s:
        won = deal(s, p)
        contract = s.contracts.submit(
            s.contracts.draft(won.id, discount_percent=50, standard_terms=False).id
        )
    refused(
        crm,
        deputy.id,  # not an approver (yet)
        (PermissionDenied, lambda s: s.contracts.approve(contract.id)),
        (PermissionDenied, lambda s: s.contracts.delegate(contract.id, p.sam.id)),
    )
    refused(
        crm,
        p.max.id,
        (ValidationError, lambda s: s.contracts.delegate(contract.id, "nobody")),
        (ValidationError, lambda s: s.contracts.delegate(contract.id, gone.id)),
        (ValidationError, lambda s: s.contracts.delegate(contract.id, p.max.id)),
        (ValidationError, lambda s: s.contracts.delegate(contract.id, deputy.id, role="cfo")),
        (PermissionDenied, lambda s: s.contracts.delegate(contract.id, deputy.id, role="legal")),
    )
    with crm.session(actor=p.max.id) as s:
        handed = s.contracts.delegate(contract.id, deputy.id)
    step = handed.approvals[0]
    assert (step.role, step.delegated_to, step.delegated_by) == (
        "sales_manager",
        deputy.id,
        p.max.id,
    )
    assert step.decision is Decision.PENDING
    assert outbox_names(crm)[-2:] == ["approval_delegated", "task_created"]
    with crm.session(actor=deputy.id) as s:
        (task,) = s.tasks.list(assignee_id=deputy.id)
        # the deputy decides on the manager's authority; legal's step stays legal's
        decided = s.contracts.approve(contract.id, comment="fine by Max")
        with pytest.raises(PermissionDenied):
            s.contracts.approve(contract.id)
    assert (task.kind, task.related_type, task.related_id) == ("approval", "contract", contract.id)
    assert [(a.decision, a.decided_by) for a in decided.approvals] == [
        (Decision.APPROVED, deputy.id),
        (Decision.PENDING, None),
    ]
    with crm.session(actor=p.lea.id) as s:
        assert s.contracts.approve(contract.id).status is ContractStatus.APPROVED


def test_a_delegate_may_also_reject(crm: pycrm.CRM) -> None:
    p = setup(crm)
    with crm.session(actor=crm.system_actor) as s:
        deputy = s.org.create_user(name="Dee", email="dee@corp.example", department="service")
    with crm.session(actor=p.sam.id) as s:
        contract = s.contracts.submit(
            s.contracts.draft(deal(s, p).id, standard_terms=False, terms="net 90").id
        )
    with crm.session(actor=p.lea.id) as s:
        s.contracts.delegate(contract.id, deputy.id)
    with crm.session(actor=deputy.id) as s:
        rejected = s.contracts.reject(contract.id, comment="net 90 is too long")
    assert rejected.status is ContractStatus.REJECTED
    assert rejected.approvals[0].decided_by == deputy.id


def test_each_delegate_gets_one_task_for_the_step_handed_to_them_at_the_same_instant(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    # The clock stands still: both steps are handed on at the same instant, so
    # the step of the second delegation is not the one delegated last.
    p = setup(crm)
    with crm.session(actor=crm.system_actor) as s:
        dee = s.org.create_user(name="Dee", email="dee@corp.example", department="sales")
        gus = s.org.create_user(name="Gus", email="gus@corp.example", department="legal")
    with crm.session(actor=p.sam.id) as s:
        draft = s.contracts.draft(
            deal(s, p).id, title="Spares 2026", discount_percent=50, standard_terms=False
        )
        contract = s.contracts.submit(draft.id)
    with crm.session(actor=p.max.id) as s:
        s.contracts.delegate(contract.id, dee.id)
    with crm.session(actor=p.lea.id) as s:
        s.contracts.delegate(contract.id, gus.id)
    with crm.session(actor=crm.system_actor) as s:
        tasks = s.tasks.list(kind="approval")
    assert sorted(
        (t.assignee_id, t.title, t.due_at, t.priority, t.related_id, t.notes) for t in tasks
    ) == sorted(
        [
            (dee.id, "Decide the sales_manager approval of contract Spares 2026",
             fake_clock.now(), TaskPriority.HIGH, contract.id, "discount 50% above 10%"),
            (gus.id, "Decide the legal approval of contract Spares 2026",
             fake_clock.now(), TaskPriority.HIGH, contract.id, "non-standard terms"),
        ]
    )  # fmt: skip
