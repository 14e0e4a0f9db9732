"""The catalogue (``s.products``) and the exchange rates (``s.rates``)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, Protocol

from pycrm.domain.contact_points import search_key
from pycrm.domain.fields import check_bool, check_money, check_text
from pycrm.domain.money import Money
from pycrm.domain.products import (
    Conversion,
    ExchangeRate,
    Product,
    check_currency,
    check_rate,
    convert,
)
from pycrm.domain.query import Contains, Eq, Filter, HasKey, OrderBy, Range, all_of
from pycrm.errors import DuplicateError, NotFound, ValidationError
from pycrm.services.records import RecordService, write
from pycrm.services.search import category_filter, check_page

__all__ = ["ProductService", "RateService", "RateSource"]


def _text(field: str, value: Any, limit: int) -> str:
    """Required text, cleaned (see :func:`~pycrm.domain.fields.check_text`)."""
    clean = check_text(field, value, required=True, limit=limit)
    assert clean is not None  # required
    return clean


def _check_date(field: str, value: Any) -> date:
    if not isinstance(value, date) or hasattr(value, "hour"):
        raise ValidationError(field, value, "must be a date (not a datetime)")
    return value


class ProductService(RecordService[Product]):
    """The catalogue: products and services, found by id, SKU or the ERP's id."""

    record_type = Product

    def _checkers(self) -> dict[str, Any]:
        return {
            "sku": partial(check_text, required=True, limit=64),
            "name": partial(check_text, required=True, limit=300),
            "description": partial(check_text, limit=5000, multiline=True),
            "unit": partial(check_text, required=True, limit=40),
            "tax_category": partial(check_text, required=True, limit=40),
            "cost": check_money,
            "active": check_bool,
            "categories": self._s.categories.check_paths,
            "external_id": partial(check_text, limit=200),
        }

    def _free_sku(self, sku: Any, id: str | None = None) -> None:
        clean = _text("sku", sku, 64)
        taken = self._repo.find(Eq("sku", clean), limit=1)  # unreadable ones count too
        if taken and taken[0].id != id:
            raise DuplicateError(f"product SKU {clean!r} is taken", [taken[0].id])

    @write
    def create(self, sku: str, name: str, **fields: Any) -> Product:
        """Add a product to the catalogue.

        :param sku: its code, unique in the catalogue (case kept).
        :param name: what it is called.
        :param fields: ``description``, ``unit`` (default ``piece``),
            ``tax_category`` (default ``standard``), ``cost`` (Money: what one
            unit costs the company), ``active``, ``categories`` (paths in the
            category trees), ``external_id`` (the ERP's id), ``custom``.
        :raises DuplicateError: when the SKU is taken.
        """
        self._free_sku(sku)
        return self._create({"sku": sku, "name": name, **fields})

    @write
    def update(self, id: str, *, version: int | None = None, **fields: Any) -> Product:
        """Change a product's fields (the SKU too, while no other product has the new one)."""
        product = self._load(id)
        if "sku" in fields:
            self._free_sku(fields["sku"], id)
        return self._update(product, version, fields)

    @write
    def upsert(self, sku: str, **fields: Any) -> Product:
        """The product with ``sku`` created, or updated with ``fields`` if it exists.

        For keeping the catalogue in step with an ERP or a shop: run it for
        every product of theirs; an unchanged product is not written again.
        """
        clean = _text("sku", sku, 64)
        found = self._repo.find(Eq("sku", clean), limit=1)
        if not found:
            if "name" not in fields:
                raise ValidationError("name", None, "is required for a new product")
            return self._create({"sku": clean, **fields})
        product = found[0]
        if not self._s._guard.allows(product, "read"):
            raise NotFound("product", clean)
        self._s._saw([product])
        return self._update(product, None, dict(fields))

    @write
    def deactivate(self, id: str) -> Product:
        """Stop offering a product (it stays in the quotes and contracts that name it)."""
        return self._change(self._load(id), None, "update", active=False)

    @write
    def activate(self, id: str) -> Product:
        """Offer a product again."""
        return self._change(self._load(id), None, "update", active=True)

    def by_sku(self, sku: str) -> Product:
        """The product with this SKU; NotFound if there is none the actor may read."""
        clean = _text("sku", sku, 64)
        found = self._find(Eq("sku", clean), limit=1)
        if not found:
            raise NotFound("product", clean)
        return found[0]

    def by_external_id(self, external_id: str) -> Product:
        """The product the ERP knows by ``external_id``."""
        clean = _text("external_id", external_id, 200)
        found = self._find(HasKey("external_id", clean), limit=1)
        if not found:
            raise NotFound("product", clean)
        return found[0]

    def list(
        self,
        *,
        text: str | None = None,
        active: bool | None = True,
        category: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Product]:
        """Products by SKU: those on offer by default (``active=None``: all).

        :param text: every word must appear in the SKU, name or description.
        :param category: a category path; its sub-categories' products count too.
        Returns the first 50 by default (``limit`` up to 1,000).
        """
        limit, offset = check_page(limit, offset)
        parts: list[Filter | None] = []
        if text is not None:
            words = search_key(check_text("text", text, limit=300)).split()
            parts += [Contains("search_text", word) for word in words[:10]]
        if active is not None:
            parts.append(Eq("active", check_bool("active", active)))
        parts += category_filter(self._s, category)
        return self._find(all_of(parts), order_by=[OrderBy("sku")], limit=limit, offset=offset)


class RateSource(Protocol):
    """Where exchange rates come from besides finance's own entries (a central bank's feed).

    Pass one to :meth:`RateService.fetch`. ``name`` is stored as each rate's ``source``.
    """

    name: str

    def rates(self, on: date) -> Mapping[tuple[str, str], Decimal]:
        """``(base, quote)`` → units of quote per unit of base, valid on ``on``."""
        ...


class RateService(RecordService[ExchangeRate]):
    """Dated exchange rates and conversions (finance enters them; everyone converts)."""

    record_type = ExchangeRate

    @property
    def reporting_currency(self) -> str:
        """The currency the tenant reports in (the runtime setting ``reporting_currency``)."""
        currency: str = self._s.settings._value("reporting_currency")
        return currency

    def _today(self) -> date:
        return self._s._now().date()

    @write
    def set(
        self,
        base: str,
        quote: str,
        rate: Decimal | int | str,
        *,
        on: date | None = None,
        source: str = "manual",
    ) -> ExchangeRate:
        """Record that one ``base`` is worth ``rate`` ``quote`` from ``on`` (default: today).

        A rate for the same pair and day is replaced (and audited as a change).
        :raises ValidationError: for an unknown currency, the same currency
            twice, or a rate that is not a positive number (floats are refused:
            give a Decimal or text).
        """
        fields = self._pair(base, quote)
        fields["rate"] = check_rate("rate", rate)
        fields["valid_on"] = self._today() if on is None else _check_date("on", on)
        fields["source"] = _text("source", source, 40)
        same_day = all_of([Eq(k, fields[k]) for k in ("base", "quote", "valid_on")])
        found = self._repo.find(same_day, limit=1)
        if found:
            current = found[0]
            self._s._saw([current])
            return self._change(
                current, None, "update", rate=fields["rate"], source=fields["source"]
            )
        return self._add("create", **fields)

    @staticmethod
    def _pair(base: Any, quote: Any) -> dict[str, Any]:
        pair = {"base": check_currency("base", base), "quote": check_currency("quote", quote)}
        if pair["base"] == pair["quote"]:
            raise ValidationError("quote", quote, "must differ from base")
        return pair

    def _latest(self, base: str, quote: str, on: date) -> ExchangeRate | None:
        after = Range("valid_on", None, on + timedelta(days=1))
        where = all_of([Eq("base", base), Eq("quote", quote), after])
        found = self._find(where, order_by=[OrderBy("valid_on", descending=True)], limit=1)
        return found[0] if found else None

    def convert(self, money: Money, to: str, *, on: date | None = None) -> Conversion:
        """``money`` in currency ``to``, at the latest rate valid on ``on`` (default: today).

        Uses the stored rate from ``money``'s currency to ``to``, else the
        inverse of the one the other way; the result says which rate and day.
        :raises NotFound: when neither way has a rate on or before that day.
        """
        if not isinstance(money, Money):
            raise ValidationError("money", money, "must be Money")
        # A conversion shows the rate: refused where a field rule hides it.
        self._s._guard.check_fields(ExchangeRate, ["rate", "valid_on"])
        target = check_currency("to", to)
        day = self._today() if on is None else _check_date("on", on)
        if money.currency == target:
            return Conversion(money, money, Decimal(1), None)
        direct = self._latest(money.currency, target, day)
        if direct is not None:
            return convert(money, direct)
        inverse = self._latest(target, money.currency, day)
        if inverse is not None:
            return convert(money, inverse, inverted=True)
        raise NotFound("exchange_rate", f"{money.currency}/{target} on or before {day}")

    def to_reporting(self, money: Money, *, on: date | None = None) -> Conversion:
        """``money`` in the tenant's reporting currency (see :meth:`convert`)."""
        return self.convert(money, self.reporting_currency, on=on)

    def list(
        self,
        base: str | None = None,
        quote: str | None = None,
        *,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[ExchangeRate]:
        """Stored rates, newest day first (of one currency pair, or all).

        Returns the first 50 by default (``limit`` up to 1,000).
        """
        limit, offset = check_page(limit, offset)
        parts: list[Filter | None] = []
        if base is not None:
            parts.append(Eq("base", check_currency("base", base)))
        if quote is not None:
            parts.append(Eq("quote", check_currency("quote", quote)))
        order = [OrderBy("valid_on", descending=True), OrderBy("base"), OrderBy("quote")]
        return self._find(all_of(parts), order_by=order, limit=limit, offset=offset)

    @write
    def fetch(self, source: RateSource, *, on: date | None = None) -> builtins.list[ExchangeRate]:
        """Store the rates ``source`` gives for ``on`` (default: today), all or none."""
        day = self._today() if on is None else _check_date("on", on)
        name = _text("source.name", getattr(source, "name", None), 40)
        try:
            given = source.rates(day)
        except Exception as exc:  # a feed's own failure, reported as pycrm's
            raise ValidationError("source", name, f"gave no rates: {exc}") from exc
        if not isinstance(given, Mapping):
            raise ValidationError("source", name, "must give a mapping (base, quote) -> rate")
        stored = []
        for pair, rate in sorted(given.items(), key=lambda item: str(item[0])):
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ValidationError("source", pair, "keys must be (base, quote) pairs")
            stored.append(self.set(pair[0], pair[1], rate, on=day, source=name))
        return stored
