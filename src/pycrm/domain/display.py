"""How records print: one short line instead of every field.

attrs would print a record with every field (a customer 360 view ran to
several kilobytes); :func:`record_repr` gives the kind, the id, what the
record is called and its status — ``<Contact 01a2… 'Ann Acme' active>`` — and
:func:`record_rich` the same as rich markup, for ``rich.print(record)``.
Every field is still one attribute away.
"""

from __future__ import annotations

from typing import Any

__all__ = ["record_repr", "record_rich", "summary"]

#: Fields that say what a record is called, the first one present wins.
_LABELS = ("name", "subject", "title", "key", "attribute", "action", "period", "stage")
_LONGEST = 48


def _label(record: Any) -> str | None:
    for field in _LABELS:
        value = getattr(record, field, None)
        if isinstance(value, str) and value:
            text = value if len(value) <= _LONGEST else value[: _LONGEST - 1] + "…"
            return repr(text)
    return None


def summary(record: Any) -> list[str]:
    """The parts after the kind and id: its label, amount and status, where it has them."""
    parts: list[str] = []
    label = _label(record)
    if label is not None:
        parts.append(label)
    amount = getattr(record, "amount", None)
    if amount is not None and not isinstance(amount, int | float | str):
        parts.append(str(amount))
    status = getattr(record, "status", None)
    if status is not None:
        parts.append(str(getattr(status, "value", status)))
    return parts


def record_repr(record: Any) -> str:
    """``<Kind id 'label' amount status>``."""
    return " ".join([f"<{type(record).__name__}", str(record.id), *summary(record)]) + ">"


def _escape(text: str) -> str:
    return text.replace("[", "\\[")


def record_rich(record: Any) -> str:
    """The short form as rich console markup (what ``rich.print(record)`` shows)."""
    parts = " ".join(_escape(part) for part in summary(record))
    return f"[bold]{type(record).__name__}[/bold] {parts} [dim]{_escape(str(record.id))}[/dim]"
