"""The ``pycrm`` command as the people who run it meet it (issue 19).

Each bad input gets its exact message, one ``error:`` line on standard error,
and its exit status; results go to standard output (tables, or JSON that
parses back); nothing is drawn or written before the checks pass.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

import pycrm
import pycrm.importing
from pycrm.cli import main
from pycrm.crm import DEFAULT_URL
from pycrm.domain.leads import Lead
from pycrm.errors import ConfigurationError, ValidationError

GERMANY = "is a country name, not a region code: write DE"
XX = (
    "is not a region with phone numbers: use a two-letter ISO 3166 code such as DE "
    "(Germany), FR (France) or CN (China)"
)
INTERRUPTED = re.compile(
    r"Interrupted: ([\d,]+) of ([\d,]+) rows were imported and committed; run the same command "
    r"again to import the rest \(rows already imported are skipped\)\."
)


@pytest.fixture(autouse=True)
def wide_plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite file with an admin, Mia (marketing) and Sam (sales) in tenant default."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    with pycrm.connect(url) as crm, crm.session(actor=crm.system_actor) as s:
        ada = s.org.create_user("Ada Admin", "ada@corp.example", "admin", roles=["admin"])
        s.org.create_user("Mia Marketing", "mia@corp.example", "marketing", manager_id=ada.id)
        s.org.create_user("Sam Sales", "sam@corp.example", "sales")
    return url


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def leads(url: str, tenant: str = "default") -> dict[str, Lead]:
    with pycrm.connect(url) as crm, crm.session(crm.system_actor, tenant=tenant) as s:
        return {lead.name: lead for lead in s._uow.repo(Lead).find()}


def stored(url: str) -> dict[str, int]:
    """Rows per table: any write shows here."""
    connection = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        return {t: connection.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        connection.close()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


LEADS = (
    "name,email,phone,company\n"
    "Nat Ional,nat@n.example,030 1234567,N GmbH\n"
    "Bad Phone,bad@b.example,12345,B GmbH\n"
    "Nat Again,NAT@n.example,,N GmbH\n"
    "Inter National,inter@i.example,+49 89 2180 4455,I AG\n"
)


# -- options are checked as the API checks them ----------------------------------------


@pytest.mark.parametrize(
    ("region", "reason"),
    [
        ("Germany", GERMANY),
        ("deu", "is an ISO 3166 alpha-3 code, not a region code: write DE"),
        ("XX", XX),
        ("Narnia", "is not a region code"),
    ],
)
def test_a_bad_default_region_is_one_error_line_before_anything_is_drawn_or_written(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], region: str, reason: str
) -> None:
    path = write(tmp_path / "leads.csv", LEADS)
    before = stored(db)

    status, out, err = run(
        capsys, "import", "leads", path, "--db", db, "--as", "mia@corp.example",
        "--default-region", region,
    )  # fmt: skip

    assert status == 1
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"error: --default-region {region!r} {reason}")
    assert stored(db) == before
    assert not (tmp_path / "leads.rejects.csv").exists()


def test_a_lower_case_default_region_is_its_code(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "leads.csv", LEADS)

    status, out, _ = run(
        capsys, "import", "leads", path, "--db", db, "--as", "mia@corp.example",
        "--default-region", "de",
    )  # fmt: skip

    assert status == 0, out
    found = leads(db)
    assert [p.value for p in found["Nat Ional"].contact_points] == [
        "nat@n.example",
        "+49301234567",
    ]
    assert pycrm.connect("memory://", default_region="de").default_region == "DE"


def test_the_api_takes_the_same_region_codes_and_refuses_names() -> None:
    crm = pycrm.connect("memory://")
    with pytest.raises(ConfigurationError, match=re.escape(f"default_region 'Germany' {GERMANY}")):
        pycrm.connect("memory://", default_region="Germany")
    with crm.session(crm.system_actor) as s:
        report = s.importer.leads([{"name": "A", "phone": "030 1234567"}], default_region="de")
    assert report.created == 1
    with crm.session(crm.system_actor) as s, pytest.raises(ValidationError) as info:
        s.importer.leads([{"name": "B"}], default_region="XX")
    assert (info.value.field, info.value.reason) == ("default_region", XX)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--chunk-size", "0"], "error: --chunk-size 0 must be a whole number from 1 to 50,000"),
        (["--source", " "], "error: --source ' ' is required and may not be blank"),
        (["--tenant", "no such/tenant"], "error: tenant 'no such/tenant' must be 1-64 letters, "
         "digits, '.', '_' or '-'"),
    ],
)  # fmt: skip
def test_other_bad_options_are_one_error_line_and_nothing_is_written(
    db: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    path = write(tmp_path / "leads.csv", LEADS)
    before = stored(db)
    status, out, err = run(
        capsys, "import", "leads", path, "--db", db, "--as", "mia@corp.example", *args
    )
    assert (status, out, err.splitlines()) == (1, "", [message])
    assert stored(db) == before
    assert not (tmp_path / "leads.rejects.csv").exists()


# -- files -------------------------------------------------------------------------------


def test_an_empty_file_is_refused_and_leaves_no_rejects_file(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "empty.csv", "")
    status, out, err = run(capsys, "import", "leads", path, "--db", db, "--as", "system")
    assert (status, out) == (1, "")
    assert err.splitlines() == [
        f"error: {path} has no header row: its first line must name the columns, "
        "a name column at least"
    ]
    assert not (tmp_path / "empty.rejects.csv").exists()


def test_a_file_without_a_name_column_is_refused_before_the_progress_bar(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "nameless.csv", "email,phone\na@x.example,\nb@x.example,\n")
    status, out, err = run(capsys, "import", "leads", path, "--db", db, "--as", "system")
    assert (status, out) == (1, "")
    assert err.splitlines() == [
        f"error: {path} has no column for the required field 'name' (its columns: email, "
        "phone); rename one, or map one with --mapping"
    ]
    assert not (tmp_path / "nameless.rejects.csv").exists()


def test_a_rejects_file_in_a_missing_folder_is_refused_before_the_import(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "leads.csv", LEADS)
    target = tmp_path / "nowhere" / "rejects.csv"
    before = stored(db)
    status, _, err = run(
        capsys, "import", "leads", path, "--db", db, "--as", "system", "--rejects", target
    )
    assert status == 1
    assert err.splitlines() == [
        f"error: --rejects {target}: the folder {target.parent} does not exist"
    ]
    assert stored(db) == before


# -- who acts ----------------------------------------------------------------------------


def test_a_refused_importer_is_named_with_who_may_and_no_bar_or_file_appears(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "leads.csv", LEADS)
    stale = write(tmp_path / "leads.rejects.csv", "from an earlier run\n")

    status, out, err = run(capsys, "import", "leads", path, "--db", db, "--as", "sam@corp.example")

    assert (status, out) == (1, "")
    assert err.splitlines() == [
        "error: Sam Sales <sam@corp.example> (sales) may not create lead; "
        "under this CRM's policy departments admin, marketing may"
    ]
    assert stale.read_text(encoding="utf-8") == "from an earlier run\n"  # untouched
    assert leads(db) == {}


def test_import_as_system_is_accepted(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "leads.csv", LEADS)
    status, out, _ = run(
        capsys, "import", "leads", path, "--db", db, "--as", "system", "--default-region", "DE"
    )
    assert status == 0, out
    assert set(leads(db)) == {"Nat Ional", "Inter National"}
    with pycrm.connect(db) as crm, crm.session(crm.system_actor) as s:
        assert {lead.created_by for lead in s._uow.repo(Lead).find()} == {"system"}


def test_an_unknown_user_in_an_empty_tenant_points_to_the_tenants_with_data(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "leads.csv", LEADS)
    status, _, err = run(
        capsys, "import", "leads", path, "--db", db, "--as", "mia@corp.example", "--tenant", "acme"
    )
    assert status == 1
    assert err.splitlines() == [
        "error: --as mia@corp.example: no such user in tenant 'acme'; tenant 'acme' holds no "
        "data; tenants with data: default (choose one with --tenant; pycrm tenants list)"
    ]


# -- users and tenants -------------------------------------------------------------------


def test_users_are_created_listed_and_deactivated_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'crm.db'}"
    base = ["--db", db, "--tenant", "acme"]

    status, out, err = run(
        capsys, "users", "create", "Hana Reyes", "hana@acme.example", "--department", "admin",
        "--roles", "admin", "--as", "system", *base,
    )  # fmt: skip
    assert status == 0, err
    assert out.startswith(
        "Created Hana Reyes <hana@acme.example> (admin, admin) in tenant acme: id "
    )
    status, out, err = run(
        capsys, "users", "create", "Mia [b]Chen[/b]", "mia@acme.example", "--department",
        "marketing", "--manager", "hana@acme.example", "--as", "hana@acme.example", "--json",
        *base,
    )  # fmt: skip
    assert status == 0, err
    mia = json.loads(out)
    assert {k: mia[k] for k in ("name", "email", "department", "roles", "active")} == {
        "name": "Mia [b]Chen[/b]",
        "email": "mia@acme.example",
        "department": "marketing",
        "roles": [],
        "active": True,
    }
    refused = run(
        capsys, "users", "create", "Eve", "eve@acme.example", "--department", "sales",
        "--as", "mia@acme.example", *base,
    )  # fmt: skip
    assert refused[0] == 1
    assert refused[2].splitlines() == [
        "error: Mia [b]Chen[/b] <mia@acme.example> (marketing) may not create user; under this "
        "CRM's policy department admin or role hr may"
    ]

    status, out, _ = run(capsys, "users", "list", *base)
    assert status == 0
    assert "Mia [b]Chen[/b]" in out  # user text is never read as markup
    assert "Hana Reyes" in out.split("Mia")[1]  # Mia's manager, by name

    status, out, _ = run(capsys, "users", "deactivate", "mia@acme.example", *base)
    assert status == 0
    assert out.split() == [
        "Deactivated",
        "Mia",
        "[b]Chen[/b]",
        "<mia@acme.example>;",
        "their",
        "open",
        "work",
        "went",
        "to",
        "their",
        "manager,",
        "or",
        "their",
        "team's",
        "manager",
        "(unassigned",
        "if",
        "they",
        "have",
        "neither)",
    ]
    status, out, _ = run(capsys, "users", "list", "--json", *base)
    assert [u["email"] for u in json.loads(out)] == ["hana@acme.example"]
    status, out, _ = run(capsys, "users", "list", "--all", "--json", *base)
    assert {u["email"]: u["active"] for u in json.loads(out)} == {
        "hana@acme.example": True,
        "mia@acme.example": False,
    }

    path = write(tmp_path / "leads.csv", LEADS)
    status, out, err = run(capsys, "import", "leads", path, "--as", "mia@acme.example", *base)
    assert (status, out) == (1, "")
    assert err.splitlines() == [
        "error: Mia [b]Chen[/b] <mia@acme.example> (marketing) is deactivated: an admin can "
        "reactivate them (pycrm users list --all)"
    ]

    status, out, _ = run(capsys, "tenants", "list", "--db", db, "--json")
    assert json.loads(out) == [{"tenant": "acme", "active_users": 1}]
    status, out, _ = run(capsys, "tenants", "list", "--db", db)
    assert status == 0
    assert re.search(r"acme\s*│\s*1", out)


def test_tenants_list_on_an_empty_database_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "tenants", "list", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert (status, out) == (0, "")
    assert err.splitlines() == [
        "No tenant holds any data yet: pycrm demo builds one, pycrm users create --as system "
        "starts one."
    ]


# -- the demo, then its commands -----------------------------------------------------------


def test_the_demo_ends_with_its_tenant_users_and_commands_that_work_as_pasted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'pycrm.db'}"
    status, out, err = run(capsys, "demo", "--db", db)
    assert status == 0, err
    tenant = re.search(r"The demo's data is in tenant (demo-[0-9a-z]{8})", out)
    assert tenant is not None, out
    tail = out.split("Your turn")[1]
    for email in (
        "hana@demo.example",
        "max@demo.example",
        "mia@demo.example",
        "li.na@demo.example",
    ):
        assert email in tail
    commands = [line.strip() for line in tail.splitlines() if line.strip().startswith("pycrm ")]
    assert len(commands) == 7
    assert all(f"--tenant {tenant[1]}" in c and f"--db {db}" in c for c in commands)

    results = {}
    for command in commands:
        args = shlex.split(command)[1:]
        results[" ".join(args[:2])] = run(capsys, *args)
    assert {name: result[0] for name, result in results.items()} == dict.fromkeys(results, 0)
    assert all("warning" not in result[2] for result in results.values())
    assert "Imported pycrm-demo-leads.csv (utf-8)" in results["import leads"][1]
    report = json.loads(results["report aging"][1])
    assert report["tenant"] == tenant[1]
    assert {row["bucket"] for row in report["rows"]} == {"current"}  # signed today, due next month
    assert (tmp_path / "funnel.png").read_bytes().startswith(b"\x89PNG")
    assert {"Clara Vogel", "Deniz Aydin"} <= set(leads(db, tenant[1]))
    # Every event the demo's work emitted is waiting for a relay, none dead.
    pending = re.search(r"(\d+) pending \((\d+) retrying\), (\d+) dead", results["outbox stats"][1])
    assert pending is not None
    assert int(pending[1]) > 0
    assert (pending[2], pending[3]) == ("0", "0")

    # The default tenant is empty: say where the data is instead of an empty table alone.
    status, out, err = run(capsys, "report", "funnel", "--db", db)
    assert status == 0
    assert err.splitlines() == [
        f"warning: tenant 'default' holds no data; tenants with data: {tenant[1]} "
        "(choose one with --tenant; pycrm tenants list)"
    ]
    assert "No data for this report yet." in out
    status, _, err = run(capsys, "report", "funnel", "--db", db, "--tenant", "demo-typo")
    assert status == 0
    assert err.startswith("warning: tenant 'demo-typo' holds no data; tenants with data:")


def test_the_demo_in_memory_says_its_data_is_gone(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "demo", "--db", "memory://", "--tenant", "show")
    assert status == 0
    assert "The demo ran in memory, so its data is gone now." in out
    assert "pycrm import" not in out.split("Your turn")[1]


def test_the_demo_dates_follow_the_clock(crm: pycrm.CRM) -> None:
    import io

    from rich.console import Console

    from pycrm.demo import run_demo

    figures = run_demo(crm, "dated", Console(file=io.StringIO(), width=120))
    today = crm.clock.now().date()
    assert figures["deal_expected_close"] == today  # won today, forecast this month
    assert (figures["first_due"] - today).days == 30  # first instalment next month
    assert [row[0] for row in figures["aging"] if row[2]] == ["current"]
    with crm.session(crm.system_actor, tenant="dated") as s:
        (forecast,) = s.analytics.forecast()
    assert forecast.period == today.strftime("%Y-%m")
    assert forecast.won == pycrm.Money.of("180000", "EUR")


# -- dry runs and JSON -----------------------------------------------------------------------


def test_a_dry_run_counts_what_the_import_would_do_and_writes_nothing(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "leads.csv", LEADS)
    base = ["import", "leads", path, "--db", db, "--as", "mia@corp.example"]
    before = stored(db)

    status, out, err = run(capsys, *base, "--default-region", "DE", "--dry-run", "--json")

    assert status == 0, err
    dry = json.loads(out)
    assert stored(db) == before
    assert not (tmp_path / "leads.rejects.csv").exists()
    assert dry["dry_run"] is True
    assert dry["rejects_file"] is None
    status, out, _ = run(capsys, *base, "--default-region", "DE", "--json")
    real = json.loads(out)
    assert status == 0
    keys = ("rows", "created", "merged", "skipped", "flagged", "rejected", "reasons")
    assert (
        {k: dry[k] for k in keys}
        == {k: real[k] for k in keys}
        == {
            "rows": 4,
            "created": 2,
            "merged": 0,
            "skipped": 1,
            "flagged": 0,
            "rejected": 1,
            "reasons": {
                "phone: is not a valid number in its country's numbering plan": 1,
                "duplicate of an earlier row": 1,
            },
        }
    )
    assert real["rejects_file"] == str(tmp_path / "leads.rejects.csv")
    assert real["tenant"] == "default"
    assert real["encoding"] == "utf-8"

    status, out, _ = run(capsys, *base, "--dry-run", "--default-region", "DE")
    assert "Dry run of leads.csv (utf-8): nothing was written" in out
    assert re.search(r"skipped\s*│\s*3", out)  # the real run stored them
    assert "Rejected rows were counted, not written (a dry run: add --rejects FILE)." in out


def test_a_dry_run_sees_its_own_earlier_chunks(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rows 4-6 repeat rows 1-3 in later chunks: a real import has committed those.
    rows = "".join(f"P{i},p{i % 3}@x.example\n" for i in range(6))
    path = write(tmp_path / "leads.csv", "name,email\n" + rows)
    base = ["import", "leads", path, "--db", db, "--as", "system", "--json", "--chunk-size", "2"]
    status, out, _ = run(capsys, *base, "--dry-run")
    assert status == 0
    dry = json.loads(out)
    assert leads(db) == {}
    real = json.loads(run(capsys, *base)[1])
    assert dry["reasons"] == real["reasons"] == {"duplicate of a stored record": 3}
    assert (dry["created"], real["created"]) == (3, 3)


def test_strict_and_json_exit_1_with_the_summary_when_a_row_is_rejected(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "leads.csv", "name,email,phone\nBoth Bad,nope,12345\n")
    status, out, _ = run(
        capsys, "import", "leads", path, "--db", db, "--as", "system", "--strict", "--json",
        "--default-region", "DE",
    )  # fmt: skip
    assert status == 1
    summary = json.loads(out)
    assert summary["rejected"] == 1
    (reason,) = summary["reasons"]
    assert reason.startswith("email: ")
    assert "; phone: is not a valid number" in reason
    with open(tmp_path / "leads.rejects.csv", encoding="utf-8", newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[1][:3] == ["2", "email, phone", reason]


def test_the_why_table_says_how_many_reasons_it_leaves_out(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pycrm.importing, "REASONS_SHOWN", 2)
    path = write(
        tmp_path / "leads.csv",
        "name,email,phone\nA,nope,\nB,b@x.example,12345\nC,c@x.example,abc\n"
        "D,d@x.example,,extra\nE,e@x.example,\n",
    )
    status, out, _ = run(capsys, "import", "leads", path, "--db", db, "--as", "system")
    assert status == 0
    why = out.split("Why")[1]
    reasons = [line for line in why.splitlines() if line.startswith("│")]
    assert len(reasons) == 3
    assert re.search(r"… 2 more reasons \(all of them with --json\)\s*│\s*2", reasons[-1])


def test_report_json_parses_back_with_owners_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'crm.db'}"
    assert run(capsys, "demo", "--db", db, "--tenant", "t1")[0] == 0
    for name in ("funnel", "stages", "forecast", "aging", "service", "subscriptions"):
        status, out, err = run(capsys, "report", name, "--db", db, "--tenant", "t1", "--json")
        assert (status, err) == (0, "")
        report = json.loads(out)
        assert report["report"] == name
        assert report["tenant"] == "t1"
        assert report["rows"], name
    status, out, _ = run(capsys, "report", "forecast", "--db", db, "--tenant", "t1", "--json")
    (row,) = json.loads(out)["rows"]
    assert row["owner_name"] == "Sam Weber"
    assert row["won"] == {"amount": "180000.00", "currency": "EUR"}
    status, out, _ = run(capsys, "report", "forecast", "--db", db, "--tenant", "t1")
    assert "Sam Weber" in out
    assert row["owner_id"] not in out
    status, out, _ = run(capsys, "report", "subscriptions", "--db", db, "--tenant", "t1", "--json")
    (plan,) = json.loads(out)["rows"]  # the demo's service plan, started today
    assert (plan["subscriptions"], plan["mrr"], plan["arr"]) == (
        1,
        {"amount": "1633.28", "currency": "EUR"},
        {"amount": "19599.36", "currency": "EUR"},
    )
    assert (plan["new_mrr"], plan["churn_rate"]) == (plan["mrr"], None)


def test_a_report_in_the_reporting_currency_names_its_rates_and_others_refuse_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'crm.db'}"
    assert run(capsys, "demo", "--db", db, "--tenant", "t1")[0] == 0
    with pycrm.connect(db) as crm, crm.session(actor=crm.system_actor, tenant="t1") as s:
        # a deal of Sam's in dollars, closing in the same month as his won one
        deal = s.deals.list()[0]
        s.rates.set("USD", "EUR", "0.9", on=date(2020, 1, 1))
        s.deals.create("US order", customer_id=deal.customer_id, amount=pycrm.Money.of("1000", "USD"),
                       expected_close=deal.expected_close, owner_id=deal.owner_id)  # fmt: skip
    args = ("report", "forecast", "--db", db, "--tenant", "t1", "--json")
    status, out, err = run(capsys, *args, "--in-reporting-currency")
    assert (status, err) == (0, "")
    report = json.loads(out)
    assert report["title"].endswith(", in EUR")
    (row,) = report["rows"]  # one row for Sam: EUR and USD together
    assert (row["currency"], row["won"], row["pipeline"]) == (
        "EUR",
        {"amount": "180000.00", "currency": "EUR"},
        {"amount": "900.00", "currency": "EUR"},  # 1,000 USD at 0.9
    )
    assert [(r["currency"], r["rate"]) for r in row["rates"]] == [("EUR", "1"), ("USD", "0.9")]
    status, out, _ = run(capsys, *args)
    assert sorted(r["currency"] for r in json.loads(out)["rows"]) == ["EUR", "USD"]
    status, out, err = run(capsys, "report", "funnel", "--db", db, "--tenant", "t1",
                           "--in-reporting-currency")  # fmt: skip
    assert status != 0
    assert "only forecast, aging, subscriptions" in err


# -- charts from the command line -----------------------------------------------------------


def test_a_chart_in_a_missing_folder_or_of_an_unknown_kind_is_refused_before_the_report(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "funnel.png"
    for option in ("--png", "--chart"):
        status, out, err = run(capsys, "report", "funnel", "--db", db, option, missing)
        assert (status, out) == (1, "")
        assert err.splitlines() == [
            f"error: cannot write the chart {missing}: the folder {missing.parent} does not exist"
        ]
    gif = tmp_path / "funnel.gif"
    status, _, err = run(capsys, "report", "funnel", "--db", db, "--chart", gif)
    assert err.splitlines() == [f"error: chart file {gif} must end in .png, .svg or .pdf"]


@pytest.mark.parametrize(
    ("suffix", "magic"), [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")]
)
def test_the_chart_format_follows_the_file_extension(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str, magic: bytes
) -> None:
    target = tmp_path / f"aging{suffix.upper()}"
    status, _, err = run(capsys, "report", "aging", "--db", db, "--chart", target)
    assert status == 0, err
    assert target.read_bytes().startswith(magic)
    assert f"Chart written to {target}" in err


def test_the_missing_charts_extra_is_named_with_its_brackets(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    status, _, err = run(capsys, "report", "funnel", "--db", db, "--png", tmp_path / "f.png")
    assert status == 1
    assert err.splitlines() == ["error: charts need matplotlib: pip install 'pycrm[charts]'"]


# -- database URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("./other.db", "error: database URL './other.db' is not a URL: for the SQLite file "
         "other.db write sqlite:///other.db"),
        ("mysql://user:secret@host/crm", "error: cannot use database URL "
         "'mysql://user:***@host/crm': pycrm runs on SQLite (sqlite:///FILE) and PostgreSQL "
         "(postgresql+psycopg://USER@HOST/DATABASE), not mysql"),
        ("postgresql+psycopg2://u@h/db", "error: cannot use database URL "
         "'postgresql+psycopg2://u@h/db': its driver psycopg2 is not installed (No module named "
         "'psycopg2'); install it with pip install 'pycrm[postgresql]' and write "
         "postgresql+psycopg://"),
    ],
)  # fmt: skip
def test_an_unusable_database_url_says_what_to_write_instead(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, url: str, message: str
) -> None:
    if "psycopg2" in url and importlib.util.find_spec("psycopg2") is not None:
        pytest.skip("psycopg2 is installed here")
    status, out, err = run(capsys, "tenants", "list", "--db", url)
    assert (status, out, err.splitlines()) == (1, "", [message])
    assert not (tmp_path / "other.db").exists()


def test_a_postgresql_server_that_is_down_is_a_connection_error_not_a_schema_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/nothing?connect_timeout=2"
    status, _, err = run(capsys, "report", "funnel", "--db", url)
    assert status == 1
    (line,) = err.splitlines()
    assert line.startswith(f"error: cannot open the pycrm database at {url}: cannot connect: ")
    assert "schema" not in line


# -- the command itself ------------------------------------------------------------------------


def test_python_dash_m_pycrm_is_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pycrm", "--version"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, f"pycrm {pycrm.__version__}\n", "")


def test_help_describes_the_options_the_reports_and_shows_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def help_of(*args: str) -> str:
        with pytest.raises(SystemExit) as done:
            main([*args, "--help"])
        assert done.value.code == 0
        return " ".join(capsys.readouterr().out.split())

    text = help_of("import")
    assert f"(default: {DEFAULT_URL})" in text
    assert "--on-duplicate {skip,merge,flag} a row matching a stored record" in text
    assert "--chunk-size N rows per transaction, 1 to 50,000" in text
    assert "(default: 1000)" in text
    assert "--dry-run check and count every row" in text
    report = help_of("report")
    for line in ("funnel leads per source", "forecast per month of expected close",
                 "aging unpaid receivables", "service tickets per priority"):  # fmt: skip
        assert line in report
    assert "completion" in help_of()


@pytest.mark.parametrize(("shell", "marker"), [("bash", "_shtab_pycrm"), ("zsh", "#compdef pycrm")])
def test_shell_completion_scripts_know_the_commands(
    capsys: pytest.CaptureFixture[str], shell: str, marker: str
) -> None:
    status, out, _ = run(capsys, "completion", shell)
    assert status == 0
    assert marker in out
    for word in ("import", "report", "users", "tenants", "--default-region", "--dry-run"):
        assert word in out


# -- Ctrl-C -------------------------------------------------------------------------------------


ROWS = 6000
CHUNK = 250


def count_leads(db: Path) -> int:
    connection = sqlite3.connect(db, timeout=30)
    try:
        return int(connection.execute("SELECT count(*) FROM pycrm_leads").fetchone()[0])
    finally:
        connection.close()


def test_ctrl_c_during_an_import_says_what_was_committed_in_one_line_and_a_rerun_resumes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "crm.db"
    url = f"sqlite:///{db}"
    with pycrm.connect(url) as crm, crm.session(crm.system_actor) as s:
        s.org.create_user("Mia", "mia@corp.example", "marketing")
    path = tmp_path / "leads.csv"
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "name", "email"])
        for i in range(ROWS):
            email = f"person{i}@x.example" if i % 1000 != 999 else f"person{i} at x"
            writer.writerow([f"EXT-{i}", f"Person {i}", email])
    command = [
        sys.executable, "-m", "pycrm", "import", "leads", str(path), "--db", url,
        "--as", "mia@corp.example", "--chunk-size", str(CHUNK), "--external-id", "id",
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}

    def default_sigint() -> None:  # whatever the test runner's parent ignores
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        preexec_fn=default_sigint, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while count_leads(db) < 2 * CHUNK:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)

    assert process.returncode == 130, err
    assert "Traceback" not in err + out
    last = err.strip().splitlines()[-1]
    said = INTERRUPTED.fullmatch(last)
    assert said is not None, err
    done = int(said[1].replace(",", ""))
    assert said[2] == f"{ROWS:,}"
    assert done % CHUNK == 0
    assert 0 < done < ROWS
    assert count_leads(db) >= done - done // 1000  # every committed row is in

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert count_leads(db) == ROWS - ROWS // 1000
    with pycrm.connect(url) as crm, crm.session(crm.system_actor) as s:
        ids = [lead.external_id for lead in s._uow.repo(Lead).find()]
    assert len(ids) == len(set(ids))


# -- the test suite's own summary ---------------------------------------------------------------


def test_skipped_postgresql_tests_are_counted_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYCRM_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_tenants.py", "-k", "lists_the_tenants"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    assert "SKIPPED [" not in done.stdout
    assert (
        "1 skipped: no PostgreSQL server: set PYCRM_TEST_POSTGRES_URL (see the README)"
        in done.stdout
    )


# -- a mailbox into the service desk ---------------------------------------------------------


def test_pycrm_mail_reads_a_maildir_into_tickets_once_and_names_refused_emails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mailbox

    db = f"sqlite:///{tmp_path / 'crm.db'}"
    box = mailbox.Maildir(tmp_path / "support")
    emails = [
        "From: anna@acme.example\nSubject: Printer offline\nMessage-ID: <a1@acme.example>\n\n"
        "Since this morning.\n",
        "From: anna@acme.example\nSubject: Re: Printer offline\nMessage-ID: <a2@acme.example>\n"
        "In-Reply-To: <a1@acme.example>\n\nStill offline.\n",
        "From: Anna <anna@acme.example>\nSubject: Out of office\nAuto-Submitted: auto-replied\n"
        "Message-ID: <a3@acme.example>\n\nBack on Monday.\n",
    ]
    for number, text in enumerate(emails):
        key = box.add(text.encode())
        box[key].set_date(1_700_000_000 + number)  # not read by pycrm; the key orders them
    status, out, err = run(capsys, "mail", tmp_path / "support", "--db", db, "--json")
    assert (status, err) == (0, "")
    assert json.loads(out) == {
        "opened": 1, "replied": 1, "duplicate": 0, "ignored": 1, "refused": 0, "refusals": [],
    }  # fmt: skip
    status, out, _ = run(capsys, "mail", tmp_path / "support", "--db", db)
    assert status == 0
    assert "0 opened, 0 replied, 2 duplicate, 1 ignored, 0 refused" in out
    with pycrm.connect(db) as crm, crm.session(actor=crm.system_actor) as s:
        (ticket,) = s.tickets.list()
        assert [m.body for m in ticket.messages] == ["Still offline."]
    mbox = mailbox.mbox(tmp_path / "more.mbox")
    mbox.add(b"From: bob@acme.example\nSubject: New one\nMessage-ID: <b1@acme.example>\n\nHi\n")
    mbox.close()
    status, out, err = run(
        capsys, "mail", tmp_path / "more.mbox", "--db", db, "--as", "nobody@x.example"
    )
    assert status == 1
    assert "nobody@x.example" in err
    long = "c" * 81  # a category is at most 80 characters: the desk refuses each email
    status, out, err = run(capsys, "mail", tmp_path / "more.mbox", "--db", db, "--category", long)
    assert status == 1
    assert "1 refused" in out
    assert err.startswith("email 1: ")
    assert "category" in err
    status, out, err = run(capsys, "mail", tmp_path / "nowhere", "--db", db)
    assert status == 1
    assert "no mailbox at" in err
