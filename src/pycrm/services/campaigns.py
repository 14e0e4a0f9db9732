"""Segments (saved filters) and campaigns with member snapshots and responses.

A segment's rule is data, never SQL: conditions on known fields with known
operators, combined with ``all``, ``any`` and ``not``, and other segments
included by name. It compiles to the same filter language as every query, so
SQL adapters evaluate it in the database::

    {"all": [
        {"field": "industry", "op": "in", "value": ["machinery", "retail"]},
        {"field": "total_order_amount", "op": "gte", "value": ["50000", "EUR"]},
        {"field": "last_activity", "op": "within_days", "value": 90},
        {"not": {"field": "tag", "op": "has", "value": "do not contact"}},
    ]}
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import attrs

from pycrm.domain.campaigns import Campaign, CampaignMember, CampaignStatus, Segment
from pycrm.domain.consent import check_slug, consented
from pycrm.domain.contact_points import search_key
from pycrm.domain.contracts import ContractStatus
from pycrm.domain.custom_fields import check_value, comparable
from pycrm.domain.customers import Contact, Customer, RecordStatus
from pycrm.domain.fields import (
    Checks,
    check_choice,
    check_json,
    check_key,
    check_money,
    check_one_of,
    check_text,
)
from pycrm.domain.money import Money
from pycrm.domain.query import (
    And,
    AnyKey,
    Contains,
    Eq,
    Filter,
    HasKey,
    In,
    Not,
    Or,
    OrderBy,
    Range,
    Related,
    all_of,
)
from pycrm.errors import NotFound, ValidationError
from pycrm.services.fields import check_custom_read
from pycrm.services.records import RecordService, write
from pycrm.services.search import check_page

__all__ = ["SEGMENT_FIELDS", "CampaignService"]

#: Contracts that count as purchases.
PURCHASES = In("status", [ContractStatus.SIGNED, ContractStatus.ACTIVE, ContractStatus.COMPLETED])

_PLAIN_OPS = ("eq", "ne", "in", "not_in")
_RANGE_OPS = ("gte", "lt", "between")
_DATE_OPS = (*_RANGE_OPS, "within_days", "before_days")

#: Target → field → the operators it takes.
SEGMENT_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "customer": {
        "industry": _PLAIN_OPS, "region": _PLAIN_OPS, "grade": _PLAIN_OPS, "owner_id": _PLAIN_OPS,
        "source": _PLAIN_OPS, "status": _PLAIN_OPS, "name": ("contains",), "tag": ("has", "any"),
        "customer_since": _DATE_OPS, "total_order_amount": _RANGE_OPS, "orders": _RANGE_OPS,
        "last_activity": _DATE_OPS, "rfm_class": ("eq", "in"),
    },
    "contact": {
        "customer_id": _PLAIN_OPS, "title": _PLAIN_OPS, "owner_id": _PLAIN_OPS, "source": _PLAIN_OPS,
        "status": _PLAIN_OPS, "name": ("contains",), "tag": ("has", "any"),
        "contact_since": _DATE_OPS, "last_activity": _DATE_OPS,
    },
}  # fmt: skip


class _Compiler:
    """Turns a segment rule into a filter, naming the exact place of any mistake."""

    def __init__(self, service: CampaignService, target: str, seen: frozenset[str]) -> None:
        self.service = service
        self.target = target
        self.seen = seen
        self.now = service._s._now()

    def compile(self, rule: Any, where: str = "rule") -> Filter:
        if not isinstance(rule, Mapping):
            raise ValidationError(where, rule, "must be a mapping")
        keys = set(rule)
        if keys == {"all"} or keys == {"any"}:
            (kind,) = keys
            parts = rule[kind]
            if not isinstance(parts, list) or not parts:
                raise ValidationError(f"{where}.{kind}", parts, "must be a non-empty list")
            compiled = tuple(self.compile(p, f"{where}.{kind}[{i}]") for i, p in enumerate(parts))
            return And(compiled) if kind == "all" else Or(compiled)
        if keys == {"not"}:
            return Not(self.compile(rule["not"], f"{where}.not"))
        if keys == {"segment"}:
            return self.service._segment_filter(
                rule["segment"], self.target, self.seen, f"{where}.segment"
            )
        if keys != {"field", "op", "value"}:
            raise ValidationError(
                where, rule, "needs field, op and value (or all / any / not / segment)"
            )
        try:
            return self.condition(rule["field"], rule["op"], rule["value"], where)
        except ValidationError as exc:
            if exc.field.startswith((where, "custom.")):
                raise
            # A filter refused the value: name the place in the rule it came from.
            raise ValidationError(f"{where}.value", rule["value"], exc.reason) from None

    def condition(self, field: Any, op: Any, value: Any, where: str) -> Filter:
        if isinstance(field, str) and field.startswith("custom."):
            return self.custom(field, op, value, where)
        if field == "category":
            if op != "under":
                raise ValidationError(f"{where}.op", op, "category takes under")
            self.service._s.categories.by_path(check_key(f"{where}.value", value))
            return HasKey("category", value)
        fields = SEGMENT_FIELDS[self.target]
        if not isinstance(field, str) or field not in fields:
            raise ValidationError(
                f"{where}.field", field, f"must be one of {', '.join(sorted(fields))}"
            )
        if op not in fields[field]:
            raise ValidationError(f"{where}.op", op, f"{field} takes {', '.join(fields[field])}")
        at = f"{where}.value"
        if field == "tag":
            tags = [value] if op == "has" else value
            if not isinstance(tags, list) or not all(
                isinstance(t, str) and t.strip() for t in tags
            ):
                raise ValidationError(at, value, "must be a tag (has) or a list of tags (any)")
            keys = [search_key(t) for t in tags]
            return HasKey("tag", keys[0]) if op == "has" else AnyKey("tag", keys)
        if field == "name":
            text = check_text(at, value, required=True)
            return Contains("name_key", search_key(text))
        if field in ("customer_since", "contact_since"):
            return self.dates("created_at", op, value, at)
        if field == "last_activity":
            key = "customer_id" if self.target == "customer" else "contact_id"
            low, high = self.date_range(op, value, at)
            return Related("activity", key, "max", "occurred_at", low, high)
        if field == "total_order_amount":
            low, high = self.range(op, value, at, money=True)
            return Related("contract", "customer_id", "sum", "amount", low, high, PURCHASES)
        if field == "orders":
            low, high = self.range(op, value, at, money=False)
            return Related("contract", "customer_id", "count", None, low, high, PURCHASES)
        if field == "rfm_class":
            classes = [value] if op == "eq" else value
            if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
                raise ValidationError(at, value, "must be an RFM class or a list of them")
            ids = [
                row.customer_id for row in self.service._s.analytics.rfm() if row.segment in classes
            ]
            return In("id", ids)
        values = value if op in ("in", "not_in") else [value]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValidationError(
                at, value, "must be text (eq, ne) or a list of texts (in, not_in)"
            )
        if field == "status":
            values = [check_choice(at, v, RecordStatus).value for v in values]
        condition: Filter = In(field, values)
        return Not(condition) if op in ("ne", "not_in") else condition

    def custom(self, field: str, op: Any, value: Any, where: str) -> Filter:
        key = field.partition(".")[2]
        defs = self.service._s._field_definitions(self.target)
        if key not in defs:
            raise ValidationError(
                f"{where}.field", field, f"is not a custom field of {self.target}s"
            )
        check_custom_read(self.service._s, defs[key])  # a hidden field may not be probed
        defn = attrs.evolve(defs[key], required=False)
        at = f"{where}.value"

        def bound(item: Any) -> Any:  # a bad value is a ValidationError naming custom.<key>
            return comparable(defn, check_value(defn, item))

        if op in ("eq", "ne"):
            condition: Filter = Eq(field, bound(value))
            return Not(condition) if op == "ne" else condition
        if op == "in":
            if not isinstance(value, list):
                raise ValidationError(at, value, "in takes a list")
            return In(field, [bound(v) for v in value])
        if op in _RANGE_OPS:
            bounds = value if op == "between" else ([value, None] if op == "gte" else [None, value])
            if not isinstance(bounds, list) or len(bounds) != 2:
                raise ValidationError(at, value, "between takes [low, high)")
            low, high = (None if b is None else bound(b) for b in bounds)
            return Range(field, low, high)
        raise ValidationError(f"{where}.op", op, "custom fields take eq, ne, in, gte, lt, between")

    def range(self, op: str, value: Any, at: str, *, money: bool) -> tuple[Any, Any]:
        def number(item: Any) -> int:
            if money:
                parsed = check_money(
                    at,
                    item
                    if isinstance(item, Money | list | tuple)
                    else (item, self.service._s.crm.currency),
                )
                assert parsed is not None
                if parsed.currency != self.service._s.crm.currency:
                    raise ValidationError(
                        at, item, f"amounts are compared in {self.service._s.crm.currency}"
                    )
                return parsed.minor
            if isinstance(item, bool) or not isinstance(item, int):
                raise ValidationError(at, item, "must be a whole number")
            return item

        if op == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise ValidationError(at, value, "between takes [low, high)")
            return number(value[0]), number(value[1])
        return (number(value), None) if op == "gte" else (None, number(value))

    def date_range(self, op: str, value: Any, at: str) -> tuple[Any, Any]:
        def moment(item: Any) -> datetime:
            if isinstance(item, str):  # a saved rule holds dates as ISO text
                with contextlib.suppress(ValueError):
                    item = datetime.fromisoformat(item) if "T" in item else date.fromisoformat(item)
            if isinstance(item, datetime) and item.tzinfo is not None:
                return item
            if isinstance(item, date) and not isinstance(item, datetime):
                return datetime.combine(item, time(), tzinfo=self.now.tzinfo)
            raise ValidationError(at, item, "must be a date or a timezone-aware datetime")

        if op in ("within_days", "before_days"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationError(at, value, "must be a number of days")
            edge = self.now - timedelta(days=value)
            return (edge, None) if op == "within_days" else (None, edge)
        if op == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise ValidationError(at, value, "between takes [from, until)")
            return moment(value[0]), moment(value[1])
        return (moment(value), None) if op == "gte" else (None, moment(value))

    def dates(self, field: str, op: str, value: Any, at: str) -> Filter:
        low, high = self.date_range(op, value, at)
        return Range(field, low, high)


def _saved_rule(value: Any, where: str) -> Any:
    """A segment rule as JSON data (see :meth:`CampaignService.create_segment`)."""
    if isinstance(value, Money):
        return [str(value.amount), value.currency]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal) and value.is_finite():
        return str(value)
    if isinstance(value, Mapping):
        return {k: _saved_rule(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_saved_rule(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return check_json(where, value)


class CampaignService(RecordService[Campaign]):
    """``s.campaigns``: segments, campaigns, members and responses."""

    record_type = Campaign

    # -- segments ------------------------------------------------------------

    def _segment(self, ref: Any, where: str = "segment") -> Segment:
        check_key(where, ref, what="a segment name or id")
        repo = self._s.read(Segment)
        found = repo.get(ref)
        if found is None:
            named = repo.find(Eq("name", ref), limit=1)
            found = named[0] if named else None
        if found is None:
            raise NotFound("segment", str(ref))
        return found

    def _segment_filter(self, ref: Any, target: str, seen: frozenset[str], where: str) -> Filter:
        segment = self._segment(ref, where)
        if segment.id in seen:
            raise ValidationError(where, ref, "segments may not include themselves")
        if segment.target != target:
            raise ValidationError(where, ref, f"is a {segment.target} segment, not a {target} one")
        return _Compiler(self, target, seen | {segment.id}).compile(segment.rule)

    def compile(self, target: str, rule: Mapping[str, Any]) -> Filter:
        """The filter a segment rule stands for; raises ValidationError naming the bad part."""
        check_one_of("target", target, SEGMENT_FIELDS)
        return _Compiler(self, target, frozenset()).compile(rule)

    @write
    def create_segment(
        self, name: str, target: str, rule: Mapping[str, Any], *, description: str | None = None
    ) -> Segment:
        """Save a segment after checking its rule.

        The rule is saved as JSON data: dates and datetimes as ISO text, Money
        as ``[amount, currency]``, which the rule compiles to the same filter.
        """
        self.compile(target, rule)
        saved = _saved_rule(rule, "rule")
        if saved != rule:
            self.compile(target, saved)
        with Checks() as checks:
            fields = {
                "name": checks(check_text, "name", name, required=True),
                "description": checks(check_text, "description", description, limit=2000),
            }
        segment = Segment(**self._s._stamp(target=target, rule=saved, **fields))
        self._s._guard.require(segment, "create")
        self._s._uow.repo(Segment).add(segment)
        self._s._record("create", None, segment)
        return segment

    def segments(self) -> list[Segment]:
        """Every saved segment, by name.

        Returns all of them: this list has no pages.
        """
        return self._s.read(Segment).find(order_by=[OrderBy("name")])

    def _consented(self, segment: Segment, purpose: Any, channel: Any) -> Filter | None:
        """The condition ``purpose`` on ``channel`` adds to a segment's rule (None: no purpose).

        Consent is kept for people: a customer segment cannot be for a purpose.
        """
        with Checks() as checks:
            if purpose is not None:
                checks(check_slug, "purpose", purpose)
            checks(check_slug, "channel", channel)
        if purpose is None:
            return None
        if segment.target != "contact":
            raise ValidationError(
                "purpose", purpose, "consent is kept for contacts: this is a customer segment"
            )
        return consented(purpose, channel)

    def members(
        self,
        segment: str,
        *,
        limit: int = 1000,
        offset: int = 0,
        purpose: str | None = None,
        channel: str = "email",
    ) -> list[Any]:
        """The customers or contacts in a segment now (evaluated in the database).

        Returns the first 1,000 by name by default (``limit`` up to 1,000, ``offset``
        to page on); :meth:`count` says how many there are. With ``purpose``
        (a contact segment only), only the contacts whose consent for it on
        ``channel`` (or ``any``) is granted now, decided in the same query.
        """
        limit, offset = check_page(limit, offset)
        chosen = self._segment(segment)
        cls: type[Any] = Customer if chosen.target == "customer" else Contact
        where = all_of(
            [
                self.compile(chosen.target, chosen.rule),
                Not(Eq("status", RecordStatus.MERGED)),
                self._consented(chosen, purpose, channel),
            ]
        )
        return self._s.read(cls).find(
            where, order_by=[OrderBy("name_key")], limit=limit, offset=offset
        )

    def count(self, segment: str, *, purpose: str | None = None, channel: str = "email") -> int:
        """How many records a segment holds now (with ``purpose``: as :meth:`members` counts)."""
        chosen = self._segment(segment)
        cls: type[Any] = Customer if chosen.target == "customer" else Contact
        where = all_of(
            [
                self.compile(chosen.target, chosen.rule),
                self._consented(chosen, purpose, channel),
            ]
        )
        return self._s.read(cls).count(where)

    # -- campaigns -----------------------------------------------------------

    @write
    def create(
        self,
        name: str,
        *,
        channel: str,
        budget: Any = None,
        start: date | None = None,
        end: date | None = None,
        segment: str | None = None,
    ) -> Campaign:
        """Plan a campaign; ``segment`` (name or id) is its target."""
        with Checks() as checks:
            fields: dict[str, Any] = {
                "name": checks(check_text, "name", name, required=True),
                "channel": checks(check_text, "channel", channel, required=True, limit=40),
                "budget": checks(check_money, "budget", budget),
            }
        for field, value in (("start", start), ("end", end)):
            if value is not None and (not isinstance(value, date) or isinstance(value, datetime)):
                raise ValidationError(field, value, "must be a date")
        if start and end and end < start:
            raise ValidationError("end", end, "is before the start")
        segment_id = self._segment(segment).id if segment is not None else None
        return self._add("create", start=start, end=end, segment_id=segment_id, **fields)

    def by_name(self, name: str) -> Campaign:
        """The campaign called ``name``."""
        found = self._find(Eq("name", name), limit=1)
        if not found:
            raise NotFound("campaign", name)
        return found[0]

    @write
    def snapshot(self, id: str, *, purpose: str | None = None, channel: str = "email") -> int:
        """Take the member snapshot: everyone in the target segment now. Returns how many.

        With ``purpose`` (a contact segment only), contacts without a grant
        of consent for it on ``channel`` (or ``any``) now are left out (see
        :meth:`members`).
        """
        campaign = self._load(id)
        if campaign.segment_id is None:
            raise ValidationError("segment_id", None, "the campaign has no target segment")
        if campaign.members_added_at is not None:
            raise ValidationError("members", campaign.id, "the snapshot was taken already")
        segment = self._segment(campaign.segment_id)
        self._consented(segment, purpose, channel)  # refused before anything is read
        key = "customer_id" if segment.target == "customer" else "contact_id"
        members, offset = [], 0
        while True:
            page = self.members(
                segment.id, limit=1000, offset=offset, purpose=purpose, channel=channel
            )
            members += [
                CampaignMember(**self._s._stamp(campaign_id=id, **{key: m.id})) for m in page
            ]
            if len(page) < 1000:
                break
            offset += 1000
        self._s._uow.repo(CampaignMember).add_many(members)
        self._change(
            campaign, None, "update", members_added_at=self._s._now(), status=CampaignStatus.ACTIVE
        )
        return len(members)

    def campaign_members(self, id: str) -> list[CampaignMember]:
        """The snapshot, oldest first.

        Returns all of them: this list has no pages.
        """
        self._load(id)
        return self._s.read(CampaignMember).find(
            Eq("campaign_id", id), order_by=[OrderBy("created_at")]
        )

    @write
    def record_response(
        self,
        id: str,
        *,
        response: str,
        customer_id: str | None = None,
        contact_id: str | None = None,
    ) -> CampaignMember:
        """Record that a member responded (``opened``, ``clicked``, ``registered`` …)."""
        self._load(id)
        text = check_text("response", response, required=True, limit=40)
        where = all_of(
            [Eq("campaign_id", id)]
            + ([Eq("customer_id", customer_id)] if customer_id else [])
            + ([Eq("contact_id", contact_id)] if contact_id else [])
        )
        if customer_id is None and contact_id is None:
            raise ValidationError("customer_id", None, "name the customer or contact who responded")
        found = self._s._uow.repo(CampaignMember).find(where, limit=1)
        if not found:
            raise NotFound("campaign_member", customer_id or contact_id or "")
        member = found[0]
        return self._s._revise(member, "respond", response=text, responded_at=self._s._now())

    @write
    def finish(self, id: str) -> Campaign:
        """Mark the campaign finished."""
        return self._change(self._load(id), None, "update", status=CampaignStatus.FINISHED)
