"""Contract tests for ``session.export`` and ``pycrm export`` (docs/export.md), on every backend.

An export reads through the session's one read path, ANDed with the actor's
``export`` grant: it holds exactly the rows the actor may read, without the
fields hidden from them, and never another user's private activity. Each
export is audited once; a refused export writes nothing.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import pycrm
from pycrm.cli import main
from pycrm.domain.audit import AuditEntry
from pycrm.domain.permissions import DEFAULT_POLICY
from pycrm.errors import PermissionDenied, ValidationError
from pycrm.serialization import to_dict
from pycrm.session import Reader, Session
from pycrm.testing import FakeClock
from support import eur, refused, snapshot

#: Kind → (the service whose ``get`` an exported row must equal, the record class's name).
KINDS = {
    "customers": ("customers", "Customer"),
    "contacts": ("contacts", "Contact"),
    "leads": ("leads", "Lead"),
    "deals": ("deals", "Deal"),
    "tickets": ("tickets", "Ticket"),
    "receivables": ("receivables", "Receivable"),
    "activities": ("activities", "Activity"),
}

# -- helpers -------------------------------------------------------------------


def build(crm: pycrm.CRM) -> SimpleNamespace:
    """Staff and records of every exportable kind.

    Sam's and Kim's deals are won and signed, so each owns two receivables;
    one of Sam's is partly paid. Acme has a custom field only finance may
    read. Kim and Ann each log a private note.
    """
    with crm.session(actor=crm.system_actor) as s:
        w = SimpleNamespace(
            ann=s.org.create_user("Ann", "ann@corp.example", "analytics"),
            mia=s.org.create_user("Mia", "mia@corp.example", "marketing"),
            sam=s.org.create_user("Sam", "sam@corp.example", "sales"),
            kim=s.org.create_user("Kim", "kim@corp.example", "sales"),
            fin=s.org.create_user("Fin", "fin@corp.example", "finance"),
        )
        s.fields.define("customer", "iban", "text", readable_by=["finance"])
        s.fields.define("customer", "tier", "choice", choices=["gold", "silver"])
        w.acme = s.customers.create(
            "Acme GmbH",
            custom={"iban": "DE02 1234", "tier": "gold"},
            emails=["info@acme.example"],
            tags=["key account"],
        )
        w.beta = s.customers.create("Beta AG")
        w.ada = s.contacts.create("Ada Acme", customer_id=w.acme.id, phones=["030 1234567"])
        w.lead = s.leads.capture(name="Lou Lead", email="lou@lead.example", source="web")
        w.receivables, w.deals = {}, {}
        for owner, customer in ((w.sam, w.acme), (w.kim, w.beta)):
            deal = s.deals.create(
                "Line", customer_id=customer.id, amount=eur("300"), owner_id=owner.id
            )
            w.deals[owner.id] = s.deals.win(deal.id)
            draft = s.contracts.draft(deal.id, instalments=2, first_due=date(2026, 2, 1))
            contract = s.contracts.sign(s.contracts.submit(draft.id).id)
            w.receivables[owner.id] = s.receivables.list(contract_id=contract.id)
        s.receivables.record_payment(w.receivables[w.sam.id][0].id, eur("50"), reference="TX-1")
        w.ticket = s.tickets.open("Printer on fire", channel="email", customer_id=w.acme.id)
    with crm.session(actor=w.kim.id) as s:
        w.kims_call = s.activities.log("call", "Intro", customer_id=w.acme.id)
        w.kims_note = s.activities.log("note", "Gossip", customer_id=w.acme.id, private=True)
    with crm.session(actor=w.ann.id) as s:
        w.anns_note = s.activities.log("note", "Mine", customer_id=w.acme.id, private=True)
    return w


@pytest.fixture
def world(crm: pycrm.CRM) -> SimpleNamespace:
    return build(crm)


def csv_rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def jsonl_rows(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def cell_matches(cell: str, value: Any) -> bool:
    """A CSV cell holds a JSON-form value in the flat form the docs describe."""
    if value is None:
        return cell == ""
    if isinstance(value, bool):
        return cell == ("true" if value else "false")
    if isinstance(value, list | dict):
        return bool(json.loads(cell) == value)
    return cell == str(value)


def export_entries(crm: pycrm.CRM) -> list[AuditEntry]:
    found = [e for e in snapshot(crm)["AuditEntry"] if e.action == "export"]
    return sorted(found, key=lambda e: e.id)


def facts(entry: AuditEntry) -> dict[str, Any]:
    """An export entry's changes as name → value (each recorded as ``[None, value]``)."""
    assert all(old is None for old, _ in entry.changes.values())
    return {name: new for name, (_, new) in entry.changes.items()}


# -- what an export holds --------------------------------------------------------


@pytest.mark.parametrize("format", ["csv", "jsonl"])
def test_every_kind_round_trips_as_what_get_returns(
    crm: pycrm.CRM, world: SimpleNamespace, format: str
) -> None:
    stored = snapshot(crm)
    with crm.session(actor=world.ann.id) as s:
        for kind, (service, name) in KINDS.items():
            out = io.StringIO(newline="")
            count = getattr(s.export, format)(kind, out)
            if format == "csv":
                header, rows = csv_rows(out.getvalue())
            else:
                rows = jsonl_rows(out.getvalue())
            ids = [row["id"] for row in rows]
            assert count == len(ids), kind
            assert ids == sorted(ids), f"{kind} are not in id order"
            readable = {r.id for r in stored[name]} - {world.kims_note.id}
            assert set(ids) == readable, kind
            for row in rows:
                expected = to_dict(getattr(s, service).get(row["id"]))
                if kind == "receivables":  # hidden from analytics: absent, not empty
                    del expected["payments"], expected["overpaid"]
                if format == "jsonl":
                    assert row == expected, kind
                else:
                    assert header == list(expected), kind
                    wrong = {k: row[k] for k, v in expected.items() if not cell_matches(row[k], v)}
                    assert not wrong, (kind, wrong, expected)


def test_rows_are_json_form_dicts_of_the_chosen_fields_and_singular_names_work(
    crm: pycrm.CRM, world: SimpleNamespace
) -> None:
    with crm.session(actor=world.ann.id) as s:
        rows = list(s.export.rows("deal", fields=["amount", "id"]))
        assert [list(r) for r in rows] == [["amount", "id"]] * 2
        assert [r["amount"] for r in rows] == [{"amount": "300.00", "currency": "EUR"}] * 2
        out = io.StringIO(newline="")
        assert s.export.csv("customer", out, fields=["name", "custom"]) == 2
        header, cells = csv_rows(out.getvalue())
    assert header == ["name", "custom"]
    assert {c["name"]: json.loads(c["custom"]) for c in cells} == {
        "Acme GmbH": {"tier": "gold"},
        "Beta AG": {},
    }


def test_an_export_with_no_rows_still_writes_the_csv_header(
    crm: pycrm.CRM, world: SimpleNamespace, fake_clock: FakeClock
) -> None:
    later = fake_clock.now().replace(year=2030)
    with crm.session(actor=world.ann.id) as s:
        out = io.StringIO(newline="")
        assert s.export.csv("leads", out, since=later, fields=["id", "name"]) == 0
        assert s.export.jsonl("leads", io.StringIO(), since=later) == 0
    assert out.getvalue() == "id,name\r\n"


def test_since_and_until_select_by_last_change(
    crm: pycrm.CRM, world: SimpleNamespace, fake_clock: FakeClock
) -> None:
    start = fake_clock.advance(hours=1)
    with crm.session(actor=world.mia.id) as s:
        early = s.leads.capture(name="Early Bird", email="early@lead.example", source="fair")
        fake_clock.advance(hours=1)
        middle = s.leads.capture(name="Mid Way", email="mid@lead.example", source="fair")
        fake_clock.advance(hours=1)
        s.leads.capture(name="Late Comer", email="late@lead.example", source="fair")
        end = fake_clock.now()
        fake_clock.advance(hours=1)
        s.leads.update(world.lead.id, needs="a fresh look")  # old lead, changed late

    with crm.session(actor=world.mia.id) as s:
        window = [r["name"] for r in s.export.rows("leads", since=start, until=end)]
        recent = [r["name"] for r in s.export.rows("leads", since=middle.updated_at)]
        older = [r["name"] for r in s.export.rows("leads", until=middle.updated_at)]
    assert window == ["Early Bird", "Mid Way"]
    assert recent == ["Lou Lead", "Mid Way", "Late Comer"]  # by id, oldest first
    assert older == ["Early Bird"]
    assert early.updated_at == start


def test_an_export_reads_page_by_page_across_page_boundaries(
    crm: pycrm.CRM, world: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    with crm.session(actor=world.mia.id) as s:
        for n in range(6):
            s.leads.capture(name=f"Lead Number{n}", email=f"n{n}@lead.example", source="fair")
    pages: list[tuple[int | None, int]] = []
    find = Reader.find

    def spy(self: Reader[Any], *args: Any, **kwargs: Any) -> Any:
        found = find(self, *args, **kwargs)
        pages.append((kwargs.get("limit"), len(found)))
        return found

    monkeypatch.setattr(Reader, "find", spy)
    with crm.session(actor=world.mia.id) as s:
        s.export.page_size = 3
        ids = [r["id"] for r in s.export.rows("leads")]
    assert ids == sorted(lead.id for lead in snapshot(crm)["Lead"])
    assert len(ids) == 7
    assert pages == [(3, 3), (3, 3), (3, 1)]


# -- who may export what -----------------------------------------------------------


def test_an_actor_without_the_export_grant_is_refused_and_nothing_is_written(
    crm: pycrm.CRM, world: SimpleNamespace, tmp_path: Path
) -> None:
    target = tmp_path / "leads.csv"
    buffer = io.StringIO()
    errors = refused(
        crm,
        world.sam.id,  # sales reads leads but may not export them
        (PermissionDenied, lambda s: s.export.csv("leads", target)),
        (PermissionDenied, lambda s: s.export.jsonl("leads", buffer)),
        (PermissionDenied, lambda s: s.export.rows("leads")),
    )
    assert all(e.action == "export" for e in errors if isinstance(e, PermissionDenied))
    assert not target.exists()
    assert buffer.getvalue() == ""
    assert export_entries(crm) == []
    with crm.session(actor=crm.system_actor) as s:
        denied = s.audit.find(action="denied:export", actor_id=world.sam.id)
    assert [e.record_type for e in denied] == ["lead"] * 3


def test_an_export_holds_only_rows_both_read_and_export_grants_allow_and_no_hidden_field(
    connect_crm: Any,
) -> None:
    # Sales may export every receivable, but reads only its own; it reads every
    # deal, but may export only its own.
    policy = DEFAULT_POLICY.extend(
        {"grants": [{"roles": ["sales"], "resources": ["receivable"], "actions": ["export"],
                     "scope": "all"},
                    {"roles": ["sales"], "resources": ["deal"], "actions": ["export"],
                     "scope": "own"}]}
    )  # fmt: skip
    crm = connect_crm(policy=policy, default_region="DE")
    w = build(crm)
    sams = sorted(r.id for r in w.receivables[w.sam.id])
    with crm.session(actor=w.sam.id) as s:
        rows = list(s.export.rows("receivables"))
        out = io.StringIO(newline="")
        assert s.export.csv("receivables", out) == 2
        with pytest.raises(PermissionDenied):
            s.export.rows("receivables", fields=["id", "payments"])
        deals = [r["id"] for r in s.export.rows("deals")]
        assert len(s.deals.list()) == 2
    assert deals == [w.deals[w.sam.id].id]
    assert [r["id"] for r in rows] == sams
    assert all("payments" not in r and "overpaid" not in r for r in rows)
    assert rows[0]["paid"] == {"amount": "50.00", "currency": "EUR"}  # paid is not hidden
    header, cells = csv_rows(out.getvalue())
    assert [c["id"] for c in cells] == sams
    assert not {"payments", "overpaid"} & set(header)
    with crm.session(actor=w.fin.id) as s:  # finance may export them all, payments included
        everything = list(s.export.rows("receivables"))
    assert len(everything) == 4
    assert [p["reference"] for r in everything for p in r["payments"]] == ["TX-1"]


def test_a_custom_field_the_actor_may_not_read_is_absent(
    crm: pycrm.CRM, world: SimpleNamespace
) -> None:
    with crm.session(actor=world.ann.id) as s:
        (acme,) = [r for r in s.export.rows("customers") if r["id"] == world.acme.id]
        out = io.StringIO(newline="")
        s.export.csv("customers", out)
    assert acme["custom"] == {"tier": "gold"}
    _, cells = csv_rows(out.getvalue())
    assert "DE02" not in out.getvalue()
    assert {json.dumps(json.loads(c["custom"])) for c in cells} == {'{"tier": "gold"}', "{}"}
    with crm.session(actor=crm.system_actor) as s:
        (full,) = [r for r in s.export.rows("customers") if r["id"] == world.acme.id]
    assert full["custom"] == {"iban": "DE02 1234", "tier": "gold"}


def test_another_users_private_activity_is_never_exported(
    crm: pycrm.CRM, world: SimpleNamespace
) -> None:
    with crm.session(actor=world.ann.id) as s:
        ids = [r["id"] for r in s.export.rows("activities")]
        out = io.StringIO()
        s.export.jsonl("activities", out, fields=["id"])
    assert world.kims_note.id not in ids
    assert world.kims_note.id not in out.getvalue()
    assert sorted(ids) == sorted([world.kims_call.id, world.anns_note.id])


def pages_of(s: Session, size: Any) -> Any:
    s.export.page_size = size
    return s.export


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.export.rows("users"), "kind"),
        (lambda s: s.export.rows("audit_entry"), "kind"),
        (lambda s: s.export.rows("leads", since=datetime(2026, 1, 1)), "since"),
        (lambda s: s.export.rows("leads", until="2026-01-01"), "until"),
        (
            lambda s: s.export.rows(
                "leads",
                since=datetime(2026, 2, 1, tzinfo=UTC),
                until=datetime(2026, 1, 1, tzinfo=UTC),
            ),
            "until",
        ),
        (lambda s: s.export.rows("leads", fields=["name", "shoe_size"]), "fields"),
        (lambda s: s.export.rows("leads", fields="name"), "fields"),
        (lambda s: s.export.rows("leads", fields=[]), "fields"),
        (lambda s: s.export.csv("leads", "/nonexistent/dir/leads.csv"), "target"),
        (lambda s: s.export.jsonl("leads", "bad\x00name.jsonl"), "target"),
        (lambda s: s.export.csv("leads", 5), "target"),
        (lambda s: s.export.rows("leads", fields=5), "fields"),
        (lambda s: s.export.rows("leads", fields=["name", "name"]), "fields"),
        (lambda s: pages_of(s, 0).rows("leads"), "page_size"),
    ],
)
def test_bad_arguments_are_validation_errors_naming_the_argument(
    crm: pycrm.CRM, world: SimpleNamespace, call: Any, field: str
) -> None:
    (error,) = refused(crm, world.ann.id, (ValidationError, call))
    assert isinstance(error, ValidationError)
    assert error.field == field


# -- the audit trail -------------------------------------------------------------------


def test_each_export_is_audited_once_with_its_filters_and_row_count(
    crm: pycrm.CRM, world: SimpleNamespace, fake_clock: FakeClock
) -> None:
    since = fake_clock.now().replace(year=2020)
    with crm.session(actor=world.ann.id) as s:
        assert s.export.csv("customers", io.StringIO(newline=""), since=since) == 2
        assert len(list(s.export.rows("tickets", fields=["id", "subject"]))) == 1
    first, second = export_entries(crm)
    assert (first.actor_id, first.department, first.record_type, first.at) == (
        world.ann.id,
        "analytics",
        "customer",
        fake_clock.now(),
    )
    assert facts(first) == {
        "format": "csv",
        "since": since.isoformat(),
        "until": None,
        "fields": None,
        "rows": 2,
        "complete": True,
    }
    assert (second.record_type, facts(second)["format"], facts(second)["fields"]) == (
        "ticket",
        "rows",
        ["id", "subject"],
    )
    assert (facts(second)["rows"], facts(second)["complete"]) == (1, True)


def test_an_export_stays_audited_when_the_session_rolls_back(
    crm: pycrm.CRM, world: SimpleNamespace
) -> None:
    with contextlib.suppress(RuntimeError), crm.session(actor=world.ann.id) as s:
        assert s.export.csv("customers", io.StringIO(newline="")) == 2
        raise RuntimeError("the caller's own failure after the export")
    [entry] = export_entries(crm)
    assert (entry.record_type, facts(entry)["rows"]) == ("customer", 2)


def test_an_abandoned_or_closed_iterator_is_audited_with_the_rows_handed_out(
    crm: pycrm.CRM, world: SimpleNamespace
) -> None:
    with crm.session(actor=world.ann.id) as s:
        for first in s.export.rows("activities"):  # noqa: B007
            break
        with contextlib.closing(s.export.rows("customers")) as rows:
            next(rows)
            next(rows)
        s.export.rows("leads")  # never started: reads nothing for its caller
    abandoned, closed = export_entries(crm)
    assert first["id"]
    assert (abandoned.record_type, facts(abandoned)["rows"]) == ("activity", 1)
    assert facts(abandoned)["complete"] is False
    assert (closed.record_type, facts(closed)["rows"]) == ("customer", 2)
    assert facts(closed)["complete"] is False


def test_an_export_whose_target_fails_is_audited_as_incomplete_and_its_file_removed(
    crm: pycrm.CRM, world: SimpleNamespace
) -> None:
    class Full(io.StringIO):
        def write(self, text: str) -> int:
            if self.tell() > 0 and "Beta" in text:
                raise OSError(28, "No space left on device")
            return super().write(text)

    with crm.session(actor=world.ann.id) as s, pytest.raises(ValidationError) as info:
        s.export.jsonl("customers", Full())
    assert info.value.field == "target"
    assert "No space left" in str(info.value)
    (entry,) = export_entries(crm)
    assert (facts(entry)["rows"], facts(entry)["complete"]) == (2, False)


# -- the command line --------------------------------------------------------------------


@pytest.fixture
def cli_db(tmp_path: Path) -> tuple[str, SimpleNamespace]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with pycrm.connect(url, default_region="DE") as crm:
        return url, build(crm)


def test_pycrm_export_writes_csv_to_standard_output_and_the_summary_to_stderr(
    cli_db: tuple[str, SimpleNamespace], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = cli_db
    status = main(["export", "customers", "--as", "ann@corp.example", "--db", url])
    out, err = capsys.readouterr()
    assert status == 0, err
    header, cells = csv_rows(out)
    assert header[:2] == ["id", "tenant_id"]
    assert sorted(c["name"] for c in cells) == ["Acme GmbH", "Beta AG"]
    assert "DE02" not in out
    assert "Exported 2 customers as csv" in err


def test_pycrm_export_writes_json_lines_to_a_file_with_filters(
    cli_db: tuple[str, SimpleNamespace], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url, w = cli_db
    target = tmp_path / "out.jsonl"
    args = ["export", "activities", "--format", "jsonl", "--out", str(target), "--db", url]
    status = main([*args, "--as", w.ann.id, "--since", "2000-01-01", "--fields", "id, subject"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out == ""
    rows = jsonl_rows(target.read_text(encoding="utf-8"))
    assert rows == [
        {"id": w.kims_call.id, "subject": "Intro"},
        {"id": w.anns_note.id, "subject": "Mine"},
    ]
    assert f"Exported 2 activities as jsonl to {target}" in err.replace("\n", "")
    status = main([*args, "--as", "ann@corp.example", "--since", "2999-01-01T00:00+02:00"])
    assert status == 0
    assert target.read_text(encoding="utf-8") == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["leads", "--as", "sam@corp.example"], "may not export lead"),
        (["leads", "--as", "nobody@corp.example"], "error:"),
        (["leads", "--as", "ann@corp.example", "--since", "yesterday"], "ISO 8601"),
        (["leads", "--as", "ann@corp.example", "--fields", "id,shoe_size"], "shoe_size"),
    ],
)
def test_a_refused_or_bad_export_exits_1_with_the_error_on_stderr_and_writes_nothing(
    cli_db: tuple[str, SimpleNamespace],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    url, _ = cli_db
    target = tmp_path / "refused.csv"
    status = main(["export", *args, "--out", str(target), "--db", url])
    out, err = capsys.readouterr()
    assert status == 1
    assert message in err.replace("\n", " ")
    assert out == ""
    assert not target.exists()
