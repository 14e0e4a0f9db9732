"""Signals: how one department hears that another has done its part.

pycrm's signals live in one private blinker namespace. A signal is sent only
after the unit of work that caused it has committed (never for rolled-back
work), with the :class:`~pycrm.CRM` as sender and one frozen
:class:`~pycrm.domain.events.Event` as the ``event`` keyword::

    from pycrm import signals

    @signals.customer_created.connect
    def welcome(crm, event):
        print("new customer", event.record_id, event.after["name"])

A receiver that raises is logged and skipped: it cannot undo committed work
or keep other receivers from running.
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import Namespace, Signal

from pycrm.domain.events import Event

__all__ = [
    "activity_logged",
    "contact_archived",
    "contact_created",
    "contact_updated",
    "customer_archived",
    "customer_created",
    "customer_updated",
    "dispatch",
    "user_created",
    "user_deactivated",
]

log = logging.getLogger("pycrm.signals")

_signals = Namespace()

customer_created = _signals.signal(
    "customer_created", doc="A customer was created. ``after``: the customer."
)
customer_updated = _signals.signal(
    "customer_updated", doc="A customer's fields changed. ``before``/``after``: the customer."
)
customer_archived = _signals.signal("customer_archived", doc="A customer was archived.")
contact_created = _signals.signal(
    "contact_created", doc="A contact was created. ``after``: the contact."
)
contact_updated = _signals.signal(
    "contact_updated", doc="A contact's fields changed. ``before``/``after``: the contact."
)
contact_archived = _signals.signal("contact_archived", doc="A contact was archived.")
activity_logged = _signals.signal(
    "activity_logged",
    doc="A call, email, meeting or note was recorded. Private activities are not announced.",
)
user_created = _signals.signal("user_created", doc="A user was created. ``after``: the user.")
user_deactivated = _signals.signal("user_deactivated", doc="A user was deactivated.")


def signal_for(name: str) -> Signal:
    """The signal called ``name``."""
    return _signals.signal(name)


def dispatch(sender: Any, events: list[Event]) -> None:
    """Send each event to its signal's receivers; log and skip a receiver that raises."""
    for event in events:
        signal = signal_for(event.name)
        for receiver in list(signal.receivers_for(sender)):
            try:
                receiver(sender, event=event)
            except Exception:
                log.exception(
                    "receiver %r of %s failed for event %s", receiver, event.name, event.id
                )
