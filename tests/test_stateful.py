"""The memory and SQLite adapters, driven side by side with the same random operations, agree.

A hypothesis state machine applies each operation to a memory CRM and to a
SQLite CRM that share one FakeClock, and compares what comes back (via
``pycrm.serialization.to_dict``) after replacing every record id by its
creation number, so nothing but the ids may differ. Failing calls must fail
the same way on both. Each example runs in a tenant of its own on two stores
created once, so no example pays for creating a schema.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import pycrm
from pycrm.errors import CRMError, ValidationError
from pycrm.serialization import to_dict
from pycrm.session import Session
from pycrm.testing import FakeClock

NAMES = ["Acme", "acme GmbH", "ACME Ltd", "Beta", "Müller", "Zeta AG", "50% Off", "b_c", "Straße"]
EMAILS = ["anna@acme.example", "Anna@ACME.example", "bob@beta.example", "ceo@zeta.example"]
PHONES = ["030 1234567", "+49 30 1234567", "089 123456", "0171 2345678", "+44 20 7946 0958"]
TAGS = ["vip", "VIP", "export", "new", "Key Account"]
SEARCH_TEXTS = ["", "a", "ACME", "gmbh", "mü", "%", "_", "strasse", "ß", "zeta ag"]
BAD_PHONES = ["12", "call me", "+999 1", ""]

names = st.sampled_from(NAMES) | st.text(min_size=1, max_size=8)
emails = st.lists(st.sampled_from(EMAILS), max_size=2)
phones = st.lists(st.sampled_from(PHONES), max_size=2)
tags = st.lists(st.sampled_from(TAGS), max_size=3)


class SideBySide(RuleBasedStateMachine):
    """Every rule runs on both CRMs and compares the outcomes."""

    def __init__(self, stores: tuple[Any, Any], tenant: str) -> None:
        super().__init__()
        clock = FakeClock()
        self.clock = clock
        self.tenant = tenant
        self.crms = [pycrm.CRM(store, clock=clock, default_region="DE") for store in stores]
        self.ids: list[dict[str, str]] = [{}, {}]
        self.customers: list[tuple[str, str]] = []
        self.contacts: list[tuple[str, str]] = []
        self.users: list[tuple[str, str]] = [("system", "system")]
        created = self.both(
            lambda s: [
                s.org.create_user("Ada", "ada@example.com", "sales").id,
                s.org.create_user("Bob", "bob@example.com", "service").id,
            ]
        )
        for pair in zip(*created, strict=True):
            self.remember(pair)
            self.users.append(pair)

    # -- helpers -------------------------------------------------------------

    @contextmanager
    def session(self, index: int, actor: str = "system") -> Iterator[Session]:
        crm = self.crms[index]
        who = crm.system_actor if actor == "system" else actor
        with crm.session(actor=who, tenant=self.tenant) as s:
            yield s

    def both(
        self, call: Callable[[Session], Any], actor: tuple[str, str] = ("system",) * 2
    ) -> list[Any]:
        """Run ``call`` on memory, then on SQLite; return both results or raise if they differ in failing."""
        outcomes: list[tuple[str, Any]] = []
        for index in (0, 1):
            with self.session(index, actor[index]) as s:
                try:
                    outcomes.append(("ok", call(s)))
                except CRMError as exc:
                    fields = (
                        [e.field for e in exc.errors] if isinstance(exc, ValidationError) else []
                    )
                    outcomes.append(("error", (type(exc).__name__, fields)))
        (kind0, value0), (kind1, value1) = outcomes
        assert kind0 == kind1, outcomes
        if kind0 == "error":
            assert value0 == value1
            return [None, None]
        return [value0, value1]

    def remember(self, pair: tuple[str, str] | list[str]) -> None:
        token = f"#{len(self.ids[0])}"
        for index, id in enumerate(pair):
            assert id not in self.ids[index]
            self.ids[index][id] = token

    def plain(self, index: int, value: Any) -> Any:
        """``value`` as JSON-able data, every known id replaced by its creation token."""
        if isinstance(value, list | tuple):
            return [self.plain(index, v) for v in value]
        if isinstance(value, dict):
            return {k: self.plain(index, v) for k, v in value.items()}
        if isinstance(value, str):
            return self.ids[index].get(value, value)
        if value is None or isinstance(value, int | float | bool):
            return value
        return self.plain(index, to_dict(value))

    def same(self, results: list[Any]) -> None:
        assert self.plain(0, results[0]) == self.plain(1, results[1])

    def created(self, results: list[Any], into: list[tuple[str, str]]) -> None:
        if results[0] is None:
            return
        pair = (results[0].id, results[1].id)
        self.remember(pair)
        into.append(pair)
        self.same(results)

    # -- writes --------------------------------------------------------------

    @rule(name=names, emails=emails, phones=phones, tags=tags, owner=st.integers(0, 2))
    def create_customer(
        self, name: str, emails: list[str], phones: list[str], tags: list[str], owner: int
    ) -> None:
        owners = [None if owner == 0 else self.users[owner][i] for i in (0, 1)]
        results = [None, None]
        for index in (0, 1):
            with self.session(index) as s:
                try:
                    results[index] = s.customers.create(
                        name, emails=emails, phones=phones, tags=tags, owner_id=owners[index]
                    )
                except ValidationError as exc:
                    results[index] = [e.field for e in exc.errors]  # type: ignore[call-overload]
        if isinstance(results[0], list):
            assert results[0] == results[1]
            return
        self.created(results, self.customers)

    @rule(name=names, emails=emails, phones=phones, tags=tags, data=st.data())
    def create_contact(
        self, name: str, emails: list[str], phones: list[str], tags: list[str], data: st.DataObject
    ) -> None:
        employer = data.draw(st.sampled_from([None, *self.customers]))
        results = self.both_indexed(
            lambda s, i: s.contacts.create(
                name,
                customer_id=None if employer is None else employer[i],
                emails=emails,
                phones=phones,
                tags=tags,
            )
        )
        self.created(results, self.contacts)

    def both_indexed(self, call: Callable[[Session, int], Any], actor: int = 0) -> list[Any]:
        """Like :meth:`both`, for calls that need the backend's own ids."""
        index_of = iter((0, 1))
        pair = (self.users[actor][0], self.users[actor][1])
        return self.both(lambda s: call(s, next(index_of)), actor=pair)

    @precondition(lambda self: self.customers)
    @rule(data=st.data(), name=names, tags=tags, phones=phones, stale=st.booleans())
    def update_customer(
        self, data: st.DataObject, name: str, tags: list[str], phones: list[str], stale: bool
    ) -> None:
        target = data.draw(st.sampled_from(self.customers))
        fields = data.draw(
            st.fixed_dictionaries(
                {},
                optional={"name": st.just(name), "tags": st.just(tags), "phones": st.just(phones)},
            )
        )
        version = 0 if stale else None
        self.same(
            self.both_indexed(lambda s, i: s.customers.update(target[i], version=version, **fields))
        )

    @precondition(lambda self: self.contacts)
    @rule(data=st.data(), emails=emails)
    def update_contact(self, data: st.DataObject, emails: list[str]) -> None:
        target = data.draw(st.sampled_from(self.contacts))
        employer = data.draw(st.sampled_from([None, *self.customers]))
        self.same(
            self.both_indexed(
                lambda s, i: s.contacts.update(
                    target[i], emails=emails, customer_id=None if employer is None else employer[i]
                )
            )
        )

    @precondition(lambda self: self.customers)
    @rule(data=st.data(), restore=st.booleans())
    def archive_or_restore_customer(self, data: st.DataObject, restore: bool) -> None:
        target = data.draw(st.sampled_from(self.customers))
        if restore:
            self.same(self.both_indexed(lambda s, i: s.customers.restore(target[i])))
        else:
            self.same(self.both_indexed(lambda s, i: s.customers.archive(target[i])))

    @precondition(lambda self: self.contacts)
    @rule(data=st.data())
    def archive_contact(self, data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(self.contacts))
        self.same(self.both_indexed(lambda s, i: s.contacts.archive(target[i])))

    @precondition(lambda self: self.customers or self.contacts)
    @rule(
        data=st.data(),
        kind=st.sampled_from(["call", "email", "meeting", "note"]),
        private=st.booleans(),
        author=st.integers(0, 2),
        back=st.integers(0, 3),
    )
    def log_activity(
        self, data: st.DataObject, kind: str, private: bool, author: int, back: int
    ) -> None:
        on_contact = (
            data.draw(st.booleans()) if self.contacts and self.customers else bool(self.contacts)
        )
        target = data.draw(st.sampled_from(self.contacts if on_contact else self.customers))
        key = "contact_id" if on_contact else "customer_id"
        when = self.clock.now() - timedelta(hours=back)
        results = self.both_indexed(
            lambda s, i: s.activities.log(
                kind, f"{kind} {back}", occurred_at=when, private=private, **{key: target[i]}
            ),
            actor=author,
        )
        if results[0] is not None:
            self.remember((results[0].id, results[1].id))
            self.same(results)

    @precondition(lambda self: self.customers)
    @rule(
        data=st.data(),
        value=st.sampled_from(["A", "B", "C"]),
        source=st.sampled_from(["sales", "service"]),
    )
    def assess(self, data: st.DataObject, value: str, source: str) -> None:
        target = data.draw(st.sampled_from(self.customers))
        results = self.both_indexed(
            lambda s, i: s.customers.assess(target[i], "grade", value, source=source)
        )
        if results[0] is not None:
            self.remember((results[0].id, results[1].id))
            self.same(results)

    @rule(phone=st.sampled_from(BAD_PHONES), name=names)
    def fail_to_create(self, phone: str, name: str) -> None:
        self.both(lambda s: s.customers.create(name, phones=[phone]))

    @rule(minutes=st.integers(0, 600))
    def advance_clock(self, minutes: int) -> None:
        self.clock.advance(minutes=minutes)

    # -- reads -----------------------------------------------------------------

    @rule(
        text=st.sampled_from(SEARCH_TEXTS) | st.none(),
        email=st.sampled_from([None, *EMAILS]),
        tag=st.sampled_from([None, *TAGS]),
        archived=st.booleans(),
        page=st.tuples(st.integers(1, 5), st.integers(0, 3)),
    )
    def search_customers(
        self,
        text: str | None,
        email: str | None,
        tag: str | None,
        archived: bool,
        page: tuple[int, int],
    ) -> None:
        self.same(
            self.both(
                lambda s: s.customers.search(
                    text,
                    email=email,
                    tag=tag,
                    include_archived=archived,
                    limit=page[0],
                    offset=page[1],
                )
            )
        )

    @rule(phone=st.sampled_from(PHONES))
    def search_by_phone(self, phone: str) -> None:
        self.same(
            self.both(lambda s: [s.customers.search(phone=phone), s.contacts.search(phone=phone)])
        )

    @rule(
        text=st.sampled_from(SEARCH_TEXTS) | st.none(),
        company=st.sampled_from([None, *SEARCH_TEXTS]),
        email=st.sampled_from([None, *EMAILS]),
        tag=st.sampled_from([None, *TAGS]),
    )
    def search_contacts(
        self, text: str | None, company: str | None, email: str | None, tag: str | None
    ) -> None:
        self.same(
            self.both(lambda s: s.contacts.search(text, company=company, email=email, tag=tag))
        )

    @precondition(lambda self: self.customers)
    @rule(data=st.data(), reader=st.integers(0, 2))
    def view_and_timeline(self, data: st.DataObject, reader: int) -> None:
        target = data.draw(st.sampled_from(self.customers))
        self.same(
            self.both_indexed(
                lambda s, i: [
                    s.customers.view(target[i]),
                    s.customers.timeline(target[i], limit=5),
                    s.customers.history(target[i]),
                    s.customers.assessments(target[i]),
                ],
                actor=reader,
            )
        )

    @invariant()
    def counts_agree(self) -> None:
        self.same(
            self.both(
                lambda s: [
                    s.customers.count(),
                    s.customers.count(include_archived=True),
                    len(s.audit.find(limit=1000)),
                ]
            )
        )


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    path: Path = tmp_path_factory.mktemp("stateful") / "crm.db"
    memory = pycrm.connect("memory://", load_plugins=False)
    sqlite = pycrm.connect(f"sqlite:///{path}", load_plugins=False)
    yield memory.store, sqlite.store
    sqlite.close()


def test_memory_and_sqlite_agree_on_every_random_sequence_of_operations(
    stores: tuple[Any, Any],
) -> None:
    tenants = (f"t{n}" for n in itertools.count())
    run_state_machine_as_test(
        lambda: SideBySide(stores, next(tenants)),
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
