"""Matching contract tests: the Fellegi–Sunter engine behind s.dedupe, on every backend.

The same records give the same candidates, scores, explanations and clusters on
memory, SQLite and PostgreSQL; households, colleagues and namesakes are told
from duplicates; fits are stored as versions and decisions name them; linkage
matches rows against stored records.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import pytest

import pycrm
from pycrm.domain.matching import MatchModel
from pycrm.errors import PermissionDenied, ValidationError
from pycrm.matching.model import Model
from pycrm.services.dedupe import Candidate, Cluster, Link
from pycrm.session import Session

ConnectFn = Callable[..., pycrm.CRM]

#: Contacts of a small town: (label, fields). Duplicates, a household, colleagues, namesakes.
PEOPLE: list[tuple[str, dict[str, Any]]] = [
    ("anna", {"name": "Anna Schmidt", "emails": ["anna.schmidt@gmail.com"],
              "phones": ["0151 23456789", "030 1234567"],
              "address": {"line1": "Lindenstraße 12", "postcode": "10115", "city": "Berlin",
                          "country": "DE"}, "custom": {"birth_date": "1980-04-09"}}),
    ("anna2", {"name": "Schmidt, Anna", "emails": ["annaschmidt@googlemail.com"],
               "address": {"line1": "Lindenstr. 12", "postcode": "10115", "city": "Berlin",
                           "country": "Germany"}, "custom": {"birth_date": "1980-04-09"}}),
    ("anna3", {"name": "Schmidt", "emails": ["anna.schmidt@gmail.com"],
               "phones": ["+49 151 23456789"],
               "address": {"line1": "Lindenstrasse 12", "postcode": "10115", "city": "Berlin",
                           "country": "DEU"}}),
    ("peter", {"name": "Peter Schmidt", "emails": ["p.schmidt@web.example"],
               "phones": ["0151 99887766", "030 1234567"],
               "address": {"line1": "Lindenstraße 12", "postcode": "10115", "city": "Berlin",
                           "country": "DE"}, "custom": {"birth_date": "1978-11-30"}}),
    ("lena", {"name": "Lena Schmidt", "phones": ["030 1234567"],
              "address": {"line1": "Lindenstraße 12", "postcode": "10115", "city": "Berlin",
                          "country": "DE"}, "custom": {"birth_date": "2008-02-01"}}),
    ("omar", {"name": "Omar Ali", "emails": ["omar@acme.example"], "phones": ["040 5550100"],
              "address": {"line1": "Hafenweg 1", "postcode": "20457", "city": "Hamburg",
                          "country": "DE"}}),
    ("grace", {"name": "Grace Lee", "emails": ["grace@acme.example"], "phones": ["040 5550100"],
               "address": {"line1": "Hafenweg 1", "postcode": "20457", "city": "Hamburg",
                           "country": "DE"}}),
    ("john", {"name": "John Miller", "emails": ["john.miller@mail.example"],
              "address": {"line1": "12 Graham Gardens", "postcode": "NW3 4EQ",
                          "city": "London", "country": "GB"},
              "custom": {"birth_date": "1971-05-24"}}),
    ("john2", {"name": "Jon Miller", "emails": ["john.miller@mail.example"],
               "address": {"line1": "12 Graham Gdns", "postcode": "NW3 4EQ",
                           "city": "London", "country": "United Kingdom"},
               "custom": {"birth_date": "1971-05-24"}}),
    ("namesake", {"name": "John Miller", "emails": ["jmiller@post.example"],
                  "address": {"line1": "3 Oak Road", "postcode": "M1 2AB",
                              "city": "Manchester", "country": "GB"},
                  "custom": {"birth_date": "1990-01-02"}}),
    ("wang", {"name": "王芳", "phones": ["+86 138 0013 8000"]}),
    ("wang2", {"name": "芳 王", "phones": ["13800138000"],
               "address": {"country": "China"}}),
]  # fmt: skip


def populate(s: Session) -> dict[str, str]:
    """The town's contacts, written without a check; label by record id."""
    s.fields.define("contact", "birth_date", "date")
    s.dedupe.fit("contact", identifying={"birth_date": "date"})
    labels: dict[str, str] = {}
    for label, fields in PEOPLE:
        record = s.contacts.create(**fields, on_duplicate="allow")
        labels[record.id] = label
    return labels


def clusters_of(s: Session, labels: dict[str, str]) -> list[tuple[str, ...]]:
    return sorted(
        tuple(sorted(labels[i] for i in cluster.record_ids)) for cluster in s.dedupe.scan()
    )


def portrait(s: Session, labels: dict[str, str]) -> dict[str, Any]:
    """Everything the engine decided, with record ids replaced by labels."""
    out: dict[str, Any] = {"clusters": [], "checks": {}}
    for cluster in s.dedupe.scan():
        out["clusters"].append(
            (
                tuple(sorted(labels[i] for i in cluster.record_ids)),
                sorted(
                    (*sorted((labels[a], labels[b])), score, tuple(e.field for e in ev))
                    for a, b, score, ev in cluster.pairs
                ),
                cluster.model_version,
            )
        )
    out["clusters"].sort()
    for label, fields in PEOPLE:
        found = s.dedupe.check("contact", **{k: v for k, v in fields.items() if k != "custom"})
        out["checks"][label] = [
            (labels[c.record_id], c.score, c.match_weight, c.weights, c.model_version)
            for c in found
        ]
    return out


@pytest.fixture
def town(system: Session) -> dict[str, str]:
    return populate(system)


# -- the same everywhere ---------------------------------------------------------------


def test_every_backend_gives_the_same_candidates_scores_and_clusters(
    crm: pycrm.CRM, backend: str
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        labels = populate(s)
    with crm.session(actor=crm.system_actor) as s:
        here = portrait(s, labels)
    reference = pycrm.connect("memory://", default_region="DE", clock=crm.clock)
    with reference.session(actor=reference.system_actor) as s:
        reference_labels = populate(s)
    with reference.session(actor=reference.system_actor) as s:
        expected = portrait(s, reference_labels)
    assert here == expected
    assert here["clusters"]


# -- what it finds, and what it leaves apart --------------------------------------------


def test_duplicates_are_found_without_sharing_one_key(
    system: Session, town: dict[str, str]
) -> None:
    clusters = clusters_of(system, town)
    assert ("anna", "anna2", "anna3") in clusters  # Gmail dots, googlemail, no first name
    assert ("john", "john2") in clusters  # a typo, "Gdns", a country name
    assert ("wang", "wang2") in clusters  # a CJK name in the other order


def test_household_members_colleagues_and_namesakes_are_not_duplicates(
    system: Session, town: dict[str, str]
) -> None:
    together = {frozenset(c) for c in clusters_of(system, town)}
    for a, b in [("anna", "peter"), ("anna", "lena"), ("peter", "lena"), ("omar", "grace"),
                 ("john", "namesake")]:  # fmt: skip
        assert not any({a, b} <= group for group in together), (a, b)


def test_clusters_do_not_chain_through_a_third_record(system: Session) -> None:
    system.fields.define("contact", "birth_date", "date")
    system.dedupe.fit("contact", identifying={"birth_date": "date"})
    allow = {"on_duplicate": "allow"}
    # b shares an email with a and a mobile with c; a and c were born years apart.
    a = system.contacts.create(
        "Kim Berg", emails=["kim@berg.example"], custom={"birth_date": "1980-01-01"}, **allow
    )
    b = system.contacts.create(
        "Kim Berg", emails=["kim@berg.example"], phones=["0151 11112222"], **allow
    )
    c = system.contacts.create(
        "Kim Berg", phones=["0151 11112222"], custom={"birth_date": "1999-09-09"}, **allow
    )
    assert {c.record_id for c in system.dedupe.check("contact", name="Kim Berg",
            emails=["kim@berg.example"], phones=["0151 11112222"])} >= {a.id, b.id, c.id}  # fmt: skip
    clusters = [set(cluster.record_ids) for cluster in system.dedupe.scan()]
    assert any(b.id in members for members in clusters)
    assert not any({a.id, c.id} <= members for members in clusters)


def test_a_common_switchboard_weighs_less_than_a_rare_number(system: Session) -> None:
    allow = {"on_duplicate": "allow"}
    for i in range(6):
        system.contacts.create(f"Person {i} Other", phones=["040 5550199"], **allow)
    system.contacts.create("Rita Vogel", phones=["040 5550199", "0151 44445555"], **allow)
    shared = system.dedupe.check("contact", name="Rita Vogel", phones=["040 5550199"])
    rare = system.dedupe.check("contact", name="Rita Vogel", phones=["0151 44445555"])
    assert rare
    weight = {w.comparison: w.weight for w in rare[0].weights}["phone"]
    assert not shared or {w.comparison: w.weight for w in shared[0].weights}["phone"] < weight


def test_a_missing_first_name_does_not_sink_a_pair_sharing_email_phone_and_address(
    system: Session,
) -> None:
    a = system.contacts.create(
        "Maria Rossi",
        emails=["maria.rossi@example.com"],
        phones=["+39 347 1234567"],
        address={"line1": "Via Roma 1", "postcode": "00184", "city": "Roma", "country": "Italy"},
    )
    found = system.dedupe.check(
        "contact",
        name="Rossi",
        emails=["maria.rossi@example.com"],
        phones=["347 1234567"],
        address={"line1": "Via Roma 1", "postcode": "00184", "city": "Roma", "country": "ITA"},
    )
    assert [c.record_id for c in found] == [a.id]


# -- explanations ----------------------------------------------------------------------


def test_a_candidate_explains_itself_as_field_weights(
    system: Session, town: dict[str, str]
) -> None:
    [candidate] = [
        c
        for c in system.dedupe.check(
            "contact", name="John Miller", emails=["john.miller@mail.example"]
        )
        if town[c.record_id] == "john"
    ]
    assert isinstance(candidate, Candidate)
    lines = {w.comparison: w for w in candidate.weights}
    assert candidate.weights[0].comparison == "prior"
    assert lines["prior"].weight < 0
    assert lines["email"].weight > 0
    assert lines["email"].level == "same"
    assert sum(w.weight for w in candidate.weights) == pytest.approx(
        candidate.match_weight, abs=0.01
    )
    assert candidate.score == pytest.approx(1 / (1 + 2**-candidate.match_weight), abs=1e-4)
    assert candidate.model_version >= 1


# -- fitting ---------------------------------------------------------------------------


def test_each_fit_is_stored_as_a_new_version_and_decisions_name_it(
    system: Session, town: dict[str, str]
) -> None:
    first = system.dedupe.models("contact")[0]
    again = system.dedupe.fit("contact")
    assert isinstance(again, MatchModel)
    assert again.number == first.number + 1
    assert again.records == len(PEOPLE)
    assert [m.number for m in system.dedupe.models("contact")][:2] == [again.number, first.number]
    model = Model.from_json(again.parameters, again.number)
    assert model.identifying == (("birth_date", "date"),)  # kept from the earlier fit
    assert Model.from_json(model.to_json(), again.number) == model
    assert all(c.model_version == again.number for c in system.dedupe.scan())


def test_fit_is_for_admins_and_checks_its_arguments(crm: pycrm.CRM) -> None:
    with crm.session(actor=crm.system_actor) as s:
        seller = s.org.create_user(name="Sam", email="sam@x.example", department="sales")
        populate(s)
    with crm.session(actor=crm.system_actor) as s:
        with pytest.raises(ValidationError) as info:
            s.dedupe.fit("contact", identifying={"shoe_size": "number"})
        assert info.value.field == "identifying"
        with pytest.raises(ValidationError) as info:
            s.dedupe.fit("contact", identifying={"birth_date": "colour"})
        assert info.value.field == "identifying.birth_date"
        with pytest.raises(ValidationError):
            s.dedupe.fit("deal")
    with crm.session(actor=seller.id) as s, pytest.raises(PermissionDenied):
        s.dedupe.fit("contact")


# -- linkage ---------------------------------------------------------------------------


def test_link_matches_rows_of_a_file_against_stored_records(
    system: Session, town: dict[str, str]
) -> None:
    rows = [
        {"name": "MILLER, John", "emails": ["JOHN.MILLER@mail.example"]},
        {"name": "Grace Lee", "emails": ["grace@acme.example"], "phones": ["+49 40 5550100"]},
        {"name": "Nobody Known", "emails": ["nobody@nowhere.example"]},
    ]
    links = system.dedupe.link(rows, "contact")
    assert all(isinstance(x, Link) for x in links)
    found = {(x.left, town[x.right]) for x in links}
    assert ("row 0", "john") in found
    assert ("row 1", "grace") in found
    assert not any(x.left == "row 2" for x in links)
    best = system.dedupe.link(rows, "contact", one_to_one=True)
    assert len({x.left for x in best}) == len(best) == len({x.right for x in best})
    with pytest.raises(ValidationError) as info:
        system.dedupe.link("nonsense", "contact")
    assert info.value.field == "source_a"
    with pytest.raises(ValidationError) as info:
        system.dedupe.link(rows, "contact", threshold=2)
    assert info.value.field == "threshold"
    with pytest.raises(ValidationError) as info:
        system.dedupe.link([1, 2], "contact")
    assert info.value.field == "source_a[0]"


def test_link_pairs_only_across_its_sources_best_first_and_once_each_when_asked(
    system: Session, town: dict[str, str]
) -> None:
    by_label = {label: id for id, label in town.items()}
    john = {"name": "John Miller", "emails": ["john.miller@mail.example"]}
    rows = [john, dict(john), {"name": "Grace Lee", "emails": ["grace@acme.example"]}]
    gc.enable()  # link and scan pause the garbage collector, and must turn it on again
    links = system.dedupe.link(rows, "contact")
    assert gc.isenabled()
    assert links  # the rows are alike, yet only pairs across the sources count
    assert all(x.left.startswith("row ") and x.right in town for x in links)
    assert [x.score for x in links] == sorted((x.score for x in links), reverse=True)
    assert all(x.model_version == 1 for x in links)  # the town's fitted model
    twins = [x for x in links if x.right == by_label["john"]]
    assert [x.left for x in twins][:2] == ["row 0", "row 1"]  # a tie: in row order
    system.dedupe.scan()
    assert gc.isenabled()
    for x in links:
        assert isinstance(x.score, float)
        assert x.score == round(x.score, 6)
        assert isinstance(x.match_weight, float)
        assert x.match_weight == round(x.match_weight, 3)
        assert x.weights
        assert x.evidence
    best = system.dedupe.link(rows, "contact", one_to_one=True)
    assert len(best) < len(links)
    used: set[str] = set()
    greedy = []  # best pairs first, each record at most once
    for x in links:
        if not used & {x.left, x.right}:
            used |= {x.left, x.right}
            greedy.append(x)
    assert best == greedy
    assert len({x.left for x in best}) == len(best) == len({x.right for x in best})
    assert best[0] == links[0]
    # Records on both sides, and the other way round: the kind of the stored side
    stored = system.dedupe.link("contact", [john])
    assert {(x.left, x.right) for x in stored} == {
        (x.right, "row 0") for x in links if x.left == "row 0"
    }


def test_link_parses_rows_of_the_kind_asked_for_as_create_would(system: Session) -> None:
    system.fields.define("lead", "shoe_size", "number")
    lead = system.leads.capture(
        "Cara Diaz", source="webform", email="cara@zeta.example", company="Zeta"
    )
    row: dict[str, Any] = {"name": "Cara Diaz", "email": "cara@zeta.example", "company": "Zeta"}
    for links in (
        system.dedupe.link([row], "lead", record_type="lead"),
        system.dedupe.link("lead", [row]),
        system.dedupe.link("lead", [{**row, "custom": {"shoe_size": 42}}]),
        # rows are lenient by default: a bad phone is kept flagged, not refused
        system.dedupe.link("lead", [{**row, "phones": ["12"]}]),
    ):
        assert [(x.left, x.right) for x in links] == [(lead.id, "row 0")] or [
            (x.left, x.right) for x in links
        ] == [("row 0", lead.id)]
    customer = system.customers.create(
        "Zeta GmbH", phones=["+49 30 5550199"], emails=["info@zeta.example"]
    )
    firm = {"name": "Zeta GmbH", "phones": ["+49 30 5550199"], "emails": ["info@zeta.example"]}
    links = system.dedupe.link([firm], "customer", record_type="customer")
    assert [x.right for x in links] == [customer.id]


@pytest.mark.parametrize(
    ("call", "field", "value"),
    [
        (lambda s: s.dedupe.link([{"name": "Zeta GmbH"}], "customer"), "source_b", "customer"),
        (lambda s: s.dedupe.link({"name": "X"}, "contact"), "source_a", {"name": "X"}),
        (lambda s: s.dedupe.link(5, "contact"), "source_a", 5),
        (lambda s: s.dedupe.link("contact", [1]), "source_b[0]", 1),
        (lambda s: s.dedupe.link([{"name": "X", "phones": [123]}], "contact"),
         "source_a[0].phones[0]", 123),
        (lambda s: s.dedupe.link([{"emails": ["x@y.example"]}], "contact"), "source_a[0].name",
         None),
        (lambda s: s.dedupe.link([{"name": "X", "lenient": "yes"}], "contact"),
         "source_a[0].lenient", "yes"),
        (lambda s: s.dedupe.link([{"name": "X", "custom": {"nope": 1}}], "contact"),
         "source_a[0].custom.nope", 1),
        (lambda s: s.dedupe.link([], "contact", one_to_one="yes"), "one_to_one", "yes"),
        (lambda s: s.dedupe.link([], "contact", record_type="deal"), "record_type", "deal"),
    ],
    ids=["kinds", "mapping", "number", "row", "row-field", "row-name", "row-lenient",
         "row-custom", "one-to-one", "record-type"],
)  # fmt: skip
def test_link_refuses_bad_sources_naming_the_place(
    system: Session, call: Callable[[Session], object], field: str, value: Any
) -> None:
    with pytest.raises(ValidationError) as info:
        call(system)
    assert (info.value.field, info.value.value) == (field, value)
    assert info.value.reason


@pytest.mark.parametrize(
    "threshold", [True, "0.5", 0, 1.5], ids=["bool", "text", "zero", "over-one"]
)
def test_link_takes_a_threshold_above_0_up_to_1(system: Session, threshold: Any) -> None:
    assert system.dedupe.link([], "contact", threshold=1) == []
    with pytest.raises(ValidationError) as info:
        system.dedupe.link([], "contact", threshold=threshold)
    assert (info.value.field, info.value.value) == ("threshold", threshold)
    assert info.value.reason


def test_models_lists_one_kinds_fits_newest_first_to_admins_only(crm: pycrm.CRM) -> None:
    with crm.session(actor=crm.system_actor) as s:
        s.dedupe.fit("contact")
        s.dedupe.fit("customer")
        again = s.dedupe.fit("contact")
        seller = s.org.create_user("Sam", "sam@corp.example", "sales")
    with crm.session(actor=crm.system_actor) as s:
        contacts = s.dedupe.models()  # contacts by default
        assert [m.number for m in contacts] == [again.number, again.number - 1]
        assert contacts == s.dedupe.models("contact")
        assert [m.record_type for m in s.dedupe.models("customer")] == ["customer"]
    with crm.session(actor=seller.id) as s, pytest.raises(PermissionDenied) as denied:
        s.dedupe.models()
    assert (denied.value.action, denied.value.resource) == ("read", "match_model")


def test_scan_clusters_are_clusters(system: Session, town: dict[str, str]) -> None:
    for cluster in system.dedupe.scan():
        assert isinstance(cluster, Cluster)
        assert len(cluster.record_ids) >= 2
        assert all(0.8 <= score <= 1 for _, _, score, _ in cluster.pairs)


# -- imports ---------------------------------------------------------------------------


def test_an_import_row_sharing_no_email_or_phone_is_matched_by_the_engine(
    crm: pycrm.CRM,
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        stored = s.leads.capture(
            "Ada Lovelace",
            source="webform",
            email="ada@engines.example",
            company="Analytical Engines Ltd",
        )
    rows = [
        {"name": "Lovelace, Ada", "company": "Analytical Engines", "phone": "+44 20 7946 0018"},
        {"name": "Ada Lovelace", "company": "Difference Works", "phone": "+44 20 7946 0019"},
    ]
    with crm.session(actor=crm.system_actor) as s:
        report = s.importer.leads(rows, source="import")
    assert (report.created, report.skipped) == (1, 1)  # the namesake elsewhere is new
    with crm.session(actor=crm.system_actor) as s:
        names = sorted(lead.company or "" for lead in s.leads.search(limit=10))
        assert names == ["Analytical Engines Ltd", "Difference Works"]
        assert s.leads.get(stored.id).company == "Analytical Engines Ltd"


def test_a_database_made_before_matching_gets_its_match_keys_recomputed(tmp_path: Any) -> None:
    import sqlalchemy as sa
    from alembic import command

    from pycrm.adapters.sqlalchemy.engine import alembic_config
    from pycrm.adapters.sqlalchemy.store import SqlStore

    url = f"sqlite:///{tmp_path / 'old.db'}"
    with pycrm.connect(url, default_region="DE") as crm:
        with crm.session(actor=crm.system_actor) as s:
            anna = s.contacts.create(
                "Anna Schmidt",
                emails=["anna.schmidt@gmail.com"],
                address={"line1": "Lindenstraße 12", "postcode": "10115"},
            )
        store = crm.store
        assert isinstance(store, SqlStore)
        keys = store.schema.match_keys
        with store.engine.begin() as connection:
            command.downgrade(alembic_config(store.schema, connection), "0002")
            # As an older pycrm left them: no sound or place keys, the email as typed.
            connection.execute(keys.delete().where(keys.c.kind.in_(["sound", "place"])))
            connection.execute(
                keys.update().where(keys.c.kind == "email").values(key="anna.schmidt@gmail.com")
            )
    with pycrm.connect(url, default_region="DE") as crm:  # connecting migrates to head
        store = crm.store
        assert isinstance(store, SqlStore)
        with store.engine.connect() as connection:
            found = set(
                connection.execute(
                    sa.select(store.schema.match_keys.c.kind, store.schema.match_keys.c.key)
                ).all()
            )
        assert {("email", "annaschmidt@gmail.com"), ("place", "10115|12")} <= found
        assert ("sound", "a500|s530") in found
        with crm.session(actor=crm.system_actor) as s:
            found_ids = [
                c.record_id
                for c in s.dedupe.check(
                    "contact", name="Schmidt, Anna", emails=["AnnaSchmidt@googlemail.com"]
                )
            ]
            assert found_ids == [anna.id]


def test_check_takes_identifying_custom_values(system: Session, town: dict[str, str]) -> None:
    same = system.dedupe.check("contact", name="John Miller", custom={"birth_date": "1971-05-24"})
    assert {town[c.record_id] for c in same} == {"john", "john2"}
    assert "birth_date" in {w.comparison for w in same[0].weights}
    other = system.dedupe.check("contact", name="John Miller", custom={"birth_date": "1955-11-30"})
    assert other == []
    with pytest.raises(ValidationError) as info:
        system.dedupe.check("contact", name="John Miller", custom={"shoe_size": 44})
    assert info.value.field == "custom.shoe_size"


# -- clusters: pairs that were never blocked together, and the slack ----------------------

KOELN = {"line1": "Ahornweg 5", "postcode": "50667", "city": "Köln", "country": "DE"}


def test_a_record_like_two_others_that_share_no_key_does_not_chain_them(
    system: Session,
) -> None:
    allow = {"on_duplicate": "allow"}
    # b shares an email with a and name and mobile with c; a and c share no blocking key,
    # so the clustering weighs a and c itself (they do not match) and keeps them apart.
    a = system.contacts.create("K. Berg", emails=["kim@berg.example"], **allow)
    b = system.contacts.create(
        "Kim Berg", emails=["kim@berg.example"], phones=["0151 11112222"], **allow
    )
    c = system.contacts.create("Kim Berg", phones=["0151 11112222"], address=KOELN, **allow)
    [cluster] = system.dedupe.scan()
    assert cluster.record_ids == tuple(sorted([a.id, b.id]))
    assert [(x, y) for x, y, _, _ in cluster.pairs] == [tuple(sorted([a.id, b.id]))]
    assert c.id not in cluster.record_ids


def test_a_pair_a_little_below_the_threshold_stays_in_a_cluster_its_links_make(
    system: Session,
) -> None:
    allow = {"on_duplicate": "allow"}
    # a~b (email) and b~c (name, mobile) match well; a~c match a little less than the
    # threshold, within the cluster's slack: one cluster of three, listing two pairs.
    a = system.contacts.create("Berg", emails=["kim@berg.example"], address=KOELN, **allow)
    b = system.contacts.create(
        "Kim Berg", emails=["kim@berg.example"], phones=["0151 11112222"], **allow
    )
    c = system.contacts.create("Kim Berg", phones=["0151 11112222"], address=KOELN, **allow)
    [cluster] = system.dedupe.scan()
    assert cluster.record_ids == tuple(sorted([a.id, b.id, c.id]))
    pairs = {frozenset((x, y)): score for x, y, score, _ in cluster.pairs}
    assert set(pairs) == {frozenset((a.id, b.id)), frozenset((b.id, c.id))}
    for score in pairs.values():
        assert 0.8 <= score < 1
        assert score == round(score, 6) != round(score, 5)  # a probability to six places
    assert [p[:2] for p in cluster.pairs] == sorted(p[:2] for p in cluster.pairs)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"phones": ["0151 44445555"]}, {"phones": ["+49 151 44445555"]}),
        ({"emails": ["rita@vogel.example"]}, {"emails": ["Rita@Vogel.example"]}),
    ],
)
def test_a_scanned_pair_weighs_an_email_or_phone_they_share_with_others_less(
    system: Session, first: dict[str, Any], second: dict[str, Any]
) -> None:
    allow = {"on_duplicate": "allow"}
    a = system.contacts.create("Rita Vogel", **first, **allow)
    b = system.contacts.create("Vogel, Rita", **second, **allow)
    [alone] = system.dedupe.scan()
    system.contacts.create("Otto Kranz", **first, **allow)
    [shared] = system.dedupe.scan()
    assert alone.record_ids == shared.record_ids == tuple(sorted([a.id, b.id]))
    # Held by three records, the value says less about the pair than when only they hold it.
    assert shared.pairs[0][2] < alone.pairs[0][2]


@pytest.mark.parametrize(
    ("who", "fits"),
    [("seller", False), ("admin by role", True), ("admin by department", True), ("system", True)],
)
def test_a_scan_fits_a_kind_with_no_fit_yet_only_for_admins_and_the_system(
    crm: pycrm.CRM, who: str, fits: bool
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        users: dict[str, Any] = {
            "seller": s.org.create_user("Sam", "sam@x.example", "sales").id,
            "admin by role": s.org.create_user("Ada", "ada@x.example", "sales", roles=["admin"]).id,
            "admin by department": s.org.create_user("Bo", "bo@x.example", "admin").id,
            "system": crm.system_actor,
        }
        for i in range(50):  # MIN_FIT_RECORDS, every one the seller's own
            s.contacts.create(
                f"Person{i} Number{i}",
                emails=[f"p{i}@x.example"],
                owner_id=users["seller"],
                on_duplicate="allow",
            )
    with crm.session(actor=users[who]) as s:
        s.dedupe.scan()
    with crm.session(actor=crm.system_actor) as s:
        assert len(s.dedupe.models("contact")) == (1 if fits else 0)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"phones": ["0151 44445555"]}, {"phones": ["+49 151 44445555"]}),
        ({"emails": ["rita@vogel.example"]}, {"emails": ["Rita@Vogel.example"]}),
    ],
)
def test_a_link_weighs_an_email_or_phone_others_share_too_less(
    system: Session, first: dict[str, Any], second: dict[str, Any]
) -> None:
    allow = {"on_duplicate": "allow"}
    stored = system.contacts.create("Rita Vogel", **first, **allow)
    rows = [{"name": "Vogel, Rita", **second}]
    [alone] = system.dedupe.link(rows, "contact")
    system.contacts.create("Otto Kranz", **first, **allow)
    [shared] = system.dedupe.link(rows, "contact")
    assert alone.right == shared.right == stored.id
    assert shared.match_weight < alone.match_weight
    assert shared.score < alone.score


def test_a_new_session_decides_with_the_kinds_latest_stored_fit(crm: pycrm.CRM) -> None:
    with crm.session(actor=crm.system_actor) as s:
        labels = populate(s)  # fits contacts once
        john = {"name": "John Miller", "emails": ["john.miller@mail.example"]}
        assert {c.model_version for c in s.dedupe.check("contact", **john)} == {1}
        s.dedupe.fit("contact")
        assert {c.model_version for c in s.dedupe.check("contact", **john)} == {2}
        s.customers.create("ACME Ltd.", phones=["030 1234567"])
    with crm.session(actor=crm.system_actor) as s:
        found = s.dedupe.check("contact", **john)
        assert "john" in {labels[c.record_id] for c in found}
        assert {c.model_version for c in found} == {2}
        [customer] = s.dedupe.check("customer", name="Acme Limited", phones=["+49 30 1234567"])
        assert customer.model_version == 0  # no fit of customers: the defaults
