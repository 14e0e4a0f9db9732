"""Rules: pluggy hooks for routing, scoring, follow-ups and approvals, and the built-in rules.

Every :class:`~pycrm.CRM` owns its plugin manager (``crm.plugins``), created in
:func:`~pycrm.connect`; nothing is loaded at import time.
"""

from pycrm.rules.context import Assignment, RuleContext, TaskSpec
from pycrm.rules.hookspecs import PROJECT, hookimpl
from pycrm.rules.routing import RoutingRule, RuleBook
from pycrm.rules.scoring import Scorer

__all__ = [
    "PROJECT",
    "Assignment",
    "RoutingRule",
    "RuleBook",
    "RuleContext",
    "Scorer",
    "TaskSpec",
    "hookimpl",
]
