"""The exceptions a pycrm call may raise.

Every public call either succeeds or raises a subclass of :class:`CRMError`,
and a call that raises leaves the store as it was. Driver errors (SQLAlchemy,
psycopg, sqlite3) are translated at the adapter boundary; they never escape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "CRMError",
    "ConcurrencyError",
    "ConfigurationError",
    "DuplicateError",
    "FieldError",
    "InvalidTransition",
    "NotFound",
    "PermissionDenied",
    "StorageError",
    "ValidationError",
]


class CRMError(Exception):
    """Base class of every exception pycrm raises on purpose."""


class FieldError:
    """One reason a field's value was refused."""

    __slots__ = ("field", "reason", "value")

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        """The name of the field, e.g. ``"email"`` or ``"address.postcode"``."""
        self.value = value
        """The value that was refused, as given."""
        self.reason = reason
        """Why it was refused, in words a user can act on."""

    def __repr__(self) -> str:
        return f"FieldError(field={self.field!r}, value={self.value!r}, reason={self.reason!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FieldError):
            return NotImplemented
        return (self.field, self.reason) == (other.field, other.reason)

    def __hash__(self) -> int:
        return hash((self.field, self.reason))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ValidationError(CRMError):
    """Input was refused. Names the field, the value and the reason.

    A single error is described by :attr:`field`, :attr:`value` and
    :attr:`reason`; when several fields were wrong at once, :attr:`errors`
    holds one :class:`FieldError` each (the first is also exposed directly).
    """

    def __init__(
        self,
        field: str | None = None,
        value: Any = None,
        reason: str = "",
        *,
        errors: Sequence[FieldError] = (),
    ) -> None:
        found = list(errors)
        if field is not None:
            found.insert(0, FieldError(field, value, reason))
        if not found:
            raise TypeError("ValidationError needs a field or a list of errors")
        self.errors: tuple[FieldError, ...] = tuple(found)
        first = self.errors[0]
        self.field: str = first.field
        self.value: Any = first.value
        self.reason: str = first.reason
        super().__init__(
            "; ".join(f"{e.field}: {e.reason} (got {_short(e.value)})" for e in self.errors)
        )


class DuplicateError(CRMError):
    """A record would duplicate one that exists.

    :attr:`candidates` lists the existing records it matches, best first, each
    with its score (0..1) where a score is known.
    """

    def __init__(self, message: str, candidates: Sequence[Any] = ()) -> None:
        self.candidates: tuple[Any, ...] = tuple(candidates)
        super().__init__(message)


class PermissionDenied(CRMError):
    """The actor may not do this: names the actor, the action and the resource."""

    def __init__(self, actor: str, action: str, resource: str, detail: str = "") -> None:
        self.actor = actor
        self.action = action
        self.resource = resource
        message = f"{actor} may not {action} {resource}"
        super().__init__(f"{message}: {detail}" if detail else message)


class NotFound(CRMError):
    """No record of that kind with that id exists in the session's tenant."""

    def __init__(self, resource: str, id: str) -> None:
        self.resource = resource
        self.id = id
        super().__init__(f"{resource} {id!r} not found")


class InvalidTransition(CRMError):
    """A state machine was asked for a move its rules do not allow."""

    def __init__(self, resource: str, from_: str, to: str, detail: str = "") -> None:
        self.resource = resource
        self.from_ = from_
        self.to = to
        message = f"{resource} cannot go from {from_!r} to {to!r}"
        super().__init__(f"{message}: {detail}" if detail else message)


class ConcurrencyError(CRMError):
    """A write was based on a stale version of the record, or lost a race; nothing was written.

    Reload the record (in a new session) and apply the change again. When the
    database itself gave up (a lock held too long, a deadlock), ``id`` is
    ``"?"`` and the message says what happened.
    """

    def __init__(
        self,
        resource: str,
        id: str,
        expected: int,
        actual: int | None,
        *,
        reason: str | None = None,
    ) -> None:
        self.resource = resource
        self.id = id
        self.expected = expected
        self.actual = actual
        super().__init__(
            reason
            or f"{resource} {id!r} was changed by someone else "
            f"(expected version {expected}, found {actual})"
        )


class ConfigurationError(CRMError):
    """pycrm, a plugin or a rule is set up wrongly (bad URL, broken plugin, bad policy)."""


class StorageError(CRMError):
    """The database failed in a way that is not the caller's fault (lost connection, disk full).

    The original driver error is chained as ``__cause__``.
    """
