"""What the ``pycrm`` subcommands share: who acts, which tenant, and refusals a person can read.

A subcommand prints its result on standard output (a table, or JSON with
``--json``) and everything else, progress, warnings and errors, on standard
error, so ``pycrm report funnel --json | jq`` gets JSON alone. Text that
comes from users or files is escaped before rich prints it: a lead named
``[bold]`` stays ``[bold]``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pycrm.crm import CRM, DEFAULT_TENANT
from pycrm.domain.org import Actor, User
from pycrm.errors import CRMError, NotFound, PermissionDenied, ValidationError

__all__ = [
    "SYSTEM",
    "Failure",
    "actor_for",
    "describe_user",
    "explained",
    "interrupted",
    "message",
    "print_json",
    "table",
    "tenant_name",
    "user_names",
    "warn_if_empty",
    "who_may",
]

#: What ``--as`` takes for the built-in system actor.
SYSTEM = "system"


class Failure(Exception):
    """A command cannot go on: ``main`` prints the message as one ``error:`` line, exit status 1."""


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    """A rich table whose cells are printed as written (never read as markup)."""
    shown = Table(
        *map(escape, columns), title=escape(title), title_justify="left", min_width=len(title)
    )
    for row in rows:
        shown.add_row(*(escape("" if value is None else str(value)) for value in row))
    return shown


def print_json(data: Any) -> None:
    """Write ``data`` as one JSON document on standard output."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def tenant_name(tenant: str | None) -> str:
    """The tenant a session opened with ``tenant`` works in."""
    return DEFAULT_TENANT if tenant is None else tenant


def _others(crm: CRM, tenant: str) -> str:
    """Where the data is, when ``tenant`` holds none: a hint for ``--tenant``."""
    held = [t for t in crm.store.tenants() if t != tenant]
    if not held:
        return "no tenant holds any data yet"
    shown = ", ".join(held[:10]) + (f" and {len(held) - 10} more" if len(held) > 10 else "")
    return f"tenants with data: {shown} (choose one with --tenant; pycrm tenants list)"


def warn_if_empty(crm: CRM, tenant: str | None, err: Console) -> bool:
    """Warn on ``err`` when ``tenant`` holds no data (a typo, or the demo's tenant forgotten).

    Returns True when it warned.
    """
    name = tenant_name(tenant)
    if name in crm.store.tenants():
        return False
    err.print(
        f"[yellow]warning:[/yellow] tenant {escape(name)!r} holds no data; "
        f"{escape(_others(crm, name))}",
        soft_wrap=True,
        highlight=False,
    )
    return True


def actor_for(crm: CRM, who: str | None, tenant: str | None) -> Actor | str:
    """The session actor ``--as`` names: ``system`` (the default), a user's email or id.

    :raises Failure: when no such user exists in the tenant.
    """
    if who is None or who.strip().lower() == SYSTEM:
        return crm.system_actor
    who = who.strip()
    if "@" not in who:
        return who
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        try:
            return s.org.find_user(who).id
        except (NotFound, ValidationError):
            raise Failure(_no_user(crm, who, tenant)) from None


def _no_user(crm: CRM, who: str, tenant: str | None) -> str:
    name = tenant_name(tenant)
    hint = (
        f"pycrm users list --tenant {name} lists them"
        if name in crm.store.tenants()
        else f"tenant {name!r} holds no data; {_others(crm, name)}"
    )
    return f"--as {who}: no such user in tenant {name!r}; {hint}"


def user_names(crm: CRM, tenant: str | None, ids: Iterable[str | None]) -> dict[str, str]:
    """User id → name for ``ids`` (read as the system actor; unknown ids are left out)."""
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        return {u.id: u.name for u in s._uow.repo(User).get_many(wanted).values()}


def describe_user(crm: CRM, tenant: str | None, user_id: str) -> str:
    """``Name <email> (department)`` for a user id, or the id when there is no such user."""
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        user = s._uow.repo(User).get(user_id)
    if user is None:
        return user_id
    return f"{user.name} <{user.email}> ({user.department})"


def who_may(crm: CRM, tenant: str | None, resource: str, action: str) -> str:
    """The departments and roles the CRM's policy lets ``action`` a ``resource``, in words."""
    policy = crm.policy
    every = {role for grant in policy.grants for role in grant.roles}
    allowed = {role for grant in policy.grants_for(every, resource, action) for role in grant.roles}
    if "*" in allowed:
        return "every user may, within the scope of their grant"
    if not allowed:
        return "no department or role may"
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        departments = set(s.org.departments())
    parts = []
    named = sorted(allowed & departments)
    roles = sorted(allowed - departments)
    if named:
        parts.append(("department " if len(named) == 1 else "departments ") + ", ".join(named))
    if roles:
        parts.append(("role " if len(roles) == 1 else "roles ") + ", ".join(roles))
    return " or ".join(parts) + " may"


def _denial(crm: CRM, tenant: str | None, exc: PermissionDenied) -> str:
    who = describe_user(crm, tenant, exc.actor)
    if exc.action == "open a session as":
        return f"{who} is deactivated: an admin can reactivate them (pycrm users list --all)"
    resource = exc.resource.split(" ")[0]
    said = f"{exc.actor} may not {exc.action} {exc.resource}"
    detail = str(exc)[len(said) + 2 :] if str(exc).startswith(said + ": ") else ""
    because = f" ({detail})" if detail and detail != "no grant for this" else ""
    return (
        f"{who} may not {exc.action} {exc.resource}{because}; "
        f"under this CRM's policy {who_may(crm, tenant, resource, exc.action)}"
    )


@contextmanager
def explained(crm: CRM, tenant: str | None) -> Iterator[None]:
    """Turn refusals into messages that name the user and say who may instead.

    ``PermissionDenied`` names a user id and the action; inside this block it
    becomes a :class:`Failure` naming the user, their department, and the
    departments or roles the policy lets do it. An unknown user id becomes a
    hint on how to list the users.
    """
    try:
        yield
    except PermissionDenied as exc:
        raise Failure(_denial(crm, tenant, exc)) from None
    except NotFound as exc:
        if exc.resource != "user":
            raise
        raise Failure(_no_user(crm, exc.id, tenant)) from None


def message(exc: CRMError) -> str:
    """One line for an error: a driver's message may run over several."""
    return " ".join(str(exc).split())


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised while handling, a Ctrl-C (KeyboardInterrupt)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__context__
    return False
