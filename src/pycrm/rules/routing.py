"""Built-in routing: an ordered list of rules, configured as data.

Each rule says *when* it applies (criteria on the record's fields), *whom*
it narrows the candidates to (a team, named users, required skills, regions or
languages they cover, or what they know *matching* the record) and whether it
*picks* one of them (round-robin, load-balanced, or first by name).
Rules are tried in order; a rule that only narrows hands the smaller pool to
the next one, so one rule can pick the team and a later one the person::

    rules = [
        {"name": "dach", "when": {"region": "DACH"}, "team": "Sales DACH"},
        {"name": "big machinery", "when": {"industry": "machinery", "min_score": 50},
         "skills": ["machinery"], "pick": "load_balanced"},
        {"name": "by territory", "match": {"regions": "region"}, "pick": "load_balanced"},
        {"name": "everyone else", "pick": "round_robin"},
    ]
    crm = pycrm.connect(url, routing_rules=rules)  # or s.settings.set("routing_rules", rules)

``match`` reads what the organisation records about its users (their
``skills``, ``regions`` and ``languages``, set with ``s.org.create_user`` or
``update_user``): ``{"regions": "region"}`` keeps the users whose regions
include the record's region, ``{"languages": "custom.language"}`` those who
speak the language in the record's custom field ``language``.

When a rule's pool comes out empty (nobody available), ``fallthrough``
decides: go on with the next rule (the default) or stop and leave the record
unassigned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from pycrm.domain.contact_points import search_key
from pycrm.domain.org import User
from pycrm.domain.query import plain
from pycrm.errors import ConfigurationError
from pycrm.rules.context import Assignment, RuleContext
from pycrm.rules.hookspecs import hookimpl

__all__ = ["PICKS", "USER_LISTS", "RoutingRule", "RuleBook", "parse_rules"]

#: How a rule picks one user from its pool.
PICKS = ("round_robin", "load_balanced", "first")

#: What the organisation records about its users that ``match`` may compare.
USER_LISTS = ("skills", "regions", "languages")


def _same(actual: Any, expected: Any) -> bool:
    # Enum fields (a ticket's priority, channel) compare by their value, as filters do.
    actual, expected = plain(actual), plain(expected)
    if isinstance(actual, str) and isinstance(expected, str):
        return search_key(actual) == search_key(expected)
    return bool(actual == expected)


def _values_of(record: Any, field: str) -> set[str]:
    """The record's value(s) of ``field`` (``custom.<key>`` for a custom field), search-keyed."""
    if field.startswith("custom."):
        value = (getattr(record, "custom", None) or {}).get(field.removeprefix("custom."))
    else:
        value = getattr(record, field, None)
    items = value if isinstance(value, list | tuple | set | frozenset) else [value]
    return {search_key(str(plain(v))) for v in items if v not in (None, "")}


@attrs.frozen
class RoutingRule:
    """One routing rule. Build from a dict with :meth:`parse`."""

    name: str
    """Shown in explanations and the audit trail."""
    when: Mapping[str, Any] = attrs.field(factory=dict)
    """Field → value (or list of values) the record must have; ``min_score``: at least this score."""
    team: str | None = None
    """Narrow to this team's members (id or name)."""
    users: tuple[str, ...] = ()
    """Narrow to these user ids."""
    skills: tuple[str, ...] = ()
    """Narrow to users having every one of these skills."""
    regions: tuple[str, ...] = ()
    """Narrow to users covering one of these regions."""
    languages: tuple[str, ...] = ()
    """Narrow to users working in one of these languages."""
    match: Mapping[str, str] = attrs.field(factory=dict)
    """User list (``skills``, ``regions``, ``languages``) → the record's field (or
    ``custom.<key>``): keep users whose list holds the record's value (every one, for a list)."""
    pick: str | None = None
    """``round_robin``, ``load_balanced``, ``first`` — or None to only narrow."""
    fallthrough: bool = True
    """When nobody is left: go on with the next rule (True) or leave the record unassigned."""

    @classmethod
    def parse(cls, value: RoutingRule | Mapping[str, Any]) -> RoutingRule:
        """Check and build a rule; raises ConfigurationError naming the rule and the problem."""
        if isinstance(value, RoutingRule):
            return value
        if not isinstance(value, Mapping) or not isinstance(value.get("name"), str):
            raise ConfigurationError(f"routing rule {value!r} needs a 'name'")
        name = value["name"]
        known = {f.name for f in attrs.fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ConfigurationError(f"routing rule {name!r}: unknown keys {sorted(unknown)}")
        pick = value.get("pick")
        if pick is not None and pick not in PICKS:
            raise ConfigurationError(
                f"routing rule {name!r}: pick must be one of {', '.join(PICKS)}"
            )
        when = value.get("when", {})
        if not isinstance(when, Mapping) or not all(isinstance(k, str) for k in when):
            raise ConfigurationError(
                f"routing rule {name!r}: 'when' must be a mapping of field names"
            )
        score = when.get("min_score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, int)):
            raise ConfigurationError(f"routing rule {name!r}: min_score must be a whole number")
        team = value.get("team")
        if team is not None and not isinstance(team, str):
            raise ConfigurationError(f"routing rule {name!r}: team must be a team id or name")
        match = value.get("match", {})
        if not isinstance(match, Mapping) or not all(
            key in USER_LISTS and isinstance(field, str) and field for key, field in match.items()
        ):
            raise ConfigurationError(
                f"routing rule {name!r}: match must map {', '.join(USER_LISTS)} to record fields"
            )
        lists = {}
        for key in ("users", "skills", "regions", "languages"):
            items = value.get(key, ())
            if isinstance(items, str) or not all(isinstance(i, str) for i in items):
                raise ConfigurationError(f"routing rule {name!r}: {key} must be a list of strings")
            lists[key] = tuple(items)
        fallthrough = value.get("fallthrough", True)
        if not isinstance(fallthrough, bool):
            raise ConfigurationError(f"routing rule {name!r}: fallthrough must be true or false")
        return cls(
            name=name,
            when=dict(when),
            team=team,
            users=lists["users"],
            skills=lists["skills"],
            regions=lists["regions"],
            languages=lists["languages"],
            match=dict(match),
            pick=pick,
            fallthrough=fallthrough,
        )

    def to_json(self) -> dict[str, Any]:
        """The rule as JSON data :meth:`parse` reads back (fields at their default left out)."""
        data: dict[str, Any] = {"name": self.name}
        if self.when:
            data["when"] = {
                key: sorted(value, key=repr) if isinstance(value, set | frozenset) else value
                for key, value in self.when.items()
            }
        for key in ("team", "users", "skills", "regions", "languages", "pick"):
            value = getattr(self, key)
            if value:
                data[key] = list(value) if isinstance(value, tuple) else value
        if self.match:
            data["match"] = dict(self.match)
        if not self.fallthrough:
            data["fallthrough"] = False
        return data

    def applies_to(self, record: Any) -> bool:
        """True when the record meets every criterion."""
        for field, expected in self.when.items():
            if field == "min_score":
                score = getattr(record, "score", None)
                if score is None or score < expected:
                    return False
                continue
            actual = getattr(record, field, None)
            if actual is None:
                return False
            options = (
                expected if isinstance(expected, list | tuple | set | frozenset) else [expected]
            )
            if not any(_same(actual, option) for option in options):
                return False
        return True

    def narrow(self, pool: Sequence[User], ctx: RuleContext, record: Any = None) -> list[User]:
        """The part of ``pool`` this rule allows (for ``record``, when the rule matches on it)."""
        kept = list(pool)
        if self.team is not None:
            members = {u.id for u in ctx.team_members(self.team)}
            kept = [u for u in kept if u.id in members]
        if self.users:
            kept = [u for u in kept if u.id in self.users]
        if self.skills:
            wanted = {search_key(s) for s in self.skills}
            kept = [u for u in kept if wanted <= {search_key(s) for s in u.skills}]
        for key, given in (("regions", self.regions), ("languages", self.languages)):
            if given:
                wanted = {search_key(v) for v in given}
                kept = [u for u in kept if wanted & {search_key(v) for v in getattr(u, key)}]
        for key, field in self.match.items():
            values = _values_of(record, field)
            if values:
                kept = [u for u in kept if values <= {search_key(v) for v in getattr(u, key)}]
        return kept

    def choose(self, pool: Sequence[User], ctx: RuleContext) -> tuple[User, str]:
        """Pick one user from a non-empty pool, and say how."""
        ordered = sorted(pool, key=lambda u: u.id)
        if self.pick == "round_robin":
            turn = ctx.next_number(f"round_robin:{self.name}")
            return ordered[(turn - 1) % len(ordered)], f"round-robin turn {turn} of {len(ordered)}"
        if self.pick == "load_balanced":
            load = ctx.open_items([u.id for u in ordered])
            user = min(ordered, key=lambda u: (load[u.id], u.name, u.id))
            return user, f"fewest open items ({load[user.id]}) of {len(ordered)}"
        user = min(ordered, key=lambda u: (u.name, u.id))
        return user, f"first of {len(ordered)} by name"

    def describe(self) -> str:
        """The rule's criteria in words."""
        parts = [f"{k}={v}" for k, v in self.when.items()]
        if self.team:
            parts.append(f"team {self.team}")
        if self.skills:
            parts.append(f"skills {', '.join(self.skills)}")
        for key in ("regions", "languages"):
            if getattr(self, key):
                parts.append(f"{key} {', '.join(getattr(self, key))}")
        parts += [f"{key} match {field}" for key, field in self.match.items()]
        return f"{self.name} ({'; '.join(parts) or 'any'})"


def parse_rules(rules: Any) -> tuple[RoutingRule, ...]:
    """Check and build a list of rules (RoutingRule objects or dicts) with unique names.

    Raises ConfigurationError naming the rule and the problem.
    """
    if isinstance(rules, str | bytes | Mapping) or not isinstance(rules, Sequence):
        raise ConfigurationError("routing rules must be a list of rules")
    parsed = tuple(RoutingRule.parse(rule) for rule in rules)
    names = [rule.name for rule in parsed]
    if len(set(names)) != len(names):
        raise ConfigurationError("routing rule names must be unique")
    return parsed


class RuleBook:
    """The built-in routing plugin: rules as data, tried in order (see the module docs).

    With ``setting`` (as the CRM's own book, ``setting="routing_rules"``), the
    rules are the tenant's stored setting of that name, read when a record is
    routed, and the given ones are only its default.
    """

    def __init__(
        self, rules: Sequence[RoutingRule | Mapping[str, Any]] = (), *, setting: str | None = None
    ) -> None:
        self.rules = list(parse_rules(rules))
        """The rules (the default of the setting, when there is one)."""
        self.setting = setting
        """The name of the setting that holds the rules at runtime (None: ``rules`` always)."""

    def route(self, record: Any, candidates: Sequence[User], ctx: RuleContext) -> Assignment | None:
        """Walk the rules; return the first pick, or None."""
        pool = list(candidates)
        trail: list[str] = []
        rules: Sequence[RoutingRule] = (
            self.rules if self.setting is None else ctx.setting(self.setting)
        )
        for rule in rules:
            if not rule.applies_to(record):
                continue
            narrowed = rule.narrow(pool, ctx, record)
            if not narrowed:
                if rule.fallthrough:
                    continue
                return None
            pool = narrowed
            trail.append(rule.describe())
            if rule.pick is not None:
                user, how = rule.choose(pool, ctx)
                return Assignment(user.id, f"{' → '.join(trail)}: {how}", rule=rule.name)
        return None

    @hookimpl(trylast=True)
    def pycrm_assign_lead(
        self, lead: Any, candidates: Sequence[User], ctx: RuleContext
    ) -> Assignment | None:
        """Route a lead through the rules."""
        return self.route(lead, candidates, ctx)

    @hookimpl(trylast=True)
    def pycrm_assign_ticket(
        self, ticket: Any, candidates: Sequence[User], ctx: RuleContext
    ) -> Assignment | None:
        """Route a ticket through the rules."""
        return self.route(ticket, candidates, ctx)
