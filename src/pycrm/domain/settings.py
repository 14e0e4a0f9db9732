"""Settings stored per tenant: configuration an admin changes while pycrm runs.

Each setting is one record holding its value in JSON form. Every process
reads the stored settings of a tenant when a session first needs one, so a
change made in one process applies in every other from its next session on;
a setting never stored (or reset) takes the value given to
:func:`pycrm.connect`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from pycrm.domain.records import Record

__all__ = ["SETTING_NAMES", "Setting"]

#: The settings a tenant may store (see :class:`~pycrm.services.settings.SettingsService`).
SETTING_NAMES = (
    "routing_rules",
    "scoring",
    "sla_policy",
    "default_region",
    "reporting_currency",
    "tax_rates",
    "retention",
)


@attrs.frozen(kw_only=True)
class Setting(Record):
    """One named setting of a tenant, as stored."""

    resource: ClassVar[str] = "setting"
    owner_field: ClassVar[str] = "updated_by"
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (("name",),)

    name: str
    """Which setting: one of :data:`SETTING_NAMES`."""
    config: dict[str, Any] | None = None
    """``{"value": …}``: the value in its JSON form; None after a reset (the connect-time
    value applies)."""
