"""pycrm.web: the form endpoint, driven through hand-written ASGI calls."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import attrs
import pytest

import pycrm
from pycrm.domain.leads import Lead, LeadStatus
from pycrm.domain.query import Eq
from pycrm.errors import ConfigurationError
from pycrm.testing import FakeClock
from pycrm.web import (
    FakeMailer,
    FormApp,
    LeadForm,
    SlidingWindowLimiter,
    client_key,
    render_snippet,
)
from pycrm.web.tokens import TokenError, TokenSigner
from support import snapshot, staff

SECRET = "s3cret-for-tests-only-0123456789abcdef"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
FORM_TYPE = "application/x-www-form-urlencoded"


@attrs.frozen
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def call(
    app: Any,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    client: tuple[str, int] | None = ("203.0.113.7", 50000),
    root_path: str = "",
    chunks: Sequence[bytes] | None = None,
    host: str = "testserver",
) -> Reply:
    """One HTTP request through the ASGI app, as a server would make it."""
    parts = list(chunks) if chunks is not None else [body]
    raw_headers = [(b"host", host.encode())]
    raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if chunks is None and method in ("POST", "PUT"):
        raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": root_path + path,
        "raw_path": (root_path + path).encode(),
        "query_string": b"",
        "root_path": root_path,
        "headers": raw_headers,
        "client": client,
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if parts:
            chunk = parts.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(parts)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, end = sent[0], sent[-1]
    assert start["type"] == "http.response.start"
    names = {k.decode(): v.decode() for k, v in start["headers"]}
    return Reply(start["status"], names, end.get("body", b""))


def post(
    app: Any,
    path: str,
    fields: dict[str, Any],
    *,
    as_json: bool = False,
    accept: str = "application/json",
    headers: Sequence[tuple[str, str]] = (),
    **kwargs: Any,
) -> Reply:
    if as_json:
        body, kind = json.dumps(fields).encode(), "application/json"
    else:
        body, kind = urlencode(fields).encode(), FORM_TYPE
    return call(
        app,
        "POST",
        path,
        body=body,
        headers=[("content-type", kind), ("accept", accept), *headers],
        **kwargs,
    )


GOOD = {
    "full_name": "Jo Meier",
    "mail": "jo@meier.example",
    "firm": "Meier GmbH",
    "message": "We need 40 pumps.",
    "newsletter": "yes",
}


def contact_form(**overrides: Any) -> LeadForm:
    settings: dict[str, Any] = {
        "name": "contact-us",
        "actor": "set-by-fixture",
        "mapping": {
            "full_name": "name",
            "mail": "email",
            "firm": "company",
            "message": "needs",
            "tel": "phone",
        },
        "required": ["full_name", "mail"],
        "fixed": {"campaign": "spring", "region": "DE"},
        "consent": {"marketing": "newsletter"},
        "success_url": "https://shop.example/thanks",
        "allowed_origins": ["https://shop.example"],
    }
    settings.update(overrides)
    return LeadForm(**settings)


@attrs.define
class Site:
    crm: pycrm.CRM
    clock: FakeClock
    web: str
    sam: str
    mailer: FakeMailer

    def app(self, *forms: LeadForm, **options: Any) -> FormApp:
        made = [
            attrs.evolve(f, actor=self.web) if f.actor == "set-by-fixture" else f for f in forms
        ]
        options.setdefault("mailer", self.mailer)
        options.setdefault("secret", SECRET)
        options.setdefault("rate_limiter", None)
        return FormApp(self.crm, made or [contact_form(actor=self.web)], **options)

    def leads(self) -> list[Lead]:
        with self.crm.session(actor=self.crm.system_actor) as s:
            return list(s.leads.iter())


@pytest.fixture
def site(connect_crm: Any, fake_clock: FakeClock) -> Site:
    crm = connect_crm(default_region="DE", routing_rules=[{"name": "everyone", "pick": "first"}])
    people = staff(crm, web="marketing", sam="sales")
    return Site(crm, fake_clock, people.web.id, people.sam.id, FakeMailer())


@pytest.fixture
def memory_site(fake_clock: FakeClock) -> Site:
    crm = pycrm.CRM(
        pycrm.connect("memory://").store,
        clock=fake_clock,
        default_region="DE",
        routing_rules=[{"name": "everyone", "pick": "first"}],
    )
    people = staff(crm, web="marketing", sam="sales")
    return Site(crm, fake_clock, people.web.id, people.sam.id, FakeMailer())


def consents_of(crm: pycrm.CRM, lead_id: str) -> list[Any]:
    from pycrm.domain.consent import Consent

    with crm.session(actor=crm.system_actor) as s:
        return s.read(Consent).find(Eq("subject_id", lead_id))


# -- capture -------------------------------------------------------------------


def test_a_browser_post_captures_a_routed_lead_with_mapped_fields_and_consent(site: Site) -> None:
    app = site.app()

    reply = post(
        app,
        "/forms/contact-us",
        GOOD,
        accept=BROWSER,
        headers=[("origin", "https://shop.example"), ("referer", "https://shop.example/contact")],
    )

    assert reply.status == 303
    assert reply.headers["location"] == "https://shop.example/thanks"
    assert reply.headers["access-control-allow-origin"] == "https://shop.example"
    [lead] = site.leads()
    assert (lead.name, lead.primary_email, lead.company) == (
        "Jo Meier",
        "jo@meier.example",
        "Meier GmbH",
    )
    assert (lead.needs, lead.source, lead.campaign, lead.region) == (
        "We need 40 pumps.",
        "webform",
        "spring",
        "DE",
    )
    assert (lead.owner_id, lead.status, lead.assigned_by) == (
        site.sam,
        LeadStatus.ASSIGNED,
        "pycrm.routing:everyone",
    )
    assert lead.created_by == site.web
    [consent] = consents_of(site.crm, lead.id)
    assert (consent.purpose, consent.granted, consent.method, consent.channel) == (
        "marketing",
        True,
        "form",
        "email",
    )
    assert consent.proof["form"] == "contact-us"
    assert consent.proof["ip"] == "203.0.113.7"
    assert consent.proof["page"] == "https://shop.example/contact"
    assert consent.at == site.clock.now()


def test_a_json_post_gets_201_without_revealing_any_record(memory_site: Site) -> None:
    reply = post(
        memory_site.app(), "/forms/contact-us", {**GOOD, "newsletter": False}, as_json=True
    )

    assert (reply.status, reply.json()) == (201, {"status": "received"})
    [lead] = memory_site.leads()
    assert lead.id.encode() not in reply.body
    assert consents_of(memory_site.crm, lead.id) == []  # the box was not ticked


def test_a_browser_post_without_success_url_gets_a_thank_you_page(memory_site: Site) -> None:
    app = memory_site.app(contact_form(success_url=None))

    reply = post(app, "/forms/contact-us", GOOD, accept=BROWSER)

    assert reply.status == 201
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert "Thank you" in reply.text
    assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]


def test_blank_optional_fields_are_left_out_and_extra_fields_ignored(memory_site: Site) -> None:
    fields = {"full_name": " Ann  Arbor ", "mail": "ann@x.example", "firm": "  ", "button": "go"}

    reply = post(memory_site.app(), "/forms/contact-us", fields)

    assert reply.status == 201
    [lead] = memory_site.leads()
    assert (lead.name, lead.company, lead.needs) == ("Ann Arbor", None, None)


# -- bad input -----------------------------------------------------------------


def test_invalid_fields_are_refused_with_422_naming_the_form_fields(site: Site) -> None:
    app = site.app()
    before = snapshot(site.crm)

    missing = post(app, "/forms/contact-us", {"mail": "", "firm": "X"})
    bad = post(app, "/forms/contact-us", {**GOOD, "mail": "jo@", "tel": "12ab"})

    assert missing.status == 422
    assert missing.json()["errors"] == [
        {"field": "full_name", "reason": "is required"},
        {"field": "mail", "reason": "is required"},
    ]
    assert bad.status == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"mail", "tel"}
    assert bad.json()["error"] == "invalid"
    assert snapshot(site.crm) == before


def test_a_capture_error_on_a_field_the_lead_checks_is_named_too(memory_site: Site) -> None:
    reply = post(memory_site.app(), "/forms/contact-us", {**GOOD, "message": "x" * 5001})

    assert reply.status == 422
    assert reply.json()["errors"] == [
        {"field": "message", "reason": "is longer than 5000 characters"}
    ]


def test_a_browser_gets_the_errors_as_an_html_page(memory_site: Site) -> None:
    reply = post(memory_site.app(), "/forms/contact-us", {**GOOD, "mail": "<b>@"}, accept=BROWSER)

    assert reply.status == 422
    assert reply.headers["content-type"].startswith("text/html")
    assert "mail:" in reply.text
    assert "<b>" not in reply.text


def test_json_values_of_the_wrong_kind_are_named(memory_site: Site) -> None:
    app = memory_site.app()

    nested = post(app, "/forms/contact-us", {**GOOD, "firm": {"a": 1}}, as_json=True)
    flag = post(app, "/forms/contact-us", {**GOOD, "full_name": True}, as_json=True)
    number = post(app, "/forms/contact-us", {**GOOD, "tel": 4930123456}, as_json=True)

    assert (nested.status, nested.json()["errors"][0]["field"]) == (422, "firm")
    assert (flag.status, flag.json()["errors"][0]["field"]) == (422, "full_name")
    assert number.status == 201
    assert memory_site.leads()[0].primary_phone == "+4930123456"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (b"", "malformed"),
        (b'{"full_name": "\xff"}', "malformed"),
    ],
)
def test_malformed_json_is_a_400(memory_site: Site, body: bytes, error: str) -> None:
    headers = [("content-type", "application/json")]

    reply = call(memory_site.app(), "POST", "/forms/contact-us", body=body, headers=headers)

    assert (reply.status, reply.json()["error"]) == (400, error)
    assert memory_site.leads() == []


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data; boundary=x",
        "text/plain",
        None,
        "application/x-www-form-urlencoded; charset=latin-1",
    ],
)
def test_other_content_types_get_415(memory_site: Site, content_type: str | None) -> None:
    headers = [("accept", "application/json")]
    if content_type is not None:
        headers.append(("content-type", content_type))

    reply = call(
        memory_site.app(),
        "POST",
        "/forms/contact-us",
        body=urlencode(GOOD).encode(),
        headers=headers,
    )

    assert (reply.status, reply.json()["error"]) == (415, "unsupported_media_type")
    assert memory_site.leads() == []


def test_a_body_over_the_cap_gets_413_whether_announced_or_streamed(site: Site) -> None:
    app = site.app(max_body=2048)
    before = snapshot(site.crm)
    big = urlencode({**GOOD, "message": "x" * 3000}).encode()
    headers = [("content-type", FORM_TYPE), ("accept", "application/json")]

    announced = call(app, "POST", "/forms/contact-us", body=big, headers=headers)
    streamed = call(
        app, "POST", "/forms/contact-us", chunks=[big[:1500], big[1500:]], headers=headers
    )

    assert (announced.status, announced.json()["error"]) == (413, "too_large")
    assert (streamed.status, streamed.json()["error"]) == (413, "too_large")
    assert snapshot(site.crm) == before
    fits = call(
        app,
        "POST",
        "/forms/contact-us",
        chunks=[b"full_name=Jo", b"&mail=jo%40x.example"],
        headers=headers,
    )
    assert fits.status == 201


# -- spam ----------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True])
def test_a_filled_honeypot_is_refused_with_400_and_nothing_stored(
    site: Site, as_json: bool, caplog: pytest.LogCaptureFixture
) -> None:
    before = snapshot(site.crm)

    with caplog.at_level(logging.INFO, logger="pycrm.web"):
        reply = post(
            site.app(),
            "/forms/contact-us",
            {**GOOD, "website": "http://spam.example"},
            as_json=as_json,
        )

    assert (reply.status, reply.json()) == (
        400,
        {"error": "refused", "message": "the submission was refused"},
    )
    assert snapshot(site.crm) == before
    assert "honeypot" in caplog.text


def test_a_blank_honeypot_is_fine_and_a_custom_one_is_used(memory_site: Site) -> None:
    app = memory_site.app(contact_form(honeypot="url2"))

    blank = post(app, "/forms/contact-us", {**GOOD, "url2": " ", "website": "x"})
    filled = post(app, "/forms/contact-us", {**GOOD, "url2": "x"})

    assert (blank.status, filled.status) == (201, 400)
    assert len(memory_site.leads()) == 1


def test_the_rate_limit_refuses_with_429_and_retry_after(site: Site) -> None:
    now = [0.0]
    app = site.app(rate_limiter=SlidingWindowLimiter(2, 60, clock=lambda: now[0]))
    first = post(app, "/forms/contact-us", GOOD)
    now[0] = 20.0
    second = post(app, "/forms/contact-us", {**GOOD, "mail": "b@meier.example", "full_name": "B"})
    before = snapshot(site.crm)

    third = post(app, "/forms/contact-us", {**GOOD, "mail": "c@x.example", "full_name": "Cy"})

    assert (first.status, second.status, third.status) == (201, 201, 429)
    assert third.headers["retry-after"] == "40"
    assert third.json()["error"] == "rate_limited"
    assert snapshot(site.crm) == before
    other = post(
        app, "/forms/contact-us", {**GOOD, "mail": "d@x.example"}, client=("198.51.100.1", 1)
    )
    assert other.status == 201  # another address has its own count
    now[0] = 60.5  # the first submission left the window
    assert post(app, "/forms/contact-us", {**GOOD, "mail": "e@x.example"}).status == 201
    assert post(app, "/forms/contact-us", {**GOOD, "mail": "f@x.example"}).status == 429


def test_the_rate_limit_comes_before_the_body_is_read(memory_site: Site) -> None:
    app = memory_site.app(rate_limiter=SlidingWindowLimiter(1, 60))
    headers = [("content-type", "text/plain"), ("accept", "application/json")]

    assert call(app, "POST", "/forms/contact-us", headers=headers).status == 415
    assert call(app, "POST", "/forms/contact-us", headers=headers).status == 429


def test_an_async_shared_limiter_is_awaited(memory_site: Site) -> None:
    seen: list[str] = []

    class Shared:
        async def hit(self, key: str) -> float | None:
            seen.append(key)
            return 2.2 if len(seen) > 1 else None

    app = memory_site.app(rate_limiter=Shared())

    assert post(app, "/forms/contact-us", GOOD, client=("2001:db8::1", 1)).status == 201
    refused = post(app, "/forms/contact-us", GOOD, client=("2001:db8::2", 1))

    assert (refused.status, refused.headers["retry-after"]) == (429, "3")
    assert seen == ["2001:db8::/64", "2001:db8::/64"]


def test_client_keys_group_ipv6_by_64_and_unwrap_mapped_ipv4() -> None:
    assert client_key("203.0.113.9") == "203.0.113.9"
    assert client_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert client_key(None) == "unknown"
    assert client_key("unix-socket") == "unix-socket"


def test_the_sliding_window_forgets_the_quietest_clients_beyond_max_keys() -> None:
    limiter = SlidingWindowLimiter(1, 60, clock=lambda: 0.0, max_keys=2)

    assert [limiter.hit(k) for k in ("a", "b", "a", "c")] == [None, None, 60.0, None]
    assert limiter.hit("b") is None  # forgotten when c came
    assert limiter.hit("a") is None  # a was forgotten when b came back


@pytest.mark.parametrize(
    "options",
    [{"limit": 0}, {"limit": True}, {"window": 0}, {"window": "60"}, {"max_keys": 0}],
)
def test_a_bad_limiter_setting_is_a_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SlidingWindowLimiter(**options)


# -- CORS ----------------------------------------------------------------------


def test_the_preflight_answers_allowed_origins_only(memory_site: Site) -> None:
    app = memory_site.app()
    asking = [
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type"),
    ]

    allowed = call(
        app, "OPTIONS", "/forms/contact-us", headers=[("origin", "https://shop.example"), *asking]
    )
    other = call(
        app, "OPTIONS", "/forms/contact-us", headers=[("origin", "https://evil.example"), *asking]
    )
    put = call(
        app,
        "OPTIONS",
        "/forms/contact-us",
        headers=[("origin", "https://shop.example"), ("access-control-request-method", "PUT")],
    )

    assert allowed.status == 204
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert allowed.headers["access-control-allow-methods"] == "POST"
    assert "content-type" in allowed.headers["access-control-allow-headers"].lower()
    assert allowed.headers["vary"] == "Origin"
    assert other.status == 403
    assert "access-control-allow-origin" not in other.headers
    assert put.status == 405


def test_a_post_from_another_origin_is_refused_and_nothing_stored(site: Site) -> None:
    app = site.app()
    before = snapshot(site.crm)

    reply = post(app, "/forms/contact-us", GOOD, headers=[("origin", "https://evil.example")])

    assert (reply.status, reply.json()["error"]) == (403, "origin_not_allowed")
    assert "access-control-allow-origin" not in reply.headers
    assert snapshot(site.crm) == before


def test_same_origin_and_originless_posts_are_allowed(memory_site: Site) -> None:
    app = memory_site.app(contact_form(allowed_origins=[]))

    same = post(app, "/forms/contact-us", GOOD, headers=[("origin", "http://testserver")])
    none = post(app, "/forms/contact-us", {**GOOD, "mail": "b@x.example", "full_name": "B"})
    spoofed = post(app, "/forms/contact-us", GOOD, headers=[("origin", "http://testserver.evil")])

    assert (same.status, none.status, spoofed.status) == (201, 201, 403)
    assert "access-control-allow-origin" in same.headers


def test_refusals_carry_cors_headers_so_the_page_can_read_them(memory_site: Site) -> None:
    app = memory_site.app(rate_limiter=SlidingWindowLimiter(1, 60))
    origin = [("origin", "https://shop.example")]

    invalid = post(app, "/forms/contact-us", {"mail": "x"}, headers=origin)
    limited = post(app, "/forms/contact-us", GOOD, headers=origin)

    assert invalid.status == 422
    assert invalid.headers["access-control-allow-origin"] == "https://shop.example"
    assert limited.status == 429
    assert limited.headers["access-control-expose-headers"] == "Retry-After"


def test_a_wildcard_allows_any_origin(memory_site: Site) -> None:
    app = memory_site.app(contact_form(allowed_origins="*"))

    reply = post(app, "/forms/contact-us", GOOD, headers=[("origin", "https://any.example")])

    assert (reply.status, reply.headers["access-control-allow-origin"]) == (
        201,
        "https://any.example",
    )


# -- the snippet and routes ---------------------------------------------------------


def test_the_snippet_is_labelled_escaped_and_hides_the_honeypot(memory_site: Site) -> None:
    form = contact_form(
        labels={"full_name": 'Your "name" <required>', "newsletter": "Send me news & offers"},
        submit_label="Go <now>",
    )
    app = memory_site.app(form)

    reply = call(app, "GET", "/forms/contact-us.html", root_path="/crm")

    assert reply.status == 200
    html = reply.text
    assert 'action="http://testserver/crm/forms/contact-us"' in html
    assert "Your &quot;name&quot; &lt;required&gt;" in html
    assert "Send me news &amp; offers" in html
    assert "Go &lt;now&gt;" in html
    assert "<required>" not in html
    assert re.search(
        r'<input id="pycrm-contact-us-full_name" name="full_name" [^>]*required>', html
    )
    assert re.search(r'name="mail" type="email" autocomplete="email"', html)
    assert re.search(r'<textarea id="pycrm-contact-us-message" name="message"', html)
    assert re.search(
        r'<p class="pycrm-hp" aria-hidden="true">.*name="website" type="text" tabindex="-1"', html
    )
    assert ".pycrm-hp{position:absolute!important;left:-10000px" in html
    assert 'name="newsletter" type="checkbox" value="yes"' in html
    assert html.count("<label") == 7  # five fields, the honeypot, the consent box


def test_the_snippet_follows_public_url_and_answers_head(memory_site: Site) -> None:
    app = memory_site.app(public_url="https://crm.example.com/web/")

    got = call(app, "GET", "/forms/contact-us.html", host="internal:8000")
    head = call(app, "HEAD", "/forms/contact-us.html")

    assert 'action="https://crm.example.com/web/forms/contact-us"' in got.text
    assert (head.status, head.body) == (200, b"")
    assert head.headers["content-length"] == str(len(got.body))


def test_render_snippet_is_public_for_pages_built_at_deploy_time() -> None:
    html = render_snippet(contact_form(actor="u"), "https://crm.example.com/forms/contact-us")

    assert html.startswith('<form class="pycrm-form" id="pycrm-form-contact-us"')


def test_a_mounted_app_finds_its_routes_whether_or_not_the_path_keeps_the_root(
    memory_site: Site,
) -> None:
    app = memory_site.app()
    action = 'action="http://testserver/crm/forms/contact-us"'

    kept = call(app, "GET", "/forms/contact-us.html", root_path="/crm")  # path "/crm/forms/…"
    unmounted = call(app, "GET", "/forms/contact-us.html")
    scope_root = call_with_root(app, "/forms/contact-us.html", "/crm")  # the root stripped

    assert kept.status == unmounted.status == scope_root.status == 200
    assert action in kept.text
    assert 'action="http://testserver/forms/contact-us"' in unmounted.text
    assert action in scope_root.text


def call_with_root(app: Any, path: str, root_path: str) -> Reply:
    """A request whose ``path`` lacks the ``root_path`` the scope names."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "root_path": root_path,
        "headers": [(b"host", b"testserver")],
        "client": ("203.0.113.7", 1),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return Reply(sent[0]["status"], headers, sent[-1]["body"])


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/forms/contact-us", 405),
        ("POST", "/forms/contact-us.html", 405),
        ("GET", "/forms/nope.html", 404),
        ("POST", "/forms/nope", 404),
        ("GET", "/", 404),
        ("GET", "/forms/contact-us/extra", 404),
        ("DELETE", "/confirm/abc.def", 405),
    ],
)
def test_other_routes_and_methods(memory_site: Site, method: str, path: str, status: int) -> None:
    reply = call(memory_site.app(), method, path, headers=[("accept", "application/json")])

    assert reply.status == status
    if status == 405:
        assert "allow" in reply.headers


def test_lifespan_and_websocket_scopes_are_handled(memory_site: Site) -> None:
    app = memory_site.app()
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    asyncio.run(app({"type": "websocket", "path": "/"}, receive, send))

    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
        "websocket.close",
    ]


# -- duplicates and failures --------------------------------------------------------


def test_a_duplicate_the_policy_blocks_is_answered_as_any_submission(
    connect_crm: Any, fake_clock: FakeClock
) -> None:
    crm = connect_crm(default_region="DE", on_duplicate="block")
    people = staff(crm, web="marketing")
    site = Site(crm, fake_clock, people.web.id, "", FakeMailer())
    app = site.app()
    assert post(app, "/forms/contact-us", GOOD).status == 201

    again = post(app, "/forms/contact-us", {**GOOD, "message": "Still want pumps"})
    fresh = post(
        app,
        "/forms/contact-us",
        {**GOOD, "mail": "new@x.example", "full_name": "New Person", "firm": "Other"},
    )

    assert (
        (again.status, again.body) == (fresh.status, fresh.body) == (201, b'{"status":"received"}')
    )
    assert len(site.leads()) == 2
    confirming = site.app(contact_form(double_opt_in=True))
    blocked = post(confirming, "/forms/contact-us", GOOD)
    assert (blocked.status, blocked.json()) == (202, {"status": "confirmation_sent"})
    assert site.mailer.sent == []  # nothing to confirm: the dedupe policy refuses the lead
    assert len(site.leads()) == 2


def test_a_missing_actor_makes_the_form_unavailable_not_a_500(
    memory_site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    app = memory_site.app(contact_form(actor="0" * 32))

    with caplog.at_level(logging.ERROR, logger="pycrm.web"):
        reply = post(app, "/forms/contact-us", GOOD)

    assert (reply.status, reply.json()["error"]) == (503, "unavailable")
    assert "set up wrongly" in caplog.text
    assert memory_site.leads() == []


def test_an_actor_without_the_right_to_capture_makes_it_unavailable(memory_site: Site) -> None:
    people = staff(memory_site.crm, fin="finance")
    app = memory_site.app(contact_form(actor=people.fin.id))

    reply = post(app, "/forms/contact-us", GOOD)

    assert reply.status == 503
    assert memory_site.leads() == []


# -- double opt-in ------------------------------------------------------------------


def confirm_link(mailer: FakeMailer) -> str:
    [mail] = mailer.sent
    found = re.search(r"(http\S+/confirm/\S+)", mail.text)
    assert found is not None
    return found.group(1)


def test_double_opt_in_captures_the_lead_only_once_confirmed(site: Site) -> None:
    app = site.app(contact_form(double_opt_in=True, pending_url="https://shop.example/check-mail"))
    before = snapshot(site.crm)

    reply = post(
        app,
        "/forms/contact-us",
        GOOD,
        accept=BROWSER,
        root_path="/crm",
        headers=[("referer", "https://shop.example/contact")],
    )

    assert (reply.status, reply.headers["location"]) == (303, "https://shop.example/check-mail")
    assert snapshot(site.crm) == before  # nothing personal is stored before confirmation
    [mail] = site.mailer.sent
    assert (mail.to, mail.subject) == ("jo@meier.example", "Please confirm your request")
    assert mail.text.startswith("Hello Jo Meier,")
    link = confirm_link(site.mailer)
    assert link.startswith("http://testserver/crm/confirm/")
    path = urlsplit(link).path.removeprefix("/crm")

    page = call(app, "GET", path, root_path="/crm")
    assert page.status == 200
    assert "<button" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert snapshot(site.crm) == before  # opening the link (a mail scanner, say) stores nothing

    site.clock.advance(hours=5)
    confirmed = call(app, "POST", path, root_path="/crm", headers=[("accept", "application/json")])
    assert (confirmed.status, confirmed.json()) == (200, {"status": "confirmed"})
    [lead] = site.leads()
    assert (lead.name, lead.primary_email, lead.owner_id, lead.status) == (
        "Jo Meier",
        "jo@meier.example",
        site.sam,
        LeadStatus.ASSIGNED,
    )
    assert lead.external_id is not None
    assert lead.external_id.startswith("webform:")
    assert lead.created_at == site.clock.now()
    [consent] = consents_of(site.crm, lead.id)
    assert (consent.purpose, consent.method, consent.at) == (
        "marketing",
        "double_opt_in",
        site.clock.now(),
    )
    assert consent.proof["page"] == "https://shop.example/contact"
    assert consent.proof["submitted_at"] == (site.clock.now() - timedelta(hours=5)).isoformat()
    assert consent.proof["confirmed_at"] == site.clock.now().isoformat()

    again = call(app, "POST", path, root_path="/crm", headers=[("accept", "application/json")])
    assert (again.status, again.json()) == (200, {"status": "confirmed"})
    assert [x.id for x in site.leads()] == [lead.id]
    assert len(consents_of(site.crm, lead.id)) == 1


def test_a_confirmation_redirects_a_browser_to_confirmed_url(memory_site: Site) -> None:
    app = memory_site.app(contact_form(double_opt_in=True, confirmed_url="/welcome"))
    post(app, "/forms/contact-us", GOOD)
    path = urlsplit(confirm_link(memory_site.mailer)).path

    reply = call(app, "POST", path, headers=[("accept", BROWSER)])

    assert (reply.status, reply.headers["location"]) == (303, "/welcome")
    assert len(memory_site.leads()) == 1


def test_a_tampered_token_is_400_and_an_expired_one_410(site: Site) -> None:
    app = site.app(contact_form(double_opt_in=True, confirm_within=timedelta(days=1)))
    post(app, "/forms/contact-us", GOOD)
    path = urlsplit(confirm_link(site.mailer)).path
    payload, signature = path.removeprefix("/confirm/").split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    json_accept = [("accept", "application/json")]
    before = snapshot(site.crm)

    tampered = call(app, "POST", f"/confirm/{flipped}.{signature}", headers=json_accept)
    unsigned = call(app, "POST", f"/confirm/{payload}", headers=json_accept)
    garbage = call(app, "GET", "/confirm/%%%.***")
    site.clock.advance(days=1)
    expired = call(app, "POST", path, headers=json_accept)
    expired_page = call(app, "GET", path)

    assert (tampered.status, tampered.json()["error"]) == (400, "invalid_token")
    assert unsigned.status == 400
    assert garbage.status == 400
    assert (expired.status, expired.json()["error"]) == (410, "expired")
    assert expired_page.status == 410
    assert "expired" in expired_page.text
    assert snapshot(site.crm) == before


def test_a_token_of_another_secret_is_refused_and_old_secrets_rotate(memory_site: Site) -> None:
    old = "an-older-secret-that-is-long-enough-000"
    app_old = memory_site.app(contact_form(double_opt_in=True), secret=old)
    post(app_old, "/forms/contact-us", GOOD)
    path = urlsplit(confirm_link(memory_site.mailer)).path
    accept = [("accept", "application/json")]

    foreign = call(memory_site.app(contact_form(double_opt_in=True)), "POST", path, headers=accept)
    rotated = memory_site.app(contact_form(double_opt_in=True), secret=[SECRET, old])
    accepted = call(rotated, "POST", path, headers=accept)

    assert foreign.status == 400
    assert accepted.status == 200
    assert len(memory_site.leads()) == 1


def test_double_opt_in_checks_the_fields_before_mailing(memory_site: Site) -> None:
    app = memory_site.app(contact_form(double_opt_in=True, required=["full_name"]))

    bad = post(app, "/forms/contact-us", {**GOOD, "tel": "12ab"})
    no_mail = post(app, "/forms/contact-us", {**GOOD, "mail": ""})

    assert (bad.status, bad.json()["errors"][0]["field"]) == (422, "tel")
    assert no_mail.json()["errors"] == [
        {"field": "mail", "reason": "is needed for the confirmation email"}
    ]
    assert memory_site.mailer.sent == []
    assert memory_site.leads() == []


def test_a_mail_outage_is_a_503_and_stores_nothing(
    memory_site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    mailer = FakeMailer(fail=OSError("smtp down"))
    app = memory_site.app(contact_form(double_opt_in=True), mailer=mailer)

    with caplog.at_level(logging.ERROR, logger="pycrm.web"):
        reply = post(app, "/forms/contact-us", GOOD)

    assert (reply.status, reply.json()["error"]) == (503, "unavailable")
    assert "could not be sent" in caplog.text
    assert memory_site.leads() == []


def test_the_confirmation_email_uses_the_form_template(memory_site: Site) -> None:
    form = contact_form(
        double_opt_in=True,
        confirmation_subject="Confirm {form}",
        confirmation_text="Hi {name}! {link} (until {expires})",
    )
    memory_site.clock.set(memory_site.clock.now().replace(hour=9, minute=30))
    app = memory_site.app(form, public_url="https://crm.example.com")

    post(app, "/forms/contact-us", {**GOOD, "full_name": "Jo  Meier"})

    [mail] = memory_site.mailer.sent
    assert mail.subject == "Confirm contact-us"
    assert re.fullmatch(
        r"Hi Jo Meier! https://crm\.example\.com/confirm/[\w-]+\.[\w-]+ \(until \d{4}-\d\d-\d\d 09:30 UTC\)",
        mail.text,
    )


def test_a_confirmation_for_a_form_no_longer_served_is_gone(memory_site: Site) -> None:
    post(memory_site.app(contact_form(double_opt_in=True)), "/forms/contact-us", GOOD)
    path = urlsplit(confirm_link(memory_site.mailer)).path
    other = memory_site.app(contact_form(name="other", double_opt_in=True))

    reply = call(other, "POST", path, headers=[("accept", "application/json")])

    assert reply.status == 410
    assert memory_site.leads() == []


# -- tokens and configuration -------------------------------------------------------


def test_tokens_refuse_oversized_payloads_unread(fake_clock: FakeClock) -> None:
    signer = TokenSigner([SECRET])
    token = signer.dumps({"values": {"needs": "x" * 200_000}}, fake_clock.now() + timedelta(days=1))

    with pytest.raises(TokenError) as info:
        signer.loads(token, fake_clock.now())

    assert info.value.status == 400
    assert len(token) < 2000  # deflated


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="32 bytes"):
        TokenSigner(["short"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "Contact Us"}, "form name"),
        ({"mapping": {}}, "at least one"),
        ({"mapping": {"x": "salary"}}, "salary"),
        ({"mapping": {"a": "email", "b": "email"}}, "both fill"),
        ({"mapping": {"bad name": "email"}}, "form field name"),
        ({"required": ["nope"]}, "required field"),
        ({"consent": {"Marketing!": "newsletter"}}, "slug"),
        ({"consent": {"marketing": "mail"}}, "used twice"),
        ({"honeypot": "mail"}, "honeypot"),
        ({"fixed": {"owner_id": "x"}}, "fixed field"),
        (
            {"fixed": {"region": "DE"}, "mapping": {"r": "region", "m": "email"}, "required": []},
            "both fixed",
        ),
        ({"allowed_origins": ["https://shop.example/path"]}, "origin"),
        ({"success_url": "javascript:alert(1)"}, "success_url"),
        ({"confirm_within": timedelta(0)}, "confirm_within"),
        ({"double_opt_in": True, "mapping": {"full_name": "name"}, "required": []}, "email"),
        ({"confirmation_text": "no link here"}, "{link}"),
        ({"confirmation_text": "{link} {secret}"}, "{secret}"),
        ({"confirmation_subject": "a\nb"}, "one line"),
        ({"labels": {"ghost": "Ghost"}}, "label"),
    ],
)
def test_a_badly_set_up_form_is_a_configuration_error(
    overrides: dict[str, Any], message: str
) -> None:
    settings = {"actor": "u", **overrides}
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        contact_form(**settings)


def test_a_badly_set_up_app_is_a_configuration_error(memory_site: Site) -> None:
    crm = memory_site.crm
    plain = contact_form(actor="u")
    confirming = contact_form(actor="u", name="doi", double_opt_in=True)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"forms": [plain, plain]}, "two forms"),
        ({"forms": [confirming], "secret": SECRET}, "mailer="),
        ({"forms": [confirming], "mailer": FakeMailer()}, "secret="),
        ({"forms": [plain], "public_url": "crm.example.com"}, "public_url"),
        ({"forms": [plain], "max_body": 10}, "max_body"),
        ({"forms": [plain], "rate_limiter": object()}, "rate_limiter"),
        ({"forms": [plain], "mailer": object()}, "mailer"),
        ({"forms": ["contact-us"]}, "LeadForm"),
    ]
    for options, message in cases:
        with pytest.raises(ConfigurationError, match=re.escape(message)):
            FormApp(crm, **options)
    with pytest.raises(ConfigurationError, match="CRM"):
        FormApp("memory://", [plain])  # type: ignore[arg-type]


def test_nothing_touches_the_database_until_a_request_comes(memory_site: Site) -> None:
    before = snapshot(memory_site.crm)

    FormApp(memory_site.crm, [contact_form(actor="no-such-user")])

    assert snapshot(memory_site.crm) == before
