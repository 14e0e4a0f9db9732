"""An example pycrm plugin: aerospace leads go to the aerospace specialist with the least work.

The module itself is the plugin: pycrm registers it under its entry-point name,
``example_routing``. It is deliberately conservative: for every lead that is
not in the aerospace industry it returns None, so pycrm's own rules (and any
other plugin) decide as if it were not installed.
"""

from __future__ import annotations

from collections.abc import Sequence

from pycrm.domain.leads import Lead
from pycrm.domain.org import User
from pycrm.rules import Assignment, RuleContext, hookimpl

__all__ = ["INDUSTRY", "SCORE_BONUS", "SKILL", "pycrm_assign_lead", "pycrm_score_lead"]

INDUSTRY = "aerospace"
"""The industry this plugin routes."""
SKILL = "aerospace"
"""The skill a user needs to get those leads."""
SCORE_BONUS = 25
"""Extra points an aerospace lead scores."""


def _is_aerospace(lead: Lead) -> bool:
    return (lead.industry or "").strip().casefold() == INDUSTRY


@hookimpl
def pycrm_assign_lead(
    lead: Lead, candidates: Sequence[User], ctx: RuleContext
) -> Assignment | None:
    """The aerospace-skilled candidate with the fewest open leads, for aerospace leads only."""
    if not _is_aerospace(lead):
        return None
    experts = [u for u in candidates if SKILL in {s.casefold() for s in u.skills}]
    if not experts:
        return None  # nobody with the skill is available: let the other rules decide
    load = ctx.open_items([u.id for u in experts])
    chosen = min(experts, key=lambda u: (load[u.id], u.name, u.id))
    return Assignment(
        chosen.id,
        f"aerospace specialist with the fewest open leads ({load[chosen.id]}) of {len(experts)}",
        rule="aerospace",
    )


@hookimpl
def pycrm_score_lead(lead: Lead, ctx: RuleContext) -> int | None:
    """Aerospace leads are worth more; other leads are left to the other scorers."""
    return SCORE_BONUS if _is_aerospace(lead) else None
