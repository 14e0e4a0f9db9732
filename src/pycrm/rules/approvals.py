"""The built-in approval rule, as a plugin wrapping the CRM's ApprovalPolicy."""

from __future__ import annotations

from collections.abc import Sequence

from pycrm.domain.contracts import ApprovalStep, Contract
from pycrm.domain.quotes import Quote, quote_steps
from pycrm.rules.context import RuleContext
from pycrm.rules.hookspecs import hookimpl

__all__ = ["PolicyApprovals"]


class PolicyApprovals:
    """Asks the CRM's :class:`~pycrm.domain.contracts.ApprovalPolicy` (discount, terms, amount).

    For a quote, the policy's quote rules (line discounts, margin, total).
    """

    @hookimpl
    def pycrm_approvals(
        self, contract: Contract | Quote, ctx: RuleContext
    ) -> Sequence[ApprovalStep]:
        """The steps the policy requires."""
        if isinstance(contract, Quote):
            return quote_steps(ctx.crm.approval_policy, contract)
        return ctx.crm.approval_policy.steps(contract)
