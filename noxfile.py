"""Developer tasks: ``nox -s tests lint typecheck docs examples bench mutants fuzz``.

The PostgreSQL tests need ``PYCRM_TEST_POSTGRES_URL`` (see ``../shared/ci`` for
a throwaway server); without it they are skipped.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs", "examples"]
nox.options.reuse_existing_virtualenvs = True

DEV = ".[dev]"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite on memory, SQLite and (if configured) PostgreSQL."""
    session.install("-e", DEV)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff")
    session.run("ruff", "check")
    session.run("ruff", "format", "--check")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package and the benchmarks."""
    session.install("-e", DEV)
    session.run("mypy")
    session.run("mypy", "--strict", *sorted(glob.glob("benchmarks/*.py")))


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site, failing on any warning."""
    session.install("-e", DEV)
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def examples(session: nox.Session) -> None:
    """Run every example script."""
    session.install("-e", DEV)
    for path in sorted(glob.glob("examples/*.py")):
        session.run("python", os.path.abspath(path))


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks and print their ratios (not part of the default sessions).

    The ``bench`` extra brings the dedupe benchmark's anchors (recordlinkage, splink).
    """
    session.install("-e", ".[dev,bench]")
    for path in sorted(glob.glob("benchmarks/*_bench.py")):
        session.run("python", path, *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """Fuzz every public call long: every hostile value on every argument, 5,000 sampled calls.

    ``PYCRM_FUZZ_EXAMPLES`` sets the number of sampled calls per backend (not a
    default session; the test suite runs the same test briefly).
    """
    session.install("-e", DEV)
    examples = os.environ.get("PYCRM_FUZZ_EXAMPLES", "5000")
    session.run(
        "pytest", "tests/test_fuzz.py", *session.posargs, env={"PYCRM_FUZZ_EXAMPLES": examples}
    )


#: The files under mutation testing and the test files that exercise each one.
#: A mutant runs only its file's tests (and of those, mutmut runs only the ones
#: that reach the mutated function), on memory and SQLite, stopping at the
#: first failure.
MUTATION_TARGETS: dict[str, tuple[str, ...]] = {
    "src/pycrm/domain/money.py": (
        "tests/test_money.py",
        "tests/test_receivables.py",
        "tests/test_contracts.py",
        "tests/test_serialization.py",
    ),
    "src/pycrm/domain/calendars.py": (
        "tests/test_business_hours_properties.py",
        "tests/test_tickets.py",
        "tests/test_serialization.py",
    ),
    "src/pycrm/domain/merging.py": (
        "tests/test_survivorship.py",
        "tests/test_dedupe.py",
        "tests/test_dedupe_properties.py",
    ),
    "src/pycrm/domain/permissions.py": (
        "tests/test_policy.py",
        "tests/test_permissions.py",
        "tests/test_permission_matrix.py",
        "tests/test_permission_properties.py",
        "tests/test_org.py",
    ),
    "src/pycrm/rules/*.py": (
        "tests/test_rules.py",
        "tests/test_example_plugin.py",
        "tests/test_round_robin_concurrency.py",
        "tests/test_hooks_documented.py",
        "tests/test_leads.py",
        "tests/test_tasks.py",
        "tests/test_contracts.py",
        "tests/test_quotes.py",
        "tests/test_subscriptions.py",
    ),
    "src/pycrm/services/imports.py": (
        "tests/test_import.py",
        "tests/test_matching.py::test_an_import_row_sharing_no_email_or_phone_is_matched_by_the_engine",
        "tests/test_shapes.py::test_an_import_maps_emails_and_phones_as_it_maps_email_and_phone",
    ),
    "src/pycrm/session.py": (
        "tests/test_joined_session.py",
        "tests/test_signals_outbox.py",
        "tests/test_failures.py",
        "tests/test_tenants.py",
        "tests/test_audit.py",
        "tests/test_analytics.py",
        "tests/test_side_paths.py",
        "tests/test_customers.py",
        "tests/test_org.py",
        "tests/test_rules.py::test_tasks_made_by_followups_do_not_beget_more_tasks",
    ),
    "src/pycrm/services/guard.py": (
        "tests/test_permissions.py",
        "tests/test_permission_matrix.py",
        "tests/test_permission_properties.py",
        "tests/test_tenants.py",
        "tests/test_side_paths.py",
        "tests/test_audit.py",
        "tests/test_export.py",
        "tests/test_sharing.py",
        "tests/test_custom_fields.py",
        # the read-policy tests one by one: its random property is too slow per mutant
        "tests/test_read_policy.py::test_an_admins_audit_find_does_not_show_another_users_private_note",
        "tests/test_read_policy.py::test_audit_find_leaves_fields_hidden_by_the_policy_out_of_snapshots_and_changes",
        "tests/test_read_policy.py::test_audit_find_leaves_custom_fields_the_user_may_not_read_out",
        "tests/test_read_policy.py::test_a_total_order_amount_segment_reveals_no_contract_totals_to_a_user_who_may_not_read_contracts",
        "tests/test_read_policy.py::test_a_last_activity_segment_ignores_other_users_private_notes",
        "tests/test_read_policy.py::test_dedupe_check_scan_and_cleansing_report_return_no_lead_to_a_user_without_a_lead_grant",
        "tests/test_read_policy.py::test_leads_convert_hands_back_customer_contact_and_deal_with_hidden_fields_empty",
        "tests/test_read_policy.py::test_leads_convert_hands_back_no_existing_customer_the_user_may_not_read",
        "tests/test_read_policy.py::test_dedupe_merge_and_unmerge_hand_back_the_survivor_with_hidden_fields_empty",
        "tests/test_read_policy.py::test_audit_find_on_a_merge_shows_no_before_image_of_another_users_private_note",
        "tests/test_read_policy.py::test_find_payment_does_not_probe_payments_hidden_from_the_user",
        "tests/test_read_policy.py::test_a_field_rule_hiding_audit_snapshots_and_changes_is_applied",
        "tests/test_read_policy.py::test_a_merge_shows_no_before_image_of_a_duplicate_the_user_may_no_longer_read",
        "tests/test_read_policy.py::test_dedupe_merge_refuses_records_the_user_may_update_or_delete_but_not_read",
    ),
    "src/pycrm/services/dedupe.py": (
        "tests/test_dedupe.py",
        "tests/test_dedupe_properties.py",
        "tests/test_permissions.py",
        # fitting, linking and the models: the matching engine's tests, through dedupe
        "tests/test_matching.py",
        "tests/test_normalise_properties.py::test_lenient_mode_keeps_invalid_values_flagged_and_reports_them",
    ),
    "src/pycrm/adapters/memory/store.py": (
        "tests/test_repositories.py",
        "tests/test_tenants.py",
        "tests/test_failures.py",
        "tests/test_stateful.py",
        "tests/test_customers.py",
        "tests/test_signals_outbox.py",
    ),
    "src/pycrm/adapters/sqlalchemy/store.py": (
        "tests/test_repositories.py",
        "tests/test_joined_session.py",
        "tests/test_tenants.py",
        "tests/test_failures.py",
        "tests/test_stateful.py",
        "tests/test_customers.py",
        "tests/test_signals_outbox.py",
        "tests/test_injection.py",
    ),
}

#: mutmut's exit codes that mean a test noticed the mutant (failure, pytest
#: error, CPU-time limit, type check).
_DETECTED = {1, 3, 24, -24, 152, 255, 36, 37}


def _mutmut_config(target: str, tests: tuple[str, ...]) -> str:
    quoted = ", ".join(json.dumps(t) for t in tests)
    return f"""
[tool.mutmut]
source_paths = ["src"]
only_mutate = [{json.dumps(target)}]
pytest_add_cli_args_test_selection = [{quoted}]
pytest_add_cli_args = ["-k", "not postgresql", "-p", "no:cacheprovider", "-n", "0"]
timeout_multiplier = 1.0
timeout_constant = 10.0
use_git_change_detection = false
also_copy = ["docs"]
"""


def _mutation_scores(workdir: Path) -> dict[str, tuple[int, int, list[str]]]:
    """Per mutated file: (detected, total, names of the undetected mutants)."""
    scores: dict[str, tuple[int, int, list[str]]] = {}
    for meta in sorted((workdir / "mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if not codes:
            continue
        undetected = sorted(name for name, code in codes.items() if code not in _DETECTED)
        source = str(meta.relative_to(workdir / "mutants")).removesuffix(".meta")
        scores[source] = (len(codes) - len(undetected), len(codes), undetected)
    return scores


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing with mutmut; prints each file's score (not a default session).

    ``nox -s mutants`` covers every file of ``MUTATION_TARGETS``;
    ``nox -s mutants -- src/pycrm/domain/money.py`` only the ones given. One
    mutant at a time; working copies stay in ``.mutants/`` (ignored by git).
    """
    session.install("-e", DEV)
    targets = session.posargs or list(MUTATION_TARGETS)
    unknown = [t for t in targets if t not in MUTATION_TARGETS]
    if unknown:
        session.error(f"not under mutation testing: {unknown}; see MUTATION_TARGETS")
    root = Path.cwd()
    results: dict[str, tuple[int, int, list[str]]] = {}
    for target in targets:
        workdir = (
            root
            / ".mutants"
            / target.removeprefix("src/pycrm/")
            .replace("/", "_")
            .replace("*", "all")
            .removesuffix(".py")
        )
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        # docs too: some tests read the pages they check (test_hooks_documented.py)
        for name in ("src", "tests", "docs"):
            (workdir / name).symlink_to(root / name)
        pyproject = (root / "pyproject.toml").read_text()
        (workdir / "pyproject.toml").write_text(
            pyproject + _mutmut_config(target, MUTATION_TARGETS[target])
        )
        with session.chdir(workdir):
            session.run(
                "mutmut",
                "run",
                "--max-children",
                "1",
                env={"PYCRM_HYPOTHESIS_PROFILE": "mutation"},
            )
        results.update(_mutation_scores(workdir))
    session.log("mutation score: detected / mutants")
    for source, (detected, total, undetected) in results.items():
        session.log(f"  {source}: {detected}/{total} = {100 * detected / total:.1f}%")
        for name in undetected:
            session.log(f"      not detected: {name}")
