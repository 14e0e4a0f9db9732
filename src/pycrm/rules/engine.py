"""Calling the hooks: one plugin manager per CRM, and results checked before use."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from pycrm.domain.contracts import ApprovalStep, Contract
from pycrm.domain.customers import Customer
from pycrm.domain.events import Event
from pycrm.domain.leads import Lead
from pycrm.domain.money import Money
from pycrm.domain.org import User
from pycrm.domain.products import PriceLine, Product
from pycrm.domain.quotes import Quote
from pycrm.domain.tasks import BehaviourEvent
from pycrm.errors import ConfigurationError
from pycrm.rules import hookspecs
from pycrm.rules.context import Assignment, RuleContext, TaskSpec

if TYPE_CHECKING:
    from pycrm.session import Session

__all__ = ["Decision", "RuleEngine", "make_plugin_manager"]


def make_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """A new plugin manager with pycrm's hook specs (and, by default, installed plugins)."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    if load_entry_points:
        for entry in importlib.metadata.entry_points(group=hookspecs.PROJECT):
            try:
                plugin = entry.load()
                if manager.get_plugin(entry.name) is None:
                    manager.register(plugin, name=entry.name)
            except Exception as exc:
                raise ConfigurationError(
                    f"plugin {entry.name!r} ({entry.value}) could not be loaded: {exc}"
                ) from exc
    return manager


class Decision:
    """An assignment together with the plugin that made it."""

    def __init__(self, assignment: Assignment, plugin: str) -> None:
        self.assignment = assignment
        """What was decided."""
        self.plugin = plugin
        """The plugin that decided."""

    @property
    def decided_by(self) -> str:
        """``plugin`` or ``plugin:rule``."""
        rule = self.assignment.rule
        return self.plugin if not rule else f"{self.plugin}:{rule}"


class RuleEngine:
    """Runs a CRM's plugins and turns their misbehaviour into ConfigurationError."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager

    def _impls(self, hook: str) -> list[Any]:
        caller = getattr(self.manager.hook, hook)
        impls = caller.get_hookimpls()
        for impl in impls:
            if getattr(impl, "wrapper", False) or getattr(impl, "hookwrapper", False):
                # pycrm calls implementations one by one to name the plugin that decided
                # or failed, so it cannot drive a wrapper's generator.
                raise ConfigurationError(
                    f"plugin {impl.plugin_name!r}: wrapper implementations of {hook} are not "
                    "supported; implement the hook plainly (tryfirst=True to run first)"
                )
        # pluggy calls the last registered (and tryfirst) implementations first.
        return list(reversed(impls))

    def _call(self, impl: Any, hook: str, kwargs: dict[str, Any]) -> Any:
        try:
            return impl.function(*(kwargs[name] for name in impl.argnames))
        except ConfigurationError:
            raise
        except Exception as exc:
            raise ConfigurationError(
                f"plugin {impl.plugin_name!r} failed in {hook}: {type(exc).__name__}: {exc}"
            ) from exc

    def _each(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        return [
            (impl.plugin_name, result)
            for impl in self._impls(hook)
            if (result := self._call(impl, hook, kwargs)) is not None
        ]

    # -- routing -----------------------------------------------------------

    def assign(
        self, hook: str, record: Any, candidates: Sequence[User], ctx: RuleContext
    ) -> Decision | None:
        """Ask each plugin in turn; the first non-None answer wins after it is checked."""
        allowed = {user.id for user in candidates}
        kwargs = {"lead": record, "ticket": record, "candidates": list(candidates), "ctx": ctx}
        for impl in self._impls(hook):
            result = self._call(impl, hook, kwargs)
            if result is None:
                continue
            if not isinstance(result, Assignment):
                raise ConfigurationError(
                    f"plugin {impl.plugin_name!r} returned {result!r} from {hook}; "
                    "expected an Assignment or None"
                )
            if result.owner_id not in allowed:
                raise ConfigurationError(
                    f"plugin {impl.plugin_name!r} chose {result.owner_id!r}, who is not an "
                    "available candidate (inactive, on leave, off hours, at capacity or unknown)"
                )
            return Decision(result, impl.plugin_name)
        return None

    def score_lead(self, lead: Lead, ctx: RuleContext) -> tuple[int | None, list[tuple[str, int]]]:
        """The summed score of every plugin that scored, and each one's part."""
        parts = self._each("pycrm_score_lead", lead=lead, ctx=ctx)
        for plugin, points in parts:
            if isinstance(points, bool) or not isinstance(points, int):
                raise ConfigurationError(
                    f"plugin {plugin!r} returned {points!r} from pycrm_score_lead; expected an int or None"
                )
        if not parts:
            return None, []
        return sum(points for _, points in parts), parts

    def followups(self, event: Event | BehaviourEvent, ctx: RuleContext) -> list[TaskSpec]:
        """Every task the plugins want for ``event``."""
        specs: list[TaskSpec] = []
        for plugin, result in self._each("pycrm_followups", event=event, ctx=ctx):
            items = list(result) if isinstance(result, list | tuple) else None
            if items is None or not all(isinstance(item, TaskSpec) for item in items):
                raise ConfigurationError(
                    f"plugin {plugin!r} returned {result!r} from pycrm_followups; expected a list of TaskSpec"
                )
            specs.extend(items)
        return specs

    def approvals(self, contract: Contract | Quote, ctx: RuleContext) -> list[ApprovalStep]:
        """The approval steps every plugin asks for, each role once, in plugin order."""
        steps: dict[str, ApprovalStep] = {}
        for plugin, result in self._each("pycrm_approvals", contract=contract, ctx=ctx):
            items = list(result) if isinstance(result, list | tuple) else None
            if items is None or not all(isinstance(item, ApprovalStep) for item in items):
                raise ConfigurationError(
                    f"plugin {plugin!r} returned {result!r} from pycrm_approvals; expected a list of ApprovalStep"
                )
            for step in items:
                steps.setdefault(step.role, step)
        return list(steps.values())

    def price(
        self,
        product: Product,
        quantity: Decimal,
        customer: Customer | None,
        currency: str | None,
        on: date,
        ctx: RuleContext,
    ) -> PriceLine | None:
        """The first plugin's price line for the product, checked, with the plugin named."""
        kwargs = {
            "product": product,
            "quantity": quantity,
            "customer": customer,
            "currency": currency,
            "on": on,
            "ctx": ctx,
        }
        for impl in self._impls("pycrm_price_line"):
            line = self._call(impl, "pycrm_price_line", kwargs)
            if line is None:
                continue
            wrong = None
            if not isinstance(line, PriceLine) or not isinstance(line.unit_price, Money):
                wrong = "expected a PriceLine or None"
            elif line.product_id != product.id:
                wrong = f"it prices {line.product_id!r}, not the product asked for"
            elif currency is not None and line.unit_price.currency != currency:
                wrong = f"it is in {line.unit_price.currency}, not the {currency} asked for"
            elif line.unit_price.amount < 0:
                wrong = "a unit price cannot be negative"
            if wrong is not None:
                raise ConfigurationError(
                    f"plugin {impl.plugin_name!r} returned {line!r} from pycrm_price_line; {wrong}"
                )
            checked: PriceLine = attrs.evolve(line, quantity=quantity, decided_by=impl.plugin_name)
            return checked
        return None


class CallableRouter:
    """Wraps a plain function ``(session, lead) → (owner_id, reason) | None`` as a routing plugin."""

    def __init__(self, route: Callable[[Session, Lead], tuple[str, str] | None]) -> None:
        self._route = route

    @hookspecs.hookimpl(tryfirst=True)
    def pycrm_assign_lead(
        self, lead: Lead, candidates: Sequence[User], ctx: RuleContext
    ) -> Assignment | None:
        """Ask the wrapped function."""
        decision = self._route(ctx.session, lead)
        if decision is None:
            return None
        owner_id, reason = decision
        return Assignment(owner_id, reason)
