"""Relaying the outbox: hand committed events to other systems at least once.

Every event a session emits is also written to the outbox table in the same
transaction as the work. Relay workers (``pycrm relay``, or
:meth:`Outbox.deliver` called from your own scheduler) claim due events for a
while (a lease), hand each to the relays that take it (webhooks, Redis
streams, a plugin of yours) and settle the batch in one transaction:

- an event every relay took is marked delivered (one statement per batch);
- an event a relay refused is tried again later, only on the relays that
  lack it, after an exponentially growing wait with jitter, and is
  dead-lettered after :attr:`~pycrm.relays.RetryPolicy.max_attempts` failed
  attempts (:meth:`Outbox.dead_letters` lists them, :meth:`Outbox.replay`
  sends them again);
- one record's events go out one at a time, oldest first: a claim takes an
  event only when no older event about the same record is pending.

Several workers, on several machines, can run at once: on PostgreSQL a claim
skips rows another worker is claiming (``FOR UPDATE SKIP LOCKED``); on
SQLite the single writer serialises claims. In the normal case no event is
sent twice. If a worker dies between sending and settling, its lease runs
out and another worker sends the events again with the same ids: consumers
de-duplicate by :attr:`~pycrm.domain.events.Event.id`.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import attrs

from pycrm.domain.events import Event
from pycrm.domain.outbox import Claim, OutboxMessage
from pycrm.domain.query import And, Eq, IsNull, Not, OrderBy
from pycrm.errors import ConcurrencyError, ValidationError
from pycrm.relays import Envelope, FunctionRelay, NotTried, Relay, RelayReport, RetryPolicy
from pycrm.serialization import from_dict

if TYPE_CHECKING:
    from pycrm.crm import CRM
    from pycrm.ports import UnitOfWork

__all__ = ["Outbox", "OutboxStats"]

log = logging.getLogger("pycrm.outbox")
_T = TypeVar("_T")

PENDING = And((Eq("delivered", False), IsNull("dead_at")))
DEAD = And((Eq("delivered", False), Not(IsNull("dead_at"))))
_ERROR_LENGTH = 500
_IMMEDIATE = RetryPolicy(max_attempts=2**31 - 1, first_delay=timedelta(0), jitter=0)


@attrs.frozen(kw_only=True)
class OutboxStats:
    """How far behind the relays are, for a health check."""

    tenant: str
    """The tenant counted."""
    pending: int
    """Events not yet delivered (including those waiting for a retry)."""
    retrying: int
    """Pending events that failed at least once."""
    dead: int
    """Dead-lettered events."""
    oldest_pending_at: datetime | None
    """When the oldest pending event happened (None when nothing is pending)."""


def worker_name() -> str:
    """A name for this relay worker that no other process shares: host, pid and a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _limit(limit: object, field: str = "limit") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise ValidationError(field, limit, "must be a whole number from 1 to 10,000")
    return limit


def _ids(event_ids: object) -> list[str]:
    if isinstance(event_ids, str) or not isinstance(event_ids, Sequence):
        raise ValidationError("event_ids", event_ids, "must be a list of event ids")
    if not all(isinstance(i, str) for i in event_ids):
        raise ValidationError("event_ids", event_ids, "must be a list of event ids")
    return list(event_ids)


class Outbox:
    """The outbox of one CRM: ``crm.outbox``."""

    def __init__(self, crm: CRM) -> None:
        self._crm = crm

    def _run(self, tenant: str | None, work: Callable[[UnitOfWork], _T]) -> _T:
        """Run ``work`` in one transaction of the tenant's and commit it."""
        uow = self._crm._begin(tenant)
        try:
            result = work(uow)
            uow.commit()
        except BaseException:
            uow.rollback()
            raise
        return result

    # -- reading --------------------------------------------------------------------

    def pending(self, *, tenant: str | None = None, limit: int = 100) -> list[Event]:
        """Events not yet delivered nor dead-lettered, oldest first."""
        _limit(limit)
        uow = self._crm._begin(tenant)
        try:
            rows = uow.repo(OutboxMessage).find(PENDING, order_by=[OrderBy("id")], limit=limit)
        finally:
            uow.rollback()
        return [from_dict(Event, row.payload) for row in rows]

    def dead_letters(self, *, tenant: str | None = None, limit: int = 100) -> list[OutboxMessage]:
        """Dead-lettered events, oldest first, with their attempts and last error."""
        _limit(limit)
        uow = self._crm._begin(tenant)
        try:
            return uow.repo(OutboxMessage).find(DEAD, order_by=[OrderBy("id")], limit=limit)
        finally:
            uow.rollback()

    def stats(self, *, tenant: str | None = None) -> OutboxStats:
        """Counts of pending, retrying and dead events, and the oldest pending one's time."""
        uow = self._crm._begin(tenant)
        try:
            repo = uow.repo(OutboxMessage)
            oldest = repo.find(PENDING, order_by=[OrderBy("id")], limit=1)
            return OutboxStats(
                tenant=uow.tenant_id,
                pending=repo.count(PENDING),
                retrying=repo.count(And((PENDING, Not(Eq("attempts", 0))))),
                dead=repo.count(DEAD),
                oldest_pending_at=oldest[0].created_at if oldest else None,
            )
        finally:
            uow.rollback()

    # -- delivering -----------------------------------------------------------------

    def mark_delivered(self, event_ids: list[str], *, tenant: str | None = None) -> int:
        """Mark events delivered; return how many were pending and are now marked."""
        ids = _ids(event_ids)
        now = self._crm.clock.now()
        return self._run(tenant, lambda uow: uow.outbox().settle(ids, now=now))

    def deliver(
        self,
        relays: Sequence[Relay],
        *,
        tenant: str | None = None,
        limit: int = 100,
        worker: str | None = None,
        lease: timedelta = timedelta(minutes=1),
        retry: RetryPolicy | None = None,
    ) -> RelayReport:
        """Claim up to ``limit`` due events, hand them to ``relays`` and settle them.

        ``lease`` must outlast sending one batch: a worker that has not settled
        by then is presumed dead and its events go to another worker.
        """
        _limit(limit)
        if (
            isinstance(relays, str)
            or not isinstance(relays, Sequence)
            or not relays
            or not all(isinstance(r, Relay) for r in relays)
        ):
            raise ValidationError("relays", relays, "must be a list of one or more relays")
        names = [r.name for r in relays]
        if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise ValidationError("relays", names, "names must be unique, non-empty strings")
        if not isinstance(lease, timedelta) or lease <= timedelta(0):
            raise ValidationError("lease", lease, "must be a positive timedelta")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ValidationError("retry", retry, "must be a RetryPolicy")
        if worker is not None and (not isinstance(worker, str) or not worker.strip()):
            raise ValidationError("worker", worker, "must be a non-empty string")
        policy = RetryPolicy() if retry is None else retry
        me = worker or worker_name()
        now = self._crm.clock.now()
        try:
            claimed = self._run(
                tenant, lambda uow: uow.outbox().claim(me, now=now, until=now + lease, limit=limit)
            )
        except ConcurrencyError:  # the memory store: another worker claimed the same events
            return RelayReport(tenant=self._crm._tenant(tenant))
        report = RelayReport(tenant=self._crm._tenant(tenant), claimed=len(claimed))
        if not claimed:
            return report
        try:
            outcomes = self._send(claimed, relays)
        except BaseException:  # a relay's filter raised, or the worker is interrupted
            ids = [m.id for m in claimed]
            self._run(tenant, lambda uow: uow.outbox().release(ids))
            raise
        return self._run(tenant, lambda uow: self._settle(uow, claimed, outcomes, policy, report))

    def _send(
        self, claimed: list[Claim], relays: Sequence[Relay]
    ) -> dict[str, dict[str, BaseException | None]]:
        """Each claimed event's outcome per relay that takes it and lacks it."""
        envelopes = [
            Envelope(
                id=m.id,
                name=m.name,
                tenant_id=m.tenant_id,
                record_id=m.record_id,
                payload=m.payload,
                attempt=m.attempts + 1,
            )
            for m in claimed
        ]
        outcomes: dict[str, dict[str, BaseException | None]] = {m.id: {} for m in claimed}
        for relay in relays:
            wanted = [
                e
                for e, m in zip(envelopes, claimed, strict=True)
                if relay.name not in m.sent_to and relay.accepts(e)
            ]
            if not wanted:
                continue
            try:
                results = list(relay.send(wanted))
                if len(results) != len(wanted):
                    raise RuntimeError(f"relay {relay.name!r} answered for {len(results)} events")
            except Exception as exc:  # a relay that fails as a whole fails every event
                results = [exc] * len(wanted)
            for envelope, result in zip(wanted, results, strict=True):
                outcomes[envelope.id][relay.name] = result
                if result is not None and not isinstance(result, NotTried):
                    log.warning(
                        "relay %s could not deliver event %s (%s): %s",
                        relay.name,
                        envelope.id,
                        envelope.name,
                        result,
                    )
        return outcomes

    def _settle(
        self,
        uow: UnitOfWork,
        claimed: list[Claim],
        outcomes: dict[str, dict[str, BaseException | None]],
        policy: RetryPolicy,
        report: RelayReport,
    ) -> RelayReport:
        now = self._crm.clock.now()
        queue = uow.outbox()
        delivered: list[str] = []
        released: list[str] = []
        failed = dead = 0
        for claim in claimed:
            results = outcomes[claim.id]
            took = tuple(name for name, result in results.items() if result is None)
            errors = [(n, r) for n, r in results.items() if r is not None]
            real = [(n, r) for n, r in errors if not isinstance(r, NotTried)]
            if not errors:
                delivered.append(claim.id)
                continue
            if not real and not took:
                released.append(claim.id)
                continue
            attempts, last_error, retry_at, dead_at = claim.attempts, None, None, None
            if real:  # else some relays took it and the others did not try: no attempt spent
                attempts += 1
                name, error = real[0]
                last_error = f"{name}: {type(error).__name__}: {error}"[:_ERROR_LENGTH]
                if attempts >= policy.max_attempts:
                    dead_at = now
                else:
                    retry_at = now + policy.delay(attempts)
            kept = queue.reschedule(
                claim,
                now=now,
                sent_to=claim.sent_to + took,
                attempts=attempts,
                last_error=last_error,
                next_attempt_at=retry_at,
                dead_at=dead_at,
            )
            if not kept:  # the lease ran out and another worker holds it now
                log.warning("event %s was claimed again before this worker settled it", claim.id)
            elif dead_at is not None:
                dead += 1
                log.error("event %s (%s) is dead-lettered: %s", claim.id, claim.name, last_error)
            elif real:
                failed += 1
        queue.settle(delivered, now=now)
        queue.release(released)
        return attrs.evolve(
            report, delivered=len(delivered), failed=failed, dead=dead, released=len(released)
        )

    def relay(
        self, send: Callable[[Event], object], *, tenant: str | None = None, limit: int = 100
    ) -> int:
        """Hand due events to ``send`` one by one, oldest first; return how many were delivered.

        The simple form of :meth:`deliver` for one function: it stops at the
        first event ``send`` raises on (counted as a failed attempt; it is
        tried again on the next call, with no wait and no dead-lettering), and
        the events after it keep their place.
        """
        _limit(limit)
        relay = FunctionRelay(lambda envelope: send(envelope.event))
        return self.deliver([relay], tenant=tenant, limit=limit, retry=_IMMEDIATE).delivered

    # -- dead letters and retention -----------------------------------------------

    def replay(self, event_ids: list[str], *, tenant: str | None = None) -> int:
        """Make dead-lettered events pending again, attempts reset; return how many.

        They go only to the relays that do not have them yet.
        """
        ids = _ids(event_ids)
        now = self._crm.clock.now()

        def revive(uow: UnitOfWork) -> int:
            repo = uow.repo(OutboxMessage)
            revived = 0
            for message in repo.get_many(ids).values():
                if message.dead_at is None or message.delivered:
                    continue
                again = attrs.evolve(
                    message,
                    dead_at=None,
                    attempts=0,
                    next_attempt_at=None,
                    updated_at=now,
                    version=message.version + 1,
                )
                repo.replace(again, message.version)
                revived += 1
            return revived

        return self._run(tenant, revive)

    def purge(self, older_than: timedelta, *, tenant: str | None = None, batch: int = 1_000) -> int:
        """Delete events delivered more than ``older_than`` ago, ``batch`` per transaction.

        Pending and dead-lettered events are never purged. Returns how many went.
        """
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise ValidationError("older_than", older_than, "must be a timedelta of 0 or more")
        _limit(batch, "batch")
        before = self._crm.clock.now() - older_than
        purged = 0
        while True:
            gone = self._run(tenant, lambda uow: uow.outbox().purge(before=before, limit=batch))
            purged += gone
            if gone < batch:
                return purged
