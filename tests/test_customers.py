"""Contract tests for the customer service (DESIGN §3, §4): every call on every backend.

Each test takes ``crm`` (or ``connect_crm``), so it runs on memory, SQLite and
PostgreSQL. Sessions are opened one after the other, never side by side, so
that SQLite's single writer is never kept waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest

import pycrm
from pycrm import Address, ContactPoint, Money, PointKind, RecordStatus
from pycrm.errors import ConcurrencyError, NotFound, ValidationError
from pycrm.session import Session
from pycrm.testing import FakeClock
from support import add_user

ConnectFn = Callable[..., pycrm.CRM]


def system(crm: pycrm.CRM) -> Session:
    return crm.session(actor=crm.system_actor)


def names(records: list[pycrm.Customer]) -> list[str]:
    return [r.name for r in records]


# -- create and get -------------------------------------------------------------


def test_a_created_customer_comes_back_normalised_and_equal_from_a_new_session(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    owner = add_user(crm, "Olga")
    with system(crm) as s:
        created = s.customers.create(
            "  Acme \t Maschinenbau   GmbH ",
            industry="machinery",
            size=250,
            annual_revenue=Money.of("1234567.89", "EUR"),
            grade="B",
            region="north",
            website="https://acme.example",
            address={
                "line1": "Hauptstr. 1",
                "city": "Berlin",
                "postcode": "10115",
                "country": "de",
            },
            emails=["Anna.Berg@ACME.example", ("orders@acme.example", "orders")],
            phones=["030 1234567", ("+49 (0)89 123456", "munich")],
            tags=["VIP", "vip", "Export"],
            owner_id=owner,
            source="erp",
        )
    assert created.name == "Acme Maschinenbau GmbH"
    assert created.annual_revenue == Money(Decimal("1234567.89"), "EUR")
    assert created.address == Address(
        line1="Hauptstr. 1", city="Berlin", postcode="10115", country="DE"
    )
    assert created.contact_points == (
        ContactPoint(PointKind.EMAIL, "Anna.Berg@acme.example", "work"),
        ContactPoint(PointKind.EMAIL, "orders@acme.example", "orders"),
        ContactPoint(PointKind.PHONE, "+49301234567", "work"),
        ContactPoint(PointKind.PHONE, "+4989123456", "munich"),
    )
    assert created.tags == ("VIP", "Export")
    assert created.status is RecordStatus.ACTIVE
    assert created.version == 1
    assert created.created_at == created.updated_at == fake_clock.now()
    assert created.created_by == created.updated_by == "system"
    assert created.tenant_id == "default"
    with system(crm) as s:
        loaded = s.customers.get(created.id)
    assert loaded == created
    assert type(loaded.annual_revenue.amount) is Decimal  # type: ignore[union-attr]
    assert loaded.created_at.tzinfo is not None


# -- update, archive, restore -------------------------------------------------------


def test_an_update_changes_only_the_given_fields_and_bumps_version_and_timestamps(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    ada = add_user(crm, "Ada")
    with system(crm) as s:
        created = s.customers.create(
            "Acme", industry="machinery", emails=["a@acme.example"], phones=["030 1234567"]
        )
    fake_clock.advance(hours=2)
    with crm.session(actor=ada) as s:
        updated = s.customers.update(
            created.id, version=1, industry="robotics", emails=["b@acme.example"], size=12
        )
    assert updated.version == 2
    assert updated.updated_at == fake_clock.now() > created.created_at
    assert updated.updated_by == ada
    assert updated.created_by == "system"
    assert updated.created_at == created.created_at
    assert (updated.name, updated.industry, updated.size) == ("Acme", "robotics", 12)
    # emails replaced, phones kept
    assert [p.value for p in updated.contact_points] == ["+49301234567", "b@acme.example"]
    with system(crm) as s:
        assert s.customers.get(created.id) == updated
        assert s.customers.search(email="a@acme.example") == []
        assert s.customers.search(email="b@acme.example") == [updated]
        assert s.customers.search(phone="030 1234567") == [updated]


def test_an_update_that_changes_nothing_keeps_the_version(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        created = s.customers.create("Acme", industry="machinery")
    with system(crm) as s:
        same = s.customers.update(created.id, industry=" machinery ", version=1)
    assert same == created
    with system(crm) as s:
        assert s.customers.get(created.id).version == 1
        assert len(s.audit.find(record_id=created.id)) == 1


def test_an_update_with_a_stale_version_is_refused_and_nothing_is_written(
    crm: pycrm.CRM,
) -> None:
    with system(crm) as s:
        created = s.customers.create("Acme")
        s.customers.update(created.id, name="Acme 2")
    with system(crm) as s, pytest.raises(ConcurrencyError) as raised:
        s.customers.update(created.id, version=1, name="Acme 3")
    assert (raised.value.resource, raised.value.id) == ("customer", created.id)
    assert (raised.value.expected, raised.value.actual) == (1, 2)
    with system(crm) as s:
        assert s.customers.get(created.id).name == "Acme 2"


def test_archiving_hides_a_customer_from_search_and_count_until_restored(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with system(crm) as s:
        acme = s.customers.create("Acme", emails=["info@acme.example"])
        s.customers.create("Beta")
    fake_clock.advance(days=1)
    with system(crm) as s:
        archived = s.customers.archive(acme.id, version=1)
        assert s.customers.archive(acme.id) == archived  # archiving twice is a no-op
    assert archived.status is RecordStatus.ARCHIVED
    assert archived.archived_at == fake_clock.now()
    assert archived.version == 2
    with system(crm) as s:
        assert names(s.customers.search()) == ["Beta"]
        assert s.customers.search(email="info@acme.example") == []
        assert names(s.customers.search(include_archived=True)) == ["Acme", "Beta"]
        assert s.customers.search(email="info@acme.example", include_archived=True) == [archived]
        assert s.customers.count() == 1
        assert s.customers.count(include_archived=True) == 2
        assert s.customers.get(acme.id) == archived  # still readable by id
    with system(crm) as s:
        restored = s.customers.restore(acme.id, version=2)
    assert restored.status is RecordStatus.ACTIVE
    assert restored.archived_at is None
    assert restored.version == 3
    with system(crm) as s:
        assert names(s.customers.search()) == ["Acme", "Beta"]
        assert s.customers.count() == 2


# -- search -------------------------------------------------------------------------


@pytest.fixture
def directory(crm: pycrm.CRM) -> dict[str, str]:
    """Four customers with distinct emails, phones, tags, industries, regions and owners."""
    owner = add_user(crm, "Olga")
    with system(crm) as s:
        rows = [
            s.customers.create(
                "Müller Maschinenbau GmbH",
                emails=["Einkauf@Mueller.example"],
                phones=["030 1234567"],
                tags=["VIP", "Export"],
                industry="machinery",
                region="north",
                owner_id=owner,
            ),
            s.customers.create(
                "Acme Ltd",
                emails=["info@acme.example"],
                phones=["+44 20 7946 0958"],
                tags=["export"],
                industry="retail",
                region="uk",
            ),
            s.customers.create(
                "50% Rabatt AG",
                emails=["shop@rabatt.example"],
                phones=["089 123456"],
                industry="retail",
                region="south",
            ),
            s.customers.create("500 Apples KG", industry="food", region="south", owner_id=owner),
        ]
    return {"owner": owner, **{r.name.split()[0]: r.id for r in rows}}


def test_search_by_text_matches_part_of_the_name_ignoring_case(
    crm: pycrm.CRM, directory: dict[str, str]
) -> None:
    with system(crm) as s:
        assert names(s.customers.search("MÜLLER")) == ["Müller Maschinenbau GmbH"]
        assert names(s.customers.search("maschinen")) == ["Müller Maschinenbau GmbH"]
        assert names(s.customers.search("  acme   ltd ")) == ["Acme Ltd"]
        assert names(s.customers.search("50%")) == ["50% Rabatt AG"]  # % is literal
        assert names(s.customers.search("5_0")) == []  # so is _
        assert s.customers.search("nobody") == []


def test_search_by_email_ignores_the_case_of_the_address(
    crm: pycrm.CRM, directory: dict[str, str]
) -> None:
    with system(crm) as s:
        for email in (
            "einkauf@mueller.example",
            "EINKAUF@MUELLER.EXAMPLE",
            "Einkauf@Mueller.example",
        ):
            assert [c.id for c in s.customers.search(email=email)] == [directory["Müller"]]
        assert s.customers.search(email="verkauf@mueller.example") == []


def test_search_by_phone_finds_the_number_in_any_format(
    crm: pycrm.CRM, directory: dict[str, str]
) -> None:
    formats = ["030 1234567", "030/123 45 67", "(030) 123-4567", "+49 30 1234567"]
    formats += ["0049301234567", "+49301234567", "+49 (0)30 123 4567", "０３０ １２３４５６７"]
    with system(crm) as s:
        for phone in formats:
            assert [c.id for c in s.customers.search(phone=phone)] == [directory["Müller"]], phone
        assert [c.id for c in s.customers.search(phone="+44 20 7946 0958")] == [directory["Acme"]]
        assert s.customers.search(phone="030 7654321") == []


def test_search_by_tag_ignores_case(crm: pycrm.CRM, directory: dict[str, str]) -> None:
    with system(crm) as s:
        assert names(s.customers.search(tag="EXPORT")) == ["Acme Ltd", "Müller Maschinenbau GmbH"]
        assert names(s.customers.search(tag="vip")) == ["Müller Maschinenbau GmbH"]
        assert s.customers.search(tag="none") == []


def test_search_by_industry_region_and_owner_and_all_criteria_must_hold(
    crm: pycrm.CRM, directory: dict[str, str]
) -> None:
    with system(crm) as s:
        assert names(s.customers.search(industry="retail")) == ["50% Rabatt AG", "Acme Ltd"]
        assert names(s.customers.search(region="south")) == ["50% Rabatt AG", "500 Apples KG"]
        assert names(s.customers.search(owner_id=directory["owner"])) == [
            "500 Apples KG",
            "Müller Maschinenbau GmbH",
        ]
        assert names(s.customers.search(industry="retail", region="south")) == ["50% Rabatt AG"]
        assert names(s.customers.search("a", industry="retail", tag="export")) == ["Acme Ltd"]
        assert s.customers.search(industry="food", owner_id="0" * 32) == []


def test_search_pages_through_customers_in_name_order(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        for name in ["delta", "Alpha", "charlie", "Echo", "bravo"]:
            s.customers.create(name)
    with system(crm) as s:
        assert names(s.customers.search()) == ["Alpha", "bravo", "charlie", "delta", "Echo"]
        assert names(s.customers.search(limit=2)) == ["Alpha", "bravo"]
        assert names(s.customers.search(limit=2, offset=2)) == ["charlie", "delta"]
        assert names(s.customers.search(limit=2, offset=4)) == ["Echo"]
        assert s.customers.search(offset=5) == []
        assert s.customers.count() == 5


# -- timeline and 360 view ----------------------------------------------------------


def test_the_timeline_lists_the_customers_and_its_contacts_activities_newest_first(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with system(crm) as s:
        acme = s.customers.create("Acme")
        other = s.customers.create("Other")
        ada = s.contacts.create("Ada", customer_id=acme.id)
        start = fake_clock.now()
        s.activities.log("call", "first", customer_id=acme.id, occurred_at=start)
        s.activities.log("email", "second", contact_id=ada.id, occurred_at=start + timedelta(1))
        s.activities.log("note", "third", customer_id=acme.id, occurred_at=start + timedelta(2))
        s.activities.log("note", "elsewhere", customer_id=other.id)
    with system(crm) as s:
        assert [a.subject for a in s.customers.timeline(acme.id)] == ["third", "second", "first"]
        assert [a.subject for a in s.customers.timeline(acme.id, limit=2)] == ["third", "second"]
        before = start + timedelta(days=2)
        assert [a.subject for a in s.customers.timeline(acme.id, before=before)] == [
            "second",
            "first",
        ]
        with pytest.raises(NotFound):
            s.customers.timeline("0" * 32)


def test_the_360_view_shows_the_customer_its_active_contacts_activities_and_ratings(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with system(crm) as s:
        acme = s.customers.create("Acme")
        other = s.customers.create("Other")
        s.contacts.create("Zoe", customer_id=acme.id)
        bob = s.contacts.create("Bob", customer_id=acme.id)
        gone = s.contacts.create("Gone", customer_id=acme.id)
        s.contacts.create("Elsewhere", customer_id=other.id)
        s.contacts.archive(gone.id)
        for i in range(3):
            fake_clock.advance(minutes=1)
            s.activities.log("call", f"call {i}", contact_id=bob.id)
        s.activities.log("note", "not acme", customer_id=other.id)
        s.customers.assess(acme.id, "grade", "A", source="sales")
        s.customers.assess(acme.id, "grade", "C", source="service")
    with system(crm) as s:
        view = s.customers.view(acme.id)
        short = s.customers.view(acme.id, activities=2)
        current = s.customers.get(acme.id)
    assert isinstance(view, pycrm.Customer360)
    assert view.customer == current
    assert current.grade == "C"
    assert [c.name for c in view.contacts] == ["Bob", "Zoe"]
    assert [a.subject for a in view.activities] == ["call 2", "call 1", "call 0"]
    assert [a.subject for a in short.activities] == ["call 2", "call 1"]
    assert {(a.source, a.value) for a in view.assessments} == {("sales", "A"), ("service", "C")}
    assert view.deals == view.contracts == view.tickets == view.receivables == ()
    assert view.satisfaction is None
    assert view.outstanding == {}


# -- history and as_of --------------------------------------------------------------


def test_history_tells_who_from_which_department_changed_what_when(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    ada = add_user(crm, "Ada", "sales")
    sam = add_user(crm, "Sam", "service")
    with system(crm) as s:
        acme = s.customers.create("Acme", industry="machinery")
    created_at = fake_clock.now()
    fake_clock.advance(hours=1)
    with crm.session(actor=ada) as s:
        s.customers.update(acme.id, name="Acme Corp", region="north")
    fake_clock.advance(hours=1)
    with crm.session(actor=sam) as s:
        s.customers.update(acme.id, name="ACME Corporation")
        history = s.customers.history(acme.id)
        names_only = s.customers.history(acme.id, field="name")
    changes = [(c.field, c.old, c.new, c.actor_id, c.department) for c in names_only]
    assert changes == [
        ("name", None, "Acme", "system", "system"),
        ("name", "Acme", "Acme Corp", ada, "sales"),
        ("name", "Acme Corp", "ACME Corporation", sam, "service"),
    ]
    assert [c.at for c in names_only] == [
        created_at,
        created_at + timedelta(hours=1),
        created_at + timedelta(hours=2),
    ]
    assert ("region", None, "north") in [(c.field, c.old, c.new) for c in history]
    assert ("industry", None, "machinery") in [(c.field, c.old, c.new) for c in history]
    assert [c.at for c in history] == sorted(c.at for c in history)
    with system(crm) as s:
        with pytest.raises(ValidationError) as raised:
            s.customers.history(acme.id, field="shoe_size")
        assert raised.value.field == "field"
        with pytest.raises(NotFound):
            s.customers.history("0" * 32)


def test_as_of_returns_the_customer_as_it_was_at_any_moment(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with system(crm) as s:
        first = s.customers.create("Acme", tags=["new"])
    t1 = fake_clock.now()
    fake_clock.advance(hours=1)
    with system(crm) as s:
        second = s.customers.update(first.id, name="Acme Corp", tags=["key account"])
    t2 = fake_clock.now()
    fake_clock.advance(hours=1)
    with system(crm) as s:
        third = s.customers.archive(first.id)
        assert s.customers.as_of(first.id, t1) == first
        assert s.customers.as_of(first.id, t1 + timedelta(minutes=59)) == first
        assert s.customers.as_of(first.id, t2) == second
        assert s.customers.as_of(first.id, fake_clock.now()) == third
        with pytest.raises(NotFound):
            s.customers.as_of(first.id, t1 - timedelta(microseconds=1))
        with pytest.raises(ValidationError) as raised:
            s.customers.as_of(first.id, t1.replace(tzinfo=None))
        assert raised.value.field == "when"


# -- assessments ----------------------------------------------------------------------


def rate(crm: pycrm.CRM, clock: FakeClock, customer_id: str, *ratings: tuple[str, str]) -> None:
    """Record (source, value) grade ratings one minute apart."""
    with system(crm) as s:
        for source, value in ratings:
            clock.advance(minutes=1)
            s.customers.assess(customer_id, "grade", value, source=source)


def test_by_default_the_latest_rating_is_the_customers_grade(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    ada = add_user(crm, "Ada", "sales")
    with system(crm) as s:
        acme = s.customers.create("Acme")
    rate(crm, fake_clock, acme.id, ("service", "C"), ("finance", "B"))
    with crm.session(actor=ada) as s:
        fake_clock.advance(minutes=1)
        mine = s.customers.assess(acme.id, "grade", "A", note="big orders")
    assert (mine.source, mine.value, mine.note, mine.created_by) == (
        "sales",
        "A",
        "big orders",
        ada,
    )
    assert mine.assessed_at == fake_clock.now()
    with system(crm) as s:
        assert s.customers.get(acme.id).grade == "A"
        assert s.customers.consolidated(acme.id, "grade") == "A"
        assert [(a.source, a.value) for a in s.customers.assessments(acme.id)] == [
            ("sales", "A"),
            ("finance", "B"),
            ("service", "C"),
        ]
        assert s.customers.consolidated(acme.id, "risk") is None


def test_by_priority_lets_the_first_listed_source_that_rated_win(
    connect_crm: ConnectFn, fake_clock: FakeClock
) -> None:
    crm = connect_crm(assessment_rules={"grade": pycrm.by_priority("finance", "sales")})
    with system(crm) as s:
        acme = s.customers.create("Acme")
    rate(crm, fake_clock, acme.id, ("service", "C"))
    with system(crm) as s:
        assert s.customers.get(acme.id).grade == "C"  # only an unlisted source so far
    rate(crm, fake_clock, acme.id, ("sales", "A"), ("service", "D"))
    with system(crm) as s:
        assert s.customers.get(acme.id).grade == "A"
    rate(crm, fake_clock, acme.id, ("finance", "B"), ("sales", "A+"))
    with system(crm) as s:
        assert s.customers.get(acme.id).grade == "B"
        assert s.customers.consolidated(acme.id, "grade") == "B"
        current = s.customers.assessments(acme.id, "grade")
        assert [(a.source, a.value) for a in current] == [
            ("sales", "A+"),
            ("finance", "B"),
            ("service", "D"),
        ]


def test_majority_lets_the_value_most_sources_give_win_and_ties_go_to_the_latest(
    connect_crm: ConnectFn, fake_clock: FakeClock
) -> None:
    crm = connect_crm(assessment_rules={"grade": pycrm.majority})
    with system(crm) as s:
        acme = s.customers.create("Acme")
    rate(crm, fake_clock, acme.id, ("sales", "A"), ("service", "B"), ("finance", "B"))
    with system(crm) as s:
        assert s.customers.get(acme.id).grade == "B"
    rate(crm, fake_clock, acme.id, ("finance", "A"))  # finance changes its mind: A 2, B 1
    with system(crm) as s:
        assert s.customers.get(acme.id).grade == "A"
    rate(crm, fake_clock, acme.id, ("legal", "B"))  # A 2, B 2: the latest of the tied wins
    with system(crm) as s:
        assert s.customers.get(acme.id).grade == "B"


def test_latest_passed_explicitly_lets_the_most_recent_rating_win(
    connect_crm: ConnectFn, fake_clock: FakeClock
) -> None:
    crm = connect_crm(assessment_rules={"grade": pycrm.latest, "region": pycrm.majority})
    with system(crm) as s:
        acme = s.customers.create("Acme")
    rate(crm, fake_clock, acme.id, ("sales", "A"), ("service", "B"), ("finance", "B"))
    rate(crm, fake_clock, acme.id, ("sales", "C"))
    with system(crm) as s:
        assert s.customers.get(acme.id).grade == "C"
        s.customers.assess(acme.id, "region", "north", source="sales")
        s.customers.assess(acme.id, "region", "south", source="service")
        s.customers.assess(acme.id, "region", "south", source="finance")
        assert s.customers.get(acme.id).region == "south"


def test_history_of_assessments_keeps_every_rating_oldest_first(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with system(crm) as s:
        acme = s.customers.create("Acme")
        other = s.customers.create("Other")
    rate(crm, fake_clock, acme.id, ("sales", "A"), ("service", "C"), ("sales", "B"))
    rate(crm, fake_clock, other.id, ("sales", "Z"))
    with system(crm) as s:
        every = s.customers.history_of_assessments(acme.id)
        current = s.customers.assessments(acme.id)
        with pytest.raises(NotFound):
            s.customers.assessments("0" * 32)
        with pytest.raises(NotFound):
            s.customers.history_of_assessments("0" * 32)
        with pytest.raises(NotFound):
            s.customers.assess("0" * 32, "grade", "A")
    assert [(a.source, a.value) for a in every] == [
        ("sales", "A"),
        ("service", "C"),
        ("sales", "B"),
    ]
    assert [(a.source, a.value) for a in current] == [("sales", "B"), ("service", "C")]
    assert all(a.customer_id == acme.id for a in every)


def test_assessing_refuses_blank_attribute_value_and_source_at_once(crm: pycrm.CRM) -> None:
    with system(crm) as s:
        acme = s.customers.create("Acme")
    with system(crm) as s:
        with pytest.raises(ValidationError) as raised:
            s.customers.assess(acme.id, " ", "", source="\x00")
        assert {e.field for e in raised.value.errors} == {"attribute", "value", "source"}
        assert s.customers.assessments(acme.id) == []
        assert s.customers.get(acme.id).version == 1
