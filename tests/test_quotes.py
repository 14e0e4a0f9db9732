"""Quotes (``s.quotes``) on memory, SQLite and PostgreSQL, and the rounding of their lines.

A quote is drafted from a deal in the deal's currency, priced line by line
from the price lists (quantity breaks included) or by hand, taxed by the
``tax_rates`` setting, and summed per line, then totals, in the currency's
minor units (half to even). draft → (pending_approval → approved →) sent →
accepted | rejected | expired; a revision supersedes the version before it.
Accepting wins the deal and drafts a contract holding the quote's lines.
Every refused call leaves the store as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pycrm
from conftest import ConnectFn
from pycrm import Money, signals
from pycrm.domain.contracts import ApprovalStep, Contract, ContractStatus, Decision, build_schedule
from pycrm.domain.deals import DealStatus
from pycrm.domain.events import Event
from pycrm.domain.lines import QuoteLine, make_line, totals
from pycrm.domain.money import minor_units
from pycrm.domain.permissions import DEFAULT_POLICY
from pycrm.domain.quotes import Quote, QuoteStatus
from pycrm.errors import (
    ConcurrencyError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from pycrm.rules import RuleContext, hookimpl
from pycrm.session import Session
from pycrm.testing import FakeClock
from support import eur, outbox_names, refused, staff

Call = Callable[[Session], object]
_Q = QuoteStatus

# -- helpers -------------------------------------------------------------------------


def setup(crm: pycrm.CRM) -> SimpleNamespace:
    """Staff, tax rates, a customer, a catalogue priced in EUR and an open deal of Sam's.

    Sam and Kim sell; Max manages sales; Fin is finance, Lea legal. The press
    costs 700 and lists at 1,000 (900 from 10 pieces); the manual is taxed at
    the reduced rate; the training day's tax category has no rate; the kit
    costs 85 and lists at 100 (a margin of exactly 15 %); the old press is no
    longer offered.
    """
    people = staff(
        crm,
        sam="sales",
        kim="sales",
        max=("sales", ["sales_manager"]),
        fin="finance",
        lea=("legal", ["legal"]),
    )
    with crm.session(actor=crm.system_actor) as s:
        s.settings.set("tax_rates", {"standard": "19", "reduced": "7"})
        acme = s.customers.create("Acme GmbH")
        press = s.products.create("PR-100", "Press 100t", cost=eur("700"))
        manual = s.products.create(
            "DOC-1", "Operating manual", tax_category="reduced", cost=eur("10")
        )
        course = s.products.create("TR-1", "Training day", unit="day", tax_category="exempt")
        kit = s.products.create("KIT-1", "Tool kit", cost=eur("85"))
        old = s.products.create("PR-050", "Press 50t", cost=eur("400"))
        standard = s.price_lists.create("Standard EUR", "EUR")
        for product, price, breaks in (
            (press, "1000", 1),
            (press, "900", 10),
            (manual, "40", 1),
            (course, "1200", 1),
            (kit, "100", 1),
            (old, "500", 1),
        ):
            s.price_lists.set_price(standard.id, product.id, eur(price), min_quantity=breaks)
        s.products.deactivate(old.id)
        deal = s.deals.create(
            "Presses for Acme", customer_id=acme.id, amount=eur("10000"), owner_id=people.sam.id
        )
    return SimpleNamespace(
        **vars(people),
        acme=acme,
        press=press,
        manual=manual,
        course=course,
        kit=kit,
        old=old,
        standard=standard,
        deal=deal,
    )


def presses(p: SimpleNamespace, quantity: int = 3, **more: Any) -> dict[str, Any]:
    """A line of presses, as ``draft(lines=…)`` takes it."""
    return {"product_id": p.press.id, "quantity": quantity, **more}


def free(description: str, price: str, **more: Any) -> dict[str, Any]:
    """A free-text line in EUR."""
    return {"description": description, "unit_price": eur(price), **more}


def money(amount: str, currency: str) -> Money:
    return Money.of(amount, currency)


def summary(quote: Quote) -> tuple[Money, Money, Money, Money]:
    return (quote.list_total, quote.subtotal, quote.tax, quote.total)


# -- drafting ---------------------------------------------------------------------------


def test_a_draft_takes_the_deals_currency_customer_owner_and_name_and_lasts_30_days(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.draft(p.deal.id)
        yen_deal = s.deals.create(
            "Yen deal", customer_id=p.acme.id, amount=money("5000", "JPY"), owner_id=p.sam.id
        )
        fake_clock.advance(minutes=1)
        yen = s.quotes.draft(
            yen_deal.id, title="Spares", valid_until=date(2026, 3, 31), notes="Net 30 days"
        )
        fake_clock.advance(minutes=1)
        dollars = s.quotes.draft(
            p.deal.id,
            currency="USD",
            lines=[{"description": "Setup", "unit_price": money("600", "USD")}],
        )
    assert (quote.status, quote.title, quote.deal_id, quote.customer_id, quote.owner_id) == (
        _Q.DRAFT,
        "Presses for Acme",
        p.deal.id,
        p.acme.id,
        p.sam.id,
    )
    assert quote.currency == "EUR"
    assert quote.valid_until == date(2026, 1, 5) + timedelta(days=30) == date(2026, 2, 4)
    assert (quote.lines, quote.total, quote.revision, quote.root_id, quote.first_id) == (
        (),
        eur("0"),
        1,
        None,
        quote.id,
    )
    assert (yen.currency, yen.title, yen.valid_until, yen.notes, yen.total) == (
        "JPY",
        "Spares",
        date(2026, 3, 31),
        "Net 30 days",
        money("0", "JPY"),
    )
    assert (dollars.currency, dollars.total) == ("USD", money("714", "USD"))
    refused(  # no price list prices the press in USD
        crm, p.sam.id, (NotFound, lambda s: s.quotes.add_line(dollars.id, p.press.id))
    )
    with crm.session(actor=p.sam.id) as s:
        assert s.quotes.get(quote.id) == quote
        assert [q.id for q in s.quotes.list(deal_id=p.deal.id)] == [dollars.id, quote.id]
        assert [q.id for q in s.quotes.list(customer_id=p.acme.id, status="draft")] == [
            dollars.id,
            yen.id,
            quote.id,
        ]
        assert s.quotes.list(status=QuoteStatus.SENT) == []
        with pytest.raises(ValidationError):
            s.quotes.list(status="void")


def test_product_lines_are_priced_from_the_price_list_and_a_new_quantity_reaches_a_break(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.add_line(s.quotes.draft(p.deal.id).id, p.press.id, quantity=3)
    line = quote.lines[0]
    assert (line.description, line.product_id, line.sku, line.unit, line.quantity) == (
        "Press 100t",
        p.press.id,
        "PR-100",
        "piece",
        Decimal(3),
    )
    assert (line.unit_price, line.price_list_id, line.discount_percent, line.tax_rate) == (
        eur("1000"),
        p.standard.id,
        Decimal(0),
        Decimal(19),
    )
    assert (line.list_amount, line.net, line.tax, line.total) == (
        eur("3000"),
        eur("3000"),
        eur("570"),
        eur("3570"),
    )
    assert summary(quote) == (eur("3000"), eur("3000"), eur("570"), eur("3570"))
    with crm.session(actor=p.sam.id) as s:
        more = s.quotes.update_line(quote.id, 1, quantity=12)  # the break at 10: 900 each
        assert (more.lines[0].unit_price, more.lines[0].list_amount) == (eur("900"), eur("10800"))
        assert summary(more) == (eur("10800"), eur("10800"), eur("2052"), eur("12852"))
        fewer = s.quotes.update_line(quote.id, 1, quantity=9)  # below the break again
        assert fewer.lines[0].unit_price == eur("1000")
        assert fewer.total == eur("10710")
    with crm.session(actor=crm.system_actor) as s:
        s.price_lists.set_price(p.standard.id, p.press.id, eur("1100"))
    with crm.session(actor=p.sam.id) as s:
        # a new quantity prices the line again; a discount alone keeps its unit price
        repriced = s.quotes.update_line(quote.id, 1, quantity=4)
        assert (repriced.lines[0].unit_price, repriced.lines[0].price_list_id) == (
            eur("1100"),
            p.standard.id,
        )
        kept = s.quotes.update_line(quote.id, 1, discount_percent=5)
        assert (kept.lines[0].unit_price, kept.lines[0].quantity) == (eur("1100"), Decimal(4))
        assert (kept.lines[0].net, kept.lines[0].discount) == (eur("4180"), eur("220"))
        # a price given by hand stays when the quantity changes
        by_hand = s.quotes.add_line(quote.id, p.press.id, quantity=2, unit_price=eur("950"))
        assert (by_hand.lines[1].unit_price, by_hand.lines[1].price_list_id) == (eur("950"), None)
        still = s.quotes.update_line(quote.id, 2, quantity=15)
        assert (still.lines[1].unit_price, still.lines[1].list_amount) == (
            eur("950"),
            eur("14250"),
        )
    with crm.session(actor=p.sam.id) as s:
        assert s.quotes.get(quote.id).lines == still.lines


def test_free_text_lines_and_tax_rates_by_the_products_tax_category(crm: pycrm.CRM) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.draft(
            p.deal.id,
            lines=[
                free("Installation", "450", quantity="1.5", discount_percent=5),
                {"product_id": p.manual.id, "quantity": 2},
                {"product_id": p.course.id},
                presses(p, 1, tax_rate="0"),
                free("Travel", "100", tax_rate=7),
            ],
        )
    got = [
        (line.description, line.product_id, line.unit, line.tax_rate, line.net, line.tax)
        for line in quote.lines
    ]
    assert got == [
        # 675.00 less 5 % (33.75); 19 % of 641.25 is 121.8375
        ("Installation", None, "piece", Decimal(19), eur("641.25"), eur("121.84")),
        ("Operating manual", p.manual.id, "piece", Decimal(7), eur("80"), eur("5.60")),
        ("Training day", p.course.id, "day", Decimal(0), eur("1200"), eur("0")),  # no rate set
        ("Press 100t", p.press.id, "piece", Decimal(0), eur("1000"), eur("0")),  # given
        ("Travel", None, "piece", Decimal(7), eur("100"), eur("7")),
    ]
    assert summary(quote) == (eur("3055"), eur("3021.25"), eur("134.44"), eur("3155.69"))
    with crm.session(actor=crm.system_actor) as s:
        s.settings.set("tax_rates", {"standard": "20", "reduced": "7"})
    with crm.session(actor=p.sam.id) as s:
        later = s.quotes.add_line(quote.id, description="Freight", unit_price=eur("50"))
    # a new line takes the new rate; the lines already priced keep theirs
    assert [line.tax_rate for line in later.lines] == [19, 7, 0, 0, 7, 20]
    assert later.lines[-1].tax == eur("10")
    assert later.tax == eur("144.44")


def test_removing_a_line_moves_the_rest_up_and_update_changes_title_validity_and_notes(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.draft(p.deal.id, lines=[free("A", "10"), free("B", "20"), free("C", "30")])
        shorter = s.quotes.remove_line(quote.id, 2)
        changed = s.quotes.update(
            quote.id, title="Presses, 2nd offer", valid_until=date(2026, 6, 30), notes="Net"
        )
    assert [line.description for line in shorter.lines] == ["A", "C"]
    assert summary(shorter) == (eur("40"), eur("40"), eur("7.60"), eur("47.60"))
    assert (changed.title, changed.valid_until, changed.notes, changed.lines) == (
        "Presses, 2nd offer",
        date(2026, 6, 30),
        "Net",
        shorter.lines,
    )
    errors = refused(
        crm,
        p.sam.id,
        (ValidationError, lambda s: s.quotes.update(quote.id, valid_until=None)),
        (ValidationError, lambda s: s.quotes.update(quote.id, title="")),
        (ValidationError, lambda s: s.quotes.update(quote.id, valid_until="2026-07-01")),
        (ValidationError, lambda s: s.quotes.update(quote.id, currency="USD")),
        (ValidationError, lambda s: s.quotes.remove_line(quote.id, 3)),
        (ConcurrencyError, lambda s: s.quotes.remove_line(quote.id, 1, version=1)),
        (ConcurrencyError, lambda s: s.quotes.update(quote.id, notes="x", version=2)),
    )
    assert [getattr(e, "field", None) for e in errors] == [
        "valid_until",
        "title",
        "valid_until",
        "currency",
        "line",
        None,
        None,
    ]


def test_bad_lines_are_refused_naming_the_field_and_nothing_is_written(crm: pycrm.CRM) -> None:
    p = setup(crm)
    with crm.session(actor=crm.system_actor) as s:
        lost = s.deals.create("Lost", customer_id=p.acme.id, amount=eur("1"), owner_id=p.sam.id)
        s.deals.lose(lost.id, "price")
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.draft(p.deal.id, lines=[presses(p)])
    q = quote.id
    usd = money("5", "USD")
    cases: list[tuple[str, type[Exception], Call]] = [
        ("quantity", ValidationError, lambda s: s.quotes.add_line(q, p.press.id, quantity=1.5)),  # type: ignore[arg-type]
        ("quantity", ValidationError, lambda s: s.quotes.add_line(q, p.press.id, quantity=0)),
        ("quantity", ValidationError, lambda s: s.quotes.add_line(q, p.press.id, quantity="1e-7")),
        ("unit_price", ValidationError, lambda s: s.quotes.add_line(q, unit_price=eur("-1"), description="X")),
        ("unit_price", ValidationError, lambda s: s.quotes.add_line(q, p.press.id, unit_price=eur("-0.01"))),
        ("unit_price", ValidationError, lambda s: s.quotes.add_line(q, p.press.id, unit_price=usd)),
        ("unit_price", ValidationError, lambda s: s.quotes.add_line(q, description="Installation")),
        ("discount_percent", ValidationError, lambda s: s.quotes.add_line(q, p.press.id, discount_percent=101)),
        ("discount_percent", ValidationError, lambda s: s.quotes.add_line(q, p.press.id, discount_percent="1.234")),
        ("tax_rate", ValidationError, lambda s: s.quotes.add_line(q, p.press.id, tax_rate=-1)),
        ("product_id", ValidationError, lambda s: s.quotes.add_line(q, p.old.id)),
        ("description", ValidationError, lambda s: s.quotes.add_line(q, unit_price=eur("1"))),
        ("quantity", ValidationError, lambda s: s.quotes.add_line(q, unit_price=eur("10000000000"), quantity=10**4, description="X")),
        ("colour", ValidationError, lambda s: s.quotes.update_line(q, 1, colour="red")),
        ("product_id", ValidationError, lambda s: s.quotes.update_line(q, 1, product_id=p.kit.id)),
        ("quantity", ValidationError, lambda s: s.quotes.update_line(q, 1, quantity=2.0)),
        ("discount_percent", ValidationError, lambda s: s.quotes.update_line(q, 1, discount_percent=101)),
        ("unit_price", ValidationError, lambda s: s.quotes.update_line(q, 1, unit_price=usd)),
        ("line", ValidationError, lambda s: s.quotes.update_line(q, 2, quantity=2)),
        ("line", ValidationError, lambda s: s.quotes.update_line(q, 0, quantity=2)),
        ("line", ValidationError, lambda s: s.quotes.remove_line(q, 2)),
        ("lines[1].colour", ValidationError, lambda s: s.quotes.draft(p.deal.id, lines=[presses(p), presses(p, colour="red")])),
        ("lines[0].quantity", ValidationError, lambda s: s.quotes.draft(p.deal.id, lines=[free("X", "1", quantity=-1)])),
        ("lines[0].unit_price", ValidationError, lambda s: s.quotes.draft(p.deal.id, lines=[free("X", "-1")])),
        ("lines[0].product_id", ValidationError, lambda s: s.quotes.draft(p.deal.id, lines=[{"product_id": p.old.id}])),
        ("lines", ValidationError, lambda s: s.quotes.draft(p.deal.id, lines="PR-100")),  # type: ignore[arg-type]
        ("deal_id", ValidationError, lambda s: s.quotes.draft(lost.id)),
        ("currency", ValidationError, lambda s: s.quotes.draft(p.deal.id, currency="eur")),
        ("valid_until", ValidationError, lambda s: s.quotes.draft(p.deal.id, valid_until="2026-02-01")),  # type: ignore[arg-type]
    ]  # fmt: skip
    errors = refused(crm, p.sam.id, *[(error, call) for _, error, call in cases])
    assert [getattr(e, "field", None) for e in errors] == [field for field, _, _ in cases]
    refused(
        crm,
        p.sam.id,
        (NotFound, lambda s: s.quotes.add_line(q, "01a2404465202856f90f0630e06efb24")),
        (NotFound, lambda s: s.quotes.add_line("01a2404465202856f90f0630e06efb24", p.press.id)),
    )
    with crm.session(actor=p.sam.id) as s:
        assert s.quotes.get(q) == quote


# -- totals in the currency's minor units -------------------------------------------------


def test_totals_are_summed_per_line_then_totals_half_even_in_jpy_eur_and_kwd(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)

    def line(price: str, currency: str, quantity: str, discount: str, tax: str) -> dict[str, Any]:
        return {
            "description": f"{quantity} x {price}",
            "unit_price": money(price, currency),
            "quantity": quantity,
            "discount_percent": discount,
            "tax_rate": tax,
        }

    with crm.session(actor=p.sam.id) as s:
        quotes = {}
        for currency, lines in {
            "JPY": [
                line("125", "JPY", "0.5", "0", "25"),  # 62.5 → 62; tax 15.5 → 16
                line("1000", "JPY", "1", "0.05", "10"),  # 0.5 off → 0; tax 100
                line("30", "JPY", "1", "5", "12.5"),  # 1.5 off → 2, net 28; tax 3.5 → 4
            ],
            "EUR": [
                line("10.25", "EUR", "0.5", "0", "19"),  # 5.125 → 5.12; tax 0.9728 → 0.97
                line("0.10", "EUR", "1", "25", "6.25"),  # 0.025 off → 0.02; tax 0.005 → 0
                line("3.30", "EUR", "1.5", "10", "19"),  # 4.95; 0.495 off → 0.50; tax 0.8455
            ],
            "KWD": [
                line("1.005", "KWD", "0.5", "0", "10"),  # 0.5025 → 0.502; tax 0.0502 → 0.050
                line("2.250", "KWD", "3", "33.33", "5"),  # 6.750; 2.249775 off → 2.250; tax 0.225
                line("0.001", "KWD", "1", "0", "50"),  # tax 0.0005 → 0
                line("0.250", "KWD", "1", "1", "0"),  # 0.0025 off → 0.002, net 0.248
            ],
        }.items():
            deal = s.deals.create(
                currency, customer_id=p.acme.id, amount=money("1", currency), owner_id=p.sam.id
            )
            quotes[currency] = s.quotes.draft(deal.id, lines=lines)
    jpy, eur_, kwd = quotes["JPY"], quotes["EUR"], quotes["KWD"]
    assert [(x.list_amount, x.net, x.tax) for x in jpy.lines] == [
        (money("62", "JPY"), money("62", "JPY"), money("16", "JPY")),
        (money("1000", "JPY"), money("1000", "JPY"), money("100", "JPY")),
        (money("30", "JPY"), money("28", "JPY"), money("4", "JPY")),
    ]
    # taxed on the subtotal instead of per line, the tax would be 119 yen, not 120
    assert summary(jpy) == (
        money("1092", "JPY"),
        money("1090", "JPY"),
        money("120", "JPY"),
        money("1210", "JPY"),
    )
    assert [(x.list_amount, x.net, x.tax) for x in eur_.lines] == [
        (eur("5.12"), eur("5.12"), eur("0.97")),
        (eur("0.10"), eur("0.08"), eur("0")),
        (eur("4.95"), eur("4.45"), eur("0.85")),
    ]
    assert summary(eur_) == (eur("10.17"), eur("9.65"), eur("1.82"), eur("11.47"))
    assert [(x.list_amount, x.net, x.tax) for x in kwd.lines] == [
        (money("0.502", "KWD"), money("0.502", "KWD"), money("0.050", "KWD")),
        (money("6.750", "KWD"), money("4.500", "KWD"), money("0.225", "KWD")),
        (money("0.001", "KWD"), money("0.001", "KWD"), money("0", "KWD")),
        (money("0.250", "KWD"), money("0.248", "KWD"), money("0", "KWD")),
    ]
    assert summary(kwd) == (
        money("7.503", "KWD"),
        money("5.251", "KWD"),
        money("0.275", "KWD"),
        money("5.526", "KWD"),
    )
    minors = {
        "JPY": [1092, 1090, 120, 1210],
        "EUR": [1017, 965, 182, 1147],
        "KWD": [7503, 5251, 275, 5526],
    }
    with crm.session(actor=p.sam.id) as s:  # stored and read back to the minor unit
        for currency, quote in quotes.items():
            again = s.quotes.get(quote.id)
            assert (again.lines, summary(again)) == (quote.lines, summary(quote))
            assert [amount.minor for amount in summary(again)] == minors[currency]


# -- approval and sending ---------------------------------------------------------------


def test_a_draft_needing_no_approval_is_sent_at_once(crm: pycrm.CRM, fake_clock: FakeClock) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        plain = s.quotes.draft(p.deal.id, lines=[presses(p)])  # margin 30 %
        ten = s.quotes.draft(p.deal.id, lines=[presses(p, discount_percent=10)])  # 22.22 %
        floor = s.quotes.draft(p.deal.id, lines=[{"product_id": p.kit.id}])  # 15.00 % exactly
        no_cost = s.quotes.draft(p.deal.id, lines=[free("Consulting", "100", discount_percent=10)])
    fake_clock.advance(hours=1)
    with crm.session(actor=p.sam.id) as s:
        sent = [s.quotes.send(q.id) for q in (plain, ten, floor, no_cost)]
    assert [(q.status, q.sent_at, q.approvals) for q in sent] == [
        (_Q.SENT, fake_clock.now(), ())
    ] * 4
    assert outbox_names(crm)[-4:] == ["quote_sent"] * 4
    with crm.session(actor=p.max.id) as s:
        assert s.quotes.get(floor.id).margin_percent == Decimal("15.00")
        assert s.quotes.get(ten.id).margin_percent == Decimal("22.22")


def test_a_draft_needing_approval_is_not_sent_nor_one_without_lines_or_past_its_day(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        discount = s.quotes.draft(p.deal.id, lines=[presses(p, discount_percent="10.01")])
        thin = s.quotes.draft(p.deal.id, lines=[presses(p, unit_price=eur("800"))])  # 12.5 %
        below = s.quotes.draft(
            p.deal.id, lines=[{"product_id": p.kit.id, "unit_price": eur("99.99")}]
        )
        empty = s.quotes.draft(p.deal.id)
        lapsed = s.quotes.draft(p.deal.id, lines=[presses(p)], valid_until=date(2026, 1, 4))
    errors = refused(
        crm,
        p.sam.id,
        (InvalidTransition, lambda s: s.quotes.send(discount.id)),
        (InvalidTransition, lambda s: s.quotes.send(thin.id)),
        (InvalidTransition, lambda s: s.quotes.send(below.id)),
        (ValidationError, lambda s: s.quotes.send(empty.id)),
        (ValidationError, lambda s: s.quotes.send(lapsed.id)),
        (ValidationError, lambda s: s.quotes.submit(empty.id)),
        (InvalidTransition, lambda s: s.quotes.accept(discount.id)),
        (InvalidTransition, lambda s: s.quotes.reject(discount.id, reason="no")),
    )
    assert all("sales_manager" in str(e) for e in errors[:3])
    assert [getattr(e, "field", None) for e in errors[3:6]] == ["lines", "valid_until", "lines"]


def test_submit_asks_a_sales_manager_who_approves_and_the_quote_is_sent(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.draft(
            p.deal.id, lines=[free("Setup", "500"), presses(p, discount_percent=20)]
        )
        pending = s.quotes.submit(quote.id)
    # net 2,400 against a cost of 2,100 (the setup's cost is not known): 12.5 %
    assert pending.status is _Q.PENDING_APPROVAL
    assert [(a.role, a.reason, a.decision) for a in pending.approvals] == [
        (
            "sales_manager",
            "discount above 10%: line 2 20%; margin 12.50% below 15%",
            Decision.PENDING,
        )
    ]
    assert outbox_names(crm)[-1] == "quote_submitted"
    for outsider in (p.sam, p.kim, p.fin, p.lea):
        refused(crm, outsider.id, (PermissionDenied, lambda s: s.quotes.approve(quote.id)))
    refused(
        crm,
        p.sam.id,
        (InvalidTransition, lambda s: s.quotes.send(quote.id)),
        (InvalidTransition, lambda s: s.quotes.add_line(quote.id, p.kit.id)),
        (InvalidTransition, lambda s: s.quotes.update(quote.id, notes="x")),
        (InvalidTransition, lambda s: s.quotes.submit(quote.id)),
    )
    fake_clock.advance(hours=2)
    with crm.session(actor=p.max.id) as s:
        approved = s.quotes.approve(quote.id, comment="strategic customer")
    assert approved.status is _Q.APPROVED
    assert [(a.decision, a.decided_by, a.decided_at, a.comment) for a in approved.approvals] == [
        (Decision.APPROVED, p.max.id, fake_clock.now(), "strategic customer")
    ]
    refused(crm, p.max.id, (InvalidTransition, lambda s: s.quotes.approve(quote.id)))
    with crm.session(actor=p.sam.id) as s:
        sent = s.quotes.send(quote.id)
        # one needing no step is approved on submission
        at_once = s.quotes.submit(s.quotes.draft(p.deal.id, lines=[presses(p)]).id)
    assert sent.status is _Q.SENT
    assert (at_once.status, at_once.approvals) == (_Q.APPROVED, ())
    assert outbox_names(crm)[-4:] == [
        "quote_submitted",
        "quote_approved",
        "quote_sent",
        "quote_approved",
    ]


def test_a_denied_quote_is_a_draft_again_and_goes_out_once_the_discount_is_within_bounds(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.submit(
            s.quotes.draft(p.deal.id, lines=[presses(p, discount_percent=15)]).id
        )
    refused(
        crm,
        p.max.id,
        (ValidationError, lambda s: s.quotes.deny(quote.id, comment="")),
    )
    refused(crm, p.sam.id, (PermissionDenied, lambda s: s.quotes.deny(quote.id, comment="no")))
    with crm.session(actor=p.max.id) as s:
        denied = s.quotes.deny(quote.id, comment="15 % is too much")
    assert denied.status is _Q.DRAFT
    assert [(a.role, a.decision, a.decided_by, a.comment) for a in denied.approvals] == [
        ("sales_manager", Decision.REJECTED, p.max.id, "15 % is too much")
    ]
    assert outbox_names(crm)[-1] == "quote_denied"
    refused(crm, p.sam.id, (InvalidTransition, lambda s: s.quotes.send(quote.id)))
    with crm.session(actor=p.sam.id) as s:
        s.quotes.update_line(quote.id, 1, discount_percent=10)
        sent = s.quotes.send(quote.id)
    assert sent.status is _Q.SENT
    assert sent.lines[0].net == eur("2700")


def test_changing_the_lines_of_an_approved_quote_makes_it_a_draft_needing_approval_again(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.submit(
            s.quotes.draft(p.deal.id, lines=[presses(p, discount_percent=12)]).id
        )
    with crm.session(actor=p.max.id) as s:
        s.quotes.approve(quote.id)
    with crm.session(actor=p.sam.id) as s:
        renamed = s.quotes.update(quote.id, title="Presses, final offer", notes="Net 30")
        assert renamed.status is _Q.APPROVED  # the lines are what was approved
        more = s.quotes.update_line(quote.id, 1, discount_percent=25)
    assert (more.status, more.approvals) == (_Q.DRAFT, ())
    refused(crm, p.sam.id, (InvalidTransition, lambda s: s.quotes.send(quote.id)))
    with crm.session(actor=p.sam.id) as s:
        again = s.quotes.submit(quote.id)
    assert "line 1 25%" in again.approvals[0].reason
    with crm.session(actor=p.max.id) as s:
        s.quotes.approve(quote.id)
    with crm.session(actor=p.sam.id) as s:
        fewer = s.quotes.remove_line(s.quotes.add_line(quote.id, p.kit.id).id, 2)
    assert fewer.status is _Q.DRAFT  # changed twice, back where it was: approve it again


def test_the_customer_rejects_a_sent_quote_saying_why(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.send(s.quotes.draft(p.deal.id, lines=[presses(p)]).id)
    refused(
        crm,
        p.sam.id,
        (ValidationError, lambda s: s.quotes.reject(quote.id, reason="")),
        (InvalidTransition, lambda s: s.quotes.add_line(quote.id, p.kit.id)),
        (InvalidTransition, lambda s: s.quotes.update_line(quote.id, 1, quantity=4)),
        (InvalidTransition, lambda s: s.quotes.remove_line(quote.id, 1)),
        (InvalidTransition, lambda s: s.quotes.update(quote.id, title="x")),
        (InvalidTransition, lambda s: s.quotes.send(quote.id)),
    )
    fake_clock.advance(days=2)
    with crm.session(actor=p.sam.id) as s:
        rejected = s.quotes.reject(quote.id, reason="Too expensive")
    assert (rejected.status, rejected.reject_reason, rejected.decided_at) == (
        _Q.REJECTED,
        "Too expensive",
        fake_clock.now(),
    )
    assert outbox_names(crm)[-1] == "quote_rejected"
    refused(
        crm,
        p.sam.id,
        (InvalidTransition, lambda s: s.quotes.accept(quote.id)),
        (InvalidTransition, lambda s: s.quotes.reject(quote.id, reason="again")),
    )
    with crm.session(actor=p.sam.id) as s:
        assert s.deals.get(p.deal.id).status is DealStatus.OPEN


def test_scan_expired_marks_sent_quotes_past_their_day_and_they_cannot_be_accepted(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        early = s.quotes.send(
            s.quotes.draft(p.deal.id, lines=[presses(p)], valid_until=date(2026, 1, 10)).id
        )
        late = s.quotes.send(
            s.quotes.draft(p.deal.id, lines=[presses(p)], valid_until=date(2026, 1, 20)).id
        )
        draft = s.quotes.draft(p.deal.id, lines=[presses(p)], valid_until=date(2026, 1, 8))
    fake_clock.set(datetime(2026, 1, 10, 23, 59, tzinfo=UTC))  # early's last day
    with crm.session(actor=p.sam.id) as s:
        assert s.quotes.scan_expired() == []
    refused(crm, p.lea.id, (PermissionDenied, lambda s: s.quotes.scan_expired()))
    fake_clock.set(datetime(2026, 1, 11, 6, 0, tzinfo=UTC))
    with crm.session(actor=p.kim.id) as s:  # any rep may run it; Sam's quote lapses
        expired = s.quotes.scan_expired()
        assert s.quotes.scan_expired() == []
    assert [(q.id, q.status, q.decided_at) for q in expired] == [
        (early.id, _Q.EXPIRED, fake_clock.now())
    ]
    assert outbox_names(crm)[-1] == "quote_expired"
    assert outbox_names(crm).count("quote_expired") == 1
    with crm.session(actor=p.sam.id) as s:
        assert s.quotes.get(late.id).status is _Q.SENT
        assert s.quotes.get(draft.id).status is _Q.DRAFT
    fake_clock.set(datetime(2026, 1, 21, 6, 0, tzinfo=UTC))  # late lapsed, not yet scanned
    errors = refused(
        crm,
        p.sam.id,
        (InvalidTransition, lambda s: s.quotes.accept(early.id)),
        (InvalidTransition, lambda s: s.quotes.accept(late.id)),
        (InvalidTransition, lambda s: s.quotes.reject(early.id, reason="late")),
    )
    assert "2026-01-20" in str(errors[1])
    with crm.session(actor=p.sam.id) as s:
        assert s.deals.get(p.deal.id).status is DealStatus.OPEN


def test_a_revision_is_version_2_and_supersedes_version_1(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        v1 = s.quotes.send(
            s.quotes.draft(
                p.deal.id,
                lines=[presses(p), free("Setup", "500")],
                notes="Net 30",
                valid_until=date(2026, 1, 20),
            ).id
        )
    fake_clock.advance(days=3)
    with crm.session(actor=p.sam.id) as s:
        v2 = s.quotes.revise(v1.id)
        assert s.quotes.get(v1.id).status is _Q.SUPERSEDED
    assert (v2.revision, v2.root_id, v2.first_id, v2.status, v2.approvals, v2.sent_at) == (
        2,
        v1.id,
        v1.id,
        _Q.DRAFT,
        (),
        None,
    )
    assert (v2.lines, summary(v2), v2.notes, v2.deal_id, v2.owner_id) == (
        v1.lines,
        summary(v1),
        "Net 30",
        p.deal.id,
        p.sam.id,
    )
    assert v2.valid_until == date(2026, 1, 8) + timedelta(days=30)
    assert v2.id != v1.id
    with crm.session(actor=p.sam.id) as s:
        s.quotes.update_line(v2.id, 1, quantity=5)
        v3 = s.quotes.revise(v2.id, valid_until=date(2026, 5, 1))
        assert [(q.id, q.revision, q.status) for q in s.quotes.versions(v3.id)] == [
            (v1.id, 1, _Q.SUPERSEDED),
            (v2.id, 2, _Q.SUPERSEDED),
            (v3.id, 3, _Q.DRAFT),
        ]
        assert [q.id for q in s.quotes.versions(v1.id)] == [v1.id, v2.id, v3.id]
    assert (v3.revision, v3.root_id, v3.valid_until, v3.lines[0].quantity) == (
        3,
        v1.id,
        date(2026, 5, 1),
        Decimal(5),
    )
    assert "quote_superseded" not in outbox_names(crm)
    refused(
        crm,
        p.sam.id,
        (InvalidTransition, lambda s: s.quotes.revise(v1.id)),  # only the latest is revised
        (InvalidTransition, lambda s: s.quotes.revise(v2.id)),
        (InvalidTransition, lambda s: s.quotes.send(v2.id)),
        (InvalidTransition, lambda s: s.quotes.add_line(v1.id, p.kit.id)),
    )
    with crm.session(actor=p.max.id) as s:  # the rep's revisions keep the costs they cannot see
        assert (s.quotes.get(v3.id).costs, s.quotes.get(v3.id).cost) == (
            (eur("700"), None),
            eur("3500"),
        )
    with crm.session(actor=p.sam.id) as s:
        accepted = s.quotes.accept(s.quotes.send(v3.id).id)
    refused(crm, p.sam.id, (InvalidTransition, lambda s: s.quotes.revise(accepted.id)))


# -- acceptance --------------------------------------------------------------------------


def test_accepting_wins_the_deal_at_the_subtotal_and_drafts_a_contract_with_the_lines(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.send(
            s.quotes.draft(
                p.deal.id,
                lines=[presses(p, discount_percent=5), free("Installation", "450", quantity="1.5")],
            ).id
        )
    # 3,000 less 150 and 675: 3,525.00 net; 541.50 and 128.25 tax
    assert summary(quote) == (eur("3675"), eur("3525"), eur("669.75"), eur("4194.75"))
    fake_clock.advance(days=1)
    with crm.session(actor=p.sam.id) as s:
        accepted = s.quotes.accept(quote.id, instalments=4, first_due=date(2026, 2, 1))
        won = s.deals.get(p.deal.id)
        contract = s.contracts.get(accepted.contract_id or "")
    assert (accepted.status, accepted.decided_at) == (_Q.ACCEPTED, fake_clock.now())
    assert (won.status, won.amount) == (DealStatus.WON, eur("3525"))
    assert (contract.status, contract.quote_id, contract.deal_id, contract.customer_id) == (
        ContractStatus.DRAFT,
        quote.id,
        p.deal.id,
        p.acme.id,
    )
    assert (contract.owner_id, contract.title, contract.amount, contract.lines) == (
        p.sam.id,
        "Presses for Acme",
        eur("4194.75"),
        quote.lines,
    )
    assert (contract.exchange_rate, contract.rate_date) == (None, None)
    assert [(i.number, i.due, i.amount) for i in contract.schedule] == [
        (1, date(2026, 2, 1), eur("1048.69")),
        (2, date(2026, 3, 1), eur("1048.69")),
        (3, date(2026, 4, 1), eur("1048.69")),
        (4, date(2026, 5, 1), eur("1048.68")),
    ]
    assert sum(i.amount.amount for i in contract.schedule) == quote.total.amount
    assert outbox_names(crm)[-3:] == ["quote_sent", "deal_won", "quote_accepted"]
    refused(
        crm,
        p.sam.id,
        (InvalidTransition, lambda s: s.quotes.accept(quote.id)),
        (InvalidTransition, lambda s: s.quotes.reject(quote.id, reason="changed our mind")),
    )


def test_bill_in_converts_the_total_at_the_stored_rate_and_the_contract_names_it(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=crm.system_actor) as s:
        s.rates.set("EUR", "USD", "1.0837", on=date(2026, 1, 2))
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.send(s.quotes.draft(p.deal.id, lines=[presses(p)]).id)
    # nothing is won or drafted when the contract cannot be made
    errors = refused(
        crm,
        p.sam.id,
        (NotFound, lambda s: s.quotes.accept(quote.id, bill_in="GBP")),
        (ValidationError, lambda s: s.quotes.accept(quote.id, bill_in="usd")),
        (ValidationError, lambda s: s.quotes.accept(quote.id, instalments=0)),
        (
            ValidationError,
            lambda s: s.quotes.accept(quote.id, start=date(2026, 5, 1), end=date(2026, 4, 1)),
        ),
    )
    assert [getattr(e, "field", None) for e in errors[1:]] == ["bill_in", "instalments", "end"]
    with crm.session(actor=p.sam.id) as s:
        accepted = s.quotes.accept(quote.id, bill_in="USD", instalments=3)
        contract = s.contracts.get(accepted.contract_id or "")
    # 3,570.00 EUR x 1.0837 = 3,868.809 USD
    assert (contract.amount, contract.exchange_rate, contract.rate_date) == (
        money("3868.81", "USD"),
        Decimal("1.0837"),
        date(2026, 1, 2),
    )
    assert [i.amount for i in contract.schedule] == [
        money("1289.61", "USD"),
        money("1289.60", "USD"),
        money("1289.60", "USD"),
    ]
    assert contract.lines == quote.lines  # the lines stay in the quote's currency
    assert {line.net.currency for line in contract.lines} == {"EUR"}


@pytest.mark.parametrize("backend", ["memory"])  # a service-layer rule: one backend shows it
def test_a_sales_manager_may_record_that_the_customer_accepted_a_reps_quote(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.send(s.quotes.draft(p.deal.id, lines=[presses(p)]).id)
    with crm.session(actor=p.max.id) as s:
        accepted = s.quotes.accept(quote.id)
    assert accepted.status is _Q.ACCEPTED


# -- permissions -----------------------------------------------------------------------------


def test_a_rep_sees_no_cost_or_margin_while_sales_managers_and_finance_do(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        mine = s.quotes.draft(p.deal.id, lines=[presses(p), free("Setup", "500")])
        assert (mine.costs, mine.cost, mine.margin, mine.margin_percent) == ((), None, None, None)
        assert s.quotes.get(mine.id).cost is None
        # the edits change the costs the rep cannot see, and succeed
        s.quotes.update_line(mine.id, 1, quantity=12)
        s.quotes.add_line(mine.id, p.manual.id, quantity=2)
        edited = s.quotes.remove_line(mine.id, 2)
        assert (edited.cost, edited.margin, edited.total) == (None, None, eur("12937.60"))
    for reader in (p.max, p.fin):
        with crm.session(actor=reader.id) as s:
            seen = s.quotes.get(mine.id)
        # 12 x 900 + 2 x 40 net, against 12 x 700 + 2 x 10
        assert (seen.costs, seen.cost, seen.margin, seen.margin_percent) == (
            (eur("700"), eur("10")),
            eur("8420"),
            eur("2460"),
            Decimal("22.61"),
        )
    with crm.session(actor=p.lea.id) as s:
        seen = s.quotes.get(mine.id)
        assert (seen.costs, seen.cost, seen.margin, seen.total) == ((), None, None, eur("12937.60"))


def test_a_rep_drafts_and_edits_only_quotes_on_their_own_deals(crm: pycrm.CRM) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.draft(p.deal.id, lines=[presses(p)])
    refused(
        crm,
        p.kim.id,
        (PermissionDenied, lambda s: s.quotes.draft(p.deal.id)),
        (PermissionDenied, lambda s: s.quotes.add_line(quote.id, p.kit.id)),
        (PermissionDenied, lambda s: s.quotes.update(quote.id, notes="mine now")),
        (PermissionDenied, lambda s: s.quotes.send(quote.id)),
        (PermissionDenied, lambda s: s.quotes.submit(quote.id)),
    )
    refused(crm, p.fin.id, (PermissionDenied, lambda s: s.quotes.remove_line(quote.id, 1)))
    with crm.session(actor=p.kim.id) as s:  # sales reads every quote
        assert s.quotes.get(quote.id).total == eur("3570")
    with crm.session(actor=p.max.id) as s:  # a sales manager changes any
        assert s.quotes.update(quote.id, notes="checked").notes == "checked"


def test_a_cost_in_another_currency_is_converted_at_todays_rate_or_left_unknown(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=crm.system_actor) as s:
        part = s.products.create("US-1", "Valve", cost=money("100", "USD"))
        s.rates.set("USD", "EUR", "0.9")
        lathe = s.products.create("CH-1", "Lathe", cost=money("100", "CHF"))  # no CHF rate
    with crm.session(actor=p.sam.id) as s:
        valves = s.quotes.draft(
            p.deal.id, lines=[{"product_id": part.id, "unit_price": eur("100")}]
        )
        lathes = s.quotes.draft(p.deal.id, lines=[{"product_id": lathe.id, "unit_price": eur("1")}])
    with crm.session(actor=p.max.id) as s:
        seen = s.quotes.get(valves.id)
        unknown = s.quotes.get(lathes.id)
    assert (seen.costs, seen.cost, seen.margin, seen.margin_percent) == (
        (eur("90"),),
        eur("90"),
        eur("10"),
        Decimal("10.00"),
    )
    assert (unknown.costs, unknown.cost, unknown.margin) == ((None,), None, None)
    [error] = refused(crm, p.sam.id, (InvalidTransition, lambda s: s.quotes.send(valves.id)))
    assert "sales_manager" in str(error)
    with crm.session(actor=p.sam.id) as s:  # no cost known: no margin to approve
        assert s.quotes.send(lathes.id).status is _Q.SENT


# -- the approvals hook ----------------------------------------------------------------------


class FreeTextReview:
    """Quotes with free-text lines need legal's review; contracts need nothing more."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    @hookimpl
    def pycrm_approvals(
        self, contract: Contract | Quote, ctx: RuleContext
    ) -> list[ApprovalStep] | None:
        self.seen.append((type(contract).__name__, contract.resource))
        if isinstance(contract, Quote) and any(line.product_id is None for line in contract.lines):
            return [ApprovalStep("legal", "free-text lines need a legal review")]
        return None


def test_a_plugin_adds_an_approval_step_for_quotes(connect_crm: ConnectFn) -> None:
    crm = connect_crm(
        policy=DEFAULT_POLICY.extend(
            {"grants": [{"roles": ["legal"], "resources": ["quote"], "actions": ["approve"],
                         "scope": "all"}]}
        )
    )  # fmt: skip
    p = setup(crm)
    review = FreeTextReview()
    crm.plugins.register(review, name="free_text_review")
    with crm.session(actor=p.sam.id) as s:
        plain = s.quotes.send(s.quotes.draft(p.deal.id, lines=[presses(p)]).id)
        assert plain.status is _Q.SENT  # the plugin abstained
        texts = s.quotes.draft(p.deal.id, lines=[free("Setup", "500")])
        both = s.quotes.draft(
            p.deal.id, lines=[free("Setup", "500"), presses(p, discount_percent=20)]
        )
    assert review.seen == [("Quote", "quote")]
    [error] = refused(crm, p.sam.id, (InvalidTransition, lambda s: s.quotes.send(texts.id)))
    assert "legal" in str(error)
    with crm.session(actor=p.sam.id) as s:
        texts = s.quotes.submit(texts.id)
        both = s.quotes.submit(both.id)
    assert [(a.role, a.reason) for a in texts.approvals] == [
        ("legal", "free-text lines need a legal review")
    ]
    assert sorted(a.role for a in both.approvals) == ["legal", "sales_manager"]
    refused(crm, p.max.id, (PermissionDenied, lambda s: s.quotes.approve(texts.id)))
    with crm.session(actor=p.max.id) as s:
        half = s.quotes.approve(both.id)
    assert half.status is _Q.PENDING_APPROVAL  # legal's step waits
    with crm.session(actor=p.lea.id) as s:
        assert s.quotes.approve(texts.id).status is _Q.APPROVED
        assert s.quotes.approve(both.id).status is _Q.APPROVED
    with crm.session(actor=p.sam.id) as s:
        assert s.quotes.send(both.id).status is _Q.SENT


# -- signals ------------------------------------------------------------------------------

QUOTE_SIGNALS = (
    "quote_submitted",
    "quote_approved",
    "quote_denied",
    "quote_sent",
    "quote_accepted",
    "quote_rejected",
    "quote_expired",
)


@pytest.fixture
def received() -> Iterator[list[Event]]:
    """Every quote event delivered by a signal during the test, in order."""
    got: list[Event] = []

    def receiver(sender: Any, event: Event) -> None:
        got.append(event)

    for name in QUOTE_SIGNALS:
        signals.signal_for(name).connect(receiver, weak=False)
    try:
        yield got
    finally:
        for name in QUOTE_SIGNALS:
            signals.signal_for(name).disconnect(receiver)


def test_every_quote_signal_is_sent_once_in_order_naming_who_did_it(
    crm: pycrm.CRM, fake_clock: FakeClock, received: list[Event]
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        one = s.quotes.submit(s.quotes.draft(p.deal.id, lines=[presses(p, discount_percent=20)]).id)
        two = s.quotes.send(s.quotes.draft(p.deal.id, lines=[presses(p)]).id)
        three = s.quotes.send(
            s.quotes.draft(p.deal.id, lines=[presses(p)], valid_until=date(2026, 1, 6)).id
        )
    with crm.session(actor=p.max.id) as s:
        s.quotes.deny(one.id, comment="no")
    with crm.session(actor=p.sam.id) as s:
        s.quotes.submit(one.id)
    with crm.session(actor=p.max.id) as s:
        s.quotes.approve(one.id)
    with crm.session(actor=p.sam.id) as s:
        s.quotes.send(one.id)
        s.quotes.reject(two.id, reason="too late")
    fake_clock.set(datetime(2026, 1, 7, tzinfo=UTC))
    with crm.session(actor=p.sam.id) as s:
        s.quotes.scan_expired()
        s.quotes.accept(one.id)
    sam, max_ = p.sam.id, p.max.id
    assert [(e.name, e.record_id, e.actor_id) for e in received] == [
        ("quote_submitted", one.id, sam),
        ("quote_sent", two.id, sam),
        ("quote_sent", three.id, sam),
        ("quote_denied", one.id, max_),
        ("quote_submitted", one.id, sam),
        ("quote_approved", one.id, max_),
        ("quote_sent", one.id, sam),
        ("quote_rejected", two.id, sam),
        ("quote_expired", three.id, sam),
        ("quote_accepted", one.id, sam),
    ]
    assert all(e.record_type == "quote" for e in received)
    accepted = received[-1].after or {}
    assert accepted["status"] == "accepted"
    assert accepted["contract_id"]
    assert [n for n in outbox_names(crm) if n.startswith("quote_")] == [e.name for e in received]


# -- bugs found ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory"])  # a service-layer rule: one backend shows it
def test_a_discount_change_keeps_the_lines_price_list_and_its_quantity_breaks(
    crm: pycrm.CRM,
) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.draft(p.deal.id, lines=[presses(p, discount_percent=12)])
        discounted = s.quotes.update_line(quote.id, 1, discount_percent=5)
        assert discounted.lines[0].price_list_id == p.standard.id
        more = s.quotes.update_line(quote.id, 1, quantity=12)
        assert more.lines[0].unit_price == eur("900")  # the break at 10
        s.quotes.update_line(quote.id, 1, quantity=3, discount_percent=12)
        approved = s.quotes.submit(quote.id)
    with crm.session(actor=p.max.id) as s:
        s.quotes.approve(approved.id)
    with crm.session(actor=p.sam.id) as s:
        same = s.quotes.update_line(quote.id, 1, discount_percent=12)  # changes nothing
    assert same.status is _Q.APPROVED


@pytest.mark.parametrize("backend", ["memory"])  # a domain rule: one backend shows it
def test_a_margin_just_below_the_floor_needs_approval(crm: pycrm.CRM) -> None:
    p = setup(crm)
    with crm.session(actor=crm.system_actor) as s:
        big = s.products.create("PR-900", "Press line", cost=eur("85004"))
    with crm.session(actor=p.sam.id) as s:
        # net 100,000 against a cost of 85,004: a margin of 14.996 %, below 15 %
        quote = s.quotes.draft(
            p.deal.id, lines=[{"product_id": big.id, "unit_price": eur("100000")}]
        )
    refused(crm, p.sam.id, (InvalidTransition, lambda s: s.quotes.send(quote.id)))


@pytest.mark.parametrize("backend", ["memory"])  # a domain rule: one backend shows it
def test_a_costed_product_given_away_needs_approval(crm: pycrm.CRM) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.draft(
            p.deal.id, lines=[presses(p, 1, unit_price=eur("0")), free("Service", "5000")]
        )
    with crm.session(actor=p.max.id) as s:
        seen = s.quotes.get(quote.id)
    assert (seen.cost, seen.margin) == (eur("700"), eur("-700"))  # a loss of 700
    refused(crm, p.sam.id, (InvalidTransition, lambda s: s.quotes.send(quote.id)))


@pytest.mark.parametrize("backend", ["memory"])  # a service-layer rule: one backend shows it
def test_a_quantity_of_a_billion_is_refused(crm: pycrm.CRM) -> None:
    p = setup(crm)
    with crm.session(actor=p.sam.id) as s:
        quote = s.quotes.draft(p.deal.id)
    [error] = refused(
        crm,
        p.sam.id,
        (ValidationError, lambda s: s.quotes.add_line(quote.id, description="Bolt", unit_price=eur("0.01"), quantity=10**9)),
    )  # fmt: skip
    assert getattr(error, "field", None) == "quantity"


# -- properties (the domain, no store) -------------------------------------------------------

CURRENCIES = ("JPY", "KRW", "EUR", "USD", "KWD", "BHD", "CLF")


def _round(value: Decimal, currency: str) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_EVEN)


@st.composite
def priced_lines(draw: st.DrawFn) -> tuple[str, list[QuoteLine]]:
    currency = draw(st.sampled_from(CURRENCIES))
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        places = draw(st.integers(0, 6))
        # up to 8 lines of at most 10**12 units each: totals stay below MAX_AMOUNT
        quantity = Decimal(draw(st.integers(1, 10**5))).scaleb(-places)
        unit_price = Money.from_minor(draw(st.integers(0, 10**7)), currency)
        discount = Decimal(draw(st.integers(0, 10_000))).scaleb(-2)
        tax_rate = Decimal(draw(st.integers(0, 10_000))).scaleb(-2)
        lines.append(
            make_line(
                description="line",
                quantity=quantity,
                unit_price=unit_price,
                discount_percent=discount,
                tax_rate=tax_rate,
            )
        )
    return currency, lines


def _places(amount: Money) -> int:
    exponent = amount.amount.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


@given(priced_lines())
def test_totals_are_the_exact_sums_of_lines_rounded_by_the_rule(
    drawn: tuple[str, list[QuoteLine]],
) -> None:
    currency, lines = drawn
    sums = totals(lines, currency)
    assert sums.list_total.amount == sum((x.list_amount.amount for x in lines), Decimal(0))
    assert sums.subtotal.amount == sum((x.net.amount for x in lines), Decimal(0))
    assert sums.tax.amount == sum((x.tax.amount for x in lines), Decimal(0))
    assert sums.total.amount == sum((x.net.amount + x.tax.amount for x in lines), Decimal(0))
    assert sums.total == sums.subtotal + sums.tax
    units = minor_units(currency)
    for line in lines:
        listed = _round(line.quantity * line.unit_price.amount, currency)
        net = listed - _round(listed * line.discount_percent / 100, currency)
        assert (line.list_amount.amount, line.net.amount) == (listed, net)
        assert line.tax.amount == _round(net * line.tax_rate / 100, currency)
        for amount in (line.list_amount, line.net, line.tax, line.discount, line.total):
            assert (amount.currency, _places(amount) <= units) == (currency, True)
    for amount in (sums.list_total, sums.subtotal, sums.tax, sums.total):
        assert (amount.currency, _places(amount) <= units) == (currency, True)


@given(priced_lines())
def test_a_discount_never_makes_a_net_negative_or_above_its_list_amount(
    drawn: tuple[str, list[QuoteLine]],
) -> None:
    _, lines = drawn
    for line in lines:
        assert Decimal(0) <= line.net.amount <= line.list_amount.amount
        assert line.discount.amount >= 0
        if line.discount_percent == 0:
            assert line.net == line.list_amount
        if line.discount_percent == 100:
            assert line.net.amount == 0
        assert line.tax.amount >= 0


@given(
    priced_lines(),
    st.integers(1, 60),
    st.integers(1, 12),
    st.dates(date(2000, 1, 1), date(2100, 12, 31)),
)
def test_a_schedule_of_a_quote_total_sums_exactly_to_it(
    drawn: tuple[str, list[QuoteLine]], count: int, every: int, first: date
) -> None:
    currency, lines = drawn
    total = totals(lines, currency).total
    schedule = build_schedule(total, count, first, every_months=every)
    assert len(schedule) == count
    assert sum((i.amount.minor for i in schedule), 0) == total.minor
    assert {i.amount.currency for i in schedule} <= {currency}
    minors = [i.amount.minor for i in schedule]
    assert max(minors) - min(minors) <= 1
    assert minors == sorted(minors, reverse=True)  # the first ones carry the remainder
    assert [i.number for i in schedule] == list(range(1, count + 1))
    assert schedule[0].due == first
