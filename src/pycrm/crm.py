"""The CRM facade and :func:`connect`, where everything is wired together."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pluggy

from pycrm.domain.assessments import ConsolidationRule
from pycrm.domain.audit import AuditEntry
from pycrm.domain.contracts import ApprovalPolicy, ApprovalStep, Contract
from pycrm.domain.events import Event
from pycrm.domain.ids import new_id
from pycrm.domain.leads import Lead
from pycrm.domain.money import Money
from pycrm.domain.org import SYSTEM_ACTOR_ID, Actor, User
from pycrm.domain.permissions import DEFAULT_POLICY, Policy
from pycrm.domain.query import In, all_of
from pycrm.domain.quotes import Quote
from pycrm.domain.tasks import DEFAULT_FOLLOWUPS, Followup
from pycrm.domain.tickets import OPEN_TICKET_STATUSES, SlaPolicy, Ticket
from pycrm.errors import (
    ConfigurationError,
    CRMError,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from pycrm.mail import MailAcknowledgement, MailSender
from pycrm.ports import BlobStore, Clock, Store, SystemClock, UnitOfWork
from pycrm.regions import region_code
from pycrm.rules.approvals import PolicyApprovals
from pycrm.rules.context import RuleContext
from pycrm.rules.engine import CallableRouter, RuleEngine, make_plugin_manager
from pycrm.rules.pricing import PriceLists
from pycrm.rules.reminders import Reminders
from pycrm.rules.routing import RoutingRule, RuleBook, parse_rules
from pycrm.rules.scoring import Scorer, ScoringRules
from pycrm.session import Session

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from pycrm.outbox import Outbox

__all__ = ["CRM", "DEFAULT_TENANT", "DEFAULT_URL", "connect"]

#: Where ``pycrm.connect()`` keeps its data when given no URL.
DEFAULT_URL = "sqlite:///pycrm.db"

#: The tenant of a session opened without ``tenant=``.
DEFAULT_TENANT = "default"

LeadRouter = Callable[[Session, Lead], "tuple[str, str] | None"]
"""Chooses a lead's owner: returns ``(owner_id, reason)`` or None to leave it unassigned."""

_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


class CRM:
    """A connected CRM: opens sessions, owns the clock and settings. Build it with :func:`connect`."""

    system_actor: Actor = Actor(SYSTEM_ACTOR_ID, "system", ("admin",))
    """The built-in actor for setup and scripts; its writes are audited as ``system``."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        default_region: str | None = None,
        assessment_rules: Mapping[str, ConsolidationRule] | None = None,
        currency: str = "EUR",
        approval_policy: ApprovalPolicy | None = None,
        first_contact_within: timedelta = timedelta(hours=24),
        followups: Mapping[str, Followup] | None = None,
        lead_router: LeadRouter | None = None,
        routing_rules: Sequence[RoutingRule | Mapping[str, Any]] = (),
        scoring: ScoringRules | Mapping[str, Any] | None = None,
        lead_departments: Sequence[str] = ("sales",),
        plugins: pluggy.PluginManager | None = None,
        on_duplicate: str = "warn",
        duplicate_threshold: float = 0.8,
        merge_threshold: float = 0.95,
        policy: Policy | Mapping[str, Any] | str | None = None,
        sla_policy: SlaPolicy | None = None,
        ticket_departments: Sequence[str] = ("service",),
        blob_store: BlobStore | None = None,
        mail_sender: MailSender | None = None,
    ) -> None:
        try:
            Money.zero(currency)
        except CRMError:
            raise ConfigurationError(f"currency {currency!r} is not an ISO 4217 code") from None
        if default_region is not None:
            try:
                default_region = region_code(default_region)
            except ValidationError as exc:
                raise ConfigurationError(
                    f"default_region {default_region!r} {exc.reason}"
                ) from None
        self.store = store
        """The storage adapter."""
        self.clock: Clock = clock or SystemClock()
        """The clock every timestamp and deadline comes from."""
        self.default_region: str | None = default_region
        """Region for phone numbers written without a country code (None: they are refused).

        The default of the runtime setting ``default_region``: a tenant's
        stored setting (``s.settings``) takes its place.
        """
        self.assessment_rules: dict[str, ConsolidationRule] = dict(assessment_rules or {})
        """Attribute → rule that consolidates several sources' ratings (default: latest)."""
        self.currency: str = currency
        """Currency of amounts created without one (e.g. a deal opened on lead conversion)."""
        self.approval_policy = approval_policy or ApprovalPolicy()
        """Decides which approvals a contract needs (see :class:`ApprovalPolicy`)."""
        self.first_contact_within = first_contact_within
        """How soon after assignment the owner must first contact a lead (a task is due then)."""
        self.followups: dict[str, Followup] = dict(
            DEFAULT_FOLLOWUPS if followups is None else followups
        )
        """Behaviour event name → the follow-up task it creates for the contact's owner."""
        if on_duplicate not in ("block", "warn", "merge", "allow"):
            raise ConfigurationError("on_duplicate must be block, warn, merge or allow")
        if not 0 < duplicate_threshold <= merge_threshold <= 1:
            raise ConfigurationError("need 0 < duplicate_threshold <= merge_threshold <= 1")
        self.on_duplicate = on_duplicate
        """What creates do with a likely duplicate: ``block``, ``warn`` (default), ``merge``, ``allow``."""
        self.duplicate_threshold = duplicate_threshold
        """Match score from which two records count as duplicates."""
        self.merge_threshold = merge_threshold
        """Match score from which policy ``merge`` folds a new record into the existing one."""
        if policy is None:
            policy = DEFAULT_POLICY
        elif isinstance(policy, str):
            policy = Policy.load(policy)
        elif not isinstance(policy, Policy):
            policy = Policy.from_dict(policy)
        self.policy: Policy = policy
        """Who may do what (:data:`~pycrm.domain.permissions.DEFAULT_POLICY` unless replaced).

        Pass ``policy=DEFAULT_POLICY.extend({...})`` to add grants, or a
        :class:`Policy`, a dict or a JSON file path to replace it.
        """
        self.lead_departments = tuple(lead_departments)
        if blob_store is None:
            from pycrm.adapters.blobs import MemoryBlobStore

            blob_store = MemoryBlobStore()
        self.blob_store: BlobStore = blob_store
        """Where document bytes live (a directory beside a SQLite file by default)."""
        self.sla_policy: SlaPolicy = sla_policy or SlaPolicy()
        """Ticket response and resolution targets and the calendar they count in.

        The default of the runtime setting ``sla_policy`` (see ``s.settings``).
        """
        try:
            self.routing_rules: tuple[RoutingRule, ...] = parse_rules(routing_rules)
            """The routing rules: the default of the runtime setting ``routing_rules``."""
            self.scoring: ScoringRules = ScoringRules.parse(
                ScoringRules() if scoring is None else scoring
            )
            """The lead scorer's weights: the default of the runtime setting ``scoring``."""
        except ValidationError as exc:
            raise ConfigurationError(f"{exc.field}: {exc.reason}") from None
        self._settings_cache: dict[str, tuple[int, dict[str, Any]]] = {}
        """Tenant → (the stored settings' version sum, their parsed values), for every session."""
        if not ticket_departments:
            raise ConfigurationError("ticket_departments needs at least one department")
        self.ticket_departments = tuple(ticket_departments)
        """Departments whose users are candidates for new tickets (the first gets escalation tasks)."""
        """Departments whose users are candidates for new leads."""
        self.plugins: pluggy.PluginManager = plugins or make_plugin_manager(load_entry_points=False)
        """This CRM's pluggy plugin manager: ``crm.plugins.register(my_rules)``.

        The built-in rules are registered as ``pycrm.routing`` (the
        ``routing_rules`` setting), ``pycrm.scoring`` (the ``scoring``
        setting), ``pycrm.reminders``, ``pycrm.approvals`` and
        ``pycrm.pricing`` (prices from the price lists), and with a
        ``mail_sender`` ``pycrm.acknowledgement``; unregister or
        outrank them to change pycrm's behaviour.
        """
        for name, plugin in (
            ("pycrm.routing", RuleBook(self.routing_rules, setting="routing_rules")),
            ("pycrm.scoring", Scorer(setting="scoring")),
            ("pycrm.reminders", Reminders()),
            ("pycrm.approvals", PolicyApprovals()),
            ("pycrm.pricing", PriceLists()),
        ):
            if self.plugins.get_plugin(name) is None:
                self.plugins.register(plugin, name=name)
        if lead_router is not None:
            self.plugins.register(CallableRouter(lead_router), name="pycrm.lead_router")
        self.rules = RuleEngine(self.plugins)
        """Runs the plugins' hooks and checks what they return."""
        if mail_sender is not None and not callable(getattr(mail_sender, "send", None)):
            raise ConfigurationError("mail_sender must have a send(message) method")
        self.mail_sender: MailSender | None = mail_sender
        """Sends pycrm's mail (acknowledgements of tickets opened by email), or None: none is sent.

        With one, the built-in plugin ``pycrm.acknowledgement``
        (:class:`~pycrm.mail.MailAcknowledgement`) is registered.
        """
        if mail_sender is not None and self.plugins.get_plugin("pycrm.acknowledgement") is None:
            self.plugins.register(MailAcknowledgement(), name="pycrm.acknowledgement")

    def approval_steps(self, session: Session, contract: Contract | Quote) -> list[ApprovalStep]:
        """The approval steps a contract or quote needs: what the ``pycrm_approvals`` hooks ask."""
        return self.rules.approvals(contract, RuleContext(session))

    def _open_items(self, session: Session, kind: str, user_ids: list[str]) -> dict[str, int]:
        if kind != "ticket":
            raise ConfigurationError(f"pycrm cannot count open {kind}s")
        where = all_of([In("status", OPEN_TICKET_STATUSES), In("assignee_id", user_ids)])
        return session._uow.repo(Ticket).count_by("assignee_id", where)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (SQL adapters only)."""
        engine = getattr(self.store, "engine", None)
        if engine is None:
            raise ConfigurationError("this CRM has no SQL engine (it uses the memory adapter)")
        return engine  # type: ignore[no-any-return]

    def session(
        self,
        actor: str | User | Actor | None = None,
        *,
        tenant: str | None = None,
        connection: Connection | None = None,
    ) -> Session:
        """Open a unit of work as ``actor`` (a user id, a User, or :attr:`system_actor`).

        Use it in a ``with`` block: it commits at the end and rolls back on error.

        With ``connection`` (SQL adapters), pycrm works inside your own open
        transaction on that connection, under a savepoint: your commit makes
        pycrm's writes and yours durable together, and your rollback undoes both.
        The session's signals are sent when your transaction commits, never if
        it rolls back; refused attempts are audited inside your transaction.

        :raises NotFound: when the user does not exist in the tenant.
        :raises PermissionDenied: when the user is inactive.
        """
        if actor is None:
            raise ConfigurationError("crm.session() needs an actor: a user id or crm.system_actor")
        tenant_id = self._tenant(tenant)
        if connection is None:
            uow = self.store.begin(tenant_id)
        else:
            join = getattr(self.store, "join", None)
            if join is None:
                raise ConfigurationError("connection= needs a SQL adapter")
            uow = join(connection, tenant_id)
        try:
            resolved = self._resolve(uow, actor)
        except BaseException:
            uow.rollback()
            raise
        return Session(self, uow, resolved)

    @staticmethod
    def _tenant(tenant: str | None) -> str:
        tenant_id = DEFAULT_TENANT if tenant is None else tenant
        if not isinstance(tenant_id, str) or not _TENANT.fullmatch(tenant_id):
            raise ConfigurationError(
                f"tenant {tenant!r} must be 1-64 letters, digits, '.', '_' or '-'"
            )
        return tenant_id

    def _begin(self, tenant: str | None) -> UnitOfWork:
        return self.store.begin(self._tenant(tenant))

    def _record_apart(self, tenant: str, entries: list[AuditEntry]) -> None:
        """Write audit entries (refusals, exports) in a transaction of their own: they outlive a rollback."""
        uow = self.store.begin(tenant)
        try:
            for entry in entries:
                uow.repo(AuditEntry).add(entry)
            uow.commit()
        except BaseException:
            uow.rollback()
            raise

    @cached_property
    def outbox(self) -> Outbox:
        """The transactional outbox, for relaying events to other processes."""
        from pycrm.outbox import Outbox

        return Outbox(self)

    def _resolve(self, uow: Any, actor: str | User | Actor) -> Actor:
        if isinstance(actor, Actor):
            if actor.is_system:
                return actor
            actor = actor.id
        if isinstance(actor, User):
            actor = actor.id
        if not isinstance(actor, str):
            raise ConfigurationError(
                f"actor must be a user id, a User or crm.system_actor, not {actor!r}"
            )
        user = uow.repo(User).get(actor)
        if user is None:
            raise NotFound("user", actor)
        if not user.active:
            self._record_apart(
                uow.tenant_id,
                [
                    AuditEntry(
                        id=new_id(),
                        tenant_id=uow.tenant_id,
                        at=self.clock.now(),
                        actor_id=user.id,
                        department=user.department,
                        action="denied:open_session",
                        record_type="user",
                        record_id=user.id,
                        changes={"reason": [None, "the user is deactivated"]},
                    )
                ],
            )
            raise PermissionDenied(actor, "open a session as", "user", "the user is deactivated")
        return Actor.of(user)

    def _dispatch(self, events: list[Event]) -> None:
        from pycrm.signals import dispatch

        dispatch(self, events)

    def close(self) -> None:
        """Release the database connections pycrm opened (a passed-in engine stays open)."""
        self.store.close()

    def __enter__(self) -> CRM:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect(
    target: str | Engine | None = None,
    *,
    schema: str | None = None,
    table_prefix: str = "pycrm_",
    clock: Clock | None = None,
    default_region: str | None = None,
    assessment_rules: Mapping[str, ConsolidationRule] | None = None,
    load_plugins: bool = True,
    **settings: Any,
) -> CRM:
    """Connect to a CRM database, creating or migrating its tables if needed.

    :param target: ``"memory://"`` for the in-memory adapter; a SQLAlchemy URL
        (``"sqlite:///crm.db"``, ``"postgresql+psycopg://…"``); an existing
        :class:`sqlalchemy.engine.Engine` to share with your application; or
        None for the embedded default, the SQLite file ``./pycrm.db``.
    :param schema: database schema for pycrm's tables (PostgreSQL).
    :param table_prefix: prefix of pycrm's table names, so they sit beside
        your own tables.
    :param clock: where time comes from (inject a fake one in tests).
    :param default_region: ISO 3166 region for phone numbers written without
        a country code, e.g. ``"DE"`` (or ``"de"``).
    :param assessment_rules: attribute → consolidation rule, e.g.
        ``{"grade": by_priority("sales", "service")}``.
    :param load_plugins: load the plugins installed under the ``pycrm`` entry-point group.
    :param settings: further :class:`CRM` settings: ``currency``,
        ``approval_policy``, ``first_contact_within``, ``followups``,
        ``lead_router``, ``routing_rules``, ``scoring`` (the lead scorer's
        weights), ``lead_departments``,
        ``on_duplicate``, ``duplicate_threshold``, ``merge_threshold``,
        ``policy`` (a :class:`~pycrm.domain.permissions.Policy`, dict or JSON path),
        ``sla_policy``, ``ticket_departments``, ``blob_store`` (where document
        bytes live: a :class:`~pycrm.adapters.blobs.FileBlobStore` beside a SQLite
        file by default, ``./pycrm-files`` for other databases), ``mail_sender``
        (a :class:`~pycrm.mail.MailSender` such as :class:`~pycrm.mail.SmtpSender`:
        tickets opened by email are acknowledged through it).

    ``routing_rules``, ``scoring``, ``sla_policy`` and ``default_region`` are
    defaults: each tenant may store its own at runtime with ``s.settings``
    (see :class:`~pycrm.services.settings.SettingsService`), and every process
    uses the stored ones from its next session on.

    :raises ConfigurationError: on an unusable URL or setting.
    """
    if not isinstance(table_prefix, str) or not re.fullmatch(r"[a-z0-9_]{0,20}", table_prefix):
        raise ConfigurationError("table_prefix must be up to 20 lower-case letters, digits or _")
    options: dict[str, Any] = {
        "clock": clock,
        "default_region": default_region,
        "assessment_rules": assessment_rules,
        "plugins": make_plugin_manager(load_entry_points=load_plugins),
        **settings,
    }
    if target == "memory://":
        from pycrm.adapters.memory import MemoryStore

        return CRM(MemoryStore(), **options)
    if target is not None and not isinstance(target, str):
        from sqlalchemy.engine import Engine

        if not isinstance(target, Engine):
            raise ConfigurationError(
                f"connect() takes a URL or an Engine, not {type(target).__name__}"
            )
    from pycrm.adapters.sqlalchemy import open_store

    store = open_store(target or DEFAULT_URL, schema=schema, table_prefix=table_prefix)
    if options.get("blob_store") is None:
        options["blob_store"] = _default_blobs(store.engine)
    return CRM(store, **options)


def _default_blobs(engine: Engine) -> BlobStore:
    """Files beside a SQLite database file; ``./pycrm-files`` otherwise."""
    from pycrm.adapters.blobs import FileBlobStore, MemoryBlobStore

    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if engine.dialect.name == "sqlite":
        if not database or database == ":memory:":
            return MemoryBlobStore()
        return FileBlobStore(f"{database}.files")
    return FileBlobStore("pycrm-files")
