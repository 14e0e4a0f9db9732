"""Relaying the outbox to real servers: webhooks, Redis streams, concurrent workers.

Webhooks go to a real HTTP server on 127.0.0.1 that checks every request's
``Pycrm-Signature``; Redis streams to the server named by
``PYCRM_TEST_REDIS_URL`` (the Redis tests skip without one, unless
``PYCRM_REQUIRE_REDIS=1``, as in CI, in which case they fail). Concurrent
workers are real OS processes (``relay_worker.py``) on one SQLite file or
PostgreSQL schema, all posting to one receiver: no event is lost, none is
sent twice in the normal case, each record's events arrive in order, and a
worker killed in the middle of a batch loses nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import pytest

import pycrm
from pycrm.cli import main
from pycrm.domain.events import Event
from pycrm.domain.outbox import OutboxMessage
from pycrm.errors import ConfigurationError, ValidationError
from pycrm.relays import (
    ENTRY_POINT_GROUP,
    Envelope,
    FunctionRelay,
    Relay,
    RelayReport,
    RetryPolicy,
    available_relays,
    load_relay,
    relays_from_config,
)
from pycrm.relays.redis_streams import RedisStreamRelay
from pycrm.relays.webhook import SIGNATURE_HEADER, WebhookRelay, sign, verify_signature
from pycrm.serialization import to_dict
from pycrm.session import Session
from pycrm.testing import FakeClock

ConnectFn = Callable[..., pycrm.CRM]
WORKER = Path(__file__).with_name("relay_worker.py")
SECRET = "whsec-test-0123456789abcdef"
REDIS_URL = os.environ.get("PYCRM_TEST_REDIS_URL")
REDIS_REQUIRED = os.environ.get("PYCRM_REQUIRE_REDIS") == "1"


# -- a real webhook receiver ----------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    valid: bool
    """Whether its signature verified with the receiver's secret."""

    @property
    def event_id(self) -> str:
        return self.headers.get("pycrm-event-id", "")

    @property
    def attempt(self) -> str:
        return self.headers.get("pycrm-attempt", "")

    @property
    def worker(self) -> str:
        return self.headers.get("x-worker", "")

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Receiver:
    """An HTTP/1.1 server on 127.0.0.1 that records every POST and checks its signature.

    It answers 204, unless told otherwise: ``answers[path]`` holds statuses
    to give next on that path, ``fail_ids[event_id]`` how many more times to
    answer 500 for that event, and a path in ``down`` always gets 503.
    """

    def __init__(self, secret: str = SECRET, idle_timeout: float | None = None) -> None:
        self.secret = secret
        self.hits: list[Hit] = []
        self.answers: dict[str, list[int]] = {}
        self.fail_ids: Counter[str] = Counter()
        self.down: set[str] = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint would
            timeout = idle_timeout  # an idle kept-alive connection is closed after this

            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length", "0")))
        headers = {k.lower(): v for k, v in request.headers.items()}
        event_id = headers.get("pycrm-event-id", "")
        with self._lock:
            queued = self.answers.get(request.path)
            if request.path in self.down:
                status = 503
            elif queued:
                status = queued.pop(0)
            elif self.fail_ids[event_id] > 0:
                self.fail_ids[event_id] -= 1
                status = 500
            else:
                status = 204
            valid = verify_signature(self.secret, headers.get("pycrm-signature", ""), body)
            self.hits.append(Hit(request.path, headers, body, status, valid))
        answer = b"" if status == 204 else b"not now"
        request.send_response(status)
        request.send_header("Content-Length", str(len(answer)))
        request.end_headers()
        request.wfile.write(answer)

    def delivered(self, path: str | None = None) -> list[Hit]:
        """The requests answered 2xx (on ``path``), in arrival order."""
        with self._lock:
            return [h for h in self.hits if h.ok and (path is None or h.path == path)]

    def all(self, path: str | None = None) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if path is None or h.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def free_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- helpers --------------------------------------------------------------------------


def outbox_rows(crm: pycrm.CRM, tenant: str = "default") -> dict[str, OutboxMessage]:
    uow = crm.store.begin(tenant)
    try:
        return {m.id: m for m in uow.repo(OutboxMessage).find()}
    finally:
        uow.rollback()


def capture(s: Session, n: int) -> str:
    return s.leads.capture(f"Lead {n}", source="webform", email=f"lead{n}@example.com").id


def customer_with_updates(s: Session, name: str, updates: int) -> str:
    """A customer and ``updates`` changes to it: 1 + updates events about one record."""
    customer = s.customers.create(name, on_duplicate="allow")
    for size in range(1, updates + 1):
        s.customers.update(customer.id, size=size)
    return customer.id


def drain(crm: pycrm.CRM, relays: Sequence[Relay], **options: Any) -> list[RelayReport]:
    """Deliver until a pass claims nothing; the reports of the passes that claimed."""
    reports: list[RelayReport] = []
    for _ in range(1_000):
        report = crm.outbox.deliver(relays, **options)
        if not report.claimed:
            return reports
        reports.append(report)
    raise AssertionError("the outbox never ran dry")


def hook(receiver: Receiver, path: str = "/hook", **options: Any) -> WebhookRelay:
    return WebhookRelay(url=receiver.url(path), secret=SECRET, **{"name": "hook", **options})


# -- signatures -----------------------------------------------------------------------


def test_verify_signature_accepts_the_signed_body_and_refuses_tampering_and_old_requests() -> None:
    body = b'{"id":"e1","name":"deal_won"}'
    header = sign(SECRET.encode(), 1_700_000_000, body)
    # The documented scheme, computed here by hand: HMAC-SHA256 over "<t>.<body>".
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify_signature(SECRET, header, body, now=1_700_000_000)
    assert verify_signature(SECRET.encode(), header, body, now=1_700_000_000)
    assert verify_signature(SECRET, header, body, now=1_700_000_299)
    assert not verify_signature(SECRET, header, body, now=1_700_000_301)  # a replayed capture
    assert not verify_signature(SECRET, header, body, now=1_699_999_600)  # from the future
    assert verify_signature(SECRET, header, body, now=1_700_000_500, tolerance=600)
    assert not verify_signature(SECRET, header, body + b" ", now=1_700_000_000)
    assert not verify_signature(SECRET, header, body.replace(b"deal_won", b"deal_lost"))
    assert not verify_signature("another-secret-0123456789", header, body, now=1_700_000_000)
    for broken in (
        "",
        "garbage",
        f"v1={expected}",
        "t=abc,v1=00",
        "t=1700000000",
        "t=1700000000,v1=",
    ):
        assert not verify_signature(SECRET, broken, body, now=1_700_000_000), broken
    # A fresh signature with the real clock.
    assert verify_signature(SECRET, sign(SECRET.encode(), int(time.time()), body), body)


# -- webhooks against a real server ---------------------------------------------------


def test_webhook_posts_each_event_as_signed_json_with_its_headers(
    crm: pycrm.CRM, receiver: Receiver, fake_clock: FakeClock
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        capture(s, 1)
        s.customers.create("Acme GmbH")
    with crm.session(actor=crm.system_actor, tenant="other") as s:
        s.customers.create("Other Ltd")
    pending = crm.outbox.pending()
    relay = hook(receiver, "/hooks/crm?src=pycrm", headers={"X-Api-Key": "k-123"})
    report = crm.outbox.deliver([relay])
    relay.close()
    assert report == RelayReport(tenant="default", claimed=2, delivered=2)
    hits = receiver.all()
    assert [h.event_id for h in hits] == [e.id for e in pending]
    for hit, event in zip(hits, pending, strict=True):
        assert hit.path == "/hooks/crm?src=pycrm"
        assert hit.headers["content-type"] == "application/json"
        assert hit.headers["pycrm-event"] == event.name
        assert hit.headers["pycrm-tenant"] == "default"
        assert hit.headers["pycrm-attempt"] == "1"
        assert hit.headers["x-api-key"] == "k-123"
        assert json.loads(hit.body) == to_dict(event)
        assert hit.valid
        # The signature by hand, and what a receiver must refuse.
        parts = dict(p.split("=", 1) for p in hit.headers[SIGNATURE_HEADER.lower()].split(","))
        mac = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + hit.body, hashlib.sha256)
        assert parts["v1"] == mac.hexdigest()
        assert abs(int(parts["t"]) - time.time()) < 60
        signature = hit.headers["pycrm-signature"]
        tampered = hit.body.replace(b'"name":', b'"nome":')
        assert tampered != hit.body
        assert not verify_signature(SECRET, signature, tampered)
        assert not verify_signature(SECRET, signature, hit.body + b"\n")
        assert not verify_signature("wrong-secret-0123456789", signature, hit.body)
    rows = outbox_rows(crm)
    assert {(m.delivered, m.delivered_at, m.attempts) for m in rows.values()} == {
        (True, fake_clock.now(), 0)
    }
    assert crm.outbox.deliver([relay]).claimed == 0
    assert len(receiver.all()) == 2
    # Another tenant's outbox is relayed on its own, with its name in the header.
    assert crm.outbox.deliver([relay], tenant="other").delivered == 1
    (other,) = receiver.all()[2:]
    assert (other.headers["pycrm-tenant"], other.headers["pycrm-event"]) == (
        "other",
        "customer_created",
    )
    assert other.valid


def test_each_subscriber_gets_only_the_events_its_filter_takes(
    crm: pycrm.CRM, receiver: Receiver
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        lead = capture(s, 1)
        acme = customer_with_updates(s, "Acme GmbH", 2)
        s.org.create_user(name="Sam", email="sam@corp.example", department="sales")
    events = {e.id: e for e in crm.outbox.pending()}
    sales = hook(receiver, "/sales", name="sales", events=["lead_*", "deal_won"])
    accounts = hook(receiver, "/accounts", name="accounts", events="customer_*")
    reports = drain(crm, [sales, accounts])
    assert sum(r.delivered for r in reports) == len(events) == 5
    assert sum(r.failed for r in reports) == 0
    got_sales = [
        (h.headers["pycrm-event"], events[h.event_id].record_id) for h in receiver.all("/sales")
    ]
    got_accounts = [
        (h.headers["pycrm-event"], events[h.event_id].record_id) for h in receiver.all("/accounts")
    ]
    assert got_sales == [("lead_captured", lead)]
    assert got_accounts == [
        ("customer_created", acme),
        ("customer_updated", acme),
        ("customer_updated", acme),
    ]
    assert all(h.valid for h in receiver.all())
    # The event nobody takes (user_created) is delivered to nobody, and done.
    rows = outbox_rows(crm)
    (user_event,) = [m for m in rows.values() if m.name == "user_created"]
    assert user_event.delivered
    assert user_event.id not in {h.event_id for h in receiver.all()}
    assert crm.outbox.pending() == []


def test_a_failing_subscriber_is_retried_with_backoff_and_the_other_is_not_sent_it_twice(
    crm: pycrm.CRM, receiver: Receiver, fake_clock: FakeClock
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        capture(s, 1)
    (event,) = crm.outbox.pending()
    receiver.answers["/flaky"] = [500, 502]
    steady = hook(receiver, "/steady", name="steady")
    flaky = hook(receiver, "/flaky", name="flaky")
    policy = RetryPolicy(max_attempts=5, first_delay=timedelta(seconds=10), jitter=0)
    t0 = fake_clock.now()

    def deliver() -> RelayReport:
        return crm.outbox.deliver([steady, flaky], retry=policy)

    assert deliver() == RelayReport(tenant="default", claimed=1, failed=1)
    (row,) = outbox_rows(crm).values()
    assert (row.sent_to, row.attempts, row.next_attempt_at) == (
        ("steady",),
        1,
        t0 + timedelta(seconds=10),
    )
    assert row.last_error is not None
    assert row.last_error.startswith("flaky: WebhookError:")
    assert "500" in row.last_error
    assert (row.claimed_by, row.claimed_until, row.delivered) == (None, None, False)
    stats = crm.outbox.stats()
    assert (stats.pending, stats.retrying, stats.dead) == (1, 1, 0)
    # Not before its time.
    assert deliver().claimed == 0
    fake_clock.advance(seconds=9)
    assert deliver().claimed == 0
    assert len(receiver.all("/flaky")) == 1
    fake_clock.advance(seconds=1)
    assert deliver() == RelayReport(tenant="default", claimed=1, failed=1)
    (row,) = outbox_rows(crm).values()
    assert (row.attempts, row.next_attempt_at) == (2, fake_clock.now() + timedelta(seconds=20))
    assert "502" in (row.last_error or "")
    fake_clock.advance(seconds=19)
    assert deliver().claimed == 0
    fake_clock.advance(seconds=1)
    assert deliver() == RelayReport(tenant="default", claimed=1, delivered=1)
    assert [(h.event_id, h.attempt, h.status) for h in receiver.all("/flaky")] == [
        (event.id, "1", 500),
        (event.id, "2", 502),
        (event.id, "3", 204),
    ]
    assert [(h.event_id, h.attempt) for h in receiver.all("/steady")] == [(event.id, "1")]
    assert all(h.valid for h in receiver.all())
    (row,) = outbox_rows(crm).values()
    assert (row.delivered, row.delivered_at, row.next_attempt_at) == (True, fake_clock.now(), None)
    assert crm.outbox.stats().retrying == 0


def test_backoff_waits_grow_and_jitter_only_shortens_them() -> None:
    policy = RetryPolicy(
        first_delay=timedelta(seconds=5), max_delay=timedelta(seconds=60), jitter=0.5
    )
    waits = [policy.delay(n, rand=lambda: 0.0) for n in range(1, 7)]
    assert waits == [timedelta(seconds=s) for s in (5, 10, 20, 40, 60, 60)]
    assert policy.delay(3, rand=lambda: 1.0) == timedelta(seconds=10)
    assert policy.delay(3, rand=lambda: 0.5) == timedelta(seconds=15)
    for _ in range(50):
        assert timedelta(seconds=10) <= policy.delay(3) <= timedelta(seconds=20)
    assert RetryPolicy(first_delay=timedelta(0), jitter=0).delay(9) == timedelta(0)


def test_after_max_attempts_an_event_is_a_dead_letter_until_replayed_with_the_same_id(
    crm: pycrm.CRM, receiver: Receiver, fake_clock: FakeClock
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        capture(s, 1)
        acme = customer_with_updates(s, "Acme GmbH", 1)
    events = crm.outbox.pending()
    doomed = events[0]
    receiver.fail_ids[doomed.id] = 3
    relay = hook(receiver)
    policy = RetryPolicy(max_attempts=3, first_delay=timedelta(seconds=1), jitter=0)
    assert crm.outbox.deliver([relay], retry=policy).failed == 1
    fake_clock.advance(seconds=1)
    assert crm.outbox.deliver([relay], retry=policy).failed == 1
    assert crm.outbox.dead_letters() == []
    fake_clock.advance(seconds=2)
    assert crm.outbox.deliver([relay], retry=policy).dead == 1
    (letter,) = crm.outbox.dead_letters()
    assert (letter.id, letter.attempts, letter.dead_at, letter.delivered) == (
        doomed.id,
        3,
        fake_clock.now(),
        False,
    )
    assert letter.last_error is not None
    assert letter.last_error.startswith("hook: WebhookError:")
    assert "500" in letter.last_error
    assert doomed.id not in {e.id for e in crm.outbox.pending()}
    stats = crm.outbox.stats()
    assert (stats.pending, stats.dead) == (0, 1)
    assert crm.outbox.deliver([relay], retry=policy).claimed == 0
    fake_clock.advance(hours=5)
    assert crm.outbox.deliver([relay], retry=policy).claimed == 0
    assert [h.event_id for h in receiver.all() if h.event_id == doomed.id] == [doomed.id] * 3
    # The other events (another record) went on meanwhile.
    assert [h.event_id for h in receiver.delivered()] == [e.id for e in events[1:]]
    assert all(events_row.record_id == acme for events_row in events[1:])

    assert crm.outbox.replay([doomed.id, "no-such-event", events[1].id]) == 1
    assert crm.outbox.replay([doomed.id]) == 0  # pending already
    assert crm.outbox.dead_letters() == []
    assert [e.id for e in crm.outbox.pending()] == [doomed.id]
    assert crm.outbox.deliver([relay], retry=policy) == RelayReport(
        tenant="default", claimed=1, delivered=1
    )
    last = receiver.all()[-1]
    assert (last.event_id, last.attempt, last.status, last.valid) == (doomed.id, "1", 204, True)
    assert json.loads(last.body) == to_dict(doomed)
    assert crm.outbox.stats().dead == 0
    assert crm.outbox.replay([doomed.id]) == 0  # delivered


def test_a_refused_connection_is_a_failure_retried_later(
    crm: pycrm.CRM, receiver: Receiver, fake_clock: FakeClock
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        capture(s, 1)
        capture(s, 2)
    events = crm.outbox.pending()
    nobody = WebhookRelay(url=f"http://127.0.0.1:{free_port()}/hook", name="hook", secret=SECRET)
    policy = RetryPolicy(first_delay=timedelta(seconds=30), jitter=0)
    report = crm.outbox.deliver([nobody], retry=policy)
    assert (report.claimed, report.delivered, report.failed) == (2, 0, 2)
    for row in outbox_rows(crm).values():
        assert row.attempts == 1
        assert "ConnectionRefusedError" in (row.last_error or "")
        assert row.next_attempt_at == fake_clock.now() + timedelta(seconds=30)
    # The subscriber is back (at a new address, under the same relay name).
    fake_clock.advance(seconds=30)
    report = crm.outbox.deliver([hook(receiver)], retry=policy)
    assert (report.delivered, report.failed) == (2, 0)
    assert [(h.event_id, h.attempt) for h in receiver.all()] == [(e.id, "2") for e in events]


def test_one_records_events_arrive_in_order_even_when_one_fails_midway(
    crm: pycrm.CRM, receiver: Receiver, fake_clock: FakeClock
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        acme = s.customers.create("Acme GmbH").id
        bolt = s.customers.create("Bolt AG").id
        for size in (1, 2, 3):
            s.customers.update(acme, size=size)
            s.customers.update(bolt, size=size)
    events = crm.outbox.pending()
    a = [e.id for e in events if e.record_id == acme]
    b = [e.id for e in events if e.record_id == bolt]
    assert (len(a), len(b)) == (4, 4)
    receiver.fail_ids[a[1]] = 1
    relay = hook(receiver)
    policy = RetryPolicy(first_delay=timedelta(seconds=10), jitter=0)
    drain(crm, [relay], retry=policy)
    # Bolt's events went on; Acme's later events wait behind the failed one.
    assert [h.event_id for h in receiver.delivered()] == [a[0], b[0], b[1], b[2], b[3]]
    assert [e.id for e in crm.outbox.pending()] == a[1:]
    fake_clock.advance(seconds=10)
    drain(crm, [relay], retry=policy)
    sent_a = [(h.event_id, h.status) for h in receiver.all() if h.event_id in a]
    assert sent_a == [(a[0], 204), (a[1], 500), (a[1], 204), (a[2], 204), (a[3], 204)]
    assert crm.outbox.pending() == []


def test_a_worker_whose_lease_ran_out_does_not_undo_what_the_next_worker_settled(
    crm: pycrm.CRM, receiver: Receiver, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        capture(s, 1)
        capture(s, 2)
    events = crm.outbox.pending()
    t0 = fake_clock.now()
    leases: list[set[tuple[str | None, Any]]] = []
    second: list[RelayReport] = []

    def stuck(envelope: Envelope) -> None:
        """Worker "a" hangs past its lease; worker "b" takes the events meanwhile."""
        leases.append({(m.claimed_by, m.claimed_until) for m in outbox_rows(crm).values()})
        fake_clock.advance(minutes=2)
        second.append(crm.outbox.deliver([hook(receiver)], worker="b"))
        raise TimeoutError("the subscriber never answered")

    with caplog.at_level(logging.WARNING, logger="pycrm.outbox"):
        crm.outbox.deliver(
            [FunctionRelay(stuck, name="hook")], worker="a", lease=timedelta(minutes=1)
        )
    assert leases == [{("a", t0 + timedelta(minutes=1))}]
    assert second == [RelayReport(tenant="default", claimed=2, delivered=2)]
    assert [h.event_id for h in receiver.all()] == [e.id for e in events]
    rows = outbox_rows(crm)
    assert {(m.delivered, m.attempts, m.last_error, m.claimed_by) for m in rows.values()} == {
        (True, 0, None, None)
    }
    assert any("claimed again" in r.getMessage() for r in caplog.records)
    assert crm.outbox.pending() == []


@pytest.mark.parametrize("backend", ["memory"])  # the relay's connection, not the store
def test_a_kept_alive_connection_the_subscriber_closed_when_idle_is_not_a_failure(
    crm: pycrm.CRM,
) -> None:
    receiver = Receiver(idle_timeout=0.2)
    try:
        relay = hook(receiver)
        for n in range(3):
            with crm.session(actor=crm.system_actor) as s:
                capture(s, n)
            assert crm.outbox.deliver([relay]) == RelayReport(
                tenant="default", claimed=1, delivered=1
            )
            time.sleep(0.4)  # longer than the subscriber keeps an idle connection
        assert [h.status for h in receiver.all()] == [204, 204, 204]
        relay.close()
    finally:
        receiver.close()


@pytest.mark.parametrize("backend", ["memory"])
def test_a_relay_that_raises_or_answers_for_the_wrong_number_of_events_fails_them_all(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    class Broken:
        name = "broken"

        def __init__(
            self, answer: Callable[[Sequence[Envelope]], list[BaseException | None]]
        ) -> None:
            self._answer = answer

        def accepts(self, envelope: Envelope) -> bool:
            return True

        def send(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
            return self._answer(envelopes)

    def raises(envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        raise ConnectionError("broker unreachable")

    with crm.session(actor=crm.system_actor) as s:
        capture(s, 1)
        capture(s, 2)
    policy = RetryPolicy(first_delay=timedelta(seconds=1), jitter=0)
    assert crm.outbox.deliver([Broken(raises)], retry=policy).failed == 2
    assert {m.last_error for m in outbox_rows(crm).values()} == {
        "broken: ConnectionError: broker unreachable"
    }
    fake_clock.advance(seconds=1)
    assert crm.outbox.deliver([Broken(lambda e: [None])], retry=policy).failed == 2
    assert all("answered for 1 events" in (m.last_error or "") for m in outbox_rows(crm).values())


# -- Redis streams -----------------------------------------------------------------------


@pytest.fixture
def redis_url() -> str:
    """The test Redis server's URL: skip without one, fail if one is required."""
    if not REDIS_URL:
        if REDIS_REQUIRED:
            pytest.fail("PYCRM_REQUIRE_REDIS=1 but PYCRM_TEST_REDIS_URL is not set")
        pytest.skip("no Redis server: set PYCRM_TEST_REDIS_URL (see the README)")
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} does not answer: {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def streams(redis_url: str) -> Iterator[tuple[str, Any]]:
    """A stream name prefix of the test's own, and a client; its streams go afterwards."""
    import redis

    prefix = f"test-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    yield prefix, client
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)
    client.close()


def stream_entries(client: Any, stream: str) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()} for _, fields in client.xrange(stream)
    ]


def test_redis_relay_adds_each_event_to_its_tenants_stream(
    crm: pycrm.CRM, streams: tuple[str, Any], redis_url: str
) -> None:
    prefix, client = streams
    with crm.session(actor=crm.system_actor) as s:
        capture(s, 1)
        capture(s, 2)
        s.customers.create("Acme GmbH")
    with crm.session(actor=crm.system_actor, tenant="other") as s:
        s.customers.create("Other Ltd")
    pending = crm.outbox.pending()
    other = crm.outbox.pending(tenant="other")
    relay = RedisStreamRelay(url=redis_url, stream=prefix + ":{tenant}")
    assert crm.outbox.deliver([relay]) == RelayReport(tenant="default", claimed=3, delivered=3)
    assert crm.outbox.deliver([relay], tenant="other").delivered == 1
    relay.close()
    entries = stream_entries(client, f"{prefix}:default")
    assert [e["id"] for e in entries] == [e.id for e in pending]
    for entry, event in zip(entries, pending, strict=True):
        assert set(entry) == {"id", "name", "tenant", "record_id", "payload"}
        assert (entry["name"], entry["tenant"], entry["record_id"]) == (
            event.name,
            "default",
            event.record_id,
        )
        assert json.loads(entry["payload"]) == to_dict(event)
    (entry,) = stream_entries(client, f"{prefix}:other")
    assert (entry["id"], entry["tenant"]) == (other[0].id, "other")
    assert crm.outbox.pending() == []


@pytest.mark.parametrize("backend", ["memory"])
def test_redis_relay_sends_a_batch_in_one_round_trip_to_a_stream_per_signal(
    crm: pycrm.CRM, streams: tuple[str, Any]
) -> None:
    prefix, client = streams

    class Counting:
        """The client, counting pipelines (one per round trip)."""

        pipelines = 0

        def pipeline(self, **options: Any) -> Any:
            self.pipelines += 1
            return client.pipeline(**options)

        def close(self) -> None:
            """Closed by the test."""

    counting = Counting()
    with crm.session(actor=crm.system_actor) as s:
        for n in range(30):
            capture(s, n)
        for n in range(10):
            s.customers.create(f"Firm {n}", on_duplicate="allow")
    relay = RedisStreamRelay(client=counting, stream=prefix + ":{tenant}:{name}", maxlen=1000)
    assert crm.outbox.deliver([relay], limit=100) == RelayReport(
        tenant="default", claimed=40, delivered=40
    )
    assert counting.pipelines == 1
    assert client.xlen(f"{prefix}:default:lead_captured") == 30
    assert client.xlen(f"{prefix}:default:customer_created") == 10


def test_redis_down_counts_a_failure_and_the_events_go_later(
    crm: pycrm.CRM, streams: tuple[str, Any], redis_url: str, fake_clock: FakeClock
) -> None:
    prefix, client = streams
    with crm.session(actor=crm.system_actor) as s:
        capture(s, 1)
        capture(s, 2)
    events = crm.outbox.pending()
    down = RedisStreamRelay(url=f"redis://127.0.0.1:{free_port()}/0", stream=prefix + ":{tenant}")
    policy = RetryPolicy(first_delay=timedelta(seconds=5), jitter=0)
    report = crm.outbox.deliver([down], retry=policy)
    assert (report.claimed, report.failed, report.delivered) == (2, 2, 0)
    for row in outbox_rows(crm).values():
        assert (row.attempts, row.next_attempt_at) == (1, fake_clock.now() + timedelta(seconds=5))
        assert (row.last_error or "").startswith("redis: ConnectionError:")
    assert crm.outbox.deliver([down], retry=policy).claimed == 0
    fake_clock.advance(seconds=5)
    up = RedisStreamRelay(url=redis_url, stream=prefix + ":{tenant}")
    assert crm.outbox.deliver([up], retry=policy).delivered == 2
    assert [e["id"] for e in stream_entries(client, f"{prefix}:default")] == [e.id for e in events]


# -- concurrent worker processes --------------------------------------------------------


@dataclass
class SharedDb:
    """A database several worker processes open at once."""

    kind: str
    url: str
    schema: str
    crm: pycrm.CRM
    folder: Path


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedDb]:
    kind: str = request.param
    if kind == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'shared.db'}", ""
        crm = pycrm.connect(url, load_plugins=False)
    else:
        request.node.add_marker(pytest.mark.postgres)
        engine = request.getfixturevalue("pg_engine")
        schema = request.getfixturevalue("pg_schema")
        url = os.environ["PYCRM_TEST_POSTGRES_URL"]
        crm = pycrm.connect(engine, schema=schema, load_plugins=False)
    yield SharedDb(kind, url, schema, crm, tmp_path)
    crm.close()


def seed(crm: pycrm.CRM, records: int, updates: int) -> dict[str, OutboxMessage]:
    """``records`` customers with ``updates`` changes each, interleaved; their outbox rows."""
    with crm.session(actor=crm.system_actor) as s:
        ids = [s.customers.create(f"Firm {n}", on_duplicate="allow").id for n in range(records)]
    for size in range(1, updates + 1):
        with crm.session(actor=crm.system_actor) as s:
            for id in ids:
                s.customers.update(id, size=size)
    rows = outbox_rows(crm)
    assert len(rows) == records * (1 + updates)
    return rows


def start_worker(
    db: SharedDb,
    receiver: Receiver,
    name: str,
    *,
    batch: int,
    lease: float,
    delay: float = 0.0,
    start: Path,
) -> tuple[subprocess.Popen[str], Path]:
    ready = db.folder / f"ready-{name}"
    process = subprocess.Popen(
        [
            sys.executable,
            str(WORKER),
            db.url,
            db.schema,
            receiver.url(),
            SECRET,
            name,
            str(batch),
            str(lease),
            str(delay),
            str(ready),
            str(start),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, ready


def run_workers(
    db: SharedDb,
    receiver: Receiver,
    names: list[str],
    *,
    batch: int,
    lease: float,
    delay: float = 0.0,
) -> tuple[list[dict[str, Any]], float]:
    """Run workers that start together and drain the outbox; their reports and the wall time."""
    start = db.folder / f"start-{names[0]}"
    started = [
        start_worker(db, receiver, n, batch=batch, lease=lease, delay=delay, start=start)
        for n in names
    ]
    procs = [p for p, _ in started]
    try:
        deadline = time.monotonic() + 60
        while not all(ready.exists() for _, ready in started):
            failed = [p for p in procs if p.poll() is not None]
            assert not failed, failed[0].communicate()[1]
            assert time.monotonic() < deadline, "the workers did not get ready"
            time.sleep(0.01)
        began = time.monotonic()
        start.touch()
        outputs = [p.communicate(timeout=90) for p in procs]
        elapsed = time.monotonic() - began
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    return [json.loads(out) for out, _ in outputs], elapsed


def arrivals_per_record(hits: list[Hit], rows: dict[str, OutboxMessage]) -> dict[str, list[str]]:
    """Each record's event ids in the order the receiver got them."""
    got: dict[str, list[str]] = {}
    for hit in hits:
        got.setdefault(rows[hit.event_id].record_id, []).append(hit.event_id)
    return got


@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_workers_deliver_every_event_once_and_each_records_in_order(
    shared_db: SharedDb, receiver: Receiver, workers: int
) -> None:
    rows = seed(shared_db.crm, records=150, updates=3)
    names = [f"w{n}" for n in range(workers)]
    # A millisecond per event keeps the run long enough (over half a second even split four
    # ways) that a busy machine cannot let one worker drain it before the others wake up.
    results, elapsed = run_workers(shared_db, receiver, names, batch=20, lease=60, delay=0.001)
    hits = receiver.all()
    assert all(h.ok and h.valid for h in hits)
    sent = Counter(h.event_id for h in hits)
    assert set(sent) == set(rows)  # 0 lost
    assert [id for id, n in sent.items() if n > 1] == []  # 0 duplicated
    assert sum(r["delivered"] for r in results) == len(rows) == 600
    assert sum(r["delivered"] > 0 for r in results) >= 2, results  # they shared the work
    # The workers really ran at the same time.
    assert any(
        a["began"] < b["ended"] and b["began"] < a["ended"]
        for a in results
        for b in results
        if a is not b and a["delivered"] and b["delivered"]
    )
    expected: dict[str, list[str]] = {}
    for row in sorted(rows.values(), key=lambda m: m.id):
        expected.setdefault(row.record_id, []).append(row.id)
    assert arrivals_per_record(hits, rows) == expected
    assert len(expected) == 150
    after = outbox_rows(shared_db.crm)
    assert all(m.delivered and m.claimed_by is None and m.attempts == 0 for m in after.values())
    assert shared_db.crm.outbox.stats().pending == 0
    print(
        f"\n{shared_db.kind}, {workers} workers: {len(rows)} events in {elapsed:.2f} s "
        f"({len(rows) / elapsed:,.0f} events/s), per worker "
        f"{[r['delivered'] for r in results]}"
    )
    assert elapsed < 30


def test_a_worker_killed_mid_batch_loses_nothing_and_its_batch_is_sent_again_with_the_same_ids(
    shared_db: SharedDb, receiver: Receiver
) -> None:
    rows = seed(shared_db.crm, records=60, updates=2)
    start = shared_db.folder / "start-victim"
    start.touch()
    victim, _ = start_worker(
        shared_db, receiver, "victim", batch=10, lease=2.0, delay=0.05, start=start
    )
    try:
        deadline = time.monotonic() + 30
        # One batch settled, the next one half sent.
        while len([h for h in receiver.all() if h.worker == "victim"]) < 15:
            assert victim.poll() is None, victim.communicate()[1]
            assert time.monotonic() < deadline, "the victim delivered nothing"
            time.sleep(0.005)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    killed_at = time.monotonic()
    held = {m.id for m in outbox_rows(shared_db.crm).values() if m.claimed_by == "victim"}
    sent_by_victim = [h.event_id for h in receiver.all() if h.worker == "victim"]
    now = outbox_rows(shared_db.crm)
    unsettled = {id for id in sent_by_victim if not now[id].delivered}
    assert 0 < len(held) <= 10
    assert unsettled
    assert unsettled <= held
    # Two survivors take over once the dead worker's lease runs out.
    results, _ = run_workers(shared_db, receiver, ["s0", "s1"], batch=10, lease=2.0)
    assert time.monotonic() - killed_at >= 1.5  # they waited for the lease
    hits = receiver.all()
    assert all(h.ok and h.valid for h in hits)
    sent = Counter(h.event_id for h in hits)
    assert set(sent) == set(rows)  # nothing lost
    twice = {id for id, n in sent.items() if n > 1}
    assert twice == unsettled  # sent again: only what the victim sent but never settled
    assert all(sent[id] == 2 for id in twice)
    for id in twice:
        resent = [h for h in hits if h.event_id == id][1]
        assert resent.worker in ("s0", "s1")
        assert json.loads(resent.body)["id"] == id
    for id in held - unsettled:  # the rest of the batch, never sent by the victim
        assert next(h.worker for h in hits if h.event_id == id) in ("s0", "s1")
    # Each record's events arrive in order (a re-sent event straight after its first try).
    for record, ids in arrivals_per_record(hits, rows).items():
        collapsed = [id for n, id in enumerate(ids) if n == 0 or ids[n - 1] != id]
        assert collapsed == sorted(m.id for m in rows.values() if m.record_id == record)
    assert all(m.delivered for m in outbox_rows(shared_db.crm).values())
    assert sum(r["delivered"] for r in results) == len(rows) - (
        len(sent_by_victim) - len(unsettled)
    )
    print(
        f"\n{shared_db.kind}, killed mid-batch: held {len(held)}, sent but unsettled "
        f"{len(unsettled)} (sent again), survivors delivered {[r['delivered'] for r in results]}"
    )


def test_concurrent_threads_on_the_memory_store_deliver_every_event_once(
    receiver: Receiver,
) -> None:
    crm = pycrm.connect("memory://", load_plugins=False)
    rows = seed(crm, records=40, updates=2)
    relays = [hook(receiver, headers={"X-Worker": f"t{n}"}) for n in range(3)]
    barrier = threading.Barrier(len(relays))
    errors: list[BaseException] = []

    def work(relay: WebhookRelay) -> None:
        try:
            barrier.wait()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if crm.outbox.deliver([relay], limit=5).claimed == 0:
                    if crm.outbox.stats().pending == 0:
                        return
                    time.sleep(0.005)
            raise AssertionError("the outbox did not drain")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(r,)) for r in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    sent = Counter(h.event_id for h in receiver.all())
    assert set(sent) == set(rows)
    assert max(sent.values()) == 1
    expected: dict[str, list[str]] = {}
    for row in sorted(rows.values(), key=lambda m: m.id):
        expected.setdefault(row.record_id, []).append(row.id)
    assert arrivals_per_record(receiver.all(), rows) == expected


# -- retention ------------------------------------------------------------------------------


def test_purge_deletes_only_delivered_events_older_than_the_cut_off_in_batches(
    crm: pycrm.CRM, fake_clock: FakeClock
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        for n in range(8):
            capture(s, n)
    old = crm.outbox.pending()
    failing = {old[5].id}

    def send(envelope: Envelope) -> None:
        if envelope.id in failing:
            raise ConnectionError("down")

    relay = FunctionRelay(send)
    # 0-4 delivered, 5 dead at once, 6 and 7 handed back untried: pending.
    report = crm.outbox.deliver([relay], retry=RetryPolicy(max_attempts=1))
    assert (report.delivered, report.dead, report.released) == (5, 1, 2)
    fake_clock.advance(days=1)
    with crm.session(actor=crm.system_actor) as s:
        capture(s, 8)
        capture(s, 9)
    recent = [e.id for e in crm.outbox.pending()[2:]]
    assert len(recent) == 2
    assert crm.outbox.mark_delivered(recent) == 2
    fake_clock.advance(days=1)
    assert crm.outbox.purge(timedelta(hours=36), batch=2) == 5
    kept = outbox_rows(crm)
    assert set(kept) == {old[5].id, old[6].id, old[7].id, *recent}
    assert crm.outbox.purge(timedelta(hours=36), batch=2) == 0
    assert crm.outbox.purge(timedelta(hours=24), batch=2) == 0  # delivered exactly a day ago
    assert crm.outbox.purge(timedelta(0)) == 2
    assert set(outbox_rows(crm)) == {old[5].id, old[6].id, old[7].id}
    assert [m.id for m in crm.outbox.dead_letters()] == [old[5].id]
    assert [e.id for e in crm.outbox.pending()] == [old[6].id, old[7].id]
    assert crm.outbox.purge(timedelta(0), batch=1) == 0
    assert crm.outbox.purge(timedelta(days=3650), batch=1) == 0


# -- the command line ------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def cli_db(tmp_path: Path) -> Iterator[tuple[str, pycrm.CRM]]:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    crm = pycrm.connect(url, load_plugins=False)
    yield url, crm
    crm.close()


def write_config(path: Path, *tables: dict[str, Any]) -> Path:
    lines = []
    for table in tables:
        lines.append("[[relay]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_relay_once_delivers_every_due_event_and_prints_totals(
    cli_db: tuple[str, pycrm.CRM],
    receiver: Receiver,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, crm = cli_db
    with crm.session(actor=crm.system_actor) as s:
        customer_with_updates(s, "Acme GmbH", 3)
        capture(s, 1)
    with crm.session(actor=crm.system_actor, tenant="other") as s:
        s.customers.create("Other Ltd")
    events = crm.outbox.pending() + crm.outbox.pending(tenant="other")
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    config = write_config(
        tmp_path / "relays.toml",
        {"type": "webhook", "name": "erp", "url": receiver.url(), "secret_env": "TEST_HOOK_SECRET"},
        {
            "type": "webhook",
            "name": "down",
            "url": f"http://127.0.0.1:{free_port()}/",
            "secret": SECRET,
            "events": ["lead_*"],
        },
    )
    status, out, err = run(capsys, "relay", "--config", config, "--db", url, "--once", "--json")
    assert status == 0, err
    assert json.loads(out) == {"delivered": 5, "failed": 1, "dead": 0}
    # A record's later events went in the same run, after the earlier ones.
    assert sorted(h.event_id for h in receiver.all()) == sorted(e.id for e in events)
    acme = [h.event_id for h in receiver.all() if h.headers["pycrm-event"].startswith("customer")]
    assert acme[:4] == [e.id for e in events[:4]]
    assert all(h.valid for h in receiver.all())
    assert "relay " in err
    (failed,) = list(crm.outbox.pending())
    assert failed.name == "lead_captured"
    status, out, _ = run(capsys, "relay", "--config", config, "--db", url, "--once")
    assert status == 0
    assert out.startswith("relayed: 0 delivered")  # the erp relay has it; "down" fails again
    status, out, err = run(
        capsys, "relay", "--config", config, "--db", url, "--once", "--purge-after", "0"
    )
    assert status == 0
    assert "purged 5 delivered events older than 0.0 days" in err
    assert {m.id for m in outbox_rows(crm).values()} == {failed.id}


def test_relay_runs_until_sigterm_with_health_lines_and_exits_0(
    cli_db: tuple[str, pycrm.CRM], receiver: Receiver, tmp_path: Path
) -> None:
    url, crm = cli_db
    with crm.session(actor=crm.system_actor) as s:
        customer_with_updates(s, "Acme GmbH", 3)
    config = write_config(
        tmp_path / "relays.toml",
        {"type": "webhook", "name": "erp", "url": receiver.url(), "secret_env": "TEST_HOOK_SECRET"},
    )
    health = tmp_path / "healthy"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pycrm",
            "relay",
            "--config",
            str(config),
            "--db",
            url,
            "--poll",
            "0.2",
            "--health-every",
            "0.5",
            "--health-file",
            str(health),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TEST_HOOK_SECRET": SECRET, "COLUMNS": "80"},
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")))  # type: ignore[union-attr]
    reader.start()

    def wait_for(what: Callable[[], bool], message: str) -> None:
        deadline = time.monotonic() + 20
        while not what():
            assert process.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, message + "".join(lines)
            time.sleep(0.02)

    try:
        wait_for(lambda: len(receiver.all()) == 4, "the first events never came")
        with crm.session(actor=crm.system_actor) as s:  # work done while it runs
            customer_with_updates(s, "Bolt AG", 1)
        wait_for(lambda: len(receiver.all()) == 6, "the later events never came")
        wait_for(lambda: any("0 pending" in line for line in lines), "no health line")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        reader.join(timeout=5)  # standard error is the reader's alone
        out = process.stdout.read()  # type: ignore[union-attr]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    reader.join(timeout=5)
    assert process.returncode == 0, "".join(lines)
    assert out.strip() == "relayed: 6 delivered, 0 to retry, 0 dead-lettered"
    healthy = [line for line in lines if line.startswith("relay ok:")]
    assert healthy
    for line in healthy:  # one line each, however narrow the terminal
        assert line.rstrip().endswith("dead letters"), line
    assert any("nothing pending" in line for line in healthy)
    assert "stopping after the batch in hand" in [line.strip() for line in lines]
    assert not any("Traceback" in line for line in lines)
    assert health.exists()
    assert [h.event_id for h in receiver.all()] == sorted(outbox_rows(crm))
    assert crm.outbox.stats().pending == 0


def test_outbox_commands_show_replay_and_purge(
    cli_db: tuple[str, pycrm.CRM], capsys: pytest.CaptureFixture[str]
) -> None:
    url, crm = cli_db
    with crm.session(actor=crm.system_actor) as s:
        for n in range(4):
            capture(s, n)
    events = crm.outbox.pending()

    def send(envelope: Envelope) -> None:
        if envelope.id == events[1].id:
            raise ConnectionError("queue unreachable")

    crm.outbox.deliver([FunctionRelay(send, name="queue")], retry=RetryPolicy(max_attempts=1))
    # 0 delivered, 1 dead, 2 and 3 pending (handed back untried).
    status, out, _ = run(capsys, "outbox", "stats", "--db", url, "--json")
    assert status == 0
    stats = json.loads(out)
    assert stats == {
        "tenant": "default",
        "pending": 2,
        "retrying": 0,
        "dead": 1,
        "oldest_pending_at": stats["oldest_pending_at"],
    }
    assert stats["oldest_pending_at"] == outbox_rows(crm)[events[2].id].created_at.isoformat()
    status, out, _ = run(capsys, "outbox", "stats", "--db", url)
    assert out.strip() == "default: 2 pending (0 retrying), 1 dead letters"
    status, out, _ = run(capsys, "outbox", "dead", "--db", url, "--json")
    (letter,) = json.loads(out)
    assert letter == {
        "id": events[1].id,
        "name": "lead_captured",
        "record_id": events[1].record_id,
        "attempts": 1,
        "dead_at": letter["dead_at"],
        "last_error": "queue: ConnectionError: queue unreachable",
        "sent_to": [],
    }
    assert letter["dead_at"] is not None
    status, out, err = run(capsys, "outbox", "dead", "--db", url)
    (line,) = out.splitlines()  # one line per dead letter, however long its error
    assert line.startswith(events[1].id)
    assert line.endswith("queue: ConnectionError: queue unreachable")
    assert "1 dead letters" in err
    status, out, err = run(capsys, "outbox", "replay", "--db", url)
    assert status == 1
    assert err.strip() == "error: give event ids or --all"
    status, out, _ = run(capsys, "outbox", "replay", "--all", "--db", url)
    assert (status, out.strip()) == (0, "1 events pending again")
    assert json.loads(run(capsys, "outbox", "stats", "--db", url, "--json")[1])["dead"] == 0
    assert json.loads(run(capsys, "outbox", "dead", "--db", url, "--json")[1]) == []
    status, out, _ = run(capsys, "outbox", "purge", "--older-than", "0", "--db", url)
    assert (status, out.strip()) == (0, "purged 1 delivered events")
    assert set(outbox_rows(crm)) == {e.id for e in events[1:]}
    status, out, _ = run(capsys, "outbox", "purge", "--older-than", "0", "--db", url)
    assert out.strip() == "purged 0 delivered events"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[relay]]\ntype = "kafka"\n', "no relay named 'kafka' is installed"),
        ('[[relay]]\ntype = "webhook"\nsecret = "0123456789abcdefgh"\n', "url"),
        (
            '[[relay]]\ntype = "webhook"\nurl = "ftp://x.example/"\nsecret = "0123456789abcdefgh"\n',
            "http(s) URL",
        ),
        (
            '[[relay]]\ntype = "webhook"\nurl = "http://x.example/"\nsecret_env = "PYCRM_NO_SUCH_VAR"\n',
            "PYCRM_NO_SUCH_VAR",
        ),
        ("[[relay]\ntype = 'webhook'\n", "cannot read relay configuration"),
        ("title = 'no relays'\n", "lists no [[relay]] tables"),
        ('[[relay]]\nname = "x"\n', "has no type"),
        (
            '[[relay]]\ntype = "webhook"\nurl = "http://a.example/"\nsecret = "0123456789abcdefgh"\n'
            '[[relay]]\ntype = "webhook"\nurl = "http://a.example/b"\nsecret = "0123456789abcdefgh"\n',
            "relay names must be unique",
        ),
    ],
)
def test_a_bad_relay_configuration_is_one_error_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    config = tmp_path / "relays.toml"
    config.write_text(text, encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'crm.db'}"
    status, out, err = run(capsys, "relay", "--config", config, "--db", db, "--once")
    assert status == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ")
    assert expected in err
    with pytest.raises(ConfigurationError) as info:
        relays_from_config(config)
    assert expected in str(info.value)


def test_relay_refuses_a_missing_config_file_and_bad_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'crm.db'}"
    status, _, err = run(capsys, "relay", "--config", tmp_path / "nope.toml", "--db", db, "--once")
    assert (status, err.startswith("error: cannot read relay configuration")) == (1, True)
    config = write_config(
        tmp_path / "relays.toml", {"type": "webhook", "url": "http://a.example/", "secret": SECRET}
    )
    for option, value in (("--batch", "0"), ("--poll", "0"), ("--lease", "-1")):
        status, _, err = run(
            capsys, "relay", "--config", config, "--db", db, "--once", option, value
        )
        assert status == 1
        assert len(err.strip().splitlines()) == 1
        assert option in err


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory"])
def test_bad_input_to_the_outbox_names_the_field(crm: pycrm.CRM, receiver: Receiver) -> None:
    relay = hook(receiver)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("relays", lambda: crm.outbox.deliver([])),
        ("relays", lambda: crm.outbox.deliver([relay, hook(receiver)])),
        ("relays", lambda: crm.outbox.deliver([print])),  # type: ignore[list-item]
        ("relays", lambda: crm.outbox.deliver(FunctionRelay(print))),  # type: ignore[arg-type]
        ("lease", lambda: crm.outbox.deliver([relay], lease=timedelta(0))),
        ("lease", lambda: crm.outbox.deliver([relay], lease=timedelta(seconds=-1))),
        ("lease", lambda: crm.outbox.deliver([relay], lease=30)),  # type: ignore[arg-type]
        ("limit", lambda: crm.outbox.deliver([relay], limit=0)),
        ("retry", lambda: crm.outbox.deliver([relay], retry=3)),  # type: ignore[arg-type]
        ("worker", lambda: crm.outbox.deliver([relay], worker="")),
        ("worker", lambda: crm.outbox.deliver([relay], worker=7)),  # type: ignore[arg-type]
        ("event_ids", lambda: crm.outbox.replay("01abc")),  # type: ignore[arg-type]
        ("event_ids", lambda: crm.outbox.replay([1, 2])),  # type: ignore[list-item]
        ("event_ids", lambda: crm.outbox.mark_delivered("01abc")),  # type: ignore[arg-type]
        ("older_than", lambda: crm.outbox.purge(timedelta(seconds=-1))),
        ("older_than", lambda: crm.outbox.purge(30)),  # type: ignore[arg-type]
        ("batch", lambda: crm.outbox.purge(timedelta(0), batch=0)),
        ("limit", lambda: crm.outbox.dead_letters(limit=0)),
        ("limit", lambda: crm.outbox.relay(print, limit=10_001)),
    ]
    for field, call in cases:
        with pytest.raises(ValidationError) as info:
            call()
        assert info.value.field == field, (field, info.value)
    assert receiver.all() == []


def test_bad_relay_settings_are_configuration_errors_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PYCRM_NO_SUCH_SECRET", raising=False)
    monkeypatch.setenv("PYCRM_SHORT_SECRET", "short")
    url = "http://hooks.example/crm"
    cases: list[tuple[str, Callable[[], object]]] = [
        ("no relay named 'nope'", lambda: load_relay("nope", url=url)),
        ("relay 'webhook'", lambda: load_relay("webhook", url=url, secret=SECRET, colour="red")),
        ("url", lambda: WebhookRelay(url="ftp://hooks.example/", secret=SECRET)),
        ("url", lambda: WebhookRelay(url="hooks.example/crm", secret=SECRET)),
        ("url", lambda: WebhookRelay(url=None, secret=SECRET)),  # type: ignore[arg-type]
        ("secret", lambda: WebhookRelay(url=url, secret="short")),
        ("secret", lambda: WebhookRelay(url=url)),
        ("PYCRM_NO_SUCH_SECRET", lambda: WebhookRelay(url=url, secret_env="PYCRM_NO_SUCH_SECRET")),
        ("secret", lambda: WebhookRelay(url=url, secret_env="PYCRM_SHORT_SECRET")),
        ("timeout", lambda: WebhookRelay(url=url, secret=SECRET, timeout=0)),
        ("events", lambda: WebhookRelay(url=url, secret=SECRET, events=[])),
        ("events", lambda: WebhookRelay(url=url, secret=SECRET, events=["deal_*", " "])),
        ("max_attempts", lambda: RetryPolicy(max_attempts=0)),
        ("max_attempts", lambda: RetryPolicy(max_attempts=True)),
        ("max_attempts", lambda: RetryPolicy(max_attempts=2.5)),  # type: ignore[arg-type]
        ("first_delay", lambda: RetryPolicy(first_delay=timedelta(seconds=-1))),
        ("max_delay", lambda: RetryPolicy(max_delay=timedelta(seconds=1))),
        ("first_delay", lambda: RetryPolicy(first_delay=5)),  # type: ignore[arg-type]
        ("jitter", lambda: RetryPolicy(jitter=1.5)),
        ("jitter", lambda: RetryPolicy(jitter=-0.1)),
        ("jitter", lambda: RetryPolicy(jitter="0.5")),  # type: ignore[arg-type]
        ("redis url", lambda: RedisStreamRelay(url="http://cache.example/")),
        ("redis url", lambda: RedisStreamRelay()),
        ("PYCRM_NO_SUCH_SECRET", lambda: RedisStreamRelay(url_env="PYCRM_NO_SUCH_SECRET")),
        ("stream", lambda: RedisStreamRelay(url="redis://h/0", stream="crm:{record}")),
        ("maxlen", lambda: RedisStreamRelay(url="redis://h/0", maxlen="10")),  # type: ignore[arg-type]
    ]
    for words, call in cases:
        with pytest.raises(ConfigurationError) as info:
            call()
        assert words in str(info.value), (words, info.value)


def test_the_relays_installed_under_the_entry_point_group_include_webhook_and_redis() -> None:
    from importlib.metadata import entry_points

    points = {p.name: p.value for p in entry_points(group=ENTRY_POINT_GROUP)}
    assert points["webhook"] == "pycrm.relays.webhook:WebhookRelay"
    assert points["redis"] == "pycrm.relays.redis_streams:RedisStreamRelay"
    installed = available_relays()
    assert installed["webhook"] is WebhookRelay
    assert installed["redis"] is RedisStreamRelay
    relay = load_relay("webhook", url="https://erp.example/hooks", secret=SECRET, events="deal_*")
    assert isinstance(relay, WebhookRelay)
    assert isinstance(relay, Relay)
    assert relay.name == "webhook:erp.example"
    envelope = Envelope(
        id="e1", name="deal_won", tenant_id="t", record_id="r", payload={}, attempt=1
    )
    assert relay.accepts(envelope)
    assert not relay.accepts(attrs.evolve(envelope, name="lead_captured"))
    redis_relay = load_relay("redis", url="redis://127.0.0.1:1/0", name="stream")
    assert isinstance(redis_relay, RedisStreamRelay)
    assert redis_relay.name == "stream"


def test_envelope_body_is_compact_json_and_event_decodes_it(crm: pycrm.CRM) -> None:
    with crm.session(actor=crm.system_actor) as s:
        s.customers.create("Müller & Söhne")
    (event,) = crm.outbox.pending()
    seen: list[Envelope] = []
    crm.outbox.deliver([FunctionRelay(seen.append)])
    (envelope,) = seen
    assert envelope.body() == json.dumps(
        to_dict(event), ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")
    assert "Müller".encode() in envelope.body()
    assert envelope.event == event
    assert isinstance(envelope.event, Event)
    assert (envelope.id, envelope.name, envelope.record_id, envelope.attempt) == (
        event.id,
        "customer_created",
        event.record_id,
        1,
    )
