"""Tables derived from the domain's record classes.

Each record type gets one table whose columns follow its attrs fields:
scalars become typed columns, :class:`~pycrm.Money` becomes an exact integer
of minor units plus a currency (so SQL can sum it), and nested values
(addresses, contact points, tags) become JSON. ``computed`` properties get
columns of their own so they can be indexed and searched. Every table leads
with ``tenant_id``, and so does every index and unique constraint.

One extra table, ``match_keys``, holds each record's lookup keys (emails,
phones, tags) so that finding a record by one is an index probe, not a scan.
"""

from __future__ import annotations

import enum
import functools
import operator
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter

from pycrm.domain import RECORD_TYPES
from pycrm.domain.money import Money
from pycrm.domain.records import Stored
from pycrm.serialization import converter

__all__ = ["Codec", "Schema", "build_schema", "table_name"]


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def table_name(cls: type[Stored]) -> str:
    """The unprefixed table name of a record type: its resource name, plural."""
    name = cls.resource
    return name[:-1] + "ies" if name.endswith("y") else name + "s"


@attrs.frozen
class Column:
    """How one field is stored."""

    field: str
    names: tuple[str, ...]
    to_row: Callable[[Any], tuple[Any, ...]]
    from_row: Callable[[tuple[Any, ...]], Any]


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return tp, False


def _same(v: Any) -> tuple[Any, ...]:
    """A value stored as it is, in one column."""
    return (v,)


def _first(row: tuple[Any, ...]) -> Any:
    return row[0]


def _column_for(name: str, tp: Any, *, indexed: bool) -> tuple[Column, list[sa.Column[Any]]]:
    """How field ``name`` of type ``tp`` is stored; ``indexed`` if an index or key holds it."""
    inner, nullable = _unwrap_optional(tp)
    same, first = _same, _first

    if inner is Money:

        def money_out(v: Money | None) -> tuple[Any, ...]:
            return (None, None) if v is None else (v.minor, v.currency)

        def money_in(row: tuple[Any, ...]) -> Money | None:
            return None if row[0] is None else Money.from_minor(row[0], row[1])

        cols: list[sa.Column[Any]] = [
            sa.Column(f"{name}_minor", sa.BigInteger, nullable=nullable),
            sa.Column(f"{name}_currency", sa.String(3), nullable=nullable),
        ]
        return Column(name, (f"{name}_minor", f"{name}_currency"), money_out, money_in), cols
    if isinstance(inner, type) and issubclass(inner, enum.Enum):
        enum_cls = inner

        def enum_out(v: enum.Enum | None) -> tuple[Any, ...]:
            return (None if v is None else v.value,)

        def enum_in(row: tuple[Any, ...]) -> Any:
            return None if row[0] is None else enum_cls(row[0])

        col = sa.Column(name, sa.String(40), nullable=nullable)
        return Column(name, (name,), enum_out, enum_in), [col]
    scalar: dict[Any, sa.types.TypeEngine[Any] | type[sa.types.TypeEngine[Any]]] = {
        # Text of any length the services allow, alike on every backend (PostgreSQL
        # enforces a VARCHAR's length, SQLite does not); a bounded VARCHAR only where
        # an index holds the value.
        str: sa.String(500) if indexed else sa.Text,
        int: sa.BigInteger,
        bool: sa.Boolean,
        datetime: UTCDateTime,
        date: sa.Date,
    }
    if inner is Decimal:  # as text: exact digits and scale on every backend

        def decimal_out(v: Decimal | None) -> tuple[Any, ...]:
            return (None if v is None else str(v),)

        def decimal_in(row: tuple[Any, ...]) -> Decimal | None:
            return None if row[0] is None else Decimal(row[0])

        col = sa.Column(name, sa.String(60), nullable=nullable)
        return Column(name, (name,), decimal_out, decimal_in), [col]
    if inner in scalar:
        return Column(name, (name,), same, first), [
            sa.Column(name, scalar[inner], nullable=nullable)
        ]

    if typing.get_origin(inner) is dict:
        # Mappings the domain keeps in JSON form already (custom values, audit
        # changes and snapshots, event payloads): stored as they are. Walking them
        # with the converter cost a quarter of a bulk import's time.
        return Column(name, (name,), same, first), [sa.Column(name, sa.JSON, nullable=nullable)]

    # Nested values: JSON in the converter's documented form.
    def json_out(v: Any) -> tuple[Any, ...]:
        return (None if v is None else converter.unstructure(v),)

    def json_in(row: tuple[Any, ...]) -> Any:
        return None if row[0] is None else converter.structure(row[0], tp)

    return Column(name, (name,), json_out, json_in), [sa.Column(name, sa.JSON, nullable=nullable)]


def _literal_path(expression: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """``expression`` with its JSON path written into the SQL rather than bound.

    SQLite uses an expression index only for the very expression it indexes,
    and the index has the path as a literal (``json_extract(custom, '$."tier"')``);
    with the path as a bound parameter, every search on a custom field scanned.
    """

    def inline(bind: BindParameter[Any]) -> None:
        bind.literal_execute = True

    result: sa.ColumnElement[Any] = visitors.cloned_traverse(expression, {}, {"bindparam": inline})
    return result


@attrs.frozen
class Codec:
    """Turns records of one type into rows of its table and back."""

    cls: type[Stored]
    table: sa.Table
    columns: tuple[Column, ...]
    computed: tuple[str, ...]
    _plain: tuple[tuple[str, str], ...] = attrs.field(init=False, eq=False, repr=False)
    """(column name, attribute) of every value stored as it is: computed fields too."""
    _converted: tuple[Column, ...] = attrs.field(init=False, eq=False, repr=False)
    """The columns whose values are converted on the way in."""

    _read_plain: tuple[tuple[str, ...], Callable[[Sequence[Any]], Any]] = attrs.field(
        init=False, eq=False, repr=False
    )
    """The fields read as they are stored, and what picks their values out of a row."""
    _read_converted: tuple[tuple[str, Callable[[tuple[Any, ...]], Any], tuple[int, ...]], ...] = (
        attrs.field(init=False, eq=False, repr=False)
    )
    """(field, conversion, positions) of every field converted on the way out."""

    def __attrs_post_init__(self) -> None:
        plain = [(c.names[0], c.field) for c in self.columns if c.to_row is _same]
        object.__setattr__(self, "_plain", (*plain, *((n, n) for n in self.computed)))
        object.__setattr__(
            self, "_converted", tuple(c for c in self.columns if c.to_row is not _same)
        )
        at = {name: i for i, name in enumerate(self.table.c.keys())}
        plain_read = [(c.field, at[c.names[0]]) for c in self.columns if c.from_row is _first]
        # Every record type stores two or more fields as they are (id, tenant_id,
        # ...), so the getter returns a tuple.
        assert len(plain_read) >= 2, self.cls
        pick = operator.itemgetter(*(i for _, i in plain_read))
        object.__setattr__(self, "_read_plain", (tuple(f for f, _ in plain_read), pick))
        object.__setattr__(
            self,
            "_read_converted",
            tuple(
                (c.field, c.from_row, tuple(at[n] for n in c.names))
                for c in self.columns
                if c.from_row is not _first
            ),
        )

    def to_row(self, record: Stored) -> dict[str, Any]:
        """The row for ``record``."""
        row = {name: getattr(record, field) for name, field in self._plain}
        for column in self._converted:
            row.update(zip(column.names, column.to_row(getattr(record, column.field)), strict=True))
        return row

    def from_row(self, row: Mapping[str, Any]) -> Any:
        """The record stored in ``row`` (column values by name)."""
        values = {c.field: c.from_row(tuple(row[n] for n in c.names)) for c in self.columns}
        return self.cls(**values)

    def from_values(self, row: Sequence[Any]) -> Any:
        """The record stored in ``row``: the table's columns in order (``select(table)``)."""
        fields, pick = self._read_plain
        values = dict(zip(fields, pick(row), strict=True))
        for field, convert, at in self._read_converted:
            values[field] = convert(tuple(row[i] for i in at))
        return self.cls(**values)

    def measure_column(self, path: str) -> sa.Column[Any]:
        """The column an aggregate reads: Money ``amount`` → minor units, ``amount.currency`` → currency."""
        name, _, part = path.partition(".")
        for column in self.columns:
            if column.field == name and len(column.names) == 2:
                return self.table.c[column.names[1] if part == "currency" else column.names[0]]
        return self.column(path)

    def json_path(self, field: str, sample: Any) -> sa.ColumnElement[Any]:
        """``custom.key``: the key inside a JSON column, cast like ``sample`` compares."""
        name, _, key = field.partition(".")
        column = self.column(name)
        element = column[key]
        if isinstance(sample, bool):
            return _literal_path(element.as_boolean())
        if isinstance(sample, int | float | Decimal):
            # Unconstrained NUMERIC: PostgreSQL compares every digit, at any size.
            # (SQLite's NUMERIC is a 64-bit float past 15 significant digits.)
            return _literal_path(sa.cast(element.as_string(), sa.Numeric()))
        return _literal_path(element.as_string())

    def column(self, field: str) -> sa.Column[Any]:
        """The column a filter on ``field`` compares against."""
        for column in self.columns:
            if column.field == field and len(column.names) == 1:
                return self.table.c[column.names[0]]
        if field in self.computed:
            return self.table.c[field]
        raise KeyError(f"{self.cls.resource} has no filterable field {field!r}")


@attrs.frozen
class Schema:
    """pycrm's tables in one MetaData, under a schema and/or a name prefix."""

    metadata: sa.MetaData
    codecs: dict[type[Stored], Codec]
    match_keys: sa.Table
    counters: sa.Table
    prefix: str

    def codec(self, cls: type[Stored]) -> Codec:
        """The codec of ``cls``."""
        return self.codecs[cls]


@functools.lru_cache(maxsize=32)
def build_schema(*, schema: str | None = None, prefix: str = "pycrm_") -> Schema:
    """Build pycrm's tables, optionally in database ``schema`` and with a table ``prefix``.

    The tables depend on nothing but the arguments and are never changed once
    built, so stores on the same ``schema`` and ``prefix`` share them (building
    them was most of the cost of a connect).
    """
    metadata = sa.MetaData(schema=schema)
    codecs: dict[type[Stored], Codec] = {}
    for cls in RECORD_TYPES:
        hints = typing.get_type_hints(cls)
        name = prefix + table_name(cls)
        columns: list[Column] = []
        sa_columns: list[Any] = []
        indexed = {name for key in (*cls.indexes, *cls.unique) for name in key}
        for field in attrs.fields(cls):
            column, cols = _column_for(field.name, hints[field.name], indexed=field.name in indexed)
            columns.append(column)
            sa_columns.extend(cols)
        for computed in cls.computed:
            sa_columns.append(sa.Column(computed, sa.Text, nullable=False))
        for col in sa_columns:
            if col.name == "id":
                col.primary_key = True
                col.type = sa.String(40)
            elif col.name == "tenant_id":
                # (tenant_id, id) is the key, so a distributed PostgreSQL (Citus) can
                # shard every table by tenant and keep a tenant's rows together.
                col.type = sa.String(64)
                col.nullable = False
                col.primary_key = True
        for index in cls.indexes:
            sa_columns.append(sa.Index(f"ix_{name}_{'_'.join(index)}", "tenant_id", *index))
        for unique in cls.unique:
            sa_columns.append(
                sa.UniqueConstraint("tenant_id", *unique, name=f"uq_{name}_{'_'.join(unique)}")
            )
        table = sa.Table(name, metadata, *sa_columns)
        codecs[cls] = Codec(cls, table, tuple(columns), cls.computed)
    keys = sa.Table(
        prefix + "match_keys",
        metadata,
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("record_type", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(40), primary_key=True),
        sa.Column("key", sa.String(500), primary_key=True),
        sa.Column("record_id", sa.String(40), primary_key=True),
        sa.Index(f"ix_{prefix}match_keys_record", "tenant_id", "record_type", "record_id"),
    )
    counters = sa.Table(
        prefix + "counters",
        metadata,
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    return Schema(metadata, codecs, keys, counters, prefix)
