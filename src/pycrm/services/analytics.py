"""Analytics: the figures managers decide by, each a few aggregate queries.

Every figure is computed by the adapter's ``aggregate`` (one GROUP BY query
on SQL; the same arithmetic in Python on the memory adapter) over the rows
the actor may read, so a salesperson's funnel counts only what they may see.

Money figures come per currency. ``forecast``, ``win_rate`` and ``sources``
also report in the tenant's reporting currency on request
(``in_reporting_currency=True``): the aggregate still sums per currency, and
each currency's sum is then converted once, at the rate valid on one day
(``rates_on``, default today), rounded half to even to the reporting
currency's minor units, and the converted sums are added. The rows say which
rates they used (:class:`RateUsed`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

import attrs

from pycrm.domain.aggregates import (
    AgeBucket,
    AvgDuration,
    Count,
    Field,
    GroupKey,
    Max,
    MedianDuration,
    Period,
    Sum,
    SumProduct,
)
from pycrm.domain.campaigns import Campaign, Quota
from pycrm.domain.contracts import BillingPeriod, Contract, ContractStatus, add_months
from pycrm.domain.deals import Deal, DealStatus, StageVisit
from pycrm.domain.fields import check_bool, check_date, check_key, check_money
from pycrm.domain.leads import Lead, LeadStatus
from pycrm.domain.money import Money, minor_units
from pycrm.domain.org import Team, User
from pycrm.domain.query import (
    And,
    AnyKey,
    Eq,
    Filter,
    In,
    IsNull,
    Not,
    Or,
    OrderBy,
    Range,
    Related,
    all_of,
)
from pycrm.domain.receivables import Receivable, ReceivableStatus
from pycrm.domain.records import Stored
from pycrm.domain.tickets import Ticket
from pycrm.errors import ValidationError
from pycrm.services.campaigns import PURCHASES
from pycrm.services.records import Service, check_when
from pycrm.services.search import custom_filter, referenced

if TYPE_CHECKING:
    from pycrm.services.products import RateService

__all__ = [
    "AgingRow",
    "AnalyticsService",
    "ForecastRow",
    "FunnelRow",
    "RFMRow",
    "RateUsed",
    "ServiceRow",
    "SourceRow",
    "StageFunnelRow",
    "SubscriptionRow",
    "WinRateRow",
]

_L = LeadStatus
_REACHED = {
    "assigned": [_L.ASSIGNED, _L.CONTACTED, _L.QUALIFIED, _L.CONVERTED],
    "contacted": [_L.CONTACTED, _L.QUALIFIED, _L.CONVERTED],
    "qualified": [_L.QUALIFIED, _L.CONVERTED],
    "converted": [_L.CONVERTED],
    "disqualified": [_L.DISQUALIFIED],
}
_PERIOD = re.compile(r"\d{4}-(0[1-9]|1[0-2]|Q[1-4])")
_UNPAID = [ReceivableStatus.OPEN, ReceivableStatus.PARTIALLY_PAID, ReceivableStatus.OVERDUE]


@attrs.frozen
class RateUsed:
    """The exchange rate a report in the reporting currency converted one currency's sums by.

    Each currency is converted at one rate for the whole report: the rate
    :meth:`~pycrm.services.products.RateService.convert` picks for the
    report's rate day.
    """

    currency: str
    """The original currency of the records (``USD``)."""
    rate: Decimal
    """Reporting-currency units per unit of ``currency`` (1 for the reporting currency itself)."""
    rate_date: date | None
    """The day the rate was valid from (None for the reporting currency itself)."""
    inverted: bool = False
    """True when only the opposite pair's rate was stored and its inverse was used."""


@attrs.frozen
class FunnelRow:
    """Leads per funnel stage for one group (source, owner, campaign or period)."""

    group: str | None
    captured: int
    assigned: int
    contacted: int
    qualified: int
    converted: int
    disqualified: int
    won: int
    """Converted leads whose deal was won."""

    @property
    def conversion_rate(self) -> float:
        """Converted / captured."""
        return self.converted / self.captured if self.captured else 0.0


@attrs.frozen
class StageFunnelRow:
    """One stage of a pipeline for one group: how many deals got there, moved on, and how fast."""

    group: str | None
    """The owner's id, the team's name or the period (of opening); None without ``by``."""
    stage: str
    """The stage's key; ``won`` for the last row."""
    name: str
    """The stage's name (``Won``)."""
    position: int
    """Its place in the pipeline, 0 first (``won``: the number of stages)."""
    reached: int
    """Deals that got at least this far. A deal that skipped the stage passed it; one moved
    back still counts where it had been."""
    advanced: int
    """Of those, deals that got further: to a later stage or won (0 on ``won``)."""
    stays: int
    """Completed stays in the stage (a deal that came back to it stays twice)."""
    median_days: float | None
    """The median time a completed stay lasted, in days (2 decimals); None without one."""

    @property
    def conversion(self) -> float | None:
        """``advanced / reached``: the stage-to-stage conversion (None on ``won`` or nobody)."""
        if self.stage == "won" or not self.reached:
            return None
        return self.advanced / self.reached


@attrs.frozen
class ForecastRow:
    """Open pipeline, weighted forecast and won business per period and owner, against quota."""

    period: str
    owner_id: str | None
    currency: str
    """The deals' currency; the reporting currency with ``in_reporting_currency``."""
    pipeline: Money
    """Open deals' amounts expected to close in the period."""
    weighted: Money
    """Open deals' amounts × probability."""
    won: Money
    """Deals won in the period (by expected close)."""
    quota: Money | None
    """The owner's quota for the period, if set (converted with ``in_reporting_currency``;
    else only on the row of its own currency)."""
    rates: tuple[RateUsed, ...] = ()
    """With ``in_reporting_currency``: the rate each original currency (the deals' and the
    quota's) was converted by, by currency; empty otherwise."""

    @property
    def attainment(self) -> float | None:
        """(won + weighted) / quota."""
        if self.quota is None or self.quota.amount == 0:
            return None
        return float((self.won.amount + self.weighted.amount) / self.quota.amount)


@attrs.frozen
class WinRateRow:
    """Won and lost deals and the sales cycle for one group."""

    group: str | None
    won: int
    lost: int
    avg_cycle_days: float | None
    """Mean days from opening to winning."""
    won_amount: Money | None = None
    """With ``in_reporting_currency``: the won deals' amounts, converted; else None."""
    lost_amount: Money | None = None
    """With ``in_reporting_currency``: the lost deals' amounts, converted; else None."""
    rates: tuple[RateUsed, ...] = ()
    """With ``in_reporting_currency``: the rate each original currency was converted by."""

    @property
    def win_rate(self) -> float:
        """Won / (won + lost)."""
        closed = self.won + self.lost
        return self.won / closed if closed else 0.0


@attrs.frozen
class SourceRow:
    """How well a lead source or campaign works."""

    source: str | None
    leads: int
    converted: int
    won_deals: int
    currency: str | None
    """The currency of ``revenue`` (None without won deals)."""
    revenue: Money | None
    """Won deals' amounts attributed to it: in the reporting currency with
    ``in_reporting_currency`` (every currency converted and added); else in one
    currency, the first by code, the others being in ``revenues``."""
    cost: Money | None
    """Campaign budget (campaigns only; converted with ``in_reporting_currency``)."""
    revenues: tuple[Money, ...] = ()
    """Won deals' amounts per original currency, by currency (before any conversion)."""
    rates: tuple[RateUsed, ...] = ()
    """With ``in_reporting_currency``: the rate each original currency (the deals' and the
    budget's) was converted by."""

    @property
    def conversion_rate(self) -> float:
        """Converted / leads."""
        return self.converted / self.leads if self.leads else 0.0

    @property
    def cost_per_won_deal(self) -> Money | None:
        """Cost / won deals."""
        if self.cost is None or not self.won_deals:
            return None
        return Money.of(self.cost.amount / self.won_deals, self.cost.currency)


@attrs.frozen
class RFMRow:
    """A customer's recency, frequency and monetary scores (1-5) and class."""

    customer_id: str
    recency_days: int
    frequency: int
    monetary: Money
    r: int
    f: int
    m: int
    segment: str
    """``champions``, ``loyal``, ``new``, ``at_risk``, ``hibernating`` or ``potential``."""


@attrs.frozen
class SubscriptionRow:
    """Recurring revenue on a day, and how it moved over the month up to it.

    MRR is each running subscription's ``recurring`` amount per month (a
    quarterly one's a third, a yearly one's a twelfth), summed exactly and
    rounded half to even to the currency's minor units.
    """

    currency: str
    """The subscriptions' currency; the reporting currency with ``in_reporting_currency``."""
    subscriptions: int
    """How many run on the day (signed, active, or completed or terminated after it)."""
    mrr: Money
    """Their monthly recurring revenue."""
    start_mrr: Money
    """The MRR of those running on the day a month before."""
    new_mrr: Money
    """The MRR of those that started in the month (a renewal is not new)."""
    churned_mrr: Money
    """The MRR lost in the month: terms that ended without a renewal, or were terminated."""
    rates: tuple[RateUsed, ...] = ()
    """With ``in_reporting_currency``: the rate each original currency was converted by."""

    @property
    def arr(self) -> Money:
        """Annual recurring revenue: twelve times the MRR."""
        return Money.of(self.mrr.amount * 12, self.mrr.currency)

    @property
    def churn_rate(self) -> float | None:
        """Churned MRR / the MRR a month before (None when there was none)."""
        if not self.start_mrr.amount:
            return None
        return float(self.churned_mrr.amount / self.start_mrr.amount)


@attrs.frozen
class AgingRow:
    """Unpaid receivables in one age bucket and currency."""

    bucket: str
    """``current``, ``0-30``, ``31-60``, ``61-90``, ``90+`` (days past due)."""
    currency: str
    """The receivables' currency; the reporting currency with ``in_reporting_currency``."""
    count: int
    outstanding: Money
    rates: tuple[RateUsed, ...] = ()
    """With ``in_reporting_currency``: the rate each original currency was converted by."""


@attrs.frozen
class ServiceRow:
    """Service desk figures for one group (priority, category, agent or period)."""

    group: str | None
    tickets: int
    resolved: int
    avg_first_response_hours: float | None
    avg_resolution_hours: float | None
    breaches: int
    """Tickets that breached a target."""
    rated: int
    avg_csat: float | None

    @property
    def breach_rate(self) -> float:
        """Breached / tickets."""
        return self.breaches / self.tickets if self.tickets else 0.0


def _label(value: Any) -> str | None:
    return None if value is None else str(value)


class _Converter:
    """Turns one report's per-currency sums into the reporting currency.

    Each currency gets one rate for the whole report, looked up (and the
    actor's right to see it checked) by ``s.rates.convert`` the first time
    the currency comes up: a missing rate is its ``NotFound``, a hidden one
    its ``PermissionDenied``. A sum is then multiplied by the rate and rounded
    half to even to the reporting currency's minor units, as
    :func:`pycrm.domain.products.convert` rounds.
    """

    def __init__(self, rates: RateService, day: date) -> None:
        self.target = rates.reporting_currency
        self.zero = Money.zero(self.target)
        self._rates = rates
        self._day = day
        self._quantum = Decimal(1).scaleb(-minor_units(self.target))
        self._used: dict[str, RateUsed] = {}

    def used(self, currency: str) -> RateUsed:
        """The rate ``currency`` converts by in this report."""
        found = self._used.get(currency)
        if found is None:
            unit = self._rates.convert(Money.zero(currency), self.target, on=self._day)
            found = RateUsed(currency, unit.rate, unit.rate_date, unit.inverted)
            self._used[currency] = found
        return found

    def minor(self, minor: Any, currency: str) -> Decimal:
        """``minor`` units of ``currency`` (an aggregate's sum) converted: a rounded Decimal."""
        exact = Decimal(minor).scaleb(-minor_units(currency)) * self.used(currency).rate
        return exact.quantize(self._quantum, rounding=ROUND_HALF_EVEN)

    def __call__(self, money: Money) -> Money:
        amount = money.amount * self.used(money.currency).rate
        return Money(amount.quantize(self._quantum, rounding=ROUND_HALF_EVEN), self.target)

    def rates(self, currencies: Iterable[str]) -> tuple[RateUsed, ...]:
        """The rates of ``currencies``, by currency code."""
        return tuple(self.used(currency) for currency in sorted(set(currencies)))


def _forecast_minor(row: Mapping[str, Any]) -> tuple[Any, int, Any]:
    """An aggregate row's pipeline, weighted forecast (rounded half to even) and won: minor units."""
    weighted = int((Decimal(row["weighted"]) / 100).to_integral_value(ROUND_HALF_EVEN))
    return row["pipeline"], weighted, row["won"]


class AnalyticsService(Service):
    """``s.analytics``: funnel, forecast, win rate, sources, RFM, aging, service metrics."""

    def _query(
        self,
        cls: type[Stored],
        where: Filter | None,
        group_by: Sequence[GroupKey],
        measures: dict[str, Any],
    ) -> list[dict[str, Any]]:
        return self._s.read(cls).aggregate(where, group_by, measures)

    def _period(self, since: datetime | None, until: datetime | None, field: str) -> Filter | None:
        if since is None and until is None:
            return None
        low = None if since is None else check_when("since", since)
        high = None if until is None else check_when("until", until)
        return Range(field, low, high)

    def _day(self, as_of: Any) -> date:
        """The ``as_of`` day of a report (today by default)."""
        if as_of is None:
            return self._s._now().date()
        if not isinstance(as_of, date) or isinstance(as_of, datetime):
            raise ValidationError("as_of", as_of, "must be a date")
        return as_of

    def _converter(self, in_reporting_currency: Any, rates_on: Any) -> _Converter | None:
        """The converter a report in the reporting currency uses; None for one per currency."""
        if not check_bool("in_reporting_currency", in_reporting_currency):
            if rates_on is not None:
                raise ValidationError(
                    "rates_on", rates_on, "applies only with in_reporting_currency=True"
                )
            return None
        day = check_date("rates_on", rates_on)
        return _Converter(self._s.rates, self._s._now().date() if day is None else day)

    @staticmethod
    def _grouping(by: str | None, choices: dict[str, GroupKey]) -> list[GroupKey]:
        if by is None:
            return []
        if not isinstance(by, str) or by not in choices:
            raise ValidationError("by", by, f"must be one of {', '.join(choices)}")
        return [choices[by]]

    def set_quota(
        self, period: str, amount: Any, *, owner_id: str | None = None, team_id: str | None = None
    ) -> Quota:
        """Set (or replace) a user's or team's quota for a period (``2026-03`` or ``2026-Q1``)."""
        with self._s._atomic():
            if (owner_id is None) == (team_id is None):
                field, value = ("team_id", team_id) if team_id is not None else ("owner_id", None)
                raise ValidationError(field, value, "give exactly one of owner_id and team_id")
            if not isinstance(period, str) or not _PERIOD.fullmatch(period):
                raise ValidationError("period", period, "must look like 2026-03 or 2026-Q1")
            money = check_money("amount", amount)
            if money is None:
                raise ValidationError("amount", amount, "is required")
            referenced(self._s, User, "owner_id", owner_id)
            referenced(self._s, Team, "team_id", team_id)
            repo = self._s._uow.repo(Quota)
            where = all_of([Eq("period", period), Eq("owner_id", owner_id), Eq("team_id", team_id)])
            existing = repo.find(where, limit=1)
            if existing:
                old = existing[0]
                self._s._guard.require(old, "update")
                return self._s._revise(old, "update", amount=money)
            quota = Quota(
                **self._s._stamp(owner_id=owner_id, team_id=team_id, period=period, amount=money)
            )
            self._s._guard.require(quota, "create")
            repo.add(quota)
            self._s._record("create", None, quota)
            return quota

    def funnel(
        self,
        *,
        by: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        period: str = "month",
        custom: Mapping[str, Any] | None = None,
    ) -> list[FunnelRow]:
        """Leads captured in the period, how far they got, and how many became won deals.

        ``by``: ``source``, ``owner``, ``campaign`` or ``period`` (of capture, ``period`` units).
        ``custom``: only leads with these custom field values, e.g. ``{"fair": "hannover"}``.
        """
        keys = self._grouping(
            by,
            {"source": Field("source"), "owner": Field("owner_id"), "campaign": Field("campaign"),
             "period": Period("created_at", period)},
        )  # fmt: skip
        measures: dict[str, Any] = {"captured": Count()}
        measures |= {name: Count(In("status", statuses)) for name, statuses in _REACHED.items()}
        measures["won"] = Count(
            Related("deal", "lead_id", "count", None, 1, None, Eq("status", DealStatus.WON))
        )
        where = all_of(
            [self._period(since, until, "created_at"), *custom_filter(self._s, "lead", custom)]
        )
        rows = self._query(Lead, where, keys, measures)
        group = keys[0].name if keys and isinstance(keys[0], Field) else "created_at"
        return sorted(
            (
                FunnelRow(_label(r.get(group)) if keys else None, **{k: r[k] for k in measures})
                for r in rows
            ),
            key=lambda row: (row.group is None, row.group or ""),
        )

    def stage_funnel(
        self,
        pipeline: str = "default",
        *,
        by: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        period: str = "month",
    ) -> list[StageFunnelRow]:
        """The deal-stage funnel: per stage, deals that reached it, moved on, and time spent in it.

        Read from the deals' stage histories (kept as one row per stay, see
        :class:`~pycrm.domain.deals.StageVisit`) as SQL aggregates, over the
        deals the actor may read, opened in the period (``since <= opened <
        until``). A deal that skipped a stage passed it; ``won`` is the last
        row. ``by``: ``owner`` (the deal's owner, None for no owner), ``team``
        (the deals owned by each team's members, a user in two teams counting
        in both) or ``period`` (of opening, in ``period`` units: ``day``,
        ``month``, ``quarter`` or ``year``). Rows come by group, then stage.

        :raises NotFound: for a pipeline the actor may not read or that does not exist.
        :raises PermissionDenied: without a read grant on deals, or when the deals'
            stages (or owners, by owner or team) are hidden from the actor.
        """
        if period not in ("day", "month", "quarter", "year"):
            raise ValidationError("period", period, "must be day, month, quarter or year")
        keys = self._grouping(
            by, {"owner": Field("owner_id"), "team": Field("owner_id"),
                 "period": Period("opened_at", period)}
        )  # fmt: skip
        window = self._period(since, until, "opened_at")
        chosen = self._s.deals.pipeline(check_key("pipeline", pipeline))
        self._s._guard.require_any("deal", "read")
        self._s._guard.check_fields(
            Deal, ["stage", "stage_history", *(["owner_id"] if keys else [])]
        )
        base = all_of([Eq("pipeline_id", chosen.id), window])
        groups: list[tuple[str | None, Filter | None]] = [(None, None)]
        if by == "team":
            keys, groups = [], []
            for team in self._s.read(Team).find(order_by=[OrderBy("name")]):
                people = self._s.read(User, quiet=True).find(AnyKey("team", [team.id]))
                groups.append((team.name, In("owner_id", [u.id for u in people])))
        count = len(chosen.stages)
        reach = {
            f"r{k}": Count(all_of([Range("position", k, None), Range("reached_before", None, k)]))
            for k in range(count + 1)
        }
        closed: list[Filter | None] = [Not(IsNull("left_at")), Range("position", 0, None)]
        names = [*(s.name for s in chosen.stages), "Won"]
        stages = [*(s.key for s in chosen.stages), "won"]
        out: list[StageFunnelRow] = []
        for label, members in groups:
            where = all_of([base, members])
            reached = self._query(StageVisit, where, keys, reach)
            times = {
                (tuple(r[_name(k)] for k in keys), r["stage"]): r
                for r in self._query(
                    StageVisit,
                    all_of([where, *closed]),
                    [*keys, Field("stage")],
                    {"stays": Count(), "median": MedianDuration("entered_at", "left_at")},
                )
            }
            for r in reached:
                group = tuple(r[_name(k)] for k in keys)
                for k, (stage, name) in enumerate(zip(stages, names, strict=True)):
                    spent = times.get((group, stage), {})
                    median = spent.get("median")
                    out.append(
                        StageFunnelRow(
                            group=label
                            if label is not None
                            else _label(group[0] if keys else None),
                            stage=stage,
                            name=name,
                            position=k,
                            reached=r[f"r{k}"],
                            advanced=r[f"r{k + 1}"] if k < count else 0,
                            stays=spent.get("stays", 0),
                            median_days=None if median is None else round(median / 86400, 2),
                        )
                    )
        return sorted(out, key=lambda row: (row.group is None, row.group or "", row.position))

    def forecast(
        self,
        *,
        period: str = "month",
        owner_id: str | None = None,
        custom: Mapping[str, Any] | None = None,
        in_reporting_currency: bool = False,
        rates_on: date | None = None,
    ) -> list[ForecastRow]:
        """Per period (of expected close) and owner: open pipeline, weighted forecast, won, quota.

        One row per period, owner and currency of the deals, the quota on the
        row of its own currency. With ``in_reporting_currency``, one row per
        period and owner in the reporting currency
        (:attr:`~pycrm.services.products.RateService.reporting_currency`):
        each currency's sums (the weighted one first rounded to that
        currency's minor units) are converted at the rate valid on
        ``rates_on`` (default: today by the CRM's clock), each rounded half
        to even to the reporting currency's minor units, then added; the
        quota is converted too, and ``rates`` says which rates were used.

        ``custom``: only deals with these custom field values.
        :raises NotFound: with ``in_reporting_currency``, when a currency of the
            deals or quotas has no rate on or before ``rates_on`` (naming it).
        :raises PermissionDenied: with ``in_reporting_currency``, where a field
            rule hides exchange rates from the actor.
        """
        if period not in ("month", "quarter"):
            raise ValidationError("period", period, "must be month or quarter")
        convert = self._converter(in_reporting_currency, rates_on)
        where = all_of(
            [
                Not(IsNull("expected_close")),
                None if owner_id is None else Eq("owner_id", owner_id),
                *custom_filter(self._s, "deal", custom),
            ]
        )
        keys: list[GroupKey] = [
            Period("expected_close", period),
            Field("owner_id"),
            Field("amount.currency"),
        ]
        open_deals = Eq("status", DealStatus.OPEN)
        rows = self._query(
            Deal,
            where,
            keys,
            {
                "pipeline": Sum("amount", open_deals),
                "weighted": SumProduct("amount", "probability", open_deals),
                "won": Sum("amount", Eq("status", DealStatus.WON)),
            },
        )
        quotas = {
            (q.period, q.owner_id): q.amount
            for q in self._s.read(Quota, quiet=True).find(Not(IsNull("owner_id")))
        }
        if convert is not None:
            out = _merged_forecast(rows, quotas, convert)
        else:
            out = []
            for r in rows:
                currency = r["amount.currency"]
                pipeline, weighted, won = _forecast_minor(r)
                quota = quotas.get((r["expected_close"], r["owner_id"]))
                out.append(
                    ForecastRow(
                        period=r["expected_close"],
                        owner_id=r["owner_id"],
                        currency=currency,
                        pipeline=Money.from_minor(pipeline, currency),
                        weighted=Money.from_minor(weighted, currency),
                        won=Money.from_minor(won, currency),
                        quota=quota if quota is not None and quota.currency == currency else None,
                    )
                )
        return sorted(out, key=lambda row: (row.period, row.owner_id or "", row.currency))

    def win_rate(
        self,
        *,
        by: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        custom: Mapping[str, Any] | None = None,
        in_reporting_currency: bool = False,
        rates_on: date | None = None,
    ) -> list[WinRateRow]:
        """Won vs lost deals closed in the period, and the mean sales cycle of the won ones.

        ``by``: ``owner``, ``source`` or ``period`` (month of closing).
        ``custom``: only deals with these custom field values.
        With ``in_reporting_currency``, each row also has the won and lost
        deals' amounts in the reporting currency, converted as
        :meth:`forecast` converts (one more aggregate, by currency).
        """
        convert = self._converter(in_reporting_currency, rates_on)
        keys = self._grouping(
            by,
            {
                "owner": Field("owner_id"),
                "source": Field("source"),
                "period": Period("closed_at", "month"),
            },
        )
        where = all_of(
            [
                In("status", [DealStatus.WON, DealStatus.LOST]),
                self._period(since, until, "closed_at"),
                *custom_filter(self._s, "deal", custom),
            ]
        )
        won = Eq("status", DealStatus.WON)
        rows = self._query(
            Deal,
            where,
            keys,
            {
                "won": Count(won),
                "lost": Count(Eq("status", DealStatus.LOST)),
                "cycle": AvgDuration("created_at", "closed_at", won),
            },
        )
        group = keys[0].name if keys and isinstance(keys[0], Field) else "closed_at"
        amounts: dict[Any, list[Any]] = {}
        if convert is not None:
            for r in self._query(
                Deal,
                where,
                [*keys, Field("amount.currency")],
                {"won": Sum("amount", won), "lost": Sum("amount", Eq("status", DealStatus.LOST))},
            ):
                currency = r["amount.currency"]
                sums = amounts.setdefault(r.get(group), [convert.zero, convert.zero, set()])
                sums[0] += Money(convert.minor(r["won"], currency), convert.target)
                sums[1] += Money(convert.minor(r["lost"], currency), convert.target)
                sums[2].add(currency)
        out = []
        for r in rows:
            row = WinRateRow(
                _label(r.get(group)) if keys else None,
                r["won"],
                r["lost"],
                None if r["cycle"] is None else round(r["cycle"] / 86400, 2),
            )
            if convert is not None:
                won_amount, lost_amount, currencies = amounts.get(
                    r.get(group), [convert.zero, convert.zero, set()]
                )
                row = attrs.evolve(
                    row,
                    won_amount=won_amount,
                    lost_amount=lost_amount,
                    rates=convert.rates(currencies),
                )
            out.append(row)
        return sorted(out, key=lambda row: (row.group is None, row.group or ""))

    def sources(
        self,
        *,
        by: str = "source",
        in_reporting_currency: bool = False,
        rates_on: date | None = None,
    ) -> list[SourceRow]:
        """Lead-source (or campaign) effectiveness: leads, conversions, won deals, revenue, cost.

        A row per source (or campaign) of the leads and of the won deals: a
        deal entered with a source no lead has counts too, beside 0 leads.
        Revenue is the won deals' amounts; ``revenues`` holds them per
        currency and ``revenue`` one of them (the first currency by code).
        With ``in_reporting_currency``, ``revenue`` is every currency's
        converted and added, and the campaign's budget is converted too, as
        :meth:`forecast` converts.
        """
        if by not in ("source", "campaign"):
            raise ValidationError("by", by, "must be source or campaign")
        convert = self._converter(in_reporting_currency, rates_on)
        leads = self._query(
            Lead,
            None,
            [Field(by)],
            {"leads": Count(), "converted": Count(Eq("status", LeadStatus.CONVERTED))},
        )
        deals = self._query(
            Deal,
            Eq("status", DealStatus.WON),
            [Field(by), Field("amount.currency")],
            {"won": Count(), "revenue": Sum("amount")},
        )
        won: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for d in deals:
            won[d[by]].append(d)
        costs: dict[str, Money] = {}
        if by == "campaign":
            for campaign in self._s.read(Campaign, quiet=True).find():
                if campaign.budget is not None:
                    costs[campaign.name] = campaign.budget
        counted = {row[by]: row for row in leads}
        out = []
        for key in counted.keys() | won.keys():  # a won deal's source may have no lead
            row = counted.get(key, {"leads": 0, "converted": 0})
            won_rows = sorted(won.get(key, []), key=lambda d: str(d["amount.currency"]))
            revenues = tuple(Money.from_minor(d["revenue"], d["amount.currency"]) for d in won_rows)
            revenue = revenues[0] if revenues else None
            cost = costs.get(key) if key else None
            rates: tuple[RateUsed, ...] = ()
            if convert is not None:
                if revenues:
                    revenue = convert.zero
                    for money in revenues:
                        revenue += convert(money)
                originals = [m.currency for m in revenues] + ([cost.currency] if cost else [])
                rates = convert.rates(originals)
                cost = None if cost is None else convert(cost)
            out.append(
                SourceRow(
                    source=key,
                    leads=row["leads"],
                    converted=row["converted"],
                    won_deals=sum(d["won"] for d in won_rows),
                    currency=None if revenue is None else revenue.currency,
                    revenue=revenue,
                    cost=cost,
                    revenues=revenues,
                    rates=rates,
                )
            )
        return sorted(out, key=lambda r: (r.source is None, r.source or ""))

    def rfm(
        self,
        *,
        as_of: date | None = None,
        in_reporting_currency: bool = False,
        rates_on: date | None = None,
    ) -> list[RFMRow]:
        """Recency, frequency and monetary value of each customer's purchases (signed contracts).

        Scores are quintiles (5 best) over the customers with purchases.
        Recency and frequency count every purchase; the monetary value counts
        those in the reporting currency
        (:attr:`~pycrm.services.products.RateService.reporting_currency`), or,
        with ``in_reporting_currency``, every purchase, each currency's sum
        converted as :meth:`forecast` converts it.
        """
        today = self._day(as_of)
        convert = self._converter(in_reporting_currency, rates_on)
        currency = self._s.rates.reporting_currency if convert is None else convert.target
        rows = self._query(
            Contract,
            PURCHASES,
            [Field("customer_id"), Field("amount.currency")],
            {
                "last": Max("signed_at"),
                "orders": Count(),
                "value": Sum("amount"),
            },
        )
        buyers: dict[str, list[Any]] = {}  # customer → [last purchase, orders, value]
        for group in rows:
            buyer = buyers.setdefault(group["customer_id"], [None, 0, Decimal(0)])
            last, spent = group["last"], group["value"]
            if last is not None and (buyer[0] is None or last > buyer[0]):
                buyer[0] = last
            buyer[1] += group["orders"]
            if convert is not None:
                buyer[2] += convert.minor(spent, group["amount.currency"])
            elif group["amount.currency"] == currency:
                buyer[2] += Money.from_minor(spent, currency).amount
        data = [
            (
                customer,
                (today - last.date()).days if last else 10**6,
                orders,
                Money.of(value, currency),
            )
            for customer, (last, orders, value) in buyers.items()
        ]
        if not data:
            return []
        r_scores = _quintiles([d[1] for d in data], reverse=True)
        f_scores = _quintiles([d[2] for d in data])
        m_scores = _quintiles([float(d[3].amount) for d in data])
        out = []
        for (customer, recency, orders, value), r, f, m in zip(
            data, r_scores, f_scores, m_scores, strict=True
        ):
            out.append(
                RFMRow(
                    customer,
                    recency,
                    orders,
                    value,
                    r,
                    f,
                    m,
                    _rfm_class(r, f, orders),
                )
            )
        return sorted(out, key=lambda row: (-(row.r + row.f + row.m), row.customer_id))

    def subscriptions(
        self,
        *,
        as_of: date | None = None,
        in_reporting_currency: bool = False,
        rates_on: date | None = None,
    ) -> list[SubscriptionRow]:
        """MRR, ARR and churn of the subscriptions (contracts with a billing period).

        On ``as_of`` (default today by the CRM clock), per currency: how many
        subscriptions run, their MRR (and ARR), the MRR a month before, the
        MRR started in the month up to ``as_of`` and the MRR churned in it
        (terms that ended without a renewal, or were terminated). One
        aggregate query; with ``in_reporting_currency`` one row, each
        currency's figures converted as :meth:`forecast` converts them.
        """
        day = self._day(as_of)
        if day >= date.max - timedelta(days=1):
            raise ValidationError("as_of", as_of, "must be before 9999-12-30")
        convert = self._converter(in_reporting_currency, rates_on)
        since = add_months(day, -1)
        lasting = [ContractStatus.SIGNED, ContractStatus.ACTIVE, ContractStatus.COMPLETED]
        terminated = Eq("status", ContractStatus.TERMINATED)

        def midnight(on: date) -> datetime:
            return datetime.combine(on, time(), UTC)

        def running(on: date) -> Filter:
            after = on + timedelta(days=1)
            return And(
                (
                    Range("start", None, after),
                    Range("end", on, None),
                    Or(
                        (
                            In("status", lasting),
                            And(
                                (
                                    terminated,
                                    Range("ended_at", midnight(after), None),
                                )
                            ),
                        )
                    ),
                )
            )

        lapsed = And((In("status", lasting), IsNull("renewed_by"), Range("end", since, day)))
        ended = And(
            (
                terminated,
                Range(
                    "ended_at",
                    midnight(since + timedelta(days=1)),
                    midnight(day + timedelta(days=1)),
                ),
            )
        )
        new = And(
            (
                running(day),
                IsNull("renewal_of"),
                Range("start", since + timedelta(days=1), day + timedelta(days=1)),
            )
        )
        rows = self._query(
            Contract,
            Not(IsNull("billing_period")),
            [Field("recurring.currency"), Field("billing_period")],
            {
                "count": Count(running(day)),
                "mrr": Sum("recurring", running(day)),
                "start": Sum("recurring", running(since)),
                "new": Sum("recurring", new),
                "churned": Sum("recurring", Or((lapsed, ended))),
            },
        )
        figures = ("mrr", "start", "new", "churned")
        exact: dict[str, dict[str, Decimal]] = {}
        counts: dict[str, int] = defaultdict(int)
        for r in rows:
            currency = r["recurring.currency"]
            months = BillingPeriod(r["billing_period"]).months
            sums = exact.setdefault(currency, dict.fromkeys(figures, Decimal(0)))
            for name in figures:
                sums[name] += Decimal(r[name]).scaleb(-minor_units(currency)) / months
            counts[currency] += r["count"]
        per_currency = {
            currency: {name: Money.of(value, currency) for name, value in sums.items()}
            for currency, sums in exact.items()
        }
        if convert is None:
            return [
                SubscriptionRow(
                    currency,
                    counts[currency],
                    m["mrr"],
                    m["start"],
                    m["new"],
                    m["churned"],
                )
                for currency, m in sorted(per_currency.items())
            ]
        if not per_currency:
            return []
        total = dict.fromkeys(figures, convert.zero)
        for m in per_currency.values():
            for name in figures:
                total[name] += convert(m[name])
        return [
            SubscriptionRow(
                convert.target,
                sum(counts.values()),
                total["mrr"],
                total["start"],
                total["new"],
                total["churned"],
                rates=convert.rates(per_currency),
            )
        ]

    def aging(
        self,
        *,
        as_of: date | None = None,
        in_reporting_currency: bool = False,
        rates_on: date | None = None,
    ) -> list[AgingRow]:
        """Unpaid receivables by days past due: current, 0-30, 31-60, 61-90, 90+.

        A row per bucket and currency; with ``in_reporting_currency`` a row
        per bucket, each currency's outstanding sum converted as
        :meth:`forecast` converts it.
        """
        today = self._day(as_of)
        convert = self._converter(in_reporting_currency, rates_on)
        rows = self._query(
            Receivable,
            In("status", _UNPAID),
            [AgeBucket("due", today), Field("amount.currency")],
            {"count": Count(), "amount": Sum("amount"), "paid": Sum("paid")},
        )
        found = [
            AgingRow(
                r["due"],
                r["amount.currency"],
                r["count"],
                Money.from_minor(r["amount"] - r["paid"], r["amount.currency"]),
            )
            for r in rows
        ]
        if convert is not None:
            merged: dict[str, list[AgingRow]] = defaultdict(list)
            for row in found:
                merged[row.bucket].append(row)
            found = [
                AgingRow(
                    bucket,
                    convert.target,
                    sum(r.count for r in parts),
                    sum((convert(r.outstanding) for r in parts), convert.zero),
                    rates=convert.rates(r.currency for r in parts),
                )
                for bucket, parts in merged.items()
            ]
        order = ["current", "0-30", "31-60", "61-90", "90+"]
        return sorted(
            found,
            key=lambda row: (order.index(row.bucket) if row.bucket in order else 99, row.currency),
        )

    def service(
        self,
        *,
        by: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        custom: Mapping[str, Any] | None = None,
    ) -> list[ServiceRow]:
        """Tickets opened in the period: response and resolution times, SLA breaches, CSAT.

        ``by``: ``priority``, ``category``, ``agent``, ``channel`` or ``period`` (month opened).
        ``custom``: only tickets with these custom field values.
        """
        keys = self._grouping(
            by,
            {"priority": Field("priority"), "category": Field("category"), "agent": Field("assignee_id"),
             "channel": Field("channel"), "period": Period("opened_at", "month")},
        )  # fmt: skip
        rows = self._query(
            Ticket,
            all_of(
                [self._period(since, until, "opened_at"), *custom_filter(self._s, "ticket", custom)]
            ),
            keys,
            {
                "tickets": Count(),
                "resolved": Count(Not(IsNull("resolved_at"))),
                "first": AvgDuration("opened_at", "first_response_at"),
                "resolution": AvgDuration("opened_at", "resolved_at"),
                "breaches": Count(_any_breach()),
                "rated": Count(Not(IsNull("csat_score"))),
                "csat_sum": Sum("csat_score"),
            },
        )
        group = keys[0].name if keys and isinstance(keys[0], Field) else "opened_at"
        out = []
        for r in rows:
            out.append(
                ServiceRow(
                    group=_label(r.get(group)) if keys else None,
                    tickets=r["tickets"],
                    resolved=r["resolved"],
                    avg_first_response_hours=None
                    if r["first"] is None
                    else round(r["first"] / 3600, 2),
                    avg_resolution_hours=None
                    if r["resolution"] is None
                    else round(r["resolution"] / 3600, 2),
                    breaches=r["breaches"],
                    rated=r["rated"],
                    avg_csat=round(r["csat_sum"] / r["rated"], 2) if r["rated"] else None,
                )
            )
        return sorted(out, key=lambda row: (row.group is None, row.group or ""))


def _merged_forecast(
    rows: Iterable[Mapping[str, Any]],
    quotas: Mapping[tuple[str, str | None], Money],
    convert: _Converter,
) -> list[ForecastRow]:
    """The forecast's per-currency rows as one row per period and owner, converted."""
    # Decimals until the end: a Money per group and figure would cost more than the query.
    sums: dict[tuple[str, str | None], list[Decimal]] = {}
    currencies: dict[tuple[str, str | None], set[str]] = defaultdict(set)
    for r in rows:
        key = (r["expected_close"], r["owner_id"])
        currency = r["amount.currency"]
        total = sums.setdefault(key, [Decimal(0)] * 3)
        for i, minor in enumerate(_forecast_minor(r)):
            total[i] += convert.minor(minor, currency)
        currencies[key].add(currency)
    out = []
    target = convert.target
    for (period, owner), (pipeline, weighted, won) in sums.items():
        quota = quotas.get((period, owner))
        used = currencies[(period, owner)] | ({quota.currency} if quota is not None else set())
        out.append(
            ForecastRow(
                period=period,
                owner_id=owner,
                currency=target,
                pipeline=Money(pipeline, target),
                weighted=Money(weighted, target),
                won=Money(won, target),
                quota=None if quota is None else convert(quota),
                rates=convert.rates(used),
            )
        )
    return out


def _name(key: GroupKey) -> str:
    """The name a group key's value has in an aggregate's rows."""
    return key.name if isinstance(key, Field) else key.field


def _any_breach() -> Filter:
    return Or((Eq("first_response_breached", True), Eq("resolution_breached", True)))


def _quintiles(values: Sequence[float], *, reverse: bool = False) -> list[int]:
    """Score each value 1-5 by its rank (5: best; ``reverse`` when lower is better)."""
    ranked = sorted(range(len(values)), key=lambda i: values[i], reverse=reverse)
    scores = [0] * len(values)
    n = len(values)
    i = 0
    while i < n:
        j = i
        while j + 1 < n and values[ranked[j + 1]] == values[ranked[i]]:
            j += 1
        score = 1 + (i * 5) // n  # ties share the score of their first rank
        for k in range(i, j + 1):
            scores[ranked[k]] = score
        i = j + 1
    return scores


def _rfm_class(r: int, f: int, orders: int) -> str:
    if r >= 4 and f >= 4:
        return "champions"
    if orders == 1 and r >= 4:
        return "new"
    if f >= 4:
        return "loyal"
    if r <= 2 and f >= 3:
        return "at_risk"
    if r <= 2:
        return "hibernating"
    return "potential"
