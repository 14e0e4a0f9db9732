"""A clock that moves only when told to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pycrm.errors import ValidationError

__all__ = ["FakeClock"]


class FakeClock:
    """A :class:`~pycrm.ports.Clock` for tests: fixed until you ``advance`` or ``set`` it."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._check(start)
        # Kept in UTC so advancing is elapsed time, not wall-clock time across a DST change.
        self._now = start.astimezone(UTC)

    @staticmethod
    def _check(when: datetime) -> None:
        if when.tzinfo is None:
            raise ValidationError("start", when, "must be timezone-aware")

    def now(self) -> datetime:
        """The current fake time (UTC)."""
        return self._now.astimezone(UTC)

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**kwargs)``; return the new time."""
        step = delta if delta is not None else timedelta(**kwargs)
        if step < timedelta(0):
            raise ValidationError("delta", step, "a clock does not go backwards")
        self._now += step
        return self.now()

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (forwards or backwards)."""
        self._check(when)
        self._now = when.astimezone(UTC)
