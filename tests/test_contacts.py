"""Contract tests for the contact service on every backend."""

from __future__ import annotations

from datetime import timedelta

import pytest

import pycrm
from pycrm import Address, RecordStatus
from pycrm.errors import ConcurrencyError, NotFound, ValidationError
from pycrm.session import Session
from pycrm.testing import FakeClock


def system(crm: pycrm.CRM) -> Session:
    return crm.session(actor=crm.system_actor)


def names(records: list[pycrm.Contact]) -> list[str]:
    return [r.name for r in records]


def test_a_created_contact_comes_back_equal_from_a_new_session(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with system(crm) as s:
        owner = s.org.create_user("Olga", "olga@example.com", "sales")
        acme = s.customers.create("Acme GmbH")
        created = s.contacts.create(
            " Ada   Lovelace ",
            customer_id=acme.id,
            title="Head of purchasing",
            emails=["Ada.Lovelace@Acme.example"],
            phones=[("0171 2345678", "mobile")],
            address={"line1": "Hauptstr. 1", "postcode": "10115", "city": "Berlin"},
            tags=["Decision maker"],
            owner_id=owner.id,
            source="webshop",
        )
    assert created.name == "Ada Lovelace"
    assert created.customer_id == acme.id
    assert [(p.value, p.label) for p in created.contact_points] == [
        ("Ada.Lovelace@acme.example", "work"),
        ("+491712345678", "mobile"),
    ]
    assert created.address == Address(line1="Hauptstr. 1", postcode="10115", city="Berlin")
    assert (created.version, created.created_at, created.status) == (
        1,
        fake_clock.now(),
        RecordStatus.ACTIVE,
    )
    with system(crm) as s:
        assert s.contacts.get(created.id) == created
        with pytest.raises(NotFound) as raised:
            s.contacts.get(acme.id)  # a customer's id is not a contact's
        assert raised.value.resource == "contact"


def test_a_contact_needs_an_existing_customer_if_it_names_one(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        with pytest.raises(ValidationError) as raised:
            s.contacts.create("Ada", customer_id="0" * 32)
        assert raised.value.field == "customer_id"
        assert s.contacts.search() == []
        loner = s.contacts.create("Loner")
    assert loner.customer_id is None


def test_updating_a_contact_replaces_the_given_kind_of_contact_point_only(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with system(crm) as s:
        acme = s.customers.create("Acme")
        beta = s.customers.create("Beta")
        ada = s.contacts.create(
            "Ada", customer_id=acme.id, emails=["ada@acme.example"], phones=["030 1234567"]
        )
    fake_clock.advance(minutes=5)
    with system(crm) as s:
        moved = s.contacts.update(
            ada.id, version=1, customer_id=beta.id, phones=["089 123456"], title="CEO"
        )
        with pytest.raises(ConcurrencyError):
            s.contacts.update(ada.id, version=1, title="CTO")
    assert moved.version == 2
    assert moved.updated_at == fake_clock.now()
    assert (moved.customer_id, moved.title) == (beta.id, "CEO")
    assert [p.value for p in moved.contact_points] == ["ada@acme.example", "+4989123456"]
    with system(crm) as s:
        assert s.contacts.get(ada.id) == moved
        assert s.contacts.search(phone="030 1234567") == []
        assert s.contacts.search(phone="089 123456") == [moved]
        assert s.contacts.search(customer_id=acme.id) == []
        assert s.contacts.search(customer_id=beta.id) == [moved]


def test_an_archived_contact_leaves_searches_but_stays_readable(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        acme = s.customers.create("Acme")
        ada = s.contacts.create("Ada", customer_id=acme.id, emails=["ada@acme.example"])
        s.contacts.create("Bob", customer_id=acme.id)
    with system(crm) as s:
        archived = s.contacts.archive(ada.id, version=1)
        assert s.contacts.archive(ada.id) == archived
    assert archived.status is RecordStatus.ARCHIVED
    assert archived.version == 2
    with system(crm) as s:
        assert names(s.contacts.search()) == ["Bob"]
        assert s.contacts.search(email="ada@acme.example") == []
        assert names(s.contacts.search(include_archived=True)) == ["Ada", "Bob"]
        assert s.contacts.get(ada.id) == archived
        assert [c.name for c in s.customers.view(acme.id).contacts] == ["Bob"]


@pytest.fixture
def people(crm: pycrm.CRM) -> dict[str, str]:
    with system(crm) as s:
        acme = s.customers.create("Acme Maschinenbau GmbH")
        beta = s.customers.create("Beta Handel KG")
        rows = [
            s.contacts.create(
                "Ada Lovelace",
                customer_id=acme.id,
                emails=["Ada.Lovelace@Acme.example"],
                phones=["030 1234567"],
                tags=["Buyer"],
            ),
            s.contacts.create(
                "Charles Babbage", customer_id=acme.id, phones=["0171 2345678"], tags=["tech"]
            ),
            s.contacts.create("Grace Hopper", customer_id=beta.id, tags=["BUYER"]),
            s.contacts.create("Alan Turing", emails=["alan@turing.example"]),
        ]
    return {"acme": acme.id, "beta": beta.id, **{r.name.split()[0]: r.id for r in rows}}


def test_contact_search_by_text_email_and_phone(crm: pycrm.CRM, people: dict[str, str]) -> None:
    with system(crm) as s:
        assert names(s.contacts.search("LOVE")) == ["Ada Lovelace"]
        assert names(s.contacts.search("a")) == [
            "Ada Lovelace",
            "Alan Turing",
            "Charles Babbage",
            "Grace Hopper",
        ]
        for email in ("ada.lovelace@acme.example", "ADA.LOVELACE@ACME.EXAMPLE"):
            assert [c.id for c in s.contacts.search(email=email)] == [people["Ada"]], email
        for phone in ("030 1234567", "+49 30 1234567", "0049 (30) 123-45-67"):
            assert [c.id for c in s.contacts.search(phone=phone)] == [people["Ada"]], phone
        assert [c.id for c in s.contacts.search(phone="+49 171 2345678")] == [people["Charles"]]
        assert s.contacts.search(email="nobody@acme.example") == []


def test_contact_search_by_company_customer_and_tag(crm: pycrm.CRM, people: dict[str, str]) -> None:
    with system(crm) as s:
        assert names(s.contacts.search(company="maschinenbau")) == [
            "Ada Lovelace",
            "Charles Babbage",
        ]
        assert names(s.contacts.search(company="HANDEL")) == ["Grace Hopper"]
        assert s.contacts.search(company="nobody") == []
        assert names(s.contacts.search(customer_id=people["beta"])) == ["Grace Hopper"]
        assert names(s.contacts.search(tag="buyer")) == ["Ada Lovelace", "Grace Hopper"]
        assert names(s.contacts.search(tag="Buyer", company="acme")) == ["Ada Lovelace"]
        assert names(s.contacts.search("a", limit=2, offset=1)) == [
            "Alan Turing",
            "Charles Babbage",
        ]


def test_a_contacts_timeline_shows_only_its_own_activities_newest_first(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with system(crm) as s:
        acme = s.customers.create("Acme")
        ada = s.contacts.create("Ada", customer_id=acme.id)
        bob = s.contacts.create("Bob", customer_id=acme.id)
        start = fake_clock.now()
        s.activities.log("call", "ada 1", contact_id=ada.id, occurred_at=start)
        s.activities.log("call", "bob", contact_id=bob.id, occurred_at=start + timedelta(1))
        s.activities.log("email", "ada 2", contact_id=ada.id, occurred_at=start + timedelta(2))
        s.activities.log("note", "company", customer_id=acme.id)
    with system(crm) as s:
        assert [a.subject for a in s.contacts.timeline(ada.id)] == ["ada 2", "ada 1"]
        assert [a.subject for a in s.contacts.timeline(ada.id, limit=1)] == ["ada 2"]
        assert [
            a.subject for a in s.contacts.timeline(ada.id, before=start + timedelta(days=1))
        ] == ["ada 1"]
        with pytest.raises(NotFound):
            s.contacts.timeline(acme.id)


def test_contact_history_and_as_of(crm: pycrm.CRM, fake_clock: FakeClock) -> None:
    with system(crm) as s:
        ada = s.contacts.create("Ada", title="Engineer")
    t1 = fake_clock.now()
    fake_clock.advance(days=1)
    with system(crm) as s:
        s.contacts.update(ada.id, title="Head of engineering")
    t2 = fake_clock.now()
    fake_clock.advance(days=1)
    with system(crm) as s:
        s.contacts.update(ada.id, title="CTO", name="Ada King")
        titles = [(c.old, c.new, c.at) for c in s.contacts.history(ada.id, field="title")]
        every = {c.field for c in s.contacts.history(ada.id)}
        assert s.contacts.as_of(ada.id, t1).title == "Engineer"
        assert s.contacts.as_of(ada.id, t2 + timedelta(hours=23)).title == "Head of engineering"
        now = s.contacts.as_of(ada.id, fake_clock.now())
        assert now == s.contacts.get(ada.id)
        with pytest.raises(NotFound):
            s.contacts.as_of(ada.id, t1 - timedelta(seconds=1))
    assert titles == [
        (None, "Engineer", t1),
        ("Engineer", "Head of engineering", t2),
        ("Head of engineering", "CTO", fake_clock.now()),
    ]
    assert {"name", "title"} <= every
    assert (now.name, now.version) == ("Ada King", 3)
