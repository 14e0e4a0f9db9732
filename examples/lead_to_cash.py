"""Lead to cash in forty lines: each department hears when it is its turn.

Marketing captures a lead; sales converts and wins it; the contract needs
approval because of its discount; finance records the payment and the deal
owner is told. Signals announce every handoff, after each commit.
"""

from __future__ import annotations

from datetime import date

import pycrm
from pycrm import signals


def main() -> None:
    crm = pycrm.connect("memory://", default_region="DE")
    handoffs: list[str] = []
    for name in (
        "lead_captured",
        "deal_won",
        "contract_submitted",
        "contract_signed",
        "payment_received",
    ):
        signals.signal_for(name).connect(lambda crm, event: handoffs.append(event.name), weak=False)

    with crm.session(actor=crm.system_actor) as s:
        mia = s.org.create_user(name="Mia", email="mia@example.com", department="marketing")
        sam = s.org.create_user(name="Sam", email="sam@example.com", department="sales")
        max_ = s.org.create_user(
            name="Max", email="max@example.com", department="sales", roles=["sales_manager"]
        )
        finn = s.org.create_user(name="Finn", email="finn@example.com", department="finance")

    with crm.session(actor=mia.id) as s:
        lead = s.leads.capture("Anna Schmidt", source="webform", email="anna@acme.example",
                               company="Acme GmbH", needs="Packaging line")  # fmt: skip
    with crm.session(actor=max_.id) as s:
        s.leads.assign(lead.id, sam.id)
    with crm.session(actor=sam.id) as s:
        s.leads.mark_contacted(lead.id)
        s.leads.qualify(lead.id)
        customer, _, deal = s.leads.convert(lead.id, amount=pycrm.Money.of("90000", "EUR"))
        s.deals.win(deal.id)
        contract = s.contracts.draft(deal.id, discount_percent=12, instalments=3,
                                     first_due=date(2026, 3, 1))  # fmt: skip
        contract = s.contracts.submit(contract.id)
        print("approvals needed:", [step.role for step in contract.approvals])
    with crm.session(actor=max_.id) as s:
        s.contracts.approve(contract.id, comment="12% is fine for this volume")
    with crm.session(actor=sam.id) as s:
        s.contracts.sign(contract.id)
    with crm.session(actor=finn.id) as s:
        first = s.receivables.list(contract_id=contract.id)[0]
        s.receivables.record_payment(first.id, first.amount, reference="BANK-42")
    with crm.session(actor=sam.id) as s:
        told = [t.title for t in s.tasks.list(assignee_id=sam.id, kind="payment_received")]
        view = s.customers.view(customer.id)

    print("handoffs:", " → ".join(handoffs))
    print("Sam was told:", told)
    print("outstanding:", {k: str(v) for k, v in view.outstanding.items()})
    assert handoffs == [
        "lead_captured",
        "deal_won",
        "contract_submitted",
        "contract_signed",
        "payment_received",
    ]
    # 90,000 less the 12% discount is 79,200, in three instalments of 26,400; one is paid.
    assert view.outstanding["EUR"] == pycrm.Money.of("52800", "EUR")


if __name__ == "__main__":
    main()
