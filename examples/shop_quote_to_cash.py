"""Quote to cash for a shop: catalogue by SKU, a quote in EUR billed in USD, a renewal.

The shop's catalogue is kept in step by SKU (run it again: nothing changes).
Sales quotes a monthly subscription in EUR from the price list; the customer
pays in USD, so the contract converts at the rate finance entered and says
which. Finance records the first payment; near the end of the term the owner
is reminded and renews at a new price.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pycrm
from pycrm import Money, signals
from pycrm.testing import FakeClock

#: The shop's product export: SKU, name, unit, what a unit costs the shop, list price.
SHOP_EXPORT = [
    ("SEAT-PRO", "Pro seat", "seat", "4.00", "25.00"),
    ("SEAT-VIEW", "Viewer seat", "seat", "0.50", "5.00"),
    ("SUP-PRIO", "Priority support", "month", "30.00", "120.00"),
]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # A clock we control, to walk through a year in a few lines.
        clock = FakeClock(datetime(2026, 1, 12, 9, tzinfo=UTC))
        crm = pycrm.connect(f"sqlite:///{Path(tmp) / 'shop.db'}", currency="EUR", clock=clock)
        try:
            run(crm, clock)
        finally:
            crm.close()


def run(crm: pycrm.CRM, clock: FakeClock) -> None:
    heard: list[str] = []
    for name in ("quote_sent", "quote_accepted", "contract_renewal_due", "contract_renewed"):
        signals.signal_for(name).connect(lambda crm, event: heard.append(event.name), weak=False)

    with crm.session(actor=crm.system_actor) as s:
        sam = s.org.create_user(name="Sam", email="sam@example.com", department="sales")
        fin = s.org.create_user(name="Fin", email="fin@example.com", department="finance")
        customer = s.customers.create("Globex Inc", owner_id=sam.id)
        deal = s.deals.create(
            "Globex: team plan", customer_id=customer.id, amount=Money.of("1", "EUR"),
            owner_id=sam.id,
        )  # fmt: skip
        s.settings.set("tax_rates", {"standard": "19"})
        prices = s.price_lists.create("Shop EUR", "EUR")
        for _ in range(2):  # the nightly sync, twice: the second run changes nothing
            for sku, name, unit, cost, price in SHOP_EXPORT:
                product = s.products.upsert(
                    sku, name=name, unit=unit, cost=Money.of(cost, "EUR"), external_id=sku
                )
                s.price_lists.set_price(prices.id, product.id, Money.of(price, "EUR"))
        catalogue = {p.sku: p.id for p in s.products.list()}
        print("catalogue:", sorted(catalogue))

    with crm.session(actor=fin.id) as s:
        s.rates.set("EUR", "USD", "1.0850", on=date(2026, 1, 1))

    with crm.session(actor=sam.id) as s:
        quote = s.quotes.draft(
            deal.id,
            billing_period="monthly",
            lines=[
                {"product_id": catalogue["SEAT-PRO"], "quantity": 10},
                {"product_id": catalogue["SEAT-VIEW"], "quantity": 25, "discount_percent": 10},
                {"product_id": catalogue["SUP-PRIO"]},
            ],
        )
        print(f"quote per month: net {quote.subtotal}, total {quote.total}")
        s.quotes.send(quote.id)  # 10 % is within the policy: no approval needed
        accepted = s.quotes.accept(quote.id, bill_in="USD", start=date(2026, 2, 1))
        contract = s.contracts.get(accepted.contract_id)
        print(
            f"contract: {contract.recurring} a month from {contract.start} to {contract.end},"
            f" at {contract.exchange_rate} USD per EUR of {contract.rate_date}"
        )
        s.contracts.submit(contract.id)
        s.contracts.sign(contract.id)

    with crm.session(actor=fin.id) as s:
        bills = s.receivables.list(contract_id=contract.id)
        s.receivables.record_payment(bills[0].id, bills[0].amount, reference="WIRE-1001")
        paid = s.receivables.get(bills[0].id)
        print(f"receivables: {len(bills)} of {bills[0].amount}; first {paid.status.value}")

    clock.advance(timedelta(days=360))  # 7 January 2027: within the 30 days' notice
    with crm.session(actor=sam.id) as s:
        s.contracts.scan_renewals()
        [task] = s.tasks.list(assignee_id=sam.id, kind="renewal")
        print("Sam's task:", task.title)
        recurring = contract.recurring
        assert recurring is not None
        new_price = Money.of(recurring.amount * 103 / 100, recurring.currency)  # +3 %
        renewed = s.contracts.renew(contract.id, recurring=new_price)
        print(f"renewed: {renewed.recurring} a month from {renewed.start} to {renewed.end}")
        view = s.customers.view(customer.id)

    print("signals:", " → ".join(heard))
    print("MRR:", {k: str(v) for k, v in view.mrr.items()})
    # 10 × 25 + 25 × 5 less 10 % + 120 = 482.50 EUR net, 574.18 EUR with 19 % tax
    # (taxed per line), converted at 1.085: 622.99 USD a month.
    assert quote.subtotal == Money.of("482.50", "EUR")
    assert contract.recurring == Money.of("622.99", "USD")
    assert contract.amount == Money.of("7475.88", "USD")  # 12 months
    assert [b.amount for b in bills] == [Money.of("622.99", "USD")] * 12
    assert (renewed.start, renewed.end) == (date(2027, 2, 1), date(2028, 1, 31))
    assert view.mrr == {"USD": Money.of("641.68", "USD")}  # only the renewed term runs on
    assert heard == ["quote_sent", "quote_accepted", "contract_renewal_due", "contract_renewed"]


if __name__ == "__main__":
    main()
