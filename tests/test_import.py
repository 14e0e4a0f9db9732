"""Contract tests for bulk import (``s.importer``, ``pycrm import``), on every backend.

DESIGN §1 (the script author "needs clean rejects and idempotent re-runs") and
§7 ("an import never drops a row silently: every rejected row is reported with
its line number and reason"). Rows come from ``csv.DictReader`` over text and
from :func:`pycrm.csvfiles.read_rows` over files written as bytes, so the
encodings are real.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import pycrm
import support
from pycrm.csvfiles import count_rows, detect_encoding, read_rows
from pycrm.domain.audit import AuditEntry, compact
from pycrm.domain.contact_points import PointKind
from pycrm.domain.imports import ALIASES, ImportReport, Reject, resolve_mapping, row_key
from pycrm.domain.leads import Lead, LeadStatus
from pycrm.domain.permissions import DEFAULT_POLICY, Policy
from pycrm.errors import ConfigurationError, PermissionDenied, ValidationError
from pycrm.serialization import to_dict
from pycrm.services.imports import RejectsWriter
from pycrm.testing.clock import FakeClock
from support import snapshot

ConnectFn = Callable[..., pycrm.CRM]

# -- helpers -------------------------------------------------------------------


def staff(crm: pycrm.CRM) -> SimpleNamespace:
    return support.staff(crm, mia="marketing", sam="sales", kim="sales", fay="finance")


def text_rows(data: bytes) -> csv.DictReader[str]:
    """Rows as ``read_rows`` gives them for UTF-8: undecodable bytes as surrogate escapes."""
    return csv.DictReader(io.StringIO(data.decode("utf-8", "surrogateescape"), newline=""))


def file_rows(path: Path, encoding: str | None = None) -> Iterator[dict[str, str]]:
    return read_rows(path, encoding)[1]


def counts(crm: pycrm.CRM) -> dict[str, int]:
    return {name: len(records) for name, records in snapshot(crm).items()}


def leads_by_name(crm: pycrm.CRM) -> dict[str, Lead]:
    return {lead.name: lead for lead in snapshot(crm)["Lead"]}


def points(record: Any, kind: PointKind) -> list[str]:
    return [p.value for p in record.contact_points if p.kind is kind]


def all_audit(crm: pycrm.CRM) -> list[AuditEntry]:
    """Every audit entry, the refused attempts included."""
    uow = crm.store.begin("default")
    try:
        return list(uow.repo(AuditEntry).find())
    finally:
        uow.rollback()


def import_leads(crm: pycrm.CRM, actor: str, rows: Any, **options: Any) -> ImportReport:
    with crm.session(actor=actor) as s:
        return s.importer.leads(rows, **options)


def assert_accounted(report: ImportReport) -> None:
    """Every row read is created, merged, skipped or rejected (flagged rows are also created)."""
    assert report.rows == report.created + report.merged + report.skipped + report.rejected
    assert report.flagged <= report.created


# Every kind of bad row, in an otherwise UTF-8 file. Line numbers count the header as 1.
HEADER = ["name", "email", "phone", "company", "needs"]
BAD_FILE = b"".join(
    [
        b"name,email,phone,company,needs\n",  # 1
        b"Anna Alt,anna@alt.example,+49 30 1234567,Alt GmbH,demo\n",  # 2 created
        b"Bernd Bad Phone,bernd@b.example,12345,B GmbH,\n",  # 3 rejected: phone
        b"Carla Bad Email,carla@@c.example,,C AG,\n",  # 4 rejected: email
        b",nobody@n.example,+49 30 7654321,N Ltd,\n",  # 5 rejected: name
        b"Stored Again,STORED@s.example,,S Inc,\n",  # 6 duplicate of a stored lead
        b"Anna Again,Anna@Alt.example,,Alt GmbH,\n",  # 7 duplicate of line 2
        b"Bytes \xff\xfe Broken,bytes@b.example,,X,\n",  # 8 rejected: not UTF-8
        b"Extra Columns,extra@e.example,,E,needs,surplus\n",  # 9 rejected: too many values
        b"Missing Columns,missing@m.example\n",  # 10 rejected: too few values
        b"Dora Good,dora@d.example,+49 89 1234567,D GmbH,\n",  # 11 created
        "张伟,zhang@z.example,+86 138 0013 8000,北京科技有限公司,\n".encode(),  # 12 created
    ]
)
BAD_TEXT = BAD_FILE.decode("utf-8", "surrogateescape")
ORIGINAL = {i + 1: line for i, line in enumerate(csv.reader(io.StringIO(BAD_TEXT, newline="")))}
REJECTED = {
    3: ("phone", "is not a valid number"),
    4: ("email", ""),
    5: ("name", "is required"),
    8: ("name", "is not valid text in the file's encoding"),
    9: ("row", "has 6 values, the header has 5"),
    10: ("row", "has fewer values than the header's 5"),
}


def stored_lead(crm: pycrm.CRM, actor: str) -> Lead:
    with crm.session(actor=actor) as s:
        return s.leads.capture("Stored Person", email="stored@s.example", source="webform")


def check_bad_file_report(report: ImportReport) -> None:
    assert report.rows == 11
    assert (report.created, report.merged, report.skipped, report.flagged, report.rejected) == (
        3,
        0,
        2,
        0,
        6,
    )
    assert_accounted(report)
    got = {r.line: (r.field, r.reason) for r in report.rejects}
    assert set(got) == set(REJECTED)
    for line, (field, why) in REJECTED.items():
        assert got[line][0] == field, line
        assert why in got[line][1], (line, got[line])
        assert got[line][1].strip(), line
    # Line 7 repeats line 2: "an earlier row" in the same chunk, "a stored record" once
    # line 2's chunk is committed; either way it is one of the two duplicates.
    duplicates = report.reasons["duplicate of a stored record"]
    duplicates += report.reasons["duplicate of an earlier row"]
    assert duplicates == 2
    assert sum(n for reason, n in report.reasons.items() if ": " in reason) == 6


# -- every kind of bad row -------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1000, 1])
def test_a_file_with_every_kind_of_bad_row_gives_exact_counts_and_a_reason_per_line(
    crm: pycrm.CRM, chunk_size: int
) -> None:
    people = staff(crm)
    stored = stored_lead(crm, people.mia.id)
    out = io.StringIO()
    writer = RejectsWriter(out, HEADER)

    report = import_leads(
        crm, people.mia.id, text_rows(BAD_FILE), rejects=writer, chunk_size=chunk_size
    )

    check_bad_file_report(report)
    leads = leads_by_name(crm)
    assert set(leads) == {"Stored Person", "Anna Alt", "Dora Good", "张伟"}
    assert leads["Stored Person"] == stored  # policy skip: untouched
    anna = leads["Anna Alt"]
    assert points(anna, PointKind.EMAIL) == ["anna@alt.example"]
    assert points(anna, PointKind.PHONE) == ["+49301234567"]
    assert (anna.company, anna.needs, anna.source) == ("Alt GmbH", "demo", "import")
    assert points(leads["张伟"], PointKind.PHONE) == ["+8613800138000"]
    assert leads["张伟"].company == "北京科技有限公司"
    assert anna.external_id is not None
    assert anna.external_id.startswith("row:")

    # The rejects CSV: line, field, reason, then the row's original values (all of them:
    # a short row padded to the header, a long one with its surplus values after it).
    written = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert written[0] == ["line", "field", "reason", *HEADER]
    assert [int(r[0]) for r in written[1:]] == sorted(REJECTED)
    for row in written[1:]:
        line = int(row[0])
        assert row[1] == REJECTED[line][0]
        assert row[2] == report.rejects[sorted(REJECTED).index(line)].reason
        original = ORIGINAL[line]
        assert row[3:] == original + [""] * (len(HEADER) - len(original))
    assert written[1 + sorted(REJECTED).index(8)][3] == "Bytes \udcff\udcfe Broken"


def test_the_same_file_read_from_disk_gives_the_same_report_and_rejects_file(
    crm: pycrm.CRM, tmp_path: Path
) -> None:
    people = staff(crm)
    stored_lead(crm, people.mia.id)
    path = tmp_path / "leads.csv"
    path.write_bytes(BAD_FILE)
    rejects_path = tmp_path / "rejects.csv"
    assert count_rows(path) == 11

    with open(rejects_path, "w", encoding="utf-8", errors="surrogateescape", newline="") as out:
        encoding, rows = read_rows(path, "utf-8")
        report = import_leads(crm, people.mia.id, rows, rejects=RejectsWriter(out, HEADER))

    assert encoding == "utf-8"
    check_bad_file_report(report)
    with open(rejects_path, encoding="utf-8", errors="surrogateescape", newline="") as back:
        written = list(csv.reader(back))
    assert [(int(r[0]), r[1]) for r in written[1:]] == [(k, v[0]) for k, v in REJECTED.items()]
    # The undecodable bytes go back to the rejects file exactly as they came.
    assert b"Bytes \xff\xfe Broken" in rejects_path.read_bytes()


def test_re_running_the_same_file_creates_nothing_and_writes_nothing(crm: pycrm.CRM) -> None:
    people = staff(crm)
    stored_lead(crm, people.mia.id)
    first = import_leads(crm, people.mia.id, text_rows(BAD_FILE))
    before = snapshot(crm)

    again = import_leads(crm, people.mia.id, text_rows(BAD_FILE))

    assert snapshot(crm) == before  # leads, audit, outbox, tasks: all unchanged
    assert (again.created, again.merged, again.flagged) == (0, 0, 0)
    assert again.rejected == first.rejected == 6
    assert again.skipped == 5
    assert again.reasons["already imported"] == 3
    assert_accounted(again)
    assert [(r.line, r.field) for r in again.rejects] == [(r.line, r.field) for r in first.rejects]


def test_every_imported_lead_is_audited_and_announced_once(crm: pycrm.CRM) -> None:
    people = staff(crm)
    before = counts(crm)

    report = import_leads(crm, people.mia.id, text_rows(BAD_FILE))

    after = snapshot(crm)
    assert report.created == 4  # no stored lead this time: "Stored Again" is new
    assert len(after["Lead"]) - before["Lead"] == 4
    audit = [e for e in after["AuditEntry"] if e.record_type == "lead"]
    assert Counter(e.action for e in audit) == {"import": 4}
    assert {e.actor_id for e in audit} == {people.mia.id}
    assert {e.record_id for e in audit} == {lead.id for lead in after["Lead"]}
    names = Counter(m.name for m in after["OutboxMessage"] if m.name.startswith("lead_"))
    assert names == {"lead_captured": 4}
    assert {lead.created_by for lead in after["Lead"]} == {people.mia.id}


def test_a_row_with_a_bad_phone_and_a_bad_email_names_both_fields_each_with_its_reason(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    data = b"name,email,phone\nBoth Bad,nope,12345\nPhone Bad,ok@b.example,12345\n"
    out = io.StringIO()

    report = import_leads(
        crm, people.mia.id, text_rows(data), rejects=RejectsWriter(out, ["name", "email", "phone"])
    )

    both, phone = report.rejects
    assert (both.line, both.field) == (2, "email, phone")
    email_reason, phone_reason = both.reason.split("; ")
    assert email_reason.startswith("email: ")
    assert "@" in email_reason
    assert phone_reason == "phone: is not a valid number in its country's numbering plan"
    assert (phone.field, phone.reason) == (
        "phone",
        "is not a valid number in its country's numbering plan",
    )
    assert report.reasons == {
        both.reason: 1,
        "phone: is not a valid number in its country's numbering plan": 1,
    }
    rows = list(csv.reader(out.getvalue().splitlines()))
    assert [row[:3] for row in rows[1:]] == [
        ["2", "email, phone", both.reason],
        ["3", "phone", phone.reason],
    ]


def test_lenient_keeps_bad_phones_and_emails_as_typed_and_flagged_invalid(crm: pycrm.CRM) -> None:
    people = staff(crm)
    data = b"name,email,phone\nLoose Lee,lee(at)x,12345\n"

    report = import_leads(crm, people.mia.id, text_rows(data), lenient=True)

    assert (report.created, report.rejected) == (1, 0)
    lead = leads_by_name(crm)["Loose Lee"]
    assert {(p.kind, p.value, p.valid) for p in lead.contact_points} == {
        (PointKind.EMAIL, "lee(at)x", False),
        (PointKind.PHONE, "12345", False),
    }


def test_rows_from_a_generator_may_hold_none_for_an_empty_value(crm: pycrm.CRM) -> None:
    people = staff(crm)

    def rows() -> Iterator[dict[str, str | None]]:
        yield {"name": "Ann Arbor", "email": "ann@x.example", "phone": None}
        yield {"name": "Bob Bauer", "email": None, "phone": "+49 30 1234567"}

    report = import_leads(crm, people.mia.id, rows())

    assert (report.created, report.rejected) == (2, 0), report.rejects


def test_rows_from_a_generator_of_dicts_are_imported(crm: pycrm.CRM) -> None:
    people = staff(crm)

    def rows() -> Iterator[dict[str, Any]]:
        yield {"name": "Ann Arbor", "email": "ann@x.example", "phone": ""}
        yield {"name": "Bob Bauer", "email": "", "phone": "+49 30 1234567"}
        yield {"name": "Cy Int", "email": "", "phone": 4930123456}

    report = import_leads(crm, people.mia.id, rows())

    assert (report.created, report.rejected) == (2, 1)
    assert [(r.line, r.field) for r in report.rejects] == [(4, "phone")]
    assert "must be text" in report.rejects[0].reason


def test_a_header_only_file_imports_nothing(crm: pycrm.CRM) -> None:
    people = staff(crm)
    report = import_leads(crm, people.mia.id, text_rows(b"name,email\n"))
    assert (report.rows, report.created, report.rejected) == (0, 0, 0)
    assert report.rejects == []


def test_start_line_and_progress(crm: pycrm.CRM) -> None:
    people = staff(crm)
    data = b"name,email\n" + b"".join(b"P%d,p%d@x.example\n" % (i, i) for i in range(4))
    data += b"Bad,bad\n"
    seen: list[int] = []

    report = import_leads(
        crm, people.mia.id, text_rows(data), chunk_size=2, start_line=10, progress=seen.append
    )

    assert seen == [2, 4, 5]
    assert [(r.line, r.field) for r in report.rejects] == [(14, "email")]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"on_duplicate": "overwrite"}, "on_duplicate"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_size": True}, "chunk_size"),
        ({"chunk_size": 50_001}, "chunk_size"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(
    crm: pycrm.CRM, options: dict[str, Any], field: str
) -> None:
    people = staff(crm)
    before = snapshot(crm)
    with pytest.raises(ValidationError) as info:
        import_leads(crm, people.mia.id, text_rows(BAD_FILE), **options)
    assert info.value.field == field
    assert snapshot(crm) == before


def test_a_file_without_a_name_column_is_refused(crm: pycrm.CRM) -> None:
    people = staff(crm)
    before = snapshot(crm)
    with pytest.raises(ValidationError) as info:
        import_leads(crm, people.mia.id, text_rows(b"email,phone\na@x.example,\n"))
    assert info.value.field == "mapping"
    assert info.value.value == ["email", "phone"]
    assert "name" in info.value.reason
    assert snapshot(crm) == before


# -- duplicate policies ------------------------------------------------------------


def test_policy_merge_fills_empty_fields_and_adds_the_new_phone_of_a_stored_lead(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    with crm.session(actor=people.mia.id) as s:
        stored = s.leads.capture(
            "Stored Person", email="stored@s.example", source="webform", industry="retail"
        )
    data = (
        b"name,email,phone,company,industry,needs\n"
        b"Another Name,Stored@S.example,+49 30 1234567,S Inc,machinery,a demo\n"
        b"Anna Alt,anna@alt.example,,,,\n"
        b"Anna Again,anna@alt.example,+49 89 1234567,Alt GmbH,,\n"
    )

    report = import_leads(crm, people.mia.id, text_rows(data), on_duplicate="merge")

    assert (report.created, report.merged, report.skipped, report.rejected) == (1, 2, 0, 0)
    assert report.reasons["merged into a stored record"] == 1
    assert report.reasons["merged into an earlier row"] == 1
    leads = leads_by_name(crm)
    assert set(leads) == {"Stored Person", "Anna Alt"}
    merged = leads["Stored Person"]
    assert merged.id == stored.id
    assert merged.version == stored.version + 1
    assert (merged.company, merged.needs) == ("S Inc", "a demo")  # were empty: filled
    assert (merged.name, merged.industry, merged.source) == (
        "Stored Person",
        "retail",
        "webform",
    )  # were set: kept
    assert points(merged, PointKind.EMAIL) == ["stored@s.example"]
    assert points(merged, PointKind.PHONE) == ["+49301234567"]
    anna = leads["Anna Alt"]
    assert anna.company == "Alt GmbH"
    assert points(anna, PointKind.PHONE) == ["+49891234567"]
    updates = [
        e for e in snapshot(crm)["AuditEntry"] if e.record_id == stored.id and e.action == "update"
    ]
    assert len(updates) == 1
    assert updates[0].actor_id == people.mia.id

    before = snapshot(crm)
    again = import_leads(crm, people.mia.id, text_rows(data), on_duplicate="merge")
    assert (again.created, again.merged, again.skipped) == (0, 0, 3)
    assert again.reasons == {"already imported": 3}
    assert snapshot(crm) == before  # nothing new to merge: no writes


def test_policy_flag_imports_look_alikes_and_counts_them(crm: pycrm.CRM) -> None:
    people = staff(crm)
    stored = stored_lead(crm, people.mia.id)

    report = import_leads(crm, people.mia.id, text_rows(BAD_FILE), on_duplicate="flag")

    assert (report.created, report.merged, report.skipped, report.flagged, report.rejected) == (
        5,
        0,
        0,
        2,
        6,
    )
    assert report.reasons["possible duplicate (flagged)"] == 2
    assert_accounted(report)
    leads = leads_by_name(crm)
    assert {"Stored Again", "Anna Again", "Anna Alt", "Stored Person"} <= set(leads)
    assert leads["Stored Person"] == stored
    assert points(leads["Stored Again"], PointKind.EMAIL) == ["STORED@s.example"]

    again = import_leads(crm, people.mia.id, text_rows(BAD_FILE), on_duplicate="flag")
    assert (again.created, again.flagged) == (0, 0)
    assert again.reasons["already imported"] == 5


def test_policy_skip_counts_a_row_matching_a_stored_contact(crm: pycrm.CRM) -> None:
    people = staff(crm)
    with crm.session(actor=people.sam.id) as s:
        acme = s.customers.create(name="Acme GmbH")
        s.contacts.create("Carl Contact", customer_id=acme.id, emails=["carl@acme.example"])
    data = b"name,email\nCarl Lead,carl@acme.example\n"

    for policy in ("skip", "merge"):
        report = import_leads(crm, people.mia.id, text_rows(data), on_duplicate=policy)
        assert (report.created, report.skipped, report.merged) == (0, 1, 0)
        why = (
            "duplicate of a stored record" if policy == "skip" else "duplicate of a stored contact"
        )
        assert report.reasons == {why: 1}
    assert "Carl Lead" not in leads_by_name(crm)


def test_converted_leads_do_not_block_a_new_lead_with_the_same_email(crm: pycrm.CRM) -> None:
    people = staff(crm)
    with crm.session(actor=people.mia.id) as s:
        lead = s.leads.capture("Old Lead", email="old@x.example", source="webform")
        s.leads.disqualify(lead.id, "no budget")

    report = import_leads(crm, people.mia.id, text_rows(b"name,email\nNew Lead,old@x.example\n"))

    assert report.created == 1


# -- external ids vs row hashes ---------------------------------------------------


def test_external_ids_identify_rows_across_edits_where_a_row_hash_cannot(crm: pycrm.CRM) -> None:
    people = staff(crm)
    first = b"crm id,name,company\nK-1,Kai Keen,Keen AG\nK-2,Lea Lang,Lang KG\nK-2,Lea Twice,X\n"
    edited = b"crm id,name,company\nK-1,Kai Keen,Keen AG (new)\nK-2,Lea Lang,Lang KG\n"

    report = import_leads(crm, people.mia.id, text_rows(first))
    assert (report.created, report.skipped) == (2, 1)  # K-2 twice in one file
    assert {lead.external_id for lead in snapshot(crm)["Lead"]} == {"K-1", "K-2"}
    again = import_leads(crm, people.mia.id, text_rows(edited))
    assert (again.created, again.skipped) == (0, 2)
    assert again.reasons["already imported"] == 2

    # Without an id column, a row is known by the hash of its values: an edited row is new.
    hashed_first = b"name,company\nMo Moss,Moss AG\nNia Noor,Noor KG\n"
    hashed_edit = b"name,company\nMo Moss,Moss AG (new)\nNia Noor,Noor KG\n"
    assert import_leads(crm, people.mia.id, text_rows(hashed_first)).created == 2
    report = import_leads(crm, people.mia.id, text_rows(hashed_edit))
    assert (report.created, report.skipped) == (1, 1)
    assert sorted(lead.company for lead in snapshot(crm)["Lead"] if lead.name == "Mo Moss") == [
        "Moss AG",
        "Moss AG (new)",
    ]


def test_a_re_import_with_merge_updates_the_record_with_that_external_id(crm: pycrm.CRM) -> None:
    people = staff(crm)
    import_leads(crm, people.mia.id, text_rows(b"id,name,email\nK-1,Kai Keen,\n"))

    data = (
        b"id,name,email,company\n"
        b"K-1,Kai Keen,kai@keen.example,Keen AG\n"
        b"K-2,Kai Again,Kai@Keen.example,\n"  # by the email K-1 brought: the same lead
    )

    report = import_leads(crm, people.mia.id, text_rows(data), on_duplicate="merge")

    assert (report.created, report.merged, report.skipped) == (0, 1, 1)
    assert report.reasons == {"updated by its external id": 1, "already imported": 1}
    (lead,) = snapshot(crm)["Lead"]
    assert lead.company == "Keen AG"
    assert points(lead, PointKind.EMAIL) == ["kai@keen.example"]


def test_the_external_id_option_names_the_id_column(crm: pycrm.CRM) -> None:
    people = staff(crm)
    data = b"Kundennr,name\n1001,Kai Keen\n1002,Lea Lang\n"

    report = import_leads(crm, people.mia.id, text_rows(data), external_id="Kundennr")

    assert report.created == 2
    assert sorted(lead.external_id for lead in snapshot(crm)["Lead"]) == ["1001", "1002"]


def test_row_key_is_stable_and_order_independent() -> None:
    a = row_key({"name": "Kai", "email": " k@x.example "})
    assert a == row_key({"email": "k@x.example", "name": "Kai"})
    assert a != row_key({"name": "Kai", "email": "k@y.example"})
    assert a.startswith("row:")
    assert len(a) == 4 + 32


# -- mappings and aliases -----------------------------------------------------------


def test_alias_columns_are_recognised_case_insensitively(crm: pycrm.CRM) -> None:
    people = staff(crm)
    data = (
        b"Full Name,E-mail,Mobile,Organisation,Job Title,Territory,Sector,Notes,Lead Source,Telefon\n"
        b"Jan Jansen,jan@j.example,0171 2345678,Jansen BV,CTO,North,machinery,wants a demo,Trade Show,"
        b"+49 30 9999999\n"
    )

    report = import_leads(crm, people.mia.id, text_rows(data))

    assert report.created == 1
    jan = leads_by_name(crm)["Jan Jansen"]
    assert points(jan, PointKind.EMAIL) == ["jan@j.example"]
    # "Telefon" is no alias: its value is not imported; "Mobile" is the phone.
    assert points(jan, PointKind.PHONE) == ["+491712345678"]
    assert (jan.company, jan.title, jan.region, jan.industry, jan.needs) == (
        "Jansen BV",
        "CTO",
        "North",
        "machinery",
        "wants a demo",
    )
    assert jan.source == "trade_show"


@pytest.mark.parametrize(
    ("field", "aliases"), [(f, a) for f, a in ALIASES.items() if f != "customer"]
)
def test_every_alias_resolves_to_its_field(field: str, aliases: tuple[str, ...]) -> None:
    fields = tuple(ALIASES)
    for alias in aliases:
        assert resolve_mapping([f"  {alias.upper()} "], fields, None) == {
            field: f"  {alias.upper()} "
        }


def test_an_explicit_mapping_wins_over_aliases_and_each_column_is_used_once() -> None:
    fields = ("name", "email", "phone")
    header = ["Name", "Email", "Private Mail", "Tel"]
    assert resolve_mapping(header, fields, {"email": "private mail"}) == {
        "email": "Private Mail",
        "name": "Name",
        "phone": "Tel",
    }
    assert resolve_mapping(["Mail", "Email"], ("email",), None) == {"email": "Email"}


@pytest.mark.parametrize(
    ("mapping", "message"),
    [({"nickname": "Name"}, "not a field"), ({"email": "Mail Address"}, "not in the file")],
)
def test_a_bad_mapping_is_refused_before_anything_is_written(
    crm: pycrm.CRM, mapping: dict[str, str], message: str
) -> None:
    people = staff(crm)
    before = snapshot(crm)
    with pytest.raises(ConfigurationError, match=message):
        import_leads(crm, people.mia.id, text_rows(b"Name,Email\nA,a@x.example\n"), mapping=mapping)
    assert snapshot(crm) == before


def test_a_mapping_file_maps_fields_to_columns(crm: pycrm.CRM, tmp_path: Path) -> None:
    people = staff(crm)
    (tmp_path / "mapping.json").write_text(
        json.dumps(
            {"external_id": "Kundennr", "name": "Ansprechpartner", "email": "Mail-Adresse"}
            | {"phone": "Rufnummer", "company": "Firma"}
        ),
        encoding="utf-8",
    )
    path = tmp_path / "kunden.csv"
    path.write_text(
        "Kundennr,Ansprechpartner,Mail-Adresse,Rufnummer,Firma\n"
        "K7,Jürgen Müller,jm@m.example,030 1234567,Müller & Söhne GmbH\n",
        encoding="utf-8",
    )
    mapping = json.loads((tmp_path / "mapping.json").read_text(encoding="utf-8"))

    report = import_leads(crm, people.mia.id, file_rows(path), mapping=mapping)

    assert report.created == 1
    lead = leads_by_name(crm)["Jürgen Müller"]
    assert (lead.external_id, lead.company) == ("K7", "Müller & Söhne GmbH")
    assert points(lead, PointKind.PHONE) == ["+49301234567"]


# -- encodings --------------------------------------------------------------------------

NAMES = ["Jürgen Müller", "Zoë Çelik", "Ångström Øre"]


def latin_file(path: Path, encoding: str, names: list[str] = NAMES) -> Path:
    body = "name,email\n" + "".join(f"{n},p{i}@x.example\n" for i, n in enumerate(names))
    path.write_bytes(body.encode(encoding))
    return path


@pytest.mark.parametrize(
    ("encoding", "given"),
    [
        pytest.param("utf-8", False, id="utf-8-detected"),
        pytest.param("utf-8-sig", False, id="utf-8-bom-detected"),
        pytest.param("latin-1", True, id="latin-1-given"),
        pytest.param("cp1252", True, id="cp1252-given"),
    ],
)
def test_utf8_with_and_without_bom_is_detected_and_a_given_encoding_wins(
    crm: pycrm.CRM, tmp_path: Path, encoding: str, given: bool
) -> None:
    people = staff(crm)
    path = latin_file(tmp_path / "people.csv", encoding)

    found, rows = read_rows(path, encoding if given else None)
    report = import_leads(crm, people.mia.id, rows)

    assert found == encoding
    assert report.created == 3
    assert set(leads_by_name(crm)) == set(NAMES)  # a BOM is not part of the first column


def test_gb18030_with_chinese_headers_and_names_is_detected_and_read(
    crm: pycrm.CRM, tmp_path: Path
) -> None:
    people = staff(crm)
    path = tmp_path / "客户.csv"
    path.write_bytes(
        "姓名,邮箱,电话,公司\n"
        "张伟,zhangwei@example.cn,138 0013 8000,北京科技有限公司\n"
        "王芳,wangfang@example.cn,139 1234 5678,上海贸易有限公司\n"
        "李娜,lina@example.cn,12,广州有限公司\n".encode("gb18030")
    )

    found, rows = read_rows(path)
    report = import_leads(crm, people.mia.id, rows, default_region="CN")

    assert found == "gb18030"
    assert (report.created, report.rejected) == (2, 1)
    assert [(r.line, r.field) for r in report.rejects] == [(4, "phone")]
    leads = leads_by_name(crm)
    assert set(leads) == {"张伟", "王芳"}
    assert leads["张伟"].company == "北京科技有限公司"
    assert points(leads["张伟"], PointKind.PHONE) == ["+8613800138000"]


def test_latin1_is_detected_and_read(crm: pycrm.CRM, tmp_path: Path) -> None:
    people = staff(crm)
    path = latin_file(tmp_path / "people.csv", "latin-1", ["Jürgen Müller", "Anna Müller"])

    found, rows = read_rows(path)
    report = import_leads(crm, people.mia.id, rows)

    assert report.created == 2
    assert set(leads_by_name(crm)) == {"Jürgen Müller", "Anna Müller"}
    assert found in ("latin-1", "cp1252", "iso8859-1", "windows-1252")


def test_latin1_that_is_no_valid_gb18030_is_detected_and_read(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes("name,city\nJosé,Zürich\nRené,Genève\n".encode("latin-1"))
    found, rows = read_rows(path)
    assert found == "latin-1"
    assert [r["name"] for r in rows] == ["José", "René"]


@pytest.mark.parametrize(
    ("broken", "encoding"),
    [
        pytest.param(b"Ren\xe9 Latin", "utf-8", id="encoding-given"),
        # Detection reads the file as UTF-8 too: one broken row does not make it Latin-1.
        pytest.param(b"Bytes \xff\xfe Broken", None, id="encoding-detected"),
    ],
)
def test_a_row_that_is_not_valid_utf8_is_rejected_and_the_rest_read_as_utf8(
    crm: pycrm.CRM, tmp_path: Path, broken: bytes, encoding: str | None
) -> None:
    people = staff(crm)
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        "name,email\nJürgen Müller,jm@x.example\n".encode()
        + broken
        + b",bb@x.example\n"
        + "张伟,zw@x.example\n".encode()
    )

    found, rows = read_rows(path, encoding)
    report = import_leads(crm, people.mia.id, rows)

    assert found == "utf-8"
    assert (report.created, report.rejected) == (2, 1)
    assert [(r.line, r.field) for r in report.rejects] == [(3, "name")]
    assert set(leads_by_name(crm)) == {"Jürgen Müller", "张伟"}


def test_an_unknown_encoding_is_a_configuration_error(tmp_path: Path) -> None:
    path = latin_file(tmp_path / "people.csv", "utf-8")
    with pytest.raises(ConfigurationError, match="unknown encoding"):
        read_rows(path, "klingon")
    assert detect_encoding(path) == "utf-8"


# -- line numbers -----------------------------------------------------------------------


def test_reject_line_numbers_are_file_lines_after_multi_line_fields_and_blank_lines(
    crm: pycrm.CRM, tmp_path: Path
) -> None:
    people = staff(crm)
    path = tmp_path / "notes.csv"
    path.write_text(
        "name,email,needs\n"  # 1
        'Anna Alt,anna@a.example,"wants a demo\n'  # 2
        'and a quote"\n'  # 3
        "\n"  # 4
        "Bad Mail,bad,\n",  # 5
        encoding="utf-8",
    )

    report = import_leads(crm, people.mia.id, file_rows(path))

    assert report.created == 1
    assert [(r.line, r.field) for r in report.rejects] == [(5, "email")]
    # A csv.DictReader over the same text numbers its records the same way.
    again = import_leads(crm, people.mia.id, text_rows(path.read_bytes()))
    assert (again.created, again.skipped) == (0, 1)
    assert [(r.line, r.field) for r in again.rejects] == [(5, "email")]


def test_a_short_first_record_is_rejected_and_the_header_still_names_every_column(
    crm: pycrm.CRM, tmp_path: Path
) -> None:
    people = staff(crm)
    path = tmp_path / "short.csv"
    path.write_bytes(b"name,email,phone\nShort Row\nFull Row,full@f.example,+49 30 1234567\n")

    report = import_leads(crm, people.mia.id, file_rows(path))

    assert (report.created, report.rejected) == (1, 1)
    (reject,) = report.rejects
    assert (reject.line, reject.field) == (2, "row")
    assert reject.reason == "has fewer values than the header's 3"
    assert points(leads_by_name(crm)["Full Row"], PointKind.PHONE) == ["+49301234567"]


def test_the_rejects_file_keeps_the_surplus_values_of_a_row_with_too_many(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    out = io.StringIO()
    data = b"name,email\nExtra Columns,extra@e.example,surplus,more\n"

    report = import_leads(crm, people.mia.id, text_rows(data), rejects=RejectsWriter(out, ["name"]))

    assert report.rejected == 1
    assert "surplus" in out.getvalue()
    assert "more" in out.getvalue()


# -- contacts and customers --------------------------------------------------------------


def test_contacts_are_imported_and_linked_to_customers_by_company_name(crm: pycrm.CRM) -> None:
    people = staff(crm)
    with crm.session(actor=people.sam.id) as s:
        acme = s.customers.create(name="Acme GmbH")
        s.contacts.create("Old Contact", customer_id=acme.id, emails=["old@acme.example"])
    data = (
        b"name,email,phone,title,customer\n"
        b"Carl Contact,carl@acme.example,030 1234567,Buyer,ACME gmbh\n"
        b"Nora Nolink,nora@n.example,,,\n"
        b"Old Again,OLD@acme.example,,,Acme GmbH\n"
        b"Bad Mail,bad,,,Acme GmbH\n"
    )

    with crm.session(actor=people.mia.id) as s:
        report = s.importer.contacts(text_rows(data))

    assert (report.created, report.skipped, report.rejected) == (2, 1, 1)
    assert [(r.line, r.field) for r in report.rejects] == [(5, "email")]
    contacts = {c.name: c for c in snapshot(crm)["Contact"]}
    assert contacts["Carl Contact"].customer_id == acme.id
    assert contacts["Carl Contact"].title == "Buyer"
    assert points(contacts["Carl Contact"], PointKind.PHONE) == ["+49301234567"]
    assert contacts["Nora Nolink"].customer_id is None
    assert "Old Again" not in contacts
    with crm.session(actor=people.mia.id) as s:
        assert s.importer.contacts(text_rows(data)).created == 0


def test_customers_are_imported_with_their_policies(crm: pycrm.CRM) -> None:
    people = staff(crm)
    with crm.session(actor=people.sam.id) as s:
        stored = s.customers.create(name="Stored AG", emails=["info@stored.example"])
    data = (
        b"name,email,phone,industry,region,website\n"
        b"Acme GmbH,info@acme.example,030 1234567,machinery,DACH,https://acme.example\n"
        b"Stored Again,INFO@stored.example,+49 89 1234567,retail,,\n"
        b",nameless@x.example,,,,\n"
    )

    with crm.session(actor=people.sam.id) as s:  # sales maintains customers
        report = s.importer.customers(text_rows(data), on_duplicate="merge")

    assert (report.created, report.merged, report.rejected) == (1, 1, 1)
    assert [(r.line, r.field) for r in report.rejects] == [(4, "name")]
    customers = {c.name: c for c in snapshot(crm)["Customer"]}
    assert set(customers) == {"Acme GmbH", "Stored AG"}
    acme = customers["Acme GmbH"]
    assert (acme.industry, acme.region, acme.website) == (
        "machinery",
        "DACH",
        "https://acme.example",
    )
    merged = customers["Stored AG"]
    assert merged.id == stored.id
    assert merged.industry == "retail"
    assert points(merged, PointKind.PHONE) == ["+49891234567"]
    rows = snapshot(crm)
    audit = Counter(e.action for e in rows["AuditEntry"] if e.record_type == "customer")
    assert audit == {"create": 1, "import": 1, "update": 1}
    names = Counter(m.name for m in rows["OutboxMessage"] if m.name.startswith("customer_"))
    assert names == {"customer_created": 2, "customer_updated": 1}


def test_a_merge_the_importer_may_not_make_is_reported_and_the_import_goes_on(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    with crm.session(actor=people.sam.id) as s:
        s.customers.create(name="Sam's AG", emails=["info@sams.example"])
    data = (
        b"name,email,phone\n"
        b"Sams,info@sams.example,030 1234567\n"
        b"New Co,new@co.example,\n"
        # the phone of the refused row is not the stored customer's: a new customer
        b"Sams Phone,,030 1234567\n"
    )
    out = io.StringIO()
    writer = RejectsWriter(out, ["name", "email", "phone"])

    with crm.session(actor=people.mia.id) as s:  # marketing updates only its own customers
        report = s.importer.customers(text_rows(data), on_duplicate="merge", rejects=writer)

    assert (report.created, report.merged, report.skipped, report.rejected) == (2, 0, 0, 1)
    (reject,) = report.rejects
    assert (reject.line, reject.field) == (2, "row")
    assert reject.reason.startswith("matches a stored customer it cannot update: ")
    assert "may not update customer" in reject.reason
    # The rejects file gets the row as read, every column of it.
    assert reject.values == {"name": "Sams", "email": "info@sams.example", "phone": "030 1234567"}
    assert out.getvalue().splitlines()[1].endswith(",Sams,info@sams.example,030 1234567")


# -- permissions ---------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "kind"), [("fay", "leads"), ("sam", "leads"), ("fay", "contacts")])
def test_an_importer_without_a_create_grant_is_refused_before_reading_a_row(
    crm: pycrm.CRM, who: str, kind: str
) -> None:
    people = staff(crm)
    before = snapshot(crm)
    read: list[int] = []

    def rows() -> Iterator[dict[str, str]]:
        read.append(1)
        yield {"name": "Never", "email": "never@x.example"}

    with pytest.raises(PermissionDenied), crm.session(actor=getattr(people, who).id) as s:
        getattr(s.importer, kind)(rows())
    assert read == []
    assert snapshot(crm) == before
    denials = [e for e in all_audit(crm) if e.action == "denied:create"]
    assert [(e.actor_id, e.record_type) for e in denials] == [
        (getattr(people, who).id, kind.rstrip("s"))
    ]


# -- routing -----------------------------------------------------------------------------


def test_imported_leads_are_routed_and_get_first_contact_tasks(connect_crm: ConnectFn) -> None:
    crm = connect_crm(routing_rules=[{"name": "rr", "pick": "round_robin"}], default_region="DE")
    people = staff(crm)
    data = b"name,email\n" + b"".join(b"Lead %d,l%d@x.example\n" % (i, i) for i in range(6))

    report = import_leads(crm, people.mia.id, text_rows(data), chunk_size=4)

    assert report.created == 6
    stored = snapshot(crm)
    leads = stored["Lead"]
    assert {lead.status for lead in leads} == {LeadStatus.ASSIGNED}
    owners = Counter(lead.owner_id for lead in leads)
    assert owners == {people.sam.id: 3, people.kim.id: 3}  # round robin across chunks
    assert all(lead.assignment_reason for lead in leads)
    assert all(lead.assigned_by for lead in leads)
    tasks = {t.related_id: t for t in stored["Task"] if t.kind == "first_contact"}
    assert set(tasks) == {lead.id for lead in leads}
    for lead in leads:
        assert tasks[lead.id].assignee_id == lead.owner_id
        assert tasks[lead.id].related_type == "lead"
    names = Counter(m.name for m in stored["OutboxMessage"])
    assert names["lead_captured"] == names["lead_assigned"] == names["task_created"] == 6
    audit = Counter((e.record_type, e.action) for e in stored["AuditEntry"])
    assert (audit["lead", "import"], audit["task", "create"]) == (6, 6)

    before = snapshot(crm)
    assert import_leads(crm, people.mia.id, text_rows(data)).created == 0
    assert snapshot(crm) == before


# -- the command line -----------------------------------------------------------------------

CLI_FILE = (
    b"name,email,phone,company\n"
    b"Anna Alt,anna@alt.example,+49 30 1234567,Alt GmbH\n"
    b"Bernd Bad Phone,bernd@b.example,12345,B GmbH\n"
    b"Anna Again,anna@alt.example,,Alt GmbH\n"
    b"Dora Good,dora@d.example,,D GmbH\n"
)


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pycrm.cli", "import", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def cli_db(tmp_path: Path) -> Iterator[tuple[str, pycrm.CRM]]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    crm = pycrm.connect(url, default_region="DE")
    staff(crm)
    yield url, crm
    crm.close()


def summary(stdout: str) -> dict[str, str]:
    found = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) == 2 and cells[0] in {
            "rows",
            "created",
            "merged",
            "skipped",
            "flagged",
            "rejected",
        }:
            found[cells[0]] = cells[1]
    return found


def test_the_cli_imports_prints_a_summary_and_writes_the_rejects_file(
    cli_db: tuple[str, pycrm.CRM], tmp_path: Path
) -> None:
    url, crm = cli_db
    path = tmp_path / "leads.csv"
    path.write_bytes(CLI_FILE)

    done = cli("leads", path, "--db", url, "--as", "mia@corp.example", "--default-region", "DE")

    assert done.returncode == 0, done.stdout + done.stderr
    assert summary(done.stdout) == {
        "rows": "4",
        "created": "2",
        "merged": "0",
        "skipped": "1",
        "flagged": "0",
        "rejected": "1",
    }
    assert "duplicate of an earlier row" in done.stdout
    rejects = tmp_path / "leads.rejects.csv"
    assert str(rejects) in done.stdout.replace("\n", "")
    rows = list(csv.reader(rejects.read_text(encoding="utf-8").splitlines()))
    assert rows[0] == ["line", "field", "reason", "name", "email", "phone", "company"]
    assert rows[1][:2] == ["3", "phone"]
    assert rows[1][3:] == ["Bernd Bad Phone", "bernd@b.example", "12345", "B GmbH"]
    assert set(leads_by_name(crm)) == {"Anna Alt", "Dora Good"}

    strict = cli("leads", path, "--db", url, "--as", "mia@corp.example", "--strict")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert summary(strict.stdout)["created"] == "0"
    assert summary(strict.stdout)["skipped"] == "3"
    assert len(snapshot(crm)["Lead"]) == 2


def test_the_cli_strict_run_without_rejects_exits_0_and_leaves_no_rejects_file(
    cli_db: tuple[str, pycrm.CRM], tmp_path: Path
) -> None:
    url, _crm = cli_db
    path = tmp_path / "good.csv"
    path.write_bytes(b"name,email\nAnna Alt,anna@alt.example\n")
    own = tmp_path / "out" / "my-rejects.csv"
    own.parent.mkdir()

    done = cli("leads", path, "--db", url, "--as", "mia@corp.example", "--strict", "--rejects", own)

    assert done.returncode == 0, done.stdout + done.stderr
    assert summary(done.stdout)["created"] == "1"
    assert not own.exists()
    assert not (tmp_path / "good.rejects.csv").exists()


def test_the_cli_takes_a_mapping_file_an_encoding_and_a_policy(
    cli_db: tuple[str, pycrm.CRM], tmp_path: Path
) -> None:
    url, crm = cli_db
    import_leads(
        crm, user_id(crm, "mia@corp.example"), text_rows(b"name,email\nJ M,jm@m.example\n")
    )
    mapping = tmp_path / "mapping.json"
    mapping.write_text(
        json.dumps({"external_id": "Nr", "name": "Kontakt", "email": "Mail", "phone": "Rufnummer"}),
        encoding="utf-8",
    )
    path = tmp_path / "kontakte.csv"
    path.write_bytes(
        "Nr,Kontakt,Mail,Rufnummer\n1,Jürgen Müller,jm@m.example,030 1234567\n".encode("latin-1")
    )

    done = cli(
        "leads",
        path,
        "--db",
        url,
        "--as",
        "mia@corp.example",
        "--mapping",
        mapping,
        "--encoding",
        "latin-1",
        "--on-duplicate",
        "merge",
        "--default-region",
        "DE",
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "latin-1" in done.stdout
    assert summary(done.stdout)["merged"] == "1", done.stdout
    lead = leads_by_name(crm)["J M"]
    assert points(lead, PointKind.PHONE) == ["+49301234567"]


def test_the_cli_without_a_default_region_rejects_national_numbers(
    cli_db: tuple[str, pycrm.CRM], tmp_path: Path
) -> None:
    url, _crm = cli_db
    path = tmp_path / "leads.csv"
    path.write_bytes(b"name,phone\nNat Ional,030 1234567\nInter National,+49 30 7654321\n")

    done = cli("leads", path, "--db", url, "--as", "mia@corp.example")

    assert done.returncode == 0, done.stdout + done.stderr
    assert (summary(done.stdout)["created"], summary(done.stdout)["rejected"]) == ("1", "1")
    rows = list(csv.reader((tmp_path / "leads.rejects.csv").read_text().splitlines()))
    assert rows[1][:2] == ["2", "phone"]
    assert "country code" in rows[1][2]


def user_id(crm: pycrm.CRM, email: str) -> str:
    (user,) = [u for u in snapshot(crm)["User"] if u.email == email]
    return str(user.id)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--as", "nobody@corp.example"],
            "error: --as nobody@corp.example: no such user in tenant 'default'; "
            "pycrm users list --tenant default lists them",
        ),
        (
            ["--as", "mia@corp.example", "--encoding", "klingon"],
            "error: unknown encoding 'klingon'",
        ),
        (
            ["--as", "mia@corp.example", "--mapping", "missing.json"],
            "error: cannot read mapping missing.json: [Errno 2] No such file or directory: "
            "'missing.json'",
        ),
    ],
)
def test_the_cli_reports_bad_arguments_as_one_error_line_on_stderr_with_status_1(
    cli_db: tuple[str, pycrm.CRM], tmp_path: Path, args: list[str], message: str
) -> None:
    url, _ = cli_db
    path = tmp_path / "good.csv"
    path.write_bytes(b"name,email\nAnna Alt,anna@alt.example\n")

    done = cli("leads", path, "--db", url, *args)

    assert done.returncode == 1
    assert done.stderr.splitlines() == [message]
    assert done.stdout == ""


def test_the_cli_refuses_a_missing_file(cli_db: tuple[str, pycrm.CRM], tmp_path: Path) -> None:
    url, _ = cli_db
    missing = tmp_path / "nope.csv"
    done = cli("leads", missing, "--db", url, "--as", "mia@corp.example")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"error: {missing}: no such file"]


def test_the_cli_writes_undecodable_rows_to_the_rejects_file(
    cli_db: tuple[str, pycrm.CRM], tmp_path: Path
) -> None:
    url, crm = cli_db
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"name,email\nGood One,g@x.example\nRen\xe9 Latin,rl@x.example\n")

    done = cli("leads", path, "--db", url, "--as", "mia@corp.example", "--encoding", "utf-8")

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert b"Ren\xe9 Latin" in (tmp_path / "mixed.rejects.csv").read_bytes()
    assert set(leads_by_name(crm)) == {"Good One"}


def test_reject_is_what_the_report_and_the_writer_share() -> None:
    report = ImportReport(keep_rejects=1)
    out = io.StringIO()
    writer = RejectsWriter(out, ["name", None, "email"])  # type: ignore[list-item]
    for line in (2, 3):
        reject = Reject(line, "email", "is bad", {"name": "A", "email": "x"})
        report.reject(reject)
        writer(reject)
    assert report.rejected == 2
    assert len(report.rejects) == 1
    assert report.reasons == {"email: is bad": 2}
    assert out.getvalue().splitlines() == [
        "line,field,reason,name,email",
        "2,email,is bad,A,x",
        "3,email,is bad,A,x",
    ]


def test_the_importer_refuses_a_session_with_uncommitted_writes(crm: pycrm.CRM) -> None:
    # Its chunks commit in transactions of their own, which would wait on (SQLite)
    # or never see (PostgreSQL) the session's own uncommitted rows.
    people = staff(crm)
    with crm.session(actor=people.mia.id) as s:
        s.leads.capture("Typed By Hand", email="hand@h.example", source="phone")
        with pytest.raises(ConfigurationError, match="uncommitted writes"):
            s.importer.leads(text_rows(b"name,email\nFrom File,file@f.example\n"))
    assert set(leads_by_name(crm)) == {"Typed By Hand"}


# -- options and rows the importer refuses or reads as given --------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"batch": 5}, "batch"),
        ({"zeta": 1, "alpha": 2}, "alpha"),  # the first unknown option by name
        ({"start_line": None}, "start_line"),
        ({"start_line": -1}, "start_line"),
        ({"start_line": "2"}, "start_line"),
        ({"rejects": "rejects.csv"}, "rejects"),
        ({"progress": 3}, "progress"),
        ({"source": ""}, "source"),
        ({"source": "s" * 61}, "source"),
        ({"campaign": "c" * 201}, "campaign"),
        ({"lenient": "yes"}, "lenient"),
        ({"dry_run": 1}, "dry_run"),
        ({"default_region": "Germany"}, "default_region"),
        ({"external_id": 5}, "external_id"),
        ({"external_id": "id\x00"}, "external_id"),
        ({"mapping": {"name": 7}}, "mapping.name"),
        ({"mapping": ["name"]}, "mapping"),
        ({"chunk_size": "10"}, "chunk_size"),
        ({"chunk_size": 10.0}, "chunk_size"),
        ({"on_duplicate": "overwrite"}, "on_duplicate"),
    ],
)
def test_options_of_the_wrong_kind_are_refused_naming_the_option(
    crm: pycrm.CRM, options: dict[str, Any], field: str
) -> None:
    people = staff(crm)
    before = snapshot(crm)
    with pytest.raises(ValidationError) as info:
        import_leads(crm, people.mia.id, [{"name": "Ann Arbor"}], **options)
    assert info.value.field == field
    if field in options:
        assert info.value.value == options[field]
    assert info.value.reason
    assert snapshot(crm) == before


@pytest.mark.parametrize("rows", ["name\nAnn", b"name\nAnn", {"name": "Ann"}, 7, None])
def test_rows_that_are_not_an_iterable_of_rows_are_refused(crm: pycrm.CRM, rows: Any) -> None:
    people = staff(crm)
    with pytest.raises(ValidationError) as info:
        import_leads(crm, people.mia.id, rows)
    assert info.value.field == "rows"
    assert info.value.value == rows
    assert info.value.reason


@pytest.mark.parametrize("chunk_size", [1, 50_000])
def test_chunk_sizes_from_1_to_50000_are_accepted(crm: pycrm.CRM, chunk_size: int) -> None:
    people = staff(crm)
    seen: list[int] = []
    rows = [{"name": f"P{i}", "email": f"p{i}@x.example"} for i in range(3)]

    report = import_leads(crm, people.mia.id, rows, chunk_size=chunk_size, progress=seen.append)

    assert report.created == 3
    assert seen == ([1, 2, 3] if chunk_size == 1 else [3])
    assert 0 < report.elapsed < 60


def test_start_line_0_numbers_the_rows_from_0(crm: pycrm.CRM) -> None:
    people = staff(crm)
    rows = [{"name": "Ann Arbor", "email": "bad"}, {"name": "Bob Bauer", "email": "worse"}]

    report = import_leads(crm, people.mia.id, rows, start_line=0)

    assert [(r.line, r.field) for r in report.rejects] == [(0, "email"), (1, "email")]


def test_a_row_that_is_not_a_mapping_is_rejected_and_the_next_row_gives_the_header(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    listed = ["Bob Bauer", "bob@x.example", "a long tail of values that does not fit in a reason"]
    rows: list[Any] = [7, {"name": "Ann Arbor", "email": "ann@x.example"}, listed, "Cy"]
    out = io.StringIO()

    report = import_leads(
        crm,
        people.mia.id,
        rows,
        chunk_size=1,
        rejects=RejectsWriter(out, ["name", "email"]),
    )

    assert (report.rows, report.created, report.rejected) == (4, 1, 3)
    assert [(r.line, r.field) for r in report.rejects] == [(2, "row"), (4, "row"), (5, "row")]
    prefix = "is not a mapping of column to value: "
    assert [r.reason for r in report.rejects] == [
        prefix + "7",
        prefix + repr(listed)[:60],
        prefix + "'Cy'",
    ]
    assert [r.values for r in report.rejects] == [{}, {}, {}]
    assert out.getvalue().splitlines()[1] == f"2,row,{prefix}7,,"
    assert set(leads_by_name(crm)) == {"Ann Arbor"}


def test_a_mapping_row_with_surplus_values_under_none_is_rejected_with_them(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    out = io.StringIO()
    rows: list[Any] = [
        {"name": "Ann Arbor", "email": "ann@x.example", None: ["spare", "more"]},
        {"name": "Bob Bauer", "email": "bob@x.example", None: ("spare",)},
        {"name": "Cy Int", "email": "cy@x.example", None: "not a list"},
    ]

    report = import_leads(crm, people.mia.id, rows, rejects=RejectsWriter(out, ["name", "email"]))

    assert (report.created, report.rejected) == (1, 2)
    first, second = report.rejects
    assert (first.line, first.field, first.reason) == (2, "row", "has 4 values, the header has 2")
    assert first.extra == ("spare", "more")
    assert first.values == {"name": "Ann Arbor", "email": "ann@x.example"}
    assert (second.line, second.reason) == (3, "has 3 values, the header has 2")
    assert out.getvalue().splitlines()[1:] == [
        '2,row,"has 4 values, the header has 2",Ann Arbor,ann@x.example,spare,more',
        '3,row,"has 3 values, the header has 2",Bob Bauer,bob@x.example,spare',
    ]
    assert set(leads_by_name(crm)) == {"Cy Int"}


def test_values_are_stripped_and_blank_ones_are_empty(crm: pycrm.CRM) -> None:
    people = staff(crm)
    rows = [{"name": "  Ann Arbor ", "email": "   ", "phone": " ", "company": " Arbor AG "}]

    report = import_leads(
        crm, people.mia.id, rows, source=" Trade  Fair ", campaign=" Spring  Sale "
    )

    assert (report.created, report.rejected) == (1, 0)
    ann = leads_by_name(crm)["Ann Arbor"]
    assert (ann.company, ann.contact_points, ann.source, ann.campaign) == (
        "Arbor AG",
        (),
        "trade_fair",
        "Spring Sale",
    )
    with crm.session(actor=people.mia.id) as s:  # as a capture cleans them
        same = s.leads.capture("Bob Bauer", source=" Trade  Fair ", campaign=" Spring  Sale ")
    assert (same.source, same.campaign) == (ann.source, ann.campaign)


def test_the_rows_own_source_and_campaign_win_over_the_options(crm: pycrm.CRM) -> None:
    people = staff(crm)
    rows = [{"name": "Ann Arbor", "source": "Web Form", "campaign": "Autumn"}]

    import_leads(crm, people.mia.id, rows, source="fair", campaign="Spring")

    ann = leads_by_name(crm)["Ann Arbor"]
    assert (ann.source, ann.campaign) == ("web_form", "Autumn")


def test_an_external_id_from_a_generator_may_be_a_whole_number_but_must_be_a_key(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    rows = [
        {"id": 1001, "name": "Kai Keen"},
        {"id": True, "name": "Tru Bool"},
        {"id": "K" * 201, "name": "Lon Gid"},
        {"id": "K-\x07", "name": "Bel Char"},
        {"id": "K" * 200, "name": "Max Len"},
    ]

    report = import_leads(crm, people.mia.id, rows, external_id="id")

    assert report.created == 2
    assert [(r.line, r.field) for r in report.rejects] == [
        (3, "external_id"),
        (4, "external_id"),
        (5, "external_id"),
    ]
    assert report.rejects[0].reason == "must be text, not bool"
    assert report.rejects[0].values == {"id": True, "name": "Tru Bool"}
    assert report.rejects[1].reason == "is longer than 200 characters"
    assert report.rejects[2].reason == "contains control characters or unpaired surrogates"
    leads = leads_by_name(crm)
    assert (leads["Kai Keen"].external_id, leads["Max Len"].external_id) == ("1001", "K" * 200)


def test_lenient_rows_with_different_invalid_emails_are_no_duplicates_of_each_other(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    rows = [
        {"name": "Ann Arbor", "email": "ann(at)x", "phone": "12"},
        {"name": "Bob Bauer", "email": "bob(at)y", "phone": "34"},
    ]

    report = import_leads(crm, people.mia.id, rows, lenient=True)

    assert (report.created, report.skipped, report.merged) == (2, 0, 0)
    assert set(leads_by_name(crm)) == {"Ann Arbor", "Bob Bauer"}


# -- merging, routing, the record of an import, dry runs -------------------------------------


def test_merge_folds_each_row_into_the_record_or_earlier_row_it_shares_a_key_with(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    with crm.session(actor=people.mia.id) as s:
        s.leads.capture("Stored Person", email="Stored.Person@S.example", source="webform")
    data = (
        b"name,email,phone,company\n"
        b"Ann Arbor,ann@x.example,,\n"  # 2 created
        b"Bob Bauer,bob@x.example,,\n"  # 3 created
        b"Ann A.,ANN@x.example,+49 30 1111111,\n"  # 4 merged into 2
        b"Bob B.,bob@x.example,+49 30 2222222,\n"  # 5 merged into 3
        b"Ann Again,ann@x.example,,Arbor AG\n"  # 6 merged into 2
        b"New Phone,,+49 30 3333333,\n"  # 7 created
        # 8: the stored lead's email and row 7's phone: the stored record wins
        b"Stored,stored.person@s.example,+49 30 3333333,S Inc\n"
    )
    rows = text_rows(data)

    report = import_leads(crm, people.mia.id, rows, on_duplicate="merge")

    assert (report.created, report.merged, report.skipped, report.rejected) == (3, 4, 0, 0)
    assert report.reasons == {"merged into an earlier row": 3, "merged into a stored record": 1}
    leads = leads_by_name(crm)
    assert set(leads) == {"Stored Person", "Ann Arbor", "Bob Bauer", "New Phone"}
    ann, bob, stored = leads["Ann Arbor"], leads["Bob Bauer"], leads["Stored Person"]
    assert (points(ann, PointKind.EMAIL), points(ann, PointKind.PHONE)) == (
        ["ann@x.example"],
        ["+49301111111"],
    )
    assert ann.company == "Arbor AG"
    assert (points(bob, PointKind.EMAIL), points(bob, PointKind.PHONE)) == (
        ["bob@x.example"],
        ["+49302222222"],
    )
    # The same address in other letters is no new email of the stored lead.
    assert (points(stored, PointKind.EMAIL), points(stored, PointKind.PHONE)) == (
        ["Stored.Person@s.example"],
        ["+49303333333"],
    )
    assert stored.company == "S Inc"
    assert points(leads["New Phone"], PointKind.PHONE) == ["+49303333333"]


def test_contacts_take_the_import_options_and_a_namesake_is_weighed_not_merged(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    with crm.session(actor=people.sam.id) as s:
        acme = s.customers.create(name="Acme GmbH")
        carl = s.contacts.create("Carl Contact", customer_id=acme.id, emails=["carl@acme.example"])
    rows = [
        {"name": "Carl C.", "email": "CARL@acme.example", "phone": "030 7654321", "customer": ""},
        # A stored contact of the same name, no shared email or phone: the matcher decides.
        {"name": "Contact, Carl", "phone": "030 1234567", "customer": "ACME GmbH"},
    ]

    with crm.session(actor=people.sam.id) as s:
        report = s.importer.contacts(rows, on_duplicate="merge", source="ignored")

    assert (report.created, report.merged) == (1, 1)
    assert report.reasons == {"merged into a stored record": 1}
    contacts = {c.name: c for c in snapshot(crm)["Contact"]}
    assert set(contacts) == {"Carl Contact", "Contact, Carl"}
    assert points(contacts["Carl Contact"], PointKind.PHONE) == ["+49307654321"]
    assert contacts["Carl Contact"].id == carl.id
    assert contacts["Contact, Carl"].customer_id == acme.id


def test_imported_leads_are_scored_and_routed_by_their_own_fields(
    connect_crm: ConnectFn, fake_clock: FakeClock
) -> None:
    crm = connect_crm(
        routing_rules=[{"name": "de", "when": {"region": ["DE"]}, "pick": "first"}],
        default_region="DE",
    )
    people = staff(crm)
    fake_clock.advance(hours=3)
    rows = [
        {"name": "Ann Arbor", "email": "ann@x.example", "company": "Arbor AG", "region": "DE"},
        {"name": "Bob Bauer", "region": "US"},
    ]

    import_leads(crm, people.mia.id, rows)

    leads = leads_by_name(crm)
    ann, bob = leads["Ann Arbor"], leads["Bob Bauer"]
    assert ann.status is LeadStatus.ASSIGNED
    assert ann.owner_id in (people.sam.id, people.kim.id)
    assert (ann.assigned_at, ann.assigned_by) == (fake_clock.now(), "pycrm.routing:de")
    assert (bob.status, bob.owner_id, bob.assigned_at) == (LeadStatus.NEW, None, None)
    with crm.session(actor=people.mia.id) as s:  # scored as a capture of the same lead is
        twin = s.leads.capture(
            "Ann Twin", email="twin@x.example", company="Arbor AG", region="DE", source="import"
        )
        single = s.leads.capture("Bob Twin", region="US", source="import")
    assert (ann.score, bob.score) == (twin.score, single.score)
    assert (twin.score or 0) > (single.score or 0)


def test_an_imported_lead_is_audited_and_announced_in_the_form_a_capture_is(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    people = staff(crm)
    fake_clock.advance(minutes=5)
    heard: list[Any] = []

    def hear(sender: Any, event: Any) -> None:
        heard.append(event)

    pycrm.signals.lead_captured.connect(hear)
    try:
        import_leads(crm, people.mia.id, [{"name": "Ann Arbor", "email": "ann@x.example"}])
    finally:
        pycrm.signals.lead_captured.disconnect(hear)

    stored = snapshot(crm)
    (lead,) = stored["Lead"]
    (entry,) = [e for e in stored["AuditEntry"] if e.record_id == lead.id]
    assert (entry.tenant_id, entry.at, entry.actor_id, entry.department) == (
        lead.tenant_id,
        lead.created_at,
        people.mia.id,
        "marketing",
    )
    assert (entry.action, entry.record_type) == ("import", "lead")
    assert entry.snapshot == compact(to_dict(lead))
    (event,) = heard
    assert (event.name, event.tenant_id, event.actor_id, event.occurred_at) == (
        "lead_captured",
        lead.tenant_id,
        people.mia.id,
        fake_clock.now(),
    )
    assert (event.record_type, event.record_id, event.before, event.after) == (
        "lead",
        lead.id,
        None,
        entry.snapshot,
    )
    (message,) = [m for m in stored["OutboxMessage"] if m.name.startswith("lead_")]
    assert (message.id, message.name, message.tenant_id) == (
        event.id,
        "lead_captured",
        lead.tenant_id,
    )
    assert message.payload == to_dict(event)


@pytest.mark.parametrize("chunk_size", [1000, 1])
def test_a_dry_run_reports_what_the_import_would_do_and_writes_nothing(
    crm: pycrm.CRM, chunk_size: int
) -> None:
    people = staff(crm)
    stored_lead(crm, people.mia.id)
    before, audit_before = snapshot(crm), all_audit(crm)
    seen: list[int] = []
    written = io.StringIO()

    dry = import_leads(
        crm,
        people.mia.id,
        text_rows(BAD_FILE),
        dry_run=True,
        chunk_size=chunk_size,
        progress=seen.append,
        rejects=RejectsWriter(written, HEADER),
    )

    assert snapshot(crm) == before
    assert all_audit(crm) == audit_before
    assert seen == (list(range(1, 12)) if chunk_size == 1 else [11])
    assert len(written.getvalue().splitlines()) == 1 + 6
    real = import_leads(crm, people.mia.id, text_rows(BAD_FILE), chunk_size=chunk_size)
    assert (dry.rows, dry.created, dry.skipped, dry.rejected) == (11, 3, 2, 6)
    assert (dry.created, dry.skipped, dry.rejected) == (real.created, real.skipped, real.rejected)
    assert dry.reasons == real.reasons
    assert dry.elapsed > 0


def test_a_dry_run_records_no_refusal(crm: pycrm.CRM) -> None:
    people = staff(crm)
    with crm.session(actor=people.sam.id) as s:
        s.customers.create(name="Sam's AG", emails=["info@sams.example"])
    rows = [{"name": "Sams", "email": "info@sams.example", "phone": "030 1234567"}]
    audit_before = all_audit(crm)

    told: list[Reject] = []
    with crm.session(actor=people.mia.id) as s:
        dry = s.importer.customers(rows, on_duplicate="merge", dry_run=True, rejects=told.append)
    assert dry.rejected == 1
    assert told == dry.rejects
    assert all_audit(crm) == audit_before
    with crm.session(actor=people.mia.id) as s:  # the real import records the refused update
        s.importer.customers(rows, on_duplicate="merge")
    refused = [e for e in all_audit(crm) if e not in audit_before]
    assert [(e.action, e.record_type) for e in refused] == [("denied:update", "customer")]


@pytest.mark.parametrize("chunk_size", [1000, 1])
def test_a_row_sharing_a_key_an_earlier_merge_brought_merges_whatever_the_chunk_size(
    crm: pycrm.CRM, chunk_size: int
) -> None:
    people = staff(crm)
    with crm.session(actor=people.mia.id) as s:
        s.leads.capture("Stored Person", email="stored@s.example", source="webform")
    data = (
        b"name,email,phone,company\n"
        b"Ann Arbor,ann@x.example,,\n"
        b"Ann A.,ann@x.example,+49 30 1111111,\n"  # brings Ann's phone
        b"Ann Phone,,+49 30 1111111,Arbor AG\n"  # Ann's by that phone
        b"Stored,stored@s.example,+49 30 2222222,\n"  # brings the stored lead's phone
        b"Stored Phone,,+49 30 2222222,S Inc\n"  # the stored lead's by that phone
    )

    report = import_leads(
        crm, people.mia.id, text_rows(data), on_duplicate="merge", chunk_size=chunk_size
    )

    assert (report.created, report.merged, report.rejected) == (1, 4, 0)
    leads = leads_by_name(crm)
    assert set(leads) == {"Stored Person", "Ann Arbor"}
    ann, stored = leads["Ann Arbor"], leads["Stored Person"]
    assert (points(ann, PointKind.PHONE), ann.company) == (["+49301111111"], "Arbor AG")
    assert (points(stored, PointKind.PHONE), stored.company) == (["+49302222222"], "S Inc")


def test_contacts_import_from_a_file_without_a_customer_column(crm: pycrm.CRM) -> None:
    people = staff(crm)

    with crm.session(actor=people.mia.id) as s:
        report = s.importer.contacts(text_rows(b"name,email\nNora Nolink,nora@n.example\n"))

    assert (report.created, report.rejected) == (1, 0)
    (nora,) = snapshot(crm)["Contact"]
    assert (nora.name, nora.customer_id) == ("Nora Nolink", None)


def test_a_row_the_matcher_finds_like_two_stored_leads_is_one_duplicate(crm: pycrm.CRM) -> None:
    people = staff(crm)
    with crm.session(actor=people.mia.id) as s:
        for email in ("ada@engines.example", "ada.lovelace@engines.example"):
            s.leads.capture(
                "Ada Lovelace", source="webform", email=email, company="Analytical Engines Ltd"
            )
    rows = [{"name": "Lovelace, Ada", "company": "Analytical Engines", "phone": "+44 20 7946 0018"}]

    report = import_leads(crm, people.mia.id, rows)

    assert (report.created, report.skipped) == (0, 1)
    assert report.reasons == {"duplicate of a stored record": 1}


def test_a_customer_row_sharing_no_email_or_phone_is_matched_by_the_customer_model(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    with crm.session(actor=people.sam.id) as s:
        s.customers.create(
            "Analytical Engines Ltd",
            website="https://engines.example",
            emails=["info@engines.example"],
        )
    rows = [
        {"name": "Analytical Engines", "website": "https://www.engines.example/", "phone": ""},
        {"name": "Analytical Engines", "website": "https://other.example", "phone": ""},
    ]

    with crm.session(actor=people.sam.id) as s:
        report = s.importer.customers(rows)

    assert (report.created, report.skipped) == (1, 1)
    assert report.reasons == {"duplicate of a stored record": 1}
    websites = sorted(c.website or "" for c in snapshot(crm)["Customer"])
    assert websites == ["https://engines.example", "https://other.example"]


def test_a_closed_lead_re_imported_by_its_external_id_is_still_no_ones_duplicate(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    import_leads(crm, people.mia.id, text_rows(b"id,name,email\nK-1,Kai Keen,kai@keen.example\n"))
    with crm.session(actor=people.mia.id) as s:
        (kai,) = s.leads.search("Kai")
        s.leads.disqualify(kai.id, "no budget")
    data = b"id,name,email\nK-1,Kai Keen,kai@keen.example\nK-2,Kai Again,kai@keen.example\n"

    report = import_leads(crm, people.mia.id, text_rows(data), on_duplicate="merge")

    assert (report.created, report.skipped, report.rejected) == (1, 1, 0)
    assert report.reasons == {"already imported": 1}
    assert set(leads_by_name(crm)) == {"Kai Keen", "Kai Again"}


def test_a_contact_is_not_linked_to_a_customer_the_importer_may_not_read(
    connect_crm: ConnectFn,
) -> None:
    policy = Policy.from_dict(
        {"grants": [{"roles": ["events"], "resources": ["contact"], "actions": ["create", "read"],
                     "scope": "all"}]}
    )  # fmt: skip
    crm = connect_crm(policy=policy)
    with crm.session(actor=crm.system_actor) as s:
        s.org.create_department("events", "Events")
        eve = s.org.create_user(name="Eve", email="eve@x.example", department="events")
        s.customers.create("Acme GmbH")
    rows = [{"name": "Carl Contact", "email": "carl@acme.example", "customer": "Acme GmbH"}]

    with crm.session(actor=eve.id) as s:
        report = s.importer.contacts(rows)

    assert report.created == 1
    (carl,) = snapshot(crm)["Contact"]
    assert carl.customer_id is None


def test_a_stored_contact_whose_contact_points_are_hidden_is_no_duplicate(
    connect_crm: ConnectFn,
) -> None:
    policy = DEFAULT_POLICY.extend(
        {"fields": [{"resource": "contact", "field": "contact_points", "hidden": True,
                     "allowed": ["sales"]}]}
    )  # fmt: skip
    crm = connect_crm(policy=policy)
    people = staff(crm)
    with crm.session(actor=people.sam.id) as s:
        acme = s.customers.create(name="Acme GmbH")
        s.contacts.create("Carl Contact", customer_id=acme.id, emails=["carl@acme.example"])
    data = b"name,email\nCarl Lead,carl@acme.example\n"

    report = import_leads(crm, people.mia.id, text_rows(data))

    # Skipping the row would tell marketing the contact's hidden email.
    assert (report.created, report.skipped) == (1, 0)


def test_each_text_column_has_its_own_length_limit(crm: pycrm.CRM) -> None:
    people = staff(crm)
    rows = [
        {"name": "Long Source", "needs": "n" * 500, "source": "s" * 60},
        {"name": "Too Long Needs", "needs": "n" * 5001, "source": ""},
        {"name": "Too Long Source", "needs": "", "source": "s" * 61},
        {"name": "N" * 201, "needs": "", "source": ""},
    ]

    report = import_leads(crm, people.mia.id, rows)

    assert report.created == 1
    assert [(r.line, r.field) for r in report.rejects] == [(3, "needs"), (4, "source"), (5, "name")]
    assert leads_by_name(crm)["Long Source"].source == "s" * 60
    with crm.session(actor=people.sam.id) as s:
        report = s.importer.customers(
            [{"name": "Web AG", "website": "https://x.example/" + "w" * 400}]
        )
    assert report.created == 1


def test_needs_of_up_to_5000_characters_are_imported(crm: pycrm.CRM) -> None:
    people = staff(crm)

    report = import_leads(crm, people.mia.id, [{"name": "Long Needs", "needs": "n" * 5000}])

    assert report.created == 1
    assert leads_by_name(crm)["Long Needs"].needs == "n" * 5000


def test_an_import_in_a_tenant_writes_to_that_tenant(crm: pycrm.CRM) -> None:
    rows = [{"name": "Acme GmbH", "email": "info@acme.example"}]

    with crm.session(actor=crm.system_actor, tenant="north") as s:
        report = s.importer.customers(rows)

    assert report.created == 1
    with crm.session(actor=crm.system_actor, tenant="north") as s:
        assert [c.name for c in s.customers.search("Acme")] == ["Acme GmbH"]
    with crm.session(actor=crm.system_actor) as s:
        assert s.customers.search("Acme") == []
    with crm.session(actor=crm.system_actor, tenant="north") as s:  # a dry run there sees it
        again = s.importer.customers([*rows, {"name": "Beta AG", "email": ""}], dry_run=True)
    assert (again.created, again.skipped) == (1, 1)


def test_a_lead_importer_who_may_not_read_contacts_is_not_refused_for_it(
    connect_crm: ConnectFn,
) -> None:
    policy = Policy.from_dict(
        {"grants": [{"roles": ["events"], "resources": ["lead"], "actions": ["create", "read"],
                     "scope": "all"}]}
    )  # fmt: skip
    crm = connect_crm(policy=policy)
    with crm.session(actor=crm.system_actor) as s:
        s.org.create_department("events", "Events")
        eve = s.org.create_user(name="Eve", email="eve@x.example", department="events")
        acme = s.customers.create("Acme GmbH")
        s.contacts.create("Carl Contact", customer_id=acme.id, emails=["carl@acme.example"])
    rows = [{"name": "Carl Lead", "email": "carl@acme.example"}]

    with crm.session(actor=eve.id) as s:
        report = s.importer.leads(rows)

    assert (report.created, report.skipped) == (1, 0)  # the contact stays unseen


def test_a_customer_row_sharing_an_email_with_a_stored_contact_is_a_new_customer(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    with crm.session(actor=people.sam.id) as s:
        acme = s.customers.create(name="Acme GmbH")
        s.contacts.create("Carl Contact", customer_id=acme.id, emails=["carl@acme.example"])

    with crm.session(actor=people.sam.id) as s:
        report = s.importer.customers([{"name": "Carl Consulting", "email": "carl@acme.example"}])

    assert (report.created, report.skipped) == (1, 0)


def test_a_row_repeating_an_earlier_rows_email_is_skipped_as_its_duplicate(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    rows = [
        {"name": "Ann Arbor", "email": "ann@x.example"},
        {"name": "Ann Again", "email": "ANN@x.example"},
    ]

    report = import_leads(crm, people.mia.id, rows)

    assert (report.created, report.skipped) == (1, 1)
    assert report.reasons == {"duplicate of an earlier row": 1}


def test_a_dict_reader_numbers_a_multi_line_record_by_the_line_it_starts_on(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    data = (
        b"name,email,needs\n"  # 1
        b'Anna Alt,bad,"wants a demo\nand a quote"\n'  # 2-3
        b"\n"  # 4
        b'Bad Mail,bad,"x\ny\nz"\n'  # 5-7
        b"Last Row,bad,\n"  # 8
    )

    report = import_leads(crm, people.mia.id, text_rows(data), start_line=2)

    assert [(r.line, r.field) for r in report.rejects] == [(2, "email"), (5, "email"), (8, "email")]


def test_the_default_chunk_is_1000_rows(crm: pycrm.CRM) -> None:
    people = staff(crm)
    seen: list[int] = []

    report = import_leads(crm, people.mia.id, [{"name": ""}] * 1001, progress=seen.append)

    assert report.rejected == 1001
    assert seen == [1000, 1001]


def test_a_closed_lead_does_not_hide_an_open_one_found_by_the_same_probe(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    with crm.session(actor=people.mia.id) as s:
        closed = s.leads.capture("Old Lead", email="old@x.example", source="webform")
        s.leads.disqualify(closed.id, "no budget")
        s.leads.capture("Open Lead", email="open@x.example", source="webform")
    rows = [
        {"name": "New Old", "email": "old@x.example"},
        {"name": "New Open", "email": "open@x.example"},
    ]

    report = import_leads(crm, people.mia.id, rows)

    assert (report.created, report.skipped) == (1, 1)
    assert "New Old" in leads_by_name(crm)


def test_a_row_matching_a_merged_away_customer_merges_into_its_survivor(crm: pycrm.CRM) -> None:
    people = staff(crm)
    with crm.session(actor=crm.system_actor) as s:
        gone = s.customers.create(name="Acme GmbH", emails=["info@acme.example"])
        survivor = s.customers.create(name="Acme", emails=["sales@acme.example"])
        other = s.customers.create(name="Beta AG", emails=["info@beta.example"])
    with crm.session(actor=crm.system_actor) as s:
        s.dedupe.merge(survivor.id, [gone.id])
    rows = [
        {"name": "Acme Again", "email": "info@acme.example", "phone": "030 1234567"},
        {"name": "Beta Again", "email": "info@beta.example", "phone": "030 7654321"},
    ]

    with crm.session(actor=people.sam.id) as s:
        report = s.importer.customers(rows, on_duplicate="merge")

    assert (report.created, report.merged, report.rejected) == (0, 2, 0)
    customers = {c.id: c for c in snapshot(crm)["Customer"]}
    assert points(customers[survivor.id], PointKind.PHONE) == ["+49301234567"]
    assert points(customers[gone.id], PointKind.PHONE) == []
    assert points(customers[other.id], PointKind.PHONE) == ["+49307654321"]


def test_contacts_are_probed_even_when_the_leads_contact_points_are_hidden(
    connect_crm: ConnectFn,
) -> None:
    policy = DEFAULT_POLICY.extend(
        {"fields": [{"resource": "lead", "field": "contact_points", "hidden": True,
                     "allowed": ["sales"]}]}
    )  # fmt: skip
    crm = connect_crm(policy=policy)
    people = staff(crm)
    with crm.session(actor=people.sam.id) as s:
        acme = s.customers.create(name="Acme GmbH")
        s.contacts.create("Carl Contact", customer_id=acme.id, emails=["carl@acme.example"])
    data = b"name,email\nCarl Lead,carl@acme.example\n"

    report = import_leads(crm, people.mia.id, text_rows(data))

    assert (report.created, report.skipped) == (0, 1)  # the contact's email is readable


def test_a_mapping_row_with_a_column_the_first_row_lacks_is_rejected_not_dropped(
    crm: pycrm.CRM,
) -> None:
    people = staff(crm)
    rows = [
        {"name": "Anna Schmidt", "email": "anna@acme.example"},
        {"name": "Ben Ott", "email": "ben@acme.example", "phone": "+49 30 1234567"},
        {"name": "Cem Aydin"},  # fewer keys: the missing ones are empty
    ]

    report = import_leads(crm, people.mia.id, rows)

    assert (report.created, report.rejected) == (2, 1)
    [reject] = report.rejects
    assert (reject.line, reject.field) == (3, "phone")
    assert "first row" in reject.reason
    assert reject.extra == ("+49 30 1234567",)  # the value is kept for the rejects file
    assert set(leads_by_name(crm)) == {"Anna Schmidt", "Cem Aydin"}
