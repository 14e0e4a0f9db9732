"""Runtime settings: routing rules, scoring, the SLA policy and the default phone region.

An admin changes them with ``s.settings.set(...)`` while pycrm runs; they are
stored per tenant, audited, and announced by the ``settings_changed`` signal.
The values given to :func:`pycrm.connect` are the defaults of a tenant that
has stored none (and of one that reset a setting).

How every process sees a change: the first time a session needs a setting,
it asks its tenant for the sum of the stored settings' versions (one aggregate
query returning one number). Every committed change adds one to that sum, so
it names the committed settings exactly: when it equals the one this process
cached, the cached values (already parsed: routing rules, an SLA policy) are
used; otherwise the rows are read and parsed again. The session then keeps
its values to its end, so one session works under one set of rules. A change
committed by any process therefore applies from the next session that needs
a setting, in every process, without a restart; sessions that need no
setting pay nothing.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from pycrm.domain.aggregates import Sum
from pycrm.domain.fields import check_json, check_key
from pycrm.domain.lines import check_percent
from pycrm.domain.money import check_currency
from pycrm.domain.query import Eq
from pycrm.domain.retention import parse_rules as parse_retention_rules
from pycrm.domain.settings import SETTING_NAMES, Setting
from pycrm.domain.tickets import SlaPolicy
from pycrm.errors import ConcurrencyError, ConfigurationError, ValidationError
from pycrm.regions import region_code
from pycrm.rules.routing import RoutingRule, parse_rules
from pycrm.rules.scoring import ScoringRules
from pycrm.services.records import Service, write

if TYPE_CHECKING:
    from pycrm.crm import CRM

__all__ = ["SETTINGS", "SettingKind", "SettingsService"]


@attrs.frozen
class SettingKind:
    """How one setting is checked, stored and defaulted."""

    name: str
    """The setting's name."""
    doc: str
    """What it is, in a line."""
    parse: Callable[[Any, str], Any]
    """``(value, field)`` → the value in its Python form; refusals name ``field``."""
    to_json: Callable[[Any], Any]
    """The Python form → JSON data :attr:`parse` reads back."""
    default: Callable[[CRM], Any]
    """The value given to :func:`pycrm.connect` (or pycrm's own default)."""


def _rules(value: Any, field: str) -> tuple[RoutingRule, ...]:
    try:
        return parse_rules(value)
    except ConfigurationError as exc:
        raise ValidationError(field, value, str(exc)) from None


def _tax_rates(value: Any, field: str) -> dict[str, Decimal]:
    """Tax category → rate in percent (``{"standard": "19", "reduced": "7"}``)."""
    if not isinstance(value, Mapping):
        raise ValidationError(field, value, 'must map tax categories to rates: {"standard": "19"}')
    if len(value) > 100:
        raise ValidationError(field, len(value), "at most 100 tax categories")
    rates = {}
    for category, rate in value.items():
        name = check_key(f"{field}.key", category, what="a tax category", limit=40)
        rates[name] = check_percent(f"{field}.{name}", rate)
    return rates


def _region(value: Any, field: str) -> str | None:
    return None if value is None else region_code(value, field)


#: The runtime settings, by name.
SETTINGS: dict[str, SettingKind] = {
    kind.name: kind
    for kind in (
        SettingKind(
            "routing_rules",
            "the routing rules leads and tickets are assigned by (a list of rule mappings)",
            _rules,
            lambda rules: [rule.to_json() for rule in rules],
            lambda crm: crm.routing_rules,
        ),
        SettingKind(
            "scoring",
            "the built-in lead scorer's weights (source_points, per_event, max_behaviour)",
            lambda value, field: ScoringRules.parse(value, field),
            lambda rules: rules.to_json(),
            lambda crm: crm.scoring,
        ),
        SettingKind(
            "sla_policy",
            "ticket response and resolution targets per priority, and their calendar",
            lambda value, field: SlaPolicy.parse(value, field),
            lambda policy: policy.to_json(),
            lambda crm: crm.sla_policy,
        ),
        SettingKind(
            "default_region",
            "the region of phone numbers written without a country code (an ISO 3166 code)",
            _region,
            lambda region: region,
            lambda crm: crm.default_region,
        ),
        SettingKind(
            "reporting_currency",
            "the currency reports convert amounts to (an ISO 4217 code; default: the CRM's "
            "currency)",
            lambda value, field: check_currency(field, value),
            lambda currency: currency,
            lambda crm: crm.currency,
        ),
        SettingKind(
            "tax_rates",
            "the tax rate of each tax category, in percent, for quote lines",
            _tax_rates,
            lambda rates: {name: str(rate) for name, rate in rates.items()},
            lambda crm: {},
        ),
        SettingKind(
            "retention",
            "the retention rules: which records are erased, deleted or cleared, and when",
            parse_retention_rules,
            lambda rules: [rule.to_json() for rule in rules],
            lambda crm: (),
        ),
    )
}
assert tuple(SETTINGS) == SETTING_NAMES


class SettingsService(Service):
    """The tenant's runtime settings: read them, change them, reset them to the defaults.

    ========================  =====================================================
    ``routing_rules``         a list of routing rules (see :mod:`pycrm.rules.routing`)
    ``scoring``               ``{"source_points": {...}, "per_event": 10, "max_behaviour": 30}``
    ``sla_policy``            an :class:`~pycrm.domain.tickets.SlaPolicy` or its JSON form
    ``default_region``        an ISO 3166 code such as ``"DE"``, or None
    ``reporting_currency``    an ISO 4217 code such as ``"EUR"`` (see ``s.rates``)
    ``tax_rates``             ``{"standard": "19", "reduced": "7"}`` (see ``s.quotes``)
    ``retention``             a list of retention rules (see ``s.retention``)
    ========================  =====================================================

    Reading and changing them needs grants on the ``setting`` resource (the
    default policy gives them to admins). pycrm's own rules read them whatever
    the actor may read: routing a lead never needs the capturing user to see
    the routing rules.
    """

    def __init__(self, session: Any) -> None:
        super().__init__(session)
        self._seen: dict[str, Any] | None = None
        self._wrote = False
        """True once this session changed a setting: it reads its own rows, uncached."""

    def _name(self, name: Any) -> str:
        check_key("name", name, what="a setting name", limit=100)
        if name not in SETTINGS:
            close = difflib.get_close_matches(name, SETTINGS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValidationError(
                "name", name, f"is not a setting: {hint}one of {', '.join(SETTINGS)}"
            )
        return str(name)

    # -- what pycrm's own rules read ------------------------------------------------

    def _value(self, name: str) -> Any:
        """The setting in effect in this session (stored, else the connect-time value).

        No permission check: this is what pycrm's rules run by. The tenant's
        stored settings are read once per session, on first use.
        """
        if self._seen is None:
            self._seen = self._load()
        return self._seen[name]

    def _sla_policy(self) -> SlaPolicy:
        """The SLA policy in effect in this session."""
        policy: SlaPolicy = self._value("sla_policy")
        return policy

    def _default_region(self) -> str | None:
        """The default phone region in effect in this session."""
        region: str | None = self._value("default_region")
        return region

    def _load(self) -> dict[str, Any]:
        """Every setting in effect: the process's cached values if the stored ones are unchanged.

        The check is one aggregate query, the sum of the stored settings'
        versions: each committed change adds one to it, so it names the
        tenant's committed settings exactly. Only when it moved are the rows
        read and the changed values parsed. A session that changed settings
        itself sees its uncommitted rows and neither uses nor fills the cache.
        """
        crm = self._s.crm
        tenant = self._s.tenant_id
        stored = self._stored_values(crm, tenant)
        # Defaults are read from the CRM each time: assigning crm.default_region still works.
        return {
            name: stored[name] if name in stored else kind.default(crm)
            for name, kind in SETTINGS.items()
        }

    def _stored_values(self, crm: CRM, tenant: str) -> dict[str, Any]:
        """The tenant's stored settings, parsed: from the process's cache while unchanged."""
        repo = self._s._uow.repo(Setting)
        cache: dict[str, tuple[int, dict[str, Any]]] = crm._settings_cache
        if not self._wrote:
            found = repo.aggregate(None, [], {"stamp": Sum("version")})
            stamp = (found[0]["stamp"] or 0) if found else 0
            hit = cache.get(tenant)
            if hit is not None and hit[0] == stamp:
                return hit[1]
        rows = repo.find()
        values: dict[str, Any] = {}
        for row in rows:
            if row.config is None or row.name not in SETTINGS:
                continue
            try:
                values[row.name] = SETTINGS[row.name].parse(row.config.get("value"), row.name)
            except ValidationError as exc:
                raise ConfigurationError(
                    f"the stored setting {row.name!r} of tenant {tenant!r} is not usable "
                    f"({exc}); set it again or reset it"
                ) from None
        if not self._wrote:
            cache[tenant] = (sum(row.version for row in rows), values)
        return values

    def _stored(self, name: str) -> Setting | None:
        found = self._s._uow.repo(Setting).find(Eq("name", name), limit=1)
        return found[0] if found else None

    # -- the public calls ----------------------------------------------------------

    def get(self, name: str) -> Any:
        """The setting ``name`` in effect: the tenant's stored value, or the connect-time one.

        Routing rules come back as a tuple of
        :class:`~pycrm.rules.routing.RoutingRule`, scoring as
        :class:`~pycrm.rules.scoring.ScoringRules`, the SLA policy as
        :class:`~pycrm.domain.tickets.SlaPolicy`, the region as text or None.

        :raises PermissionDenied: without a read grant on ``setting`` that reaches it.
        :raises ValidationError: for a name that is not a setting.
        """
        name = self._name(name)
        self._readable(name)
        return self._value(name)

    def _readable(self, name: str) -> None:
        """Refuse unless the actor may read the stored setting ``name`` and its value."""
        guard = self._s._guard
        rows = self._s.read(Setting).find(Eq("name", name), limit=1)  # refused without a grant
        if not rows and self._stored(name) is not None:
            guard.deny("read", "setting", None, "outside the actor's scope")
        if "config" in guard.hidden("setting"):
            guard.deny("read", "setting", None, "the policy hides settings' values")

    def list(self) -> list[Setting]:
        """The settings stored in this tenant that the actor may read, by name.

        Every setting has a record here once it was set (a reset one has
        ``config`` None); at most four, so there is no paging.
        """
        rows = self._s.read(Setting).find()
        return sorted(rows, key=lambda row: row.name)

    @write
    def set(self, name: str, value: Any, *, version: int | None = None) -> Setting:
        """Store ``value`` as the tenant's setting ``name``; it applies from the next session.

        :param name: ``routing_rules``, ``scoring``, ``sla_policy`` or ``default_region``.
        :param value: the value in its Python or JSON form (see the class docs).
        :param version: the version of the stored setting this change is based on;
            the write is refused if it has changed since.
        :returns: the stored setting (its ``config`` holds the JSON form).
        :raises ValidationError: naming the bad part of ``value``.
        :raises PermissionDenied: without a create or update grant on ``setting``.
        """
        name = self._name(name)
        kind = SETTINGS[name]
        parsed = kind.parse(value, "value")
        return self._write(name, {"value": check_json("value", kind.to_json(parsed))}, version)

    @write
    def reset(self, name: str, *, version: int | None = None) -> Setting:
        """Forget the tenant's setting ``name``: the connect-time value applies again.

        The stored record stays (with ``config`` None) so its history is kept.
        """
        return self._write(self._name(name), None, version)

    def _write(self, name: str, config: dict[str, Any] | None, version: int | None) -> Setting:
        s = self._s
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise ValidationError("version", version, "must be a whole number")
        self._seen = None  # this session sees its own change from now on
        self._wrote = True
        current = self._stored(name)
        if current is None:
            if version is not None:
                raise ConcurrencyError("setting", name, version, 0)
            record = Setting(**s._stamp(name=name, config=config))
            s._guard.require(record, "create", ["name", "config"])
            s._uow.repo(Setting).add(record)
            s._record(
                "set" if config is not None else "reset", None, record, event="settings_changed"
            )
            return record
        if version is not None and version != current.version:
            raise ConcurrencyError("setting", current.id, version, current.version)
        if not s._guard.allows(current, "read"):
            s._guard.deny("update", "setting", current.id, "outside the actor's scope")
        s._check_fresh(current)
        if current.config == config:
            return current
        s._guard.require(current, "update", ["config"])
        action = "set" if config is not None else "reset"
        return s._revise(current, action, event="settings_changed", config=config)
