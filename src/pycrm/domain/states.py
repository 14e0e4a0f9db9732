"""State machines: each record kind's allowed status moves, as data."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Generic, TypeVar

from pycrm.errors import InvalidTransition

__all__ = ["StateMachine"]

E = TypeVar("E", bound=enum.Enum)


class StateMachine(Generic[E]):
    """The moves a status may make, as a table; anything not listed is refused."""

    def __init__(self, resource: str, moves: Mapping[E, set[E]]) -> None:
        self.resource = resource
        """The record kind, for error messages."""
        self.moves: dict[E, frozenset[E]] = {k: frozenset(v) for k, v in moves.items()}
        """Status → the statuses it may move to."""

    def targets(self, from_: E) -> frozenset[E]:
        """Where ``from_`` may go (empty for a final status)."""
        return self.moves.get(from_, frozenset())

    def allows(self, from_: E, to: E) -> bool:
        """True if ``from_ → to`` is a documented move."""
        return to in self.targets(from_)

    def check(self, from_: E, to: E) -> E:
        """Return ``to`` if the move is allowed, else raise :class:`InvalidTransition`."""
        if not self.allows(from_, to):
            allowed = ", ".join(sorted(s.value for s in self.targets(from_))) or "nothing (final)"
            raise InvalidTransition(
                self.resource, from_.value, to.value, f"from {from_.value!r} it may go to {allowed}"
            )
        return to
