"""``pycrm retention``: list a tenant's retention rules, and run them.

``pycrm retention run`` applies the rules through ``s.retention.run`` (each
batch in a transaction of its own) and prints, per rule, how many records it
selected, acted on, skipped for a legal hold and failed on; ``--dry-run``
changes nothing and says what it *would* do. The exit status is 1 when an
action failed for some record, so a scheduler notices.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape

from pycrm.crm import connect
from pycrm.domain.retention import RetentionRule
from pycrm.services.retention import RetentionReport, RuleOutcome
from pycrm.terminal import actor_for, explained, print_json, table, tenant_name

__all__ = ["run_retention"]

#: What each action did, as the past tense the summary prints.
_DONE = {"erase": "erased", "delete": "deleted", "clear_bodies": "cleared"}


def run_retention(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``pycrm retention run`` and ``pycrm retention rules``; return the exit status."""
    with connect(args.db) as crm, explained(crm, args.tenant):
        actor = actor_for(crm, args.actor, args.tenant)
        if args.retention_command == "rules":
            with crm.session(actor=actor, tenant=args.tenant) as s:
                rules = s.retention.rules()
            _print_rules(rules, args, out, err)
            return 0
        with crm.session(actor=actor, tenant=args.tenant) as s:
            report = s.retention.run(args.rule, batch=args.batch, dry_run=args.dry_run)
    if args.json:
        print_json(_report_json(report))
    else:
        _print_report(report, args, out, err)
    return 1 if report.total("failed") else 0


def _print_rules(
    rules: tuple[RetentionRule, ...], args: argparse.Namespace, out: Console, err: Console
) -> None:
    if args.json:
        print_json([rule.to_json() for rule in rules])
        return
    if not rules:
        err.print(
            f"Tenant {escape(tenant_name(args.tenant))!r} has no retention rules: nothing is "
            "erased, deleted or cleared (see docs/privacy.md, Retention).",
            soft_wrap=True,
            highlight=False,
        )
        return
    rows = [
        [
            rule.name,
            rule.record_type,
            rule.action,
            f"{rule.after} after {rule.measured_from}",
            "; ".join(f"{k} in {', '.join(v)}" for k, v in rule.when.items()) or "all",
        ]
        for rule in rules
    ]
    out.print(
        table(
            f"Retention rules of tenant {tenant_name(args.tenant)}",
            ["rule", "records", "action", "when due", "selection"],
            rows,
        )
    )


def _outcome_json(outcome: RuleOutcome) -> dict[str, object]:
    return {
        "rule": outcome.rule,
        "action": outcome.action,
        "selected": outcome.selected,
        "done": outcome.done,
        "skipped_on_hold": outcome.skipped_on_hold,
        "failed": outcome.failed,
        "batches": outcome.batches,
        "failures": [{"id": id, "reason": reason} for id, reason in outcome.failures],
        "held": list(outcome.held),
    }


def _report_json(report: RetentionReport) -> dict[str, object]:
    return {
        "at": report.at.isoformat(),
        "dry_run": report.dry_run,
        "rules": [_outcome_json(outcome) for outcome in report.rules],
    }


def _print_report(
    report: RetentionReport, args: argparse.Namespace, out: Console, err: Console
) -> None:
    if not report.rules:
        err.print(
            f"Tenant {escape(tenant_name(args.tenant))!r} has no retention rules: nothing to do.",
            soft_wrap=True,
            highlight=False,
        )
        return
    would = "would be " if report.dry_run else ""
    for outcome in report.rules:
        done = _DONE[outcome.action]
        out.print(
            f"{escape(outcome.rule)}: {outcome.selected:,} selected, {outcome.done:,} {would}{done}, "
            f"{outcome.skipped_on_hold:,} skipped on hold, {outcome.failed:,} failed"
            + ("" if report.dry_run else f" ({outcome.batches:,} batches)"),
            highlight=False,
            soft_wrap=True,
        )
        for id, reason in outcome.failures:
            err.print(f"{escape(outcome.rule)}: {id}: {escape(reason)}", highlight=False)
    if report.dry_run:
        err.print("Dry run: nothing was changed.", highlight=False)
