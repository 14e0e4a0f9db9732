"""A session: one actor, one tenant, one unit of work, and the services on it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from pycrm.domain.aggregates import GroupKey, Measure
from pycrm.domain.audit import CHECKPOINT, AuditEntry, compact, diff
from pycrm.domain.custom_fields import FieldDefinition
from pycrm.domain.events import Event
from pycrm.domain.ids import new_id
from pycrm.domain.org import Actor, User
from pycrm.domain.outbox import OutboxMessage
from pycrm.domain.query import Eq, Filter, OrderBy, all_of, simplify
from pycrm.domain.records import Record, Stored
from pycrm.errors import ConcurrencyError, ConfigurationError
from pycrm.ports import UnitOfWork
from pycrm.rules.context import RuleContext, TaskSpec
from pycrm.serialization import to_dict

S = TypeVar("S", bound=Stored)
R = TypeVar("R", bound=Record)

if TYPE_CHECKING:
    from pycrm.crm import CRM
    from pycrm.services.activities import ActivityService
    from pycrm.services.analytics import AnalyticsService
    from pycrm.services.audit import AuditService
    from pycrm.services.campaigns import CampaignService
    from pycrm.services.consent import ConsentService
    from pycrm.services.contacts import ContactService
    from pycrm.services.contracts import ContractService
    from pycrm.services.customers import CustomerService
    from pycrm.services.deals import DealService
    from pycrm.services.dedupe import DedupeService
    from pycrm.services.documents import DocumentService
    from pycrm.services.exports import ExportService
    from pycrm.services.fields import CategoryService, FieldService
    from pycrm.services.guard import Guard
    from pycrm.services.imports import ImporterService
    from pycrm.services.leads import LeadService
    from pycrm.services.mail import MailService
    from pycrm.services.org import OrgService
    from pycrm.services.privacy import PrivacyService
    from pycrm.services.products import PriceListService, ProductService, RateService
    from pycrm.services.quotes import QuoteService
    from pycrm.services.receivables import ReceivableService
    from pycrm.services.retention import RetentionService
    from pycrm.services.settings import SettingsService
    from pycrm.services.tasks import TaskService
    from pycrm.services.tickets import ArticleService, TicketService

__all__ = ["Session"]


class Session:
    """One unit of work as one actor in one tenant.

    Use it as a context manager: it commits when the block ends normally and
    rolls back when it raises. Signals for its work are sent after the commit.
    A call that raises a :class:`~pycrm.errors.CRMError` inside the block
    undoes its own writes, so the session can go on.
    """

    def __init__(self, crm: CRM, uow: UnitOfWork, actor: Actor) -> None:
        self.crm = crm
        """The CRM this session belongs to."""
        self.actor = actor
        """Who this session acts as."""
        self._unit = uow
        self.tenant_id = uow.tenant_id
        """The tenant every read and write is scoped to."""
        self._events: list[Event] = []
        self._open = True
        self._versions: dict[str, int] = {}
        """Record id → the version this session first read it at (or last wrote)."""
        self._version_log: list[tuple[str, int | None]] = []
        """Undo log of ``_versions`` for savepoint rollbacks."""
        self._wrote = False
        self._lasting: list[AuditEntry] = []
        """Audit entries that outlive the session's outcome (see ``_audit_apart``)."""
        self._afterwards: list[Callable[[], None]] = []
        """Work for after the commit, such as sending mail (see ``_after_commit``)."""

    @property
    def _uow(self) -> UnitOfWork:
        """The unit of work (for adapters and services); refused once the session has ended."""
        self._check_open()
        return self._unit

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self.rollback()

    def commit(self) -> None:
        """Commit the work and then send its signals. The session is closed afterwards.

        :raises PermissionDenied: (and rolls back) when the session wrote and
            its user was deactivated in the meantime.
        """
        self._check_open()
        if self._wrote:
            try:
                self._check_active(lock=True)
            except BaseException:
                self.rollback()
                raise
        self._open = False
        events, self._events = self._events, []
        afterwards, self._afterwards = self._afterwards, []
        try:
            self._unit.commit()
        finally:
            self._flush_lasting()

        def committed() -> None:
            self.crm._dispatch(events)
            for work in afterwards:
                work()

        if getattr(self._unit, "joined", False):
            # Inside the caller's transaction: the signals wait for the caller's
            # commit, and are dropped on its rollback.
            self._unit.after_outer_commit(committed)  # type: ignore[attr-defined]
        else:
            committed()

    def rollback(self) -> None:
        """Discard the work; no signal is sent. The session is closed afterwards."""
        if not self._open:
            return
        self._open = False
        self._events = []
        self._afterwards = []
        try:
            self._unit.rollback()
        finally:
            self._flush_lasting()

    def _after_commit(self, work: Callable[[], None]) -> None:
        """Do ``work`` once the session's work is committed (after its signals); never on rollback.

        Work queued by a service call that raises is dropped with the call's
        writes. ``work`` must not raise: it runs after the commit, when the
        caller can no longer undo anything (log failures instead).
        """
        self._afterwards.append(work)

    def _audit_apart(self, entry: AuditEntry) -> None:
        """Audit ``entry`` whatever becomes of the session's work (a refusal, an export)."""
        self._lasting.append(entry)

    def _flush_lasting(self) -> None:
        """Write the entries audited apart, so that they outlive the session's rollback.

        They go in a transaction of their own, after the session's (so an
        export never holds SQLite's write lock while it reads), except in a
        session joined to the caller's SQLite connection: that connection may
        hold the database's one write lock, so they go into the caller's
        transaction (after this session's savepoint ended), and a caller's
        rollback undoes them.
        """
        if not self._lasting:
            return
        entries, self._lasting = self._lasting, []
        if getattr(self._unit, "writes_apart", True):
            self.crm._record_apart(self.tenant_id, entries)
        else:
            self._unit.repo(AuditEntry).add_many(entries)

    def _field_definitions(self, entity: str) -> dict[str, FieldDefinition]:
        """The custom field definitions of ``entity`` by key (read once per session)."""
        cache: dict[str, dict[str, FieldDefinition]] = self.__dict__.setdefault("_field_cache", {})
        if entity not in cache:
            found = self._unit.repo(FieldDefinition).find(Eq("entity", entity))
            cache[entity] = {d.key: d for d in found}
        return cache[entity]

    def _uow_index(self, entity: str, key: str) -> None:
        """Index custom field ``key`` of ``entity`` where the adapter can (SQL expression index)."""
        index = getattr(self._uow, "index_json_key", None)
        if index is not None:
            from pycrm.domain import RECORD_BY_RESOURCE

            index(RECORD_BY_RESOURCE[entity], "custom", key)

    @cached_property
    def _guard(self) -> Guard:
        """The actor's rights under the CRM's policy."""
        from pycrm.services.guard import Guard

        return Guard(self)

    def read(self, cls: type[S], *, quiet: bool = False) -> Reader[S]:
        """Read records of ``cls`` as the actor may: filtered in the query, hidden fields redacted.

        Without any read grant for ``cls`` a read raises PermissionDenied, or
        with ``quiet`` finds nothing (for composite views such as the 360 view).
        """
        return Reader(self, cls, quiet)

    def _check_open(self) -> None:
        if not self._open:
            raise ConfigurationError("this session has ended; open a new one with crm.session()")

    # -- what services share -------------------------------------------------

    def _now(self) -> datetime:
        """The CRM clock's current time."""
        return self.crm.clock.now()

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        """Make one service call all-or-nothing: its writes and events vanish if it raises.

        The session's first write checks that its user is still active.
        """
        self._check_open()
        if not self._wrote:
            self._check_active()
            self._wrote = True
        events, versions = len(self._events), len(self._version_log)
        afterwards = len(self._afterwards)
        try:
            with self._uow.savepoint():
                yield
        except BaseException:
            del self._events[events:]
            del self._afterwards[afterwards:]
            while len(self._version_log) > versions:
                id, version = self._version_log.pop()
                if version is None:
                    self._versions.pop(id, None)
                else:
                    self._versions[id] = version
            raise

    def _check_active(self, *, lock: bool = False) -> None:
        """Refuse to write as a user deactivated since the session opened."""
        if self.actor.is_system:
            return
        user = self._unit.repo(User).get(self.actor.id, lock=lock)
        if user is None or not user.active:
            self._guard.deny("write", "user", self.actor.id, "the user was deactivated")

    def _saw(self, records: Iterable[Stored]) -> None:
        """Remember the version each record had when this session first read it."""
        for record in records:
            version = getattr(record, "version", None)
            if version is not None:
                self._versions.setdefault(record.id, version)

    def _revise(self, current: R, action: str, *, event: str | None = None, **changes: Any) -> R:
        """Write the next version of ``current`` with ``changes``, audited as ``action``."""
        updated = attrs.evolve(
            current,
            **changes,
            version=current.version + 1,
            updated_at=self._now(),
            updated_by=self.actor.id,
        )
        self._replace(updated, current)
        self._record(action, current, updated, event=event)
        return updated

    def _delete(self, current: Record, action: str = "delete", *, event: str | None = None) -> None:
        """Remove ``current`` from the store, audited as ``action``, and queue its event.

        Refused with ConcurrencyError like :meth:`_replace`. The audit entry
        keeps the record as it was (its snapshot), so the trail shows what
        went and who removed it; the event's ``before`` holds it too.
        """
        self._check_fresh(current)
        self._uow.repo(type(current)).delete(current.id, current.version)
        self._version_log.append((current.id, self._versions.get(current.id)))
        self._versions.pop(current.id, None)
        gone = to_dict(current)
        self._uow.repo(AuditEntry).add(
            AuditEntry(
                id=new_id(),
                tenant_id=self.tenant_id,
                at=self._now(),
                actor_id=self.actor.id,
                department=self.actor.department,
                action=action,
                record_type=current.resource,
                record_id=current.id,
                snapshot={k: v for k, v in gone.items() if v is not None and v != [] and v != {}},
            )
        )
        if event is not None:
            self._emit(event, current, before=gone)

    def _check_fresh(self, current: Record) -> None:
        """Raise ConcurrencyError if ``current`` is newer than the version this session read."""
        expected = self._versions.get(current.id, current.version)
        if expected != current.version:
            raise ConcurrencyError(current.resource, current.id, expected, current.version)

    def _replace(self, updated: R, current: R) -> None:
        """Store ``updated`` in place of ``current`` (both versions of one record).

        Refused with ConcurrencyError when ``current`` is not the version this
        session read earlier (someone changed the record since), so a
        read-modify-write never silently overwrites another session's change,
        with or without ``version=``. Then the store's own compare-and-swap
        refuses a change made since ``current`` was loaded.
        """
        self._check_fresh(current)
        self._uow.repo(type(updated)).replace(updated, current.version)
        self._version_log.append((current.id, self._versions.get(current.id)))
        self._versions[current.id] = updated.version

    def _stamp(self, **fields: Any) -> dict[str, Any]:
        """The bookkeeping fields of a new record created now by this actor."""
        now = self._now()
        return {
            "id": new_id(),
            "tenant_id": self.tenant_id,
            "created_at": now,
            "created_by": self.actor.id,
            "updated_at": now,
            "updated_by": self.actor.id,
            **fields,
        }

    def _record(
        self,
        action: str,
        before: Record | None,
        after: Record,
        *,
        event: str | None = None,
    ) -> None:
        """Audit one write and queue its event.

        A creation's entry holds the new record once (its snapshot, empty
        fields left out); an update's holds only the changed fields, plus a
        checkpoint snapshot every :data:`~pycrm.domain.audit.CHECKPOINT`
        versions. The event carries the record after the write (empty fields
        left out) and, for an update, the changed fields' old values.
        """
        new = to_dict(after)
        old: dict[str, Any] | None
        snapshot: dict[str, Any] | None
        if before is None:
            old, changes, snapshot = None, {}, compact(new)
        else:
            full = to_dict(before)
            changes = diff(full, new)
            old = {name: full.get(name) for name in changes}
            checkpoint = getattr(after, "version", 1) % CHECKPOINT == 0
            snapshot = compact(new) if checkpoint else None
        entry = AuditEntry(
            id=new_id(),
            tenant_id=self.tenant_id,
            at=after.updated_at,
            actor_id=self.actor.id,
            department=self.actor.department,
            action=action,
            record_type=after.resource,
            record_id=after.id,
            changes=changes,
            snapshot=snapshot,
        )
        self._uow.repo(AuditEntry).add(entry)
        if event is not None:
            self._emit(event, after, before=old, after=snapshot or compact(new))

    def _emit(
        self,
        name: str,
        record: Record,
        *,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> Event:
        """Queue an event for its signal (sent after commit) and write it to the outbox now.

        The outbox row is part of this unit of work, so it commits or rolls
        back with the work it describes.
        """
        event = Event(
            id=new_id(),
            name=name,
            tenant_id=self.tenant_id,
            actor_id=self.actor.id,
            occurred_at=self._now(),
            record_type=record.resource,
            record_id=record.id,
            before=before,
            after=after,
        )
        self._events.append(event)
        stamp = self._stamp(id=event.id)
        self._uow.repo(OutboxMessage).add(
            OutboxMessage(**stamp, name=name, payload=to_dict(event), record_id=record.id)
        )
        if name != "task_created":  # tasks do not beget tasks: no reminder loops
            self._create_tasks(self.crm.rules.followups(event, RuleContext(self)))
        return event

    def _create_tasks(self, specs: Sequence[TaskSpec]) -> None:
        """Create the tasks that followups hooks asked for."""
        with self._guard.bypass():  # the rules' reminders, not the actor's own tasks
            for spec in specs:
                self.tasks.create(**attrs.asdict(spec, recurse=False))

    # -- services ----------------------------------------------------------

    @cached_property
    def customers(self) -> CustomerService:
        """Companies: create, search, update, archive, timeline, 360 view, history, assessments."""
        from pycrm.services.customers import CustomerService

        return CustomerService(self)

    @cached_property
    def contacts(self) -> ContactService:
        """People: create, search, update, archive, timeline, history."""
        from pycrm.services.contacts import ContactService

        return ContactService(self)

    @cached_property
    def activities(self) -> ActivityService:
        """Calls, emails, meetings and notes, public or private to their author."""
        from pycrm.services.activities import ActivityService

        return ActivityService(self)

    @cached_property
    def org(self) -> OrgService:
        """Users, departments and teams."""
        from pycrm.services.org import OrgService

        return OrgService(self)

    @cached_property
    def audit(self) -> AuditService:
        """The audit trail, read-only."""
        from pycrm.services.audit import AuditService

        return AuditService(self)

    @cached_property
    def dedupe(self) -> DedupeService:
        """Duplicate checks, scans, merges, unmerges and the cleansing report."""
        from pycrm.services.dedupe import DedupeService

        return DedupeService(self)

    @cached_property
    def leads(self) -> LeadService:
        """Leads: capture, assign, contact, qualify, convert, disqualify."""
        from pycrm.services.leads import LeadService

        return LeadService(self)

    @cached_property
    def deals(self) -> DealService:
        """Deals and pipelines."""
        from pycrm.services.deals import DealService

        return DealService(self)

    @cached_property
    def contracts(self) -> ContractService:
        """Contracts, approvals and payment schedules."""
        from pycrm.services.contracts import ContractService

        return ContractService(self)

    @cached_property
    def receivables(self) -> ReceivableService:
        """Receivables and payments."""
        from pycrm.services.receivables import ReceivableService

        return ReceivableService(self)

    @cached_property
    def tickets(self) -> TicketService:
        """The service desk: tickets, SLAs, escalation, satisfaction."""
        from pycrm.services.tickets import TicketService

        return TicketService(self)

    @cached_property
    def products(self) -> ProductService:
        """The catalogue: products and services by SKU or the ERP's id."""
        from pycrm.services.products import ProductService

        return ProductService(self)

    @cached_property
    def price_lists(self) -> PriceListService:
        """Price lists, their prices with quantity breaks, and a product's price."""
        from pycrm.services.products import PriceListService

        return PriceListService(self)

    @cached_property
    def quotes(self) -> QuoteService:
        """Quotes drafted from deals: priced lines, approval, sending, acceptance, versions."""
        from pycrm.services.quotes import QuoteService

        return QuoteService(self)

    @cached_property
    def rates(self) -> RateService:
        """Dated exchange rates, conversions and the reporting currency."""
        from pycrm.services.products import RateService

        return RateService(self)

    @cached_property
    def articles(self) -> ArticleService:
        """The knowledge base."""
        from pycrm.services.tickets import ArticleService

        return ArticleService(self)

    @cached_property
    def analytics(self) -> AnalyticsService:
        """Funnel, forecast, win rate, sources, RFM, aging and service figures."""
        from pycrm.services.analytics import AnalyticsService

        return AnalyticsService(self)

    @cached_property
    def campaigns(self) -> CampaignService:
        """Segments, campaigns, members and responses."""
        from pycrm.services.campaigns import CampaignService

        return CampaignService(self)

    @cached_property
    def consent(self) -> ConsentService:
        """Consent per lead and contact, purpose and channel: grants, withdrawals, proof."""
        from pycrm.services.consent import ConsentService

        return ConsentService(self)

    @cached_property
    def privacy(self) -> PrivacyService:
        """Access requests, erasure (pseudonymisation) and legal holds for one person."""
        from pycrm.services.privacy import PrivacyService

        return PrivacyService(self)

    @cached_property
    def retention(self) -> RetentionService:
        """Retention rules: which records are erased, deleted or cleared, when; preview and run."""
        from pycrm.services.retention import RetentionService

        return RetentionService(self)

    @cached_property
    def fields(self) -> FieldService:
        """Custom field definitions (and typed values)."""
        from pycrm.services.fields import FieldService

        return FieldService(self)

    @cached_property
    def categories(self) -> CategoryService:
        """Controlled, hierarchical categories."""
        from pycrm.services.fields import CategoryService

        return CategoryService(self)

    @cached_property
    def mail(self) -> MailService:
        """Email intake: an email to a ticket or a lead (``receive``)."""
        from pycrm.services.mail import MailService

        return MailService(self)

    @cached_property
    def documents(self) -> DocumentService:
        """Files attached to records, with versions."""
        from pycrm.services.documents import DocumentService

        return DocumentService(self)

    @cached_property
    def importer(self) -> ImporterService:
        """Bulk imports of leads, contacts and customers."""
        from pycrm.services.imports import ImporterService

        return ImporterService(self)

    @cached_property
    def export(self) -> ExportService:
        """Exports of customers, contacts, leads, deals, tickets, receivables, activities."""
        from pycrm.services.exports import ExportService

        return ExportService(self)

    @cached_property
    def tasks(self) -> TaskService:
        """Tasks and reminders."""
        from pycrm.services.tasks import TaskService

        return TaskService(self)

    @cached_property
    def settings(self) -> SettingsService:
        """The tenant's runtime settings: routing rules, scoring, SLA policy, default region."""
        from pycrm.services.settings import SettingsService

        return SettingsService(self)


class Reader(Generic[S]):
    """A repository view that applies the actor's read permissions (see :meth:`Session.read`).

    Every query ANDs in the actor's read filter; conditions over related
    records see only what the actor may read; filtering, sorting or grouping
    on a field hidden from the actor is refused; what comes back is redacted.
    Records read here are remembered with their version, so an update later
    in the session is checked against the version the session read.
    """

    def __init__(
        self, session: Session, cls: type[S], quiet: bool = False, *, remember: bool = True
    ) -> None:
        self._s = session
        self._cls = cls
        self._quiet = quiet
        self._remember = remember
        self._repo = session._uow.repo(cls)

    def _where(self, where: Filter | None, *fields: str) -> Filter | None:
        guard = self._s._guard
        guard.check_fields(self._cls, fields)
        allowed = guard.filter(self._cls, quiet=self._quiet)
        scoped = all_of([guard.confine(self._cls, where, quiet=self._quiet), allowed])
        # The permission filter covers every case the policy knows; the
        # query's own conditions often decide most of them.
        return scoped if allowed is None else simplify(scoped)

    def find(
        self,
        where: Filter | None = None,
        *,
        order_by: Sequence[OrderBy] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> list[S]:
        """The matching records the actor may read, in one query."""
        scoped = self._where(where, *(o.field for o in order_by))
        rows = self._repo.find(scoped, order_by=order_by, limit=limit, offset=offset)
        if self._remember:
            self._s._saw(rows)
        return self._s._guard.redact_page(self._cls, rows)

    def find_holders(
        self, kind: str, keys: Sequence[str], where: Filter | None = None, *, per_key: int
    ) -> dict[str, list[S]]:
        """For each key: the first ``per_key`` records the actor may read that hold it.

        The same records as ``find(HasKey(kind, key), limit=per_key)`` key by
        key (the check at the door's probes), in one query. A key of a field
        hidden from the actor is refused, as filtering on it would be.
        """
        self._s._guard.check_fields(self._cls, [self._cls.key_fields.get(kind, kind)])
        found = self._repo.find_holders(kind, keys, self._where(where), per_key=per_key)
        if self._remember:
            for records in found.values():
                self._s._saw(records)
        return {k: self._s._guard.redact_page(self._cls, v) for k, v in found.items()}

    def count(self, where: Filter | None = None) -> int:
        """How many matching records the actor may read."""
        return self._repo.count(self._where(where))

    def count_by(self, field: str, where: Filter | None = None) -> dict[Any, int]:
        """How many matching records the actor may read, per value of ``field`` (a GROUP BY)."""
        return self._repo.count_by(field, self._where(where, field))

    def aggregate(
        self, where: Filter | None, group_by: Sequence[GroupKey], measures: Mapping[str, Measure]
    ) -> list[dict[str, Any]]:
        """Group the matching records the actor may read and measure each group (one query)."""
        guard = self._s._guard
        named: list[str] = [
            str(getattr(k, "name", None) or getattr(k, "field", "")) for k in group_by
        ]
        confined: dict[str, Measure] = {}
        for name, measure in measures.items():
            named += [
                getattr(measure, part)
                for part in ("field", "weight", "start", "end")
                if isinstance(getattr(measure, part, None), str)
            ]
            inner = guard.confine(self._cls, measure.where, quiet=self._quiet)
            confined[name] = (
                measure if inner is measure.where else attrs.evolve(measure, where=inner)
            )
        return self._repo.aggregate(self._where(where, *named), group_by, confined)

    def get(self, id: str) -> S | None:
        """The record, if it exists and the actor may read it."""
        record = self._repo.get(id)
        if record is None or not self._s._guard.allows(record, "read"):
            return None
        self._s._saw([record])
        return self._s._guard.redact(record)
