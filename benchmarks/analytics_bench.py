"""Analytics on a million rows: pycrm's reports against hand-written SQLAlchemy aggregates.

Loads ``--deals`` rows (default 1,000,000; ``--quick``: 50,000) into each of
pycrm's leads, deals and receivables tables, and half as many into its tickets
table, in a fresh SQLite file, in bulk (rows made by pycrm's codec from real
records, so pycrm reads them as its own): 20 owners, 18 months of dates; leads
of six sources in every status; deals in the four open stages, won and lost,
30% of the closed ones from a converted lead, in four currencies (60% EUR, the
CRM's and reporting currency; USD, JPY and KWD, whose rates are stored each way:
JPY's only as EUR → JPY, so it converts by the inverse); receivables in every status,
falling due from 200 days before to 60 days after the aging day; tickets of
every priority in every status, unassigned only when new, answered within 48
hours unless new (or, for half, assigned), resolved (if resolved or closed) up
to 5 days after the reply, 40% of those rated, their breach flags set where
the default SLA's targets were missed. A ticket
row, with its four JSON columns and four indexes, takes about twice as long to
insert as a deal, hence half as many: a million would take over two minutes.
Then, per report:

* ``forecast``: ``s.analytics.forecast()`` (open pipeline, weighted pipeline
  and won amount per month of expected close, owner and currency),
* ``forecast (reporting currency)``: ``s.analytics.forecast(in_reporting_currency=True)``
  (the same sums per currency, each converted to EUR at the rate valid on the
  aging day and added, per month and owner); the baseline is the same
  ``GROUP BY`` plus hand-written rate look-ups (one ``SELECT`` per currency,
  in Core) and the same conversion rule, in the timed run,
* ``win rate``: ``s.analytics.win_rate(by="owner")`` (won, lost and the mean
  sales cycle of won deals per owner),
* ``funnel``: ``s.analytics.funnel(by="source")`` (leads captured, how many
  reached each status, how many have a won deal),
* ``stages``: ``s.analytics.stage_funnel()`` (the deal-stage funnel: per stage
  of the default pipeline, deals that reached it and moved on, completed stays
  and their median length, from the stage visits: each deal walks from the
  first stage towards its stage, won or lost, skipping a stage or going back
  one now and then, 1 hour to 30 days per stay),
* ``aging``: ``s.analytics.aging(as_of=...)`` (unpaid receivables and the
  amount outstanding per bucket of days past due), and
* ``service``: ``s.analytics.service(by="agent")`` (tickets, resolved, mean
  hours to first reply and to resolution, breaches, rated, mean CSAT per
  assignee, unassigned tickets as one group),

against one hand-written SQLAlchemy Core ``GROUP BY`` of the same figures on
the same tables. An untimed pass checks both give exactly the same groups and
numbers, after the same rounding (if not, the run prints the differing groups,
skips timing that report and exits 1); then the two paths take turns,
``--repeat`` times each, and the medians and their ratio are printed (target:
pycrm ≤ 1.3× the baseline).

Peak memory: each report also runs under ``tracemalloc`` on the full tables
and on a tenth of them (a second tenant holding 10 % of the rows), and the
ratio of the peaks is printed. Rows never reach Python, so it stays near 1×.

    python benchmarks/analytics_bench.py [--quick] [--deals N] [--repeat R] [--seed S]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from functools import partial
from typing import Any

import sqlalchemy as sa
from backends import sqlite_crm

import pycrm
from pycrm.adapters.sqlalchemy.store import SqlStore
from pycrm.domain.deals import Deal, DealStatus, Pipeline, StageVisit
from pycrm.domain.ids import new_id
from pycrm.domain.leads import Lead, LeadStatus
from pycrm.domain.money import Money, minor_units
from pycrm.domain.products import ExchangeRate
from pycrm.domain.receivables import Receivable, ReceivableStatus
from pycrm.domain.tickets import Channel, Priority, SlaPolicy, Ticket, TicketStatus

TARGET = 1.3
OWNERS = 20
STAGES = (("qualification", 10), ("needs_analysis", 25), ("proposal", 50), ("negotiation", 75))
START = datetime(2025, 1, 1, tzinfo=UTC)
AS_OF = date(2026, 1, 1)  # the aging report's day; receivables fall due around it
SOURCES = ("web", "trade_fair", "referral", "cold_call", "partner", "newsletter")
LEAD_STATUSES = tuple(LeadStatus)
RECEIVABLE_STATUSES = tuple(ReceivableStatus)
TICKET_STATUSES = tuple(TicketStatus)
CATEGORIES = ("billing", "delivery", "login", "hardware", "other")
PRIORITIES, CHANNELS = tuple(Priority), tuple(Channel)
SLA = SlaPolicy()  # the default targets: urgent 1 h / 4 h to low 16 h / 80 h
REPORTING = "EUR"  # the bench CRM's currency, so its reporting currency
CURRENCIES, CURRENCY_WEIGHTS = ("EUR", "USD", "JPY", "KWD"), (60, 20, 10, 10)
RATES = (  # (base, quote, rate, valid from): JPY only the other way round
    ("USD", "EUR", "0.92", date(2025, 1, 1)),
    ("USD", "EUR", "0.95", date(2025, 7, 1)),
    ("EUR", "JPY", "160", date(2025, 1, 1)),
    ("KWD", "EUR", "2.987", date(2025, 1, 1)),
    ("KWD", "EUR", "3.01", date(2025, 10, 1)),
    ("USD", "EUR", "0.97", date(2026, 3, 1)),  # after the rate day: never used
)


def insert(crm: pycrm.CRM, template: Any, count: int, vary: Callable[[], dict[str, Any]]) -> None:
    """Insert ``count`` rows like ``template``'s, each updated by ``vary()``, in batches."""
    store = crm.store
    assert isinstance(store, SqlStore)
    codec = store.schema.codec(type(template))
    base = codec.to_row(template)
    rows: list[dict[str, Any]] = []
    with store.engine.begin() as connection:
        for _ in range(count):
            rows.append({**base, "id": new_id(), **vary()})
            if len(rows) == 20_000:
                connection.execute(codec.table.insert(), rows)
                rows = []
        if rows:
            connection.execute(codec.table.insert(), rows)


def naive(when: datetime) -> datetime:
    """``when`` as the SQL adapter stores it on SQLite (UTC, without an offset)."""
    return when.replace(tzinfo=None)


def load(crm: pycrm.CRM, tenant: str, count: int, rng: random.Random) -> None:
    """Bulk-load ``count`` leads, deals and receivables and ``count // 2`` tickets into ``tenant``.

    About 30% of the won deals come from a converted lead, so the funnel's won
    column has something to count. A ticket's breach flags say whether its
    first reply and resolution came after the default SLA's targets.
    """
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        owners = [
            s.org.create_user(f"Owner {i:02d}", f"owner{i:02d}@bench.example", "sales").id
            for i in range(OWNERS)
        ]
        customer = s.customers.create("Bench GmbH")
        for base, quote, rate, valid_on in RATES:
            s.rates.set(base, quote, rate, on=valid_on)
        pipeline = s.deals.pipeline()
        euro = Money.of("1", "EUR")
        lead = Lead(**s._stamp(name="Lead", source="web"))
        deal = Deal(
            **s._stamp(
                name="Deal",
                customer_id=customer.id,
                pipeline_id=pipeline.id,
                stage="qualification",
                probability=10,
                amount=euro,
            )
        )
        receivable = Receivable(
            **s._stamp(
                contract_id=new_id(),
                customer_id=customer.id,
                instalment=1,
                amount=euro,
                due=AS_OF,
                paid=Money.zero("EUR"),
            )
        )
        ticket = Ticket(**s._stamp(subject="Ticket", channel=Channel.EMAIL, opened_at=START))
        visit = StageVisit(
            **s._stamp(
                deal_id=new_id(),
                pipeline_id=pipeline.id,
                stage="qualification",
                position=0,
                reached_before=-1,
                entered_at=START,
                opened_at=START,
                moved_by="system",
            )
        )

    converted: list[str] = []
    visits: list[dict[str, Any]] = []

    def a_lead() -> dict[str, Any]:
        status = rng.choice(LEAD_STATUSES)
        return {
            "status": status.value,
            "source": rng.choice(SOURCES),
            "owner_id": None if status is LeadStatus.NEW else rng.choice(owners),
            "created_at": naive(START + timedelta(minutes=rng.randrange(0, 540 * 24 * 60))),
        }

    def a_deal() -> dict[str, Any]:
        created = START + timedelta(minutes=rng.randrange(0, 540 * 24 * 60))
        roll = rng.random()
        if roll < 0.2:
            status, stage, probability = DealStatus.WON, "won", 100
            closed: datetime | None = created + timedelta(hours=rng.randrange(1, 24 * 120))
        elif roll < 0.35:
            status, stage, probability = DealStatus.LOST, "lost", 0
            closed = created + timedelta(hours=rng.randrange(1, 24 * 120))
        else:
            status, closed = DealStatus.OPEN, None
            stage, probability = rng.choice(STAGES)
        from_lead = bool(converted) and status is not DealStatus.OPEN and rng.random() < 0.3
        owner = rng.choice(owners)
        walk(new_id(), owner, created, status, stage)
        currency = rng.choices(CURRENCIES, CURRENCY_WEIGHTS)[0]
        return {
            "owner_id": owner,
            "amount_currency": currency,
            "lead_id": rng.choice(converted) if from_lead else None,
            "status": status.value,
            "stage": stage,
            "probability": probability,
            "amount_minor": rng.randrange(100_00, 250_000_00),
            "expected_close": (created + timedelta(days=rng.randrange(10, 120))).date(),
            "created_at": naive(created),
            "closed_at": None if closed is None else naive(closed),
        }

    keys = [key for key, _ in STAGES]

    def walk(deal: str, owner: str, opened: datetime, status: DealStatus, stage: str) -> None:
        """The deal's stays, from the first stage towards where it ended (rows for ``visits``)."""
        goal = keys.index(stage) if stage in keys else rng.randrange(len(keys))
        at, position, best, path = opened, 0, -1, []
        while True:
            path.append(position)
            if position == goal:
                break
            roll = rng.random()
            if roll < 0.1 and position > 0:
                position -= 1  # back one stage
            elif roll < 0.2 and position + 2 <= goal:
                position += 2  # skips one
            else:
                position += 1
        if status is DealStatus.WON:
            path.append(len(keys))
        elif status is DealStatus.LOST:
            path.append(-1)
        for i, place in enumerate(path):
            closing = place == len(keys) or place < 0
            left = (
                None
                if closing or i + 1 == len(path)
                else at + timedelta(minutes=rng.randrange(60, 30 * 24 * 60))
            )
            visits.append(
                {
                    "id": new_id(),
                    "deal_id": deal,
                    "owner_id": owner,
                    "stage": "won" if place == len(keys) else "lost" if place < 0 else keys[place],
                    "position": place,
                    "reached_before": best,
                    "entered_at": naive(at),
                    "left_at": None if left is None else naive(left),
                    "opened_at": naive(opened),
                }
            )
            best = max(best, place)
            if left is not None:
                at = left

    def a_receivable() -> dict[str, Any]:
        amount = rng.randrange(100_00, 50_000_00)
        status = rng.choice(RECEIVABLE_STATUSES)
        paid = {"paid": amount, "partially_paid": rng.randrange(1, amount)}.get(status.value, 0)
        return {
            "owner_id": rng.choice(owners),
            "status": status.value,
            "amount_minor": amount,
            "paid_minor": paid,
            "due": AS_OF + timedelta(days=rng.randrange(-200, 60)),
        }

    def a_ticket() -> dict[str, Any]:
        opened = START + timedelta(minutes=rng.randrange(0, 540 * 24 * 60))
        status, priority = rng.choice(TICKET_STATUSES), rng.choice(PRIORITIES)
        target = SLA.target(priority, None)
        answered = status is not TicketStatus.NEW and (
            status is not TicketStatus.ASSIGNED or rng.random() < 0.5
        )
        first = opened + timedelta(minutes=rng.randrange(1, 48 * 60)) if answered else None
        resolved = None
        if first is not None and status in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
            resolved = first + timedelta(minutes=rng.randrange(0, 5 * 24 * 60))
        rated = resolved is not None and rng.random() < 0.4
        return {
            "status": status.value,
            "priority": priority.value,
            "channel": rng.choice(CHANNELS).value,
            "category": rng.choice(CATEGORIES),
            "assignee_id": None if status is TicketStatus.NEW else rng.choice(owners),
            "opened_at": naive(opened),
            "first_response_at": None if first is None else naive(first),
            "first_response_due": naive(opened + target.first_response),
            "resolution_due": naive(opened + target.resolution),
            "resolved_at": None if resolved is None else naive(resolved),
            "closed_at": naive(resolved) if resolved and status is TicketStatus.CLOSED else None,
            "resolutions": 0 if resolved is None else 1,
            "first_response_breached": first is not None and first - opened > target.first_response,
            "resolution_breached": resolved is not None and resolved - opened > target.resolution,
            "csat_score": rng.randint(1, 5) if rated else None,
            "csat_resolution": 1 if rated else None,
        }

    insert(crm, lead, count, a_lead)
    leads = crm.store.schema.codec(Lead).table  # type: ignore[attr-defined]
    with crm.engine.connect() as connection:
        converted = list(
            connection.execute(
                sa.select(leads.c.id).where(
                    leads.c.tenant_id == tenant, leads.c.status == LeadStatus.CONVERTED.value
                )
            ).scalars()
        )
    insert(crm, deal, count, a_deal)
    pending = iter(visits)
    insert(crm, visit, len(visits), lambda: next(pending))
    insert(crm, receivable, count, a_receivable)
    insert(crm, ticket, count // 2, a_ticket)  # twice as slow a row: see the module docstring


# -- the hand-written baselines ------------------------------------------------


class Baseline:
    """The same figures, as one hand-written GROUP BY each."""

    def __init__(self, crm: pycrm.CRM, tenant: str) -> None:
        store = crm.store
        assert isinstance(store, SqlStore)
        self.engine = store.engine
        self.tenant = tenant
        self.rates = store.schema.codec(ExchangeRate).table
        t = store.schema.codec(Deal).table
        opened = t.c.status == DealStatus.OPEN.value
        won = t.c.status == DealStatus.WON.value
        lost = t.c.status == DealStatus.LOST.value
        month = sa.func.strftime("%Y-%m", t.c.expected_close)

        def when(condition: Any, value: Any) -> Any:
            return sa.func.coalesce(sa.func.sum(sa.case((condition, value))), 0)

        def seconds(start: Any, end: Any) -> Any:
            return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0

        self.forecast_query = (
            sa.select(
                month,
                t.c.owner_id,
                t.c.amount_currency,
                when(opened, t.c.amount_minor),
                when(opened, t.c.amount_minor * t.c.probability),
                when(won, t.c.amount_minor),
            )
            .where(t.c.tenant_id == tenant, t.c.expected_close.is_not(None))
            .group_by(month, t.c.owner_id, t.c.amount_currency)
        )
        self.win_rate_query = (
            sa.select(
                t.c.owner_id,
                sa.func.count(sa.case((won, 1))),
                sa.func.count(sa.case((lost, 1))),
                sa.func.avg(sa.case((won, seconds(t.c.created_at, t.c.closed_at)))),
            )
            .where(t.c.tenant_id == tenant, t.c.status.in_([DealStatus.WON.value, DealStatus.LOST.value]))
            .group_by(t.c.owner_id)
        )  # fmt: skip

        leads = store.schema.codec(Lead).table
        won_leads = (
            sa.select(t.c.lead_id)
            .where(t.c.tenant_id == tenant, won, t.c.lead_id.is_not(None))
            .group_by(t.c.lead_id)
            .subquery()
        )
        reached = {  # a lead that got this far is in this status or a later one
            "assigned": ["assigned", "contacted", "qualified", "converted"],
            "contacted": ["contacted", "qualified", "converted"],
            "qualified": ["qualified", "converted"],
            "converted": ["converted"],
            "disqualified": ["disqualified"],
        }
        self.funnel_query = (
            sa.select(
                leads.c.source,
                sa.func.count(),
                *(sa.func.count(sa.case((leads.c.status.in_(s), 1))) for s in reached.values()),
                sa.func.count(won_leads.c.lead_id),
            )
            .select_from(leads.outerjoin(won_leads, won_leads.c.lead_id == leads.c.id))
            .where(leads.c.tenant_id == tenant)
            .group_by(leads.c.source)
        )

        v = store.schema.codec(StageVisit).table
        self.stage_keys = [key for key, _ in STAGES]
        pipelines = store.schema.codec(Pipeline).table
        with self.engine.connect() as connection:
            pipeline = connection.execute(
                sa.select(pipelines.c.id).where(
                    pipelines.c.tenant_id == tenant, pipelines.c.key == "default"
                )
            ).scalar_one()
        mine = sa.and_(v.c.tenant_id == tenant, v.c.pipeline_id == pipeline)
        self.reached_query = sa.select(
            *(
                sa.func.count(sa.case((sa.and_(v.c.position >= k, v.c.reached_before < k), 1)))
                for k in range(len(STAGES) + 1)
            )
        ).where(mine)
        spent = seconds(v.c.entered_at, v.c.left_at)
        stays = (
            sa.select(
                v.c.stage,
                spent.label("d"),
                sa.func.row_number().over(partition_by=v.c.stage, order_by=spent).label("rn"),
                sa.func.count().over(partition_by=v.c.stage).label("n"),
            )
            .where(mine, v.c.left_at.is_not(None), v.c.position >= 0)
            .subquery()
        )
        middle = stays.c.rn.in_([(stays.c.n + 1) // 2, (stays.c.n + 2) // 2])
        self.stays_query = sa.select(
            stays.c.stage, sa.func.count(), sa.func.avg(sa.case((middle, stays.c.d)))
        ).group_by(stays.c.stage)

        r = store.schema.codec(Receivable).table
        days = sa.func.julianday(AS_OF.isoformat()) - sa.func.julianday(r.c.due)
        bucket = sa.case(
            (days <= 0, "current"),
            (days <= 30, "0-30"),
            (days <= 60, "31-60"),
            (days <= 90, "61-90"),
            else_="90+",
        )
        self.aging_query = (
            sa.select(
                bucket,
                r.c.amount_currency,
                sa.func.count(),
                sa.func.sum(r.c.amount_minor) - sa.func.sum(r.c.paid_minor),
            )
            .where(
                r.c.tenant_id == tenant,
                r.c.status.in_(["open", "partially_paid", "overdue"]),
            )
            .group_by(bucket, r.c.amount_currency)
        )

        k = store.schema.codec(Ticket).table
        self.service_query = (
            sa.select(
                k.c.assignee_id,
                sa.func.count(),
                sa.func.count(k.c.resolved_at),
                sa.func.avg(seconds(k.c.opened_at, k.c.first_response_at)),
                sa.func.avg(seconds(k.c.opened_at, k.c.resolved_at)),
                sa.func.count(
                    sa.case((sa.or_(k.c.first_response_breached, k.c.resolution_breached), 1))
                ),
                sa.func.count(k.c.csat_score),
                sa.func.avg(k.c.csat_score),
            )
            .where(k.c.tenant_id == tenant)
            .group_by(k.c.assignee_id)
        )

    def _rows(self, query: sa.Select[Any]) -> list[Any]:
        """The rows ``query`` returns."""
        with self.engine.connect() as connection:
            return list(connection.execute(query).all())

    def forecast(self) -> dict[tuple[str, str, str], tuple[Money, Money, Money]]:
        """Pipeline, weighted (rounded half-even to minor units), won per month, owner, currency."""
        out = {}
        for period, owner, currency, pipeline, weighted, won in self._rows(self.forecast_query):
            cents = int((Decimal(weighted) / 100).to_integral_value(ROUND_HALF_EVEN))
            out[(period, owner, currency)] = (
                Money.from_minor(pipeline, currency),
                Money.from_minor(cents, currency),
                Money.from_minor(won, currency),
            )
        return out

    def rate(self, connection: sa.Connection, currency: str, day: date) -> Decimal:
        """Units of REPORTING per ``currency`` on ``day``: the pair's latest rate, else the
        inverse (to 18 significant digits) of the opposite pair's."""
        if currency == REPORTING:
            return Decimal(1)
        x = self.rates
        for base, quote in ((currency, REPORTING), (REPORTING, currency)):
            found = connection.execute(
                sa.select(x.c.rate)
                .where(x.c.tenant_id == self.tenant, x.c.base == base, x.c.quote == quote,
                       x.c.valid_on <= day)
                .order_by(x.c.valid_on.desc())
                .limit(1)
            ).scalar()  # fmt: skip
            if found is not None:
                if base == currency:
                    return Decimal(found)
                with localcontext() as exact:
                    exact.prec = 18
                    return +(Decimal(1) / Decimal(found)).normalize()
        raise LookupError(f"no rate for {currency}/{REPORTING} on {day}")

    def converted_forecast(self) -> dict[tuple[str, str], tuple[Money, Money, Money]]:
        """The forecast's sums per currency, each converted to REPORTING on AS_OF (rounded
        half-even to the cent), added per month and owner."""
        with self.engine.connect() as connection:
            rows = connection.execute(self.forecast_query).all()
            rates = {c: self.rate(connection, c, AS_OF) for c in {row[2] for row in rows}}
        quantum = Decimal(1).scaleb(-minor_units(REPORTING))
        totals: dict[tuple[str, str], list[Decimal]] = {}
        for period, owner, currency, pipeline, weighted, won in rows:
            cents = int((Decimal(weighted) / 100).to_integral_value(ROUND_HALF_EVEN))
            total = totals.setdefault((period, owner), [Decimal(0)] * 3)
            for i, minor in enumerate((pipeline, cents, won)):
                amount = Decimal(minor).scaleb(-minor_units(currency)) * rates[currency]
                total[i] += amount.quantize(quantum, rounding=ROUND_HALF_EVEN)
        return {
            key: (Money(p, REPORTING), Money(w, REPORTING), Money(n, REPORTING))
            for key, (p, w, n) in totals.items()
        }

    def win_rate(self) -> dict[str, tuple[int, int, float | None]]:
        """Won, lost and the mean days from opening to winning (2 decimals) per owner."""
        return {
            owner: (won, lost, hours_or_days(cycle, 86400))
            for owner, won, lost, cycle in self._rows(self.win_rate_query)
        }

    def funnel(self) -> dict[str, tuple[int, ...]]:
        """Captured, reached assigned … disqualified, and with a won deal, per source."""
        return {source: tuple(figures) for source, *figures in self._rows(self.funnel_query)}

    def stages(self) -> dict[str, tuple[Any, ...]]:
        """Per stage (and won): reached, moved on, completed stays, median days in stage."""
        with self.engine.connect() as connection:
            reached = list(connection.execute(self.reached_query).one())
            stays = {stage: (n, med) for stage, n, med in connection.execute(self.stays_query)}
        out = {}
        for k, stage in enumerate([*self.stage_keys, "won"]):
            n, median = stays.get(stage, (0, None))
            out[stage] = (
                reached[k], reached[k + 1] if k < len(self.stage_keys) else 0, n,
                hours_or_days(median, 86400),
            )  # fmt: skip
        return out

    def aging(self) -> dict[tuple[str, str], tuple[int, Money]]:
        """Unpaid receivables and the amount outstanding per age bucket and currency."""
        return {
            (bucket, currency): (count, Money.from_minor(outstanding, currency))
            for bucket, currency, count, outstanding in self._rows(self.aging_query)
        }

    def service(self) -> dict[str, tuple[Any, ...]]:
        """Tickets, resolved, mean hours to reply and resolve, breaches, rated, CSAT per agent."""
        return {
            agent or "": (
                tickets, resolved, hours_or_days(first, 3600), hours_or_days(resolution, 3600),
                breaches, rated, None if csat is None else round(csat, 2),
            )
            for agent, tickets, resolved, first, resolution, breaches, rated, csat
            in self._rows(self.service_query)
        }  # fmt: skip


def hours_or_days(seconds: float | None, unit: int) -> float | None:
    """A mean duration in seconds as ``unit``-second units rounded to 2 decimals, as pycrm does."""
    return None if seconds is None else round(seconds / unit, 2)


# -- pycrm's side, as the same shapes ------------------------------------------


def pycrm_forecast(
    crm: pycrm.CRM, tenant: str
) -> dict[tuple[str, str, str], tuple[Money, Money, Money]]:
    """``forecast()`` in the baseline's shape: (month, owner, currency) → pipeline, weighted, won."""
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        rows = s.analytics.forecast()
    return {(r.period, r.owner_id or "", r.currency): (r.pipeline, r.weighted, r.won) for r in rows}


def pycrm_converted_forecast(
    crm: pycrm.CRM, tenant: str
) -> dict[tuple[str, str], tuple[Money, Money, Money]]:
    """``forecast(in_reporting_currency=True)`` on AS_OF: (month, owner) → the figures in EUR."""
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        rows = s.analytics.forecast(in_reporting_currency=True, rates_on=AS_OF)
    return {(r.period, r.owner_id or ""): (r.pipeline, r.weighted, r.won) for r in rows}


def pycrm_win_rate(crm: pycrm.CRM, tenant: str) -> dict[str, tuple[int, int, float | None]]:
    """``win_rate(by="owner")`` in the baseline's shape: owner → won, lost, cycle days."""
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        rows = s.analytics.win_rate(by="owner")
    return {r.group or "": (r.won, r.lost, r.avg_cycle_days) for r in rows}


def pycrm_funnel(crm: pycrm.CRM, tenant: str) -> dict[str, tuple[int, ...]]:
    """``funnel(by="source")`` in the baseline's shape: source → the seven counts."""
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        rows = s.analytics.funnel(by="source")
    return {
        r.group or "": (
            r.captured, r.assigned, r.contacted, r.qualified, r.converted, r.disqualified, r.won
        )
        for r in rows
    }  # fmt: skip


def pycrm_stages(crm: pycrm.CRM, tenant: str) -> dict[str, tuple[Any, ...]]:
    """``stage_funnel()`` in the baseline's shape: stage → reached, moved on, stays, median."""
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        rows = s.analytics.stage_funnel()
    return {r.stage: (r.reached, r.advanced, r.stays, r.median_days) for r in rows}


def pycrm_aging(crm: pycrm.CRM, tenant: str) -> dict[tuple[str, str], tuple[int, Money]]:
    """``aging(as_of=AS_OF)`` in the baseline's shape: (bucket, currency) → count, outstanding."""
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        rows = s.analytics.aging(as_of=AS_OF)
    return {(r.bucket, r.currency): (r.count, r.outstanding) for r in rows}


def pycrm_service(crm: pycrm.CRM, tenant: str) -> dict[str, tuple[Any, ...]]:
    """``service(by="agent")`` in the baseline's shape: agent ("" for none) → the figures."""
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        rows = s.analytics.service(by="agent")
    return {
        r.group or "": (
            r.tickets, r.resolved, r.avg_first_response_hours, r.avg_resolution_hours,
            r.breaches, r.rated, r.avg_csat,
        )
        for r in rows
    }  # fmt: skip


def time_ms(call: Callable[[], Any], samples: list[float]) -> None:
    """Run ``call`` once and append its wall time in milliseconds to ``samples``."""
    started = time.perf_counter()
    call()
    samples.append((time.perf_counter() - started) * 1000)


def peak_kib(call: Callable[[], Any]) -> float:
    """Run ``call`` once under ``tracemalloc``; its peak traced memory in KiB."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1] / 1024
    finally:
        tracemalloc.stop()


def measure(name: str, ours: Callable[[str], Any], theirs: Callable[[], Any], repeat: int) -> bool:
    """Time both paths in turns, measure pycrm's peak memory, print a line; True if on target."""
    mine: list[float] = []
    base: list[float] = []
    for i in range(repeat):
        pair = [(lambda: ours("big"), mine), (theirs, base)]
        for call, samples in pair if i % 2 == 0 else reversed(pair):
            time_ms(call, samples)
    ratio = statistics.median(mine) / statistics.median(base)
    small, big = peak_kib(lambda: ours("small")), peak_kib(lambda: ours("big"))
    verdict = "OK" if ratio <= TARGET else f"MISSES ≤ {TARGET}×"
    print(
        f"{name:29} {statistics.median(mine):10.1f} {statistics.median(base):12.1f} "
        f"{ratio:6.2f}×  {small:15.0f} {big:15.0f} {big / small:6.2f}×  {verdict}"
    )
    return ratio <= TARGET


def main() -> int:
    """Load, check and time every report; 1 if any disagrees with its baseline or misses."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 rows per table, fewer repeats")
    parser.add_argument(
        "--deals", type=int, help="leads, deals and receivables each (default 1,000,000)"
    )
    parser.add_argument("--repeat", type=int, help="timed runs per path and report")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    deals = args.deals or (50_000 if args.quick else 1_000_000)
    repeat = args.repeat or (5 if args.quick else 9)
    rng = random.Random(args.seed)
    with sqlite_crm() as crm:
        started = time.perf_counter()
        load(crm, "big", deals, rng)
        load(crm, "small", deals // 10, rng)
        print(
            f"loaded {deals:,} + {deals // 10:,} each of leads, deals and receivables and "
            f"{deals // 2:,} + {deals // 10 // 2:,} tickets in {time.perf_counter() - started:.0f}s"
        )
        store = crm.store
        assert isinstance(store, SqlStore)
        with store.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
        reports: dict[str, tuple[Callable[[str], Any], Callable[[Baseline], Any]]] = {
            "forecast": (lambda t: pycrm_forecast(crm, t), Baseline.forecast),
            "forecast (reporting currency)": (
                lambda t: pycrm_converted_forecast(crm, t),
                Baseline.converted_forecast,
            ),
            "win rate": (lambda t: pycrm_win_rate(crm, t), Baseline.win_rate),
            "funnel": (lambda t: pycrm_funnel(crm, t), Baseline.funnel),
            "stages": (lambda t: pycrm_stages(crm, t), Baseline.stages),
            "aging": (lambda t: pycrm_aging(crm, t), Baseline.aging),
            "service": (lambda t: pycrm_service(crm, t), Baseline.service),
        }
        baseline = Baseline(crm, "big")
        print(
            f"\nSQLite, {deals:,} rows per table ({deals // 2:,} tickets), median of {repeat} runs "
            "each, paths interleaved"
        )
        print(f"{'report':29} {'pycrm ms':>10} {'baseline ms':>12} {'ratio':>7}  "
              f"{'peak KiB (10%)':>15} {'peak KiB (all)':>15} {'growth':>7}")  # fmt: skip
        failed = False
        for name, (ours, theirs) in reports.items():
            mine, base = ours("big"), theirs(baseline)
            if mine != base:  # exactly: same groups, same figures (a Decimal equals its int)
                print(f"!! {name}: pycrm and the baseline disagree")
                for key in sorted(mine.keys() | base.keys(), key=str):
                    if mine.get(key) != base.get(key):
                        print(f"   {key}: pycrm {mine.get(key)}, baseline {base.get(key)}")
                failed = True
                continue
            failed |= not measure(name, ours, partial(theirs, baseline), repeat)
    print(
        "\nratio: pycrm / hand-written aggregate (target ≤ 1.3×); growth: peak Python memory "
        "for all the rows / for a tenth of them (rows never reach Python, so ~1×)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
