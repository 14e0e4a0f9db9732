"""Search and filter input that looks like SQL is plain text, on every backend.

Quotes, comment markers, ``;``, and the LIKE wildcards ``%`` and ``_`` and the
escape character ``\\`` only ever match themselves: each search returns
exactly the records whose name contains that literal text, filters compare
the literal value, and every table is still there afterwards.
"""

from __future__ import annotations

import unicodedata

import pytest
import sqlalchemy as sa

import pycrm
from pycrm.domain.customers import Customer

#: name → the needles it (alone) must be found by
NAMES = [
    "Acme '; DROP TABLE pycrm_customers; -- Ltd",
    "Acme Ltd",
    "100% Organic",
    "100 Organic",
    "1000 Organic",
    "Under_score Inc",
    "Underscore Inc",
    "UnderXscore Inc",
    "Back\\slash GmbH",
    "Back slash GmbH",
    "Backslash GmbH",
    "O'Brien ' OR 1=1 -- Partners",
    "OBrien OR 11 Partners",
    "Smart ‘Quotes’ „Lda“",
    "Smart 'Quotes' Lda",
    'Double "Quote" Co',
    "Percent %% Twice",
    "Semi; Colon",
]

NEEDLES = [
    "'; DROP TABLE pycrm_customers; --",
    "' OR 1=1 --",
    "' OR '1'='1",
    "%",
    "%%",
    "_",
    "\\",
    "\\%",
    "'",
    '"',
    "‘quotes’",
    "„lda“",
    "--",
    ";",
    "0% o",
    "r_s",
    "k\\s",
    "*",
    "[a-z]",
    "?",
]


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _expected(needle: str) -> set[str]:
    return {name for name in NAMES if _fold(needle) in _fold(name)}


@pytest.fixture
def populated(crm: pycrm.CRM) -> dict[str, str]:
    ids = {}
    with crm.session(actor=crm.system_actor) as s:
        for i, name in enumerate(NAMES):
            customer = s.customers.create(
                name,
                on_duplicate="allow",
                industry=name,
                region=f"R{i}",
                tags=[name],
            )
            s.contacts.create(f"Person {name}", customer_id=customer.id, on_duplicate="allow")
            s.leads.capture(name, source="webform", campaign=name, on_duplicate="allow")
            ids[name] = customer.id
    return ids


def _tables(crm: pycrm.CRM) -> set[str]:
    schema = crm.store.schema.metadata.schema  # type: ignore[attr-defined]
    return set(sa.inspect(crm.engine).get_table_names(schema=schema))


def test_expected_sets_are_not_trivial() -> None:
    for needle in ("%", "_", "\\", "' OR 1=1 --", "'; DROP TABLE pycrm_customers; --"):
        assert 0 < len(_expected(needle)) < len(NAMES) // 2, needle
    assert _expected("[a-z]") == set()


def test_search_text_is_matched_literally(
    crm: pycrm.CRM, populated: dict[str, str], backend: str
) -> None:
    tables = _tables(crm) if backend != "memory" else set()
    with crm.session(actor=crm.system_actor) as s:
        for needle in NEEDLES:
            expected = _expected(needle)
            found = {c.name for c in s.customers.search(needle, limit=1000)}
            assert found == expected, needle
            people = {c.name for c in s.contacts.search(needle, limit=1000)}
            assert people == {f"Person {n}" for n in _expected_person(needle)}, needle
            by_company = {c.name for c in s.contacts.search(company=needle, limit=1000)}
            assert by_company == {f"Person {n}" for n in expected}, needle
            leads = {lead.name for lead in s.leads.search(needle, limit=1000)}
            assert leads == expected, needle
        assert s.customers.count() == len(NAMES)
    if backend != "memory":
        assert _tables(crm) == tables
        assert "pycrm_customers" in tables


def _expected_person(needle: str) -> set[str]:
    return {name for name in NAMES if _fold(needle) in _fold(f"Person {name}")}


#: names with characters that mean something to SQL or to LIKE
SPECIAL = [n for n in NAMES if any(c in n for c in "'%_\\;‘\"")]


def test_filters_compare_the_literal_value(
    crm: pycrm.CRM, populated: dict[str, str], backend: str
) -> None:
    assert len(SPECIAL) >= 8
    with crm.session(actor=crm.system_actor) as s:
        for value in SPECIAL:
            assert [c.id for c in s.customers.search(industry=value)] == [populated[value]], value
            assert [c.id for c in s.customers.search(tag=value)] == [populated[value]], value
            assert [lead.name for lead in s.leads.search(campaign=value)] == [value], value
            assert s.customers.search(industry=value + "%") == [], value
        assert s.customers.search(owner_id="' OR 1=1 --") == []
        assert s.customers.search(industry="%") == []
        assert s.customers.search(region="_1") == []
        assert s.leads.search(source="x' OR '1'='1") == []
        assert s.audit.find(action="' OR 1=1 --") == []
        assert s.audit.find(record_id="%") == []
        assert s.deals.list(customer_id="' OR 1=1 --") == []
        assert s.tasks.list(related_id="%") == []
        assert s.customers.count() == len(NAMES)


PROBES = [
    "'; DROP TABLE pycrm_customers; --",
    "x'); DELETE FROM pycrm_customers; --",
    "' UNION SELECT id FROM pycrm_users --",
]


def test_ids_and_names_that_look_like_sql_are_plain_values(
    crm: pycrm.CRM, populated: dict[str, str], backend: str
) -> None:
    created = {}
    with crm.session(actor=crm.system_actor) as s:
        for probe in PROBES:
            with pytest.raises(pycrm.errors.NotFound):
                s.customers.get(probe)
            created[probe] = s.customers.create(probe, on_duplicate="allow").id
            assert s.customers.get(created[probe]).name == probe
    with crm.session(actor=crm.system_actor) as s:
        for probe in PROBES:
            found = {c.id for c in s.customers.search(probe)}
            others = {populated[n] for n in _expected(probe)}
            others |= {created[p] for p in PROBES if _fold(probe) in _fold(p)}
            assert found == others, probe
        assert s.customers.count() == len(NAMES) + len(PROBES)
        assert s._uow.repo(Customer).count() == len(NAMES) + len(PROBES)
    if backend != "memory":
        tables = crm.store.schema.metadata.tables  # type: ignore[attr-defined]
        customers = next(t for name, t in tables.items() if name.endswith("pycrm_customers"))
        with crm.engine.connect() as connection:
            rows = connection.execute(sa.select(sa.func.count()).select_from(customers)).scalar()
        assert rows == len(NAMES) + len(PROBES)
