"""``pycrm users`` and ``pycrm tenants``: who may work in the CRM, and where its data is.

These commands let a script set up the users an import runs as
(``--as EMAIL``) without writing Python: ``pycrm users create`` (the first
admin ``--as system``), ``pycrm users list`` and ``pycrm users deactivate``;
``pycrm tenants list`` names the tenants that hold data, such as the one the
demo built.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.markup import escape

from pycrm.crm import CRM, connect
from pycrm.domain.org import User
from pycrm.terminal import (
    actor_for,
    explained,
    print_json,
    table,
    tenant_name,
    user_names,
    warn_if_empty,
)

__all__ = ["run_tenants", "run_users"]


def _user_id(crm: CRM, who: str, tenant: str | None) -> str:
    """A user's id from ``who``, an email or an id."""
    actor = actor_for(crm, who, tenant)
    return actor if isinstance(actor, str) else who


def _row(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "department": user.department,
        "roles": list(user.roles),
        "active": user.active,
    }


def run_users(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``pycrm users create|list|deactivate``; return the exit status."""
    with connect(args.db) as crm, explained(crm, args.tenant):
        tenant = tenant_name(args.tenant)
        if args.users_command == "list":
            warn_if_empty(crm, args.tenant, err)
        actor = actor_for(crm, args.actor, args.tenant)
        if args.users_command == "create":
            manager = _user_id(crm, args.manager, args.tenant) if args.manager else None
            roles = [r.strip() for r in args.roles.split(",") if r.strip()]
            with crm.session(actor=actor, tenant=args.tenant) as s:
                user = s.org.create_user(
                    name=args.name,
                    email=args.email,
                    department=args.department,
                    roles=roles,
                    manager_id=manager,
                )
            if args.json:
                print_json(_row(user))
            else:
                out.print(
                    f"Created {escape(user.name)} <{escape(user.email)}> ({escape(user.department)}"
                    f"{', ' + escape(', '.join(user.roles)) if user.roles else ''}) "
                    f"in tenant {escape(tenant)}: id {user.id}",
                    highlight=False,
                )
            return 0
        if args.users_command == "list":
            with crm.session(actor=actor, tenant=args.tenant) as s:
                users = s.org.users(department=args.department, active=None if args.all else True)
            if args.json:
                print_json([_row(u) for u in users])
                return 0
            managers = user_names(crm, args.tenant, [u.manager_id for u in users])
            columns = ["name", "email", "department", "roles", "manager", "id"]
            if args.all:
                columns.insert(5, "active")
            rows = [
                [
                    u.name,
                    u.email,
                    u.department,
                    ", ".join(u.roles),
                    managers.get(u.manager_id or "", ""),
                ]
                + (["yes" if u.active else "no"] if args.all else [])
                + [u.id]
                for u in users
            ]
            out.print(table(f"Users in tenant {tenant}", columns, rows))
            return 0
        who = _user_id(crm, args.user, args.tenant)
        heir = _user_id(crm, args.reassign_to, args.tenant) if args.reassign_to else None
        with crm.session(actor=actor, tenant=args.tenant) as s:
            before = s.org.get_user(who)
            user = s.org.deactivate_user(who, reassign_to=heir)
        if not before.active:
            out.print(f"{escape(user.name)} <{escape(user.email)}> was already deactivated")
        else:
            out.print(
                f"Deactivated {escape(user.name)} <{escape(user.email)}>; their open work went to "
                + escape(_heir_name(crm, args.tenant, heir)),
                highlight=False,
            )
    return 0


def _heir_name(crm: CRM, tenant: str | None, heir: str | None) -> str:
    if heir is None:
        return "their manager, or their team's manager (unassigned if they have neither)"
    return user_names(crm, tenant, [heir]).get(heir, heir)


def run_tenants(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``pycrm tenants list``; return the exit status."""
    with connect(args.db) as crm:
        found = []
        for tenant in crm.store.tenants():
            with crm.session(actor=crm.system_actor, tenant=tenant) as s:
                users = s.org.users(active=True)
            found.append({"tenant": tenant, "active_users": len(users)})
    if args.json:
        print_json(found)
        return 0
    if not found:
        err.print(
            "No tenant holds any data yet: pycrm demo builds one, pycrm users create "
            "--as system starts one.",
            soft_wrap=True,
            highlight=False,
        )
        return 0
    out.print(
        table(
            "Tenants with data",
            ["tenant", "active users"],
            [(t["tenant"], t["active_users"]) for t in found],
        )
    )
    return 0
