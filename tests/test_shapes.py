"""The shapes a developer guesses right: string enums, primary contact points, both keyword forms.

Contract tests on memory, SQLite and PostgreSQL, and a few checks of the
domain's types by introspection.
"""

from __future__ import annotations

import enum
import inspect

import pytest
import sqlalchemy as sa

import pycrm
import pycrm.domain
from pycrm.domain.contact_points import ContactPoint, PointKind
from pycrm.domain.leads import LeadStatus
from pycrm.domain.tickets import Priority
from pycrm.errors import ValidationError
from pycrm.serialization import from_dict, to_dict
from support import refused

# -- enums compare with their text ---------------------------------------------------------


def domain_enums() -> list[type[enum.Enum]]:
    found: dict[str, type[enum.Enum]] = {}
    for module in pycrm.domain.__dict__.values():
        if inspect.ismodule(module) and module.__name__.startswith("pycrm.domain."):
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, enum.Enum):
                    found[value.__qualname__] = value
    return list(found.values())


def test_every_domain_enum_of_texts_is_a_str_enum() -> None:
    texts = [
        e
        for e in domain_enums()
        if all(isinstance(m.value, str) for m in e) and e.__name__ != "Kind"
    ]
    assert len(texts) >= 15
    assert [e.__name__ for e in texts if not issubclass(e, enum.StrEnum)] == []


def test_a_status_or_priority_equals_its_text_and_its_json_form_is_unchanged(
    crm: pycrm.CRM, backend: str
) -> None:
    with crm.session(crm.system_actor) as s:
        ticket = s.tickets.open("Broken", channel="email", priority="urgent")
        lead = s.leads.capture("Lea", source="webform")
    with crm.session(crm.system_actor) as s:
        ticket = s.tickets.get(ticket.id)
        lead = s.leads.get(lead.id)
    assert ticket.priority == "urgent"
    assert ticket.priority is Priority.URGENT
    assert ticket.channel == "email"
    assert lead.status == "new"
    assert lead.status is LeadStatus.NEW
    assert f"{ticket.priority}/{lead.status}" == "urgent/new"
    data = to_dict(ticket)
    assert (data["priority"], data["channel"], data["status"]) == ("urgent", "email", "new")
    assert type(data["priority"]) is str
    assert from_dict(type(ticket), data).priority is Priority.URGENT
    if backend != "memory":
        with crm.engine.connect() as connection:
            table = crm.store.schema.codec(type(ticket)).table  # type: ignore[attr-defined]
            stored = connection.execute(
                sa.select(table.c.priority).where(table.c.id == ticket.id)
            ).scalar_one()
        assert (stored, type(stored)) == ("urgent", str)


def test_filters_take_the_text_or_the_member(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        s.leads.capture("Lea", source="webform")
        by_text = s.leads.search(status="new")
        by_member = s.leads.search(status=LeadStatus.NEW)
    assert [lead.name for lead in by_text] == [lead.name for lead in by_member] == ["Lea"]


# -- primary contact points ------------------------------------------------------------------


def test_the_first_email_and_phone_are_primary_unless_another_is_marked(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        first = s.contacts.create(
            "Ann", emails=["ann@a.example", "ann@b.example"], phones=["030 1234567"]
        )
        marked = s.customers.create(
            "Acme",
            emails=["info@acme.example", {"value": "sales@acme.example", "primary": True}],
            phones=[("030 7654321", "switchboard")],
        )
        nothing = s.leads.capture("Lea", source="webform")
    assert (first.primary_email, first.primary_phone) == ("ann@a.example", "+49301234567")
    assert marked.primary_email == "sales@acme.example"
    assert marked.primary_phone == "+49307654321"
    assert [p.value for p in marked.contact_points if p.kind is PointKind.EMAIL] == [
        "info@acme.example",
        "sales@acme.example",
    ]
    assert (nothing.primary_email, nothing.primary_phone) == (None, None)
    with crm.session(crm.system_actor) as s:
        again = s.customers.get(marked.id)
    assert again.primary_email == "sales@acme.example"
    assert again.contact_points == marked.contact_points


def test_an_invalid_point_kept_as_typed_is_never_primary(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        contact = s.contacts.create(
            "Bob", emails=["not an email", "bob@b.example"], phones=["12"], lenient=True
        )
    assert contact.primary_email == "bob@b.example"
    assert contact.primary_phone is None


def test_two_primary_emails_are_refused(crm: pycrm.CRM) -> None:
    (error,) = refused(
        crm,
        crm.system_actor,
        (
            ValidationError,
            lambda s: s.contacts.create(
                "Ann",
                emails=[
                    {"value": "a@a.example", "primary": True},
                    {"value": "b@a.example", "primary": True},
                ],
            ),
        ),
    )
    assert isinstance(error, ValidationError)
    assert error.field == "emails[1]"


def test_marking_another_phone_primary_on_update_keeps_the_emails(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        ann = s.contacts.create("Ann", emails=["ann@a.example"], phones=["030 1111111"])
        ann = s.contacts.update(
            ann.id,
            phones=["030 1111111", ContactPoint(PointKind.PHONE, "+49302222222", primary=True)],
        )
    assert ann.primary_phone == "+49302222222"
    assert ann.primary_email == "ann@a.example"


# -- email= and emails=, phone= and phones=, everywhere -----------------------------------------


def test_every_create_and_update_takes_one_email_or_phone_beside_the_lists(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        acme = s.customers.create("Acme", email="info@acme.example", phone="030 1234567")
        ann = s.contacts.create(
            "Ann", email="ann@acme.example", emails=["ann@home.example"], customer_id=acme.id
        )
        lead = s.leads.capture("Lea", source="webform", emails=["lea@l.example"])
        ann = s.contacts.update(ann.id, email="ann@new.example")
        kept = s.contacts.update(ann.id, email=None, title="CTO")
    assert acme.primary_email == "info@acme.example"
    assert acme.primary_phone == "+49301234567"
    assert [p.value for p in ann.contact_points] == ["ann@new.example"]
    assert kept.contact_points == ann.contact_points
    assert kept.title == "CTO"
    assert lead.primary_email == "lea@l.example"


@pytest.mark.parametrize(
    ("keyword", "hint"),
    [
        ("mail", "emails"),
        ("emial", "email"),
        ("e_mails", "emails"),
        ("telephone", "phones"),
        ("phone_number", "phone"),
        ("adress", "address"),
    ],
)
def test_an_unknown_keyword_is_refused_with_the_one_meant(
    crm: pycrm.CRM, keyword: str, hint: str
) -> None:
    (error,) = refused(
        crm,
        crm.system_actor,
        (ValidationError, lambda s: s.contacts.create("Ann", **{keyword: "x"})),
    )
    assert isinstance(error, ValidationError)
    assert error.field == keyword
    assert f"did you mean `{hint}=`?" in str(error)


def test_a_keyword_like_no_known_one_gets_no_hint(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s, pytest.raises(ValidationError) as info:
        s.contacts.create("Ann", zzz=1)
    assert "did you mean" not in str(info.value)


def test_a_misspelt_field_of_a_ticket_or_deal_update_gets_the_one_meant(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        customer = s.customers.create("Acme")
        ticket = s.tickets.open("Printer", customer_id=customer.id, channel="email")
        deal = s.deals.create("Line", customer_id=customer.id, amount=pycrm.Money.of("10", "EUR"))
        for call, meant in (
            (lambda: s.tickets.update(ticket.id, priorty="high"), "priority"),
            (lambda: s.deals.update(deal.id, ammount=None), "amount"),
        ):
            with pytest.raises(ValidationError) as info:
                call()
            assert f"did you mean `{meant}=`?" in str(info.value)
        assert s.tickets.get(ticket.id).version == ticket.version  # nothing changed


# -- the phone region of one call, and of the record's country ----------------------------------


def test_a_call_may_name_the_region_of_its_national_numbers(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        zoe = s.contacts.create("Zoé", phones=["01 23 45 67 89"], phone_region="FR")
        lea = s.leads.capture("Lea", source="webform", phone="01 23 45 67 89", phone_region="fr")
        acme = s.customers.create("Acme", phone="020 7946 0958", phone_region="GB", region="EMEA")
        zoe = s.contacts.update(zoe.id, phones=["06 12 34 56 78"], phone_region="FR")
    assert zoe.primary_phone == "+33612345678"
    assert lea.primary_phone == "+33123456789"
    assert (acme.primary_phone, acme.region) == ("+442079460958", "EMEA")


def test_an_update_reads_national_numbers_in_the_records_own_country(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        zoe = s.contacts.create("Zoé", address={"city": "Paris", "country": "France"})
        zoe = s.contacts.update(zoe.id, phones=["01 23 45 67 89"])
    assert zoe.primary_phone == "+33123456789"


def test_a_bad_phone_region_is_refused_naming_it(crm: pycrm.CRM) -> None:
    (error,) = refused(
        crm,
        crm.system_actor,
        (
            ValidationError,
            lambda s: s.contacts.create("Ann", phones=["0123"], phone_region="Frankreich"),
        ),
    )
    assert isinstance(error, ValidationError)
    assert "phone_region" in [e.field for e in error.errors]


# -- short reprs --------------------------------------------------------------------------------


def test_records_and_the_360_view_print_as_one_short_line(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        acme = s.customers.create("Acme [GmbH]", emails=["info@acme.example"], tags=["vip"] * 1)
        for n in range(30):
            s.contacts.create(f"Person {n}", customer_id=acme.id, emails=[f"p{n}@acme.example"])
            s.activities.log("call", f"Call {n}", customer_id=acme.id, body="x" * 500)
        s.deals.create("Big deal", customer_id=acme.id, amount=pycrm.Money.of("100", "EUR"))
        ticket = s.tickets.open("Broken", channel="email", customer_id=acme.id, priority="high")
        view = s.customers.view(acme.id)
        records = [acme, ticket, *view.contacts, *view.activities, *view.deals]
        audit = s.audit.find(record_id=acme.id)
    assert repr(acme) == f"<Customer {acme.id} 'Acme [GmbH]' active>"
    assert repr(ticket) == f"<Ticket {ticket.id} 'Broken' new>"
    assert repr(view.deals[0]) == f"<Deal {view.deals[0].id} 'Big deal' 100.00 EUR open>"
    for record in [*records, *audit]:
        assert len(repr(record)) < 120, repr(record)
        assert record.id in repr(record)
    assert repr(view) == (
        f"<Customer360 {acme.id} 'Acme [GmbH]': 30 contacts, 1 deals, 1 tickets, 20 activities>"
    )


def test_records_and_the_360_view_render_with_rich_without_reading_names_as_markup(
    crm: pycrm.CRM,
) -> None:
    from rich.console import Console

    with crm.session(crm.system_actor) as s:
        acme = s.customers.create("Acme [bold]GmbH[/bold]")
        s.contacts.create("Ann [red]", customer_id=acme.id)
        view = s.customers.view(acme.id)
    console = Console(width=100, record=True, color_system=None)
    console.print(acme)
    console.print(view)
    text = console.export_text()
    assert "Acme [bold]GmbH[/bold]" in text
    assert "Ann [red]" in text
    assert acme.id in text


# -- lists that go on: iter ---------------------------------------------------------------------


def test_iter_goes_past_the_default_page_in_creation_order_with_the_lists_filters(
    crm: pycrm.CRM,
) -> None:
    with crm.session(crm.system_actor) as s:
        made = [
            s.leads.capture(f"Lead {n:02}", source="webform" if n % 3 else "api").id
            for n in range(60)
        ]
    with crm.session(crm.system_actor) as s:
        assert len(s.leads.search()) == 50  # the default page
        every = [lead.id for lead in s.leads.iter(page_size=25)]
        webform = [lead.id for lead in s.leads.iter(source="webform", page_size=7)]
        audit = list(s.audit.iter(record_type="lead", action="capture", page_size=9))
    assert every == made
    assert webform == [id for n, id in enumerate(made) if n % 3]
    assert [e.record_id for e in audit] == made


def test_iter_neither_skips_nor_repeats_when_records_change_while_it_runs(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        made = [s.customers.create(f"Firm {n:02}", on_duplicate="allow").id for n in range(30)]
    seen: list[str] = []
    with crm.session(crm.system_actor) as s:
        for n, customer in enumerate(s.customers.iter(page_size=10)):
            seen.append(customer.id)
            if n == 12:
                s.customers.archive(made[0])  # leaves the list before the iterator's place
                s.customers.create("Firm new", on_duplicate="allow")  # joins it after
    assert seen[:30] == made
    assert len(seen) == 31


def test_iter_shows_only_what_the_actor_may_read(crm: pycrm.CRM) -> None:
    from support import staff

    people = staff(crm, sam="sales", sue="service")
    with crm.session(crm.system_actor) as s:
        for n in range(12):
            s.tasks.create(f"Task {n}", assignee_id=people.sam.id if n % 2 else people.sue.id)
    with crm.session(people.sam.id) as s:
        mine = list(s.tasks.iter(page_size=4))
    assert len(mine) == 6
    assert {t.assignee_id for t in mine} == {people.sam.id}


@pytest.mark.parametrize(
    ("options", "field"),
    [({"txt": "x"}, "txt"), ({"limit": 5}, "limit"), ({"page_size": 0}, "page_size")],
)
def test_iter_refuses_a_filter_the_list_does_not_take_at_once(
    crm: pycrm.CRM, options: dict[str, object], field: str
) -> None:
    with crm.session(crm.system_actor) as s, pytest.raises(ValidationError) as info:
        s.customers.iter(**options)  # refused by the call, before any iteration
    assert info.value.field == field


# -- merging one kind of contact point --------------------------------------------------------


def test_a_merge_can_take_the_duplicates_phone_and_keep_the_survivors_emails(
    crm: pycrm.CRM,
) -> None:
    from pycrm.domain.merging import Pick

    with crm.session(crm.system_actor) as s:
        keep = s.contacts.create("Ann Acme", emails=["ann@acme.example"], phones=["030 1111111"])
        dup = s.contacts.create(
            "Ann Acme",
            emails=["ann@home.example"],
            phones=["030 2222222"],
            on_duplicate="allow",
        )
        s.dedupe.merge(keep.id, [dup.id], record_type="contact", rules={"phones": Pick(dup.id)})
    with crm.session(crm.system_actor) as s:
        merged = s.contacts.get(keep.id)
    assert [p.value for p in merged.contact_points] == [
        "ann@acme.example",
        "ann@home.example",
        "+49302222222",
    ]
    assert merged.primary_email == "ann@acme.example"
    assert merged.primary_phone == "+49302222222"


# -- names in parts ------------------------------------------------------------------------------


def test_a_name_given_in_parts_is_written_in_the_persons_name_order(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        anna = s.contacts.create(given_name="Anna", family_name="Schmidt")
        fang = s.contacts.create(given_name="芳", family_name="王")
        nagy = s.contacts.create(
            given_name="Anna", family_name="Nagy", address={"city": "Budapest", "country": "HU"}
        )
        an = s.leads.capture(
            given_name="An", family_name="Nguyễn", name_order="family_first", source="webform"
        )
        typed = s.contacts.create("Dr. Anna Schmidt", given_name="Anna", family_name="Schmidt")
    assert [anna.name, fang.name, nagy.name, an.name] == [
        "Anna Schmidt",
        "王芳",
        "Nagy Anna",
        "Nguyễn An",
    ]
    assert (anna.given_name, anna.family_name, anna.name_order) == ("Anna", "Schmidt", None)
    assert an.name_order == "family_first"
    assert typed.name == "Dr. Anna Schmidt"


def test_changing_a_part_remakes_a_made_name_but_never_a_typed_one(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        made = s.contacts.create(given_name="Anna", family_name="Schmidt")
        typed = s.contacts.create("Dr. Anna Schmidt", given_name="Anna", family_name="Schmidt")
        made = s.contacts.update(made.id, family_name="Weber")
        typed = s.contacts.update(typed.id, family_name="Weber")
        renamed = s.contacts.update(made.id, name="Anna W.", given_name="Anne")
    assert made.name == "Anna Weber"
    assert (typed.name, typed.family_name) == ("Dr. Anna Schmidt", "Weber")
    assert (renamed.name, renamed.given_name) == ("Anna W.", "Anne")


def test_people_are_found_by_their_given_or_family_name(crm: pycrm.CRM) -> None:
    with crm.session(crm.system_actor) as s:
        s.contacts.create(given_name="Anna", family_name="Schmidt")
        s.contacts.create("Schmidt, Paul")  # no parts: found by text only
        s.leads.capture(given_name="Jan", family_name="Schmidt", source="webform")
        by_family = [c.name for c in s.contacts.search(family_name="SCHMIDT")]
        by_given = [c.name for c in s.contacts.search(given_name="anna")]
        by_text = sorted(c.name for c in s.contacts.search("schmidt"))
        leads = [lead.name for lead in s.leads.search(family_name="schmidt")]
    assert by_family == ["Anna Schmidt"]
    assert by_given == ["Anna Schmidt"]
    assert by_text == ["Anna Schmidt", "Schmidt, Paul"]
    assert leads == ["Jan Schmidt"]


def test_matching_compares_the_parts_it_is_given() -> None:
    from datetime import UTC, datetime

    from pycrm.domain.customers import Contact
    from pycrm.matching.features import features

    at = datetime(2026, 1, 5, tzinfo=UTC)
    stamp = {
        "tenant_id": "t",
        "created_at": at,
        "created_by": "x",
        "updated_at": at,
        "updated_by": "x",
    }
    parts = Contact(
        id="a", name="Dr. A. Schmidt-Weber", given_name="Anna", family_name="Schmidt-Weber", **stamp
    )
    whole = Contact(id="b", name="Schmidt-Weber, Anna", **stamp)
    assert (features(parts).given, features(parts).surname) == ("anna", "schmidtweber")
    assert (features(whole).given, features(whole).surname) == ("anna", "schmidtweber")


def test_a_bad_name_part_or_order_is_refused_naming_it(crm: pycrm.CRM) -> None:
    errors = refused(
        crm,
        crm.system_actor,
        (ValidationError, lambda s: s.contacts.create(given_name="Anna", name_order="west_first")),
        (ValidationError, lambda s: s.contacts.create(family_name="x" * 101)),
        (ValidationError, lambda s: s.contacts.create()),
    )
    assert [e.field for e in errors] == ["name_order", "family_name", "name"]  # type: ignore[attr-defined]


# -- what routing reads about users ------------------------------------------------------------


def test_routing_rules_match_the_regions_and_languages_an_organisation_records(
    crm: pycrm.CRM,
) -> None:
    with crm.session(crm.system_actor) as s:
        ana = s.org.create_user(
            "Ana", "ana@corp.example", "sales", regions=["Iberia"], languages=["es", "en"]
        )
        dirk = s.org.create_user(
            "Dirk", "dirk@corp.example", "sales", regions=["DACH"], languages=["de"]
        )
        s.org.create_user("Zoe", "zoe@corp.example", "sales")
        s.fields.define("lead", "language", "text")
        s.settings.set(
            "routing_rules",
            [
                {
                    "name": "by language",
                    "when": {"source": "phone"},
                    "match": {"languages": "custom.language"},
                    "pick": "first",
                },
                {"name": "by territory", "match": {"regions": "region"}, "pick": "first"},
            ],
        )
    with crm.session(crm.system_actor) as s:
        dach = s.leads.capture("Max", source="webform", region="dach")
        iberia = s.leads.capture("Eva", source="webform", region="Iberia")
        caller = s.leads.capture("Jo", source="phone", region="DACH", custom={"language": "ES"})
        nowhere = s.leads.capture("Kim", source="webform")
        updated = s.org.update_user(dirk.id, regions=["DACH", "Nordics"])
    assert (dach.owner_id, dach.assigned_by) == (dirk.id, "pycrm.routing:by territory")
    assert iberia.owner_id == ana.id
    assert (caller.owner_id, caller.assigned_by) == (ana.id, "pycrm.routing:by language")
    assert nowhere.owner_id == ana.id  # no region to match: the pool stays whole, first by name
    assert updated.regions == ("DACH", "Nordics")


def test_a_rule_matching_a_list_nobody_has_is_refused() -> None:
    from pycrm.errors import ConfigurationError
    from pycrm.rules.routing import RoutingRule

    with pytest.raises(ConfigurationError):
        RoutingRule.parse({"name": "x", "match": {"hobbies": "region"}})
    rule = RoutingRule.parse(
        {"name": "x", "regions": ["DACH"], "match": {"languages": "custom.lang"}}
    )
    assert RoutingRule.parse(rule.to_json()) == rule


def test_an_import_maps_emails_and_phones_as_it_maps_email_and_phone(crm: pycrm.CRM) -> None:
    rows = [{"Name": "Leo", "Mail": "leo@x.example", "Phones": "030 1234567"}]
    with crm.session(crm.system_actor) as s:
        report = s.importer.leads(rows, mapping={"emails": "Mail"}, source="fair")
    with crm.session(crm.system_actor) as s:
        (lead,) = s.leads.search()
    assert (report.created, report.rejected) == (1, 0)
    assert (lead.primary_email, lead.primary_phone) == ("leo@x.example", "+49301234567")
