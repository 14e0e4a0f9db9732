"""Where pycrm puts its tables: a PostgreSQL schema, a table prefix, alembic stamping, bad URLs."""

from __future__ import annotations

import typing
from pathlib import Path

import attrs
import pytest
import sqlalchemy as sa
from alembic import command

import pycrm
from pycrm.adapters.sqlalchemy.engine import alembic_config
from pycrm.adapters.sqlalchemy.store import SqlStore
from pycrm.adapters.sqlalchemy.tables import build_schema, table_name
from pycrm.domain import RECORD_TYPES
from pycrm.domain.leads import Lead
from pycrm.errors import ConfigurationError

HEAD = "0013"


def expected_tables(prefix: str) -> set[str]:
    return {prefix + table_name(cls) for cls in RECORD_TYPES} | {
        f"{prefix}match_keys",
        f"{prefix}counters",
        f"{prefix}alembic_version",
    }


def add_customer(crm: pycrm.CRM, name: str) -> str:
    with crm.session(actor=crm.system_actor) as s:
        return s.customers.create(name, phones=["+49 30 1234567"]).id


def names_in(crm: pycrm.CRM) -> list[str]:
    with crm.session(actor=crm.system_actor) as s:
        return [c.name for c in s.customers.search()]


@pytest.mark.postgres
def test_tables_live_in_the_given_postgresql_schema_and_are_reused(
    pg_engine: sa.Engine, pg_schema: str
) -> None:
    crm = pycrm.connect(pg_engine, schema=pg_schema)
    acme = add_customer(crm, "Acme")
    crm.close()  # a passed-in engine stays open
    with pg_engine.connect() as connection:
        connection.execute(sa.text("select 1"))
    inspector = sa.inspect(pg_engine)
    tables = set(inspector.get_table_names(schema=pg_schema))
    assert tables == expected_tables("pycrm_")
    assert {"pycrm_customers", "pycrm_contacts", "pycrm_audit_entries"} <= tables
    with pg_engine.connect() as connection:
        version = connection.execute(
            sa.text(f'select version_num from "{pg_schema}".pycrm_alembic_version')
        ).scalar_one()
        rows = (
            connection.execute(sa.text(f'select name from "{pg_schema}".pycrm_customers'))
            .scalars()
            .all()
        )
    assert version == HEAD
    assert rows == ["Acme"]
    again = pycrm.connect(pg_engine, schema=pg_schema)  # an existing database: no re-creation
    assert names_in(again) == ["Acme"]
    with again.session(actor=again.system_actor) as s:
        assert s.customers.get(acme).name == "Acme"
        assert [c.id for c in s.customers.search(phone="+49 30 1234567")] == [acme]
    add_customer(again, "Beta")
    assert names_in(pycrm.connect(pg_engine, schema=pg_schema)) == ["Acme", "Beta"]
    with pg_engine.connect() as connection:
        stamps = connection.execute(
            sa.text(f'select count(*) from "{pg_schema}".pycrm_alembic_version')
        ).scalar_one()
    assert stamps == 1


@pytest.mark.postgres
def test_two_schemas_on_one_server_hold_separate_crms(pg_engine: sa.Engine, pg_schema: str) -> None:
    other = f"{pg_schema}_b"
    try:
        first = pycrm.connect(pg_engine, schema=pg_schema)
        second = pycrm.connect(pg_engine, schema=other, table_prefix="crm_")
        add_customer(first, "In first")
        add_customer(second, "In second")
        assert names_in(first) == ["In first"]
        assert names_in(second) == ["In second"]
        assert "crm_customers" in sa.inspect(pg_engine).get_table_names(schema=other)
    finally:
        with pg_engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{other}" CASCADE'))


def test_a_table_prefix_names_every_table_and_the_alembic_version_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    crm = pycrm.connect(url, table_prefix="crm_")
    add_customer(crm, "Acme")
    crm.close()
    engine = sa.create_engine(url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
        with engine.connect() as connection:
            version = connection.execute(
                sa.text("select version_num from crm_alembic_version")
            ).scalar_one()
    finally:
        engine.dispose()
    assert tables == expected_tables("crm_")
    assert {"crm_customers", "crm_users", "crm_match_keys"} <= tables
    assert not any(t.startswith("pycrm_") for t in tables)
    assert version == HEAD
    with pycrm.connect(url, table_prefix="crm_") as again:
        assert names_in(again) == ["Acme"]


def test_pycrm_tables_sit_beside_the_applications_own_and_other_prefixes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'erp.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("create table invoices (id integer primary key, total text)"))
        connection.execute(sa.text("insert into invoices values (1, '10.00')"))
    try:
        with pycrm.connect(url, table_prefix="a_") as a, pycrm.connect(url, table_prefix="b_") as b:
            add_customer(a, "Only in a")
            assert names_in(b) == []
            add_customer(b, "Only in b")
            assert names_in(a) == ["Only in a"]
        with engine.connect() as connection:
            assert connection.execute(sa.text("select total from invoices")).scalar_one() == "10.00"
            tables = set(sa.inspect(connection).get_table_names())
        assert expected_tables("a_") | expected_tables("b_") | {"invoices"} == tables
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "target",
    [
        "not a url",
        "memory",
        "foo://bar",
        "postgresql+nodriver://user@localhost/db",
        "mysql+nosuchdriver://user@localhost/db",
        42,
        object(),
    ],
    ids=lambda t: repr(t)[:40] if isinstance(t, str | int) else type(t).__name__,
)
def test_connect_to_an_unusable_target_raises_configuration_error(target: object) -> None:
    with pytest.raises(ConfigurationError):
        pycrm.connect(target)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [
        {"table_prefix": "CRM-"},
        {"table_prefix": "x" * 21},
        {"default_region": "XX"},
        {"currency": "euro"},
    ],
)
def test_connect_with_a_bad_setting_raises_configuration_error(options: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        pycrm.connect("memory://", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["/proc/no-such-dir/crm.db", "/dev/null/crm.db"])
def test_connect_to_a_sqlite_file_that_cannot_exist_raises_configuration_error(path: str) -> None:
    with pytest.raises(ConfigurationError):
        pycrm.connect(f"sqlite:///{path}")


def test_connect_to_a_server_that_does_not_answer_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        pycrm.connect("postgresql+psycopg://nobody@127.0.0.1:1/nothing?connect_timeout=2")


def customer_indexes(url: str) -> dict[str, list[str]]:
    engine = sa.create_engine(url)
    try:
        found = sa.inspect(engine).get_indexes("pycrm_customers")
    finally:
        engine.dispose()
    return {ix["name"]: list(ix["column_names"]) for ix in found if ix["name"]}


def test_a_database_at_an_older_revision_is_migrated_to_the_current_indexes(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with pycrm.connect(url) as crm:
        add_customer(crm, "Acme")
        fresh = customer_indexes(url)
        store = crm.store
        assert isinstance(store, SqlStore)
        with store.engine.begin() as connection:
            command.downgrade(alembic_config(store.schema, connection), "0001")
    old = customer_indexes(url)
    assert old["ix_pycrm_customers_owner_id"] == ["tenant_id", "owner_id"]
    assert "ix_pycrm_customers_owner_id_status" not in old

    with pycrm.connect(url) as again:  # connecting migrates to head
        assert names_in(again) == ["Acme"]
    assert customer_indexes(url) == fresh
    assert fresh["ix_pycrm_customers_owner_id_status"] == ["tenant_id", "owner_id", "status"]
    assert "ix_pycrm_customers_owner_id" not in fresh


def test_migrating_to_0005_fills_the_stage_visits_from_the_deals_stage_histories(
    tmp_path: Path,
) -> None:
    from pycrm.domain.deals import StageVisit
    from pycrm.testing import FakeClock

    url = f"sqlite:///{tmp_path / 'old.db'}"
    clock = FakeClock()
    with pycrm.connect(url, clock=clock) as crm:
        with crm.session(actor=crm.system_actor) as s:
            acme = s.customers.create("Acme")
            doc = s.documents.attach("customer", acme.id, "a.txt", b"a")
            deals = [
                s.deals.create(f"D{i}", customer_id=acme.id, amount=pycrm.Money.of("1", "EUR"))
                for i in range(3)
            ]
        for step, (i, action) in enumerate(
            [(0, "proposal"), (1, "needs_analysis"), (0, "won"), (1, "qualification"), (2, "lost")]
        ):
            clock.advance(hours=5 + step)
            with crm.session(actor=crm.system_actor) as s:
                if action == "won":
                    s.deals.win(deals[i].id)
                elif action == "lost":
                    s.deals.lose(deals[i].id, "price")
                else:
                    s.deals.move(deals[i].id, action)

        def visits() -> list[tuple[object, ...]]:
            with crm.session(actor=crm.system_actor) as s:
                return sorted(
                    (v.deal_id, v.entered_at, v.stage, v.position, v.reached_before, v.left_at,
                     v.owner_id, v.opened_at, v.moved_by)
                    for v in s._uow.repo(StageVisit).find()
                )  # fmt: skip

        written = visits()
        store = crm.store
        assert isinstance(store, SqlStore)
        with store.engine.begin() as connection:
            command.downgrade(alembic_config(store.schema, connection), "0004")
            tables = set(sa.inspect(connection).get_table_names())
            assert "pycrm_stage_visits" not in tables
    again = pycrm.connect(url, clock=clock)  # connecting migrates to head
    with again, again.session(actor=again.system_actor) as s:
        assert s.documents.read(doc.id) == b"a"  # its reader key came back
        rebuilt = sorted(
            (v.deal_id, v.entered_at, v.stage, v.position, v.reached_before, v.left_at,
             v.owner_id, v.opened_at, v.moved_by)
            for v in s._uow.repo(StageVisit).find()
        )  # fmt: skip
        funnel = [(r.stage, r.reached, r.stays) for r in s.analytics.stage_funnel()]
    assert len(written) == 8
    assert rebuilt == written
    assert funnel == [
        ("qualification", 3, 3),
        ("needs_analysis", 2, 1),
        ("proposal", 1, 1),
        ("negotiation", 1, 0),
        ("won", 1, 0),
    ]


def test_users_and_people_stored_before_the_name_parts_read_back_with_none_and_empty_lists(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with pycrm.connect(url) as crm:
        with crm.session(actor=crm.system_actor) as s:
            sam = s.org.create_user("Sam", "sam@corp.example", "sales", skills=["tools"])
            ann = s.contacts.create("Ann Acme")
        store = crm.store
        assert isinstance(store, SqlStore)
        with store.engine.begin() as connection:
            command.downgrade(alembic_config(store.schema, connection), "0005")
            columns = {c["name"] for c in sa.inspect(connection).get_columns("pycrm_users")}
        assert "regions" not in columns
    with pycrm.connect(url) as again, again.session(actor=again.system_actor) as s:
        user = s.org.get_user(sam.id)
        contact = s.contacts.get(ann.id)
        assert (user.skills, user.regions, user.languages) == (("tools",), (), ())
        assert (contact.given_name, contact.family_name, contact.name_order) == (None, None, None)
        s.org.update_user(sam.id, regions=["DACH"])
        assert s.org.get_user(sam.id).regions == ("DACH",)


def test_only_the_text_fields_an_index_holds_have_a_bounded_column() -> None:
    tables = build_schema()
    for cls in RECORD_TYPES:
        indexed = {name for key in (*cls.indexes, *cls.unique) for name in key}
        table = tables.codec(cls).table
        hints = typing.get_type_hints(cls)
        for field in attrs.fields(cls):
            if hints[field.name] not in (str, str | None) or field.name in ("id", "tenant_id"):
                continue  # enums and decimals have their own bounds; the keys theirs
            column = table.c[field.name]
            if isinstance(column.type, sa.String) and column.type.length is not None:
                assert field.name in indexed, f"{table.name}.{field.name} is bounded"


@pytest.mark.postgres
def test_an_older_postgresql_database_gets_text_columns_for_long_text(
    pg_engine: sa.Engine, pg_schema: str
) -> None:
    with pycrm.connect(pg_engine, schema=pg_schema) as crm:
        store = crm.store
        assert isinstance(store, SqlStore)
        leads = store.schema.codec(Lead).table
        with pg_engine.begin() as connection:  # as revision 0006 left it
            connection.execute(
                sa.text(f'ALTER TABLE "{pg_schema}".{leads.name} ALTER needs TYPE VARCHAR(500)')
            )
            connection.execute(
                sa.text(f"UPDATE \"{pg_schema}\".pycrm_alembic_version SET version_num = '0006'")
            )
    with pycrm.connect(pg_engine, schema=pg_schema) as crm:  # connecting migrates
        with crm.session(actor=crm.system_actor) as s:
            lead = s.leads.capture("Long Needs", source="api", needs="n" * 5000)
        with crm.session(actor=crm.system_actor) as s:
            assert s.leads.get(lead.id).needs == "n" * 5000
    with pg_engine.connect() as connection:
        assert (
            connection.execute(
                sa.text(f'SELECT version_num FROM "{pg_schema}".pycrm_alembic_version')
            ).scalar_one()
            == HEAD
        )


def test_json_columns_are_stored_without_padding_and_with_letters_as_they_are(
    tmp_path: Path,
) -> None:
    # The engine pycrm makes from a URL writes compact JSON (an engine the
    # application passes in keeps its own serializer).
    crm = pycrm.connect(f"sqlite:///{tmp_path / 'crm.db'}", load_plugins=False)
    try:
        with crm.session(actor=crm.system_actor) as s:
            customer = s.customers.create("Müller Söhne GmbH", emails=["info@mueller.example"])
        store = crm.store
        assert isinstance(store, SqlStore)
        table = store.schema.codec(pycrm.AuditEntry).table
        with crm.engine.connect() as conn:
            text = conn.execute(
                sa.select(sa.cast(table.c.snapshot, sa.Text)).where(
                    table.c.record_id == customer.id
                )
            ).scalar_one()
    finally:
        crm.close()
    assert "Müller Söhne GmbH" in text
    assert '": ' not in text
    assert '", "' not in text
