"""The ASGI application: form posts in, leads (and their consent) out."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import math
import re
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlsplit

import attrs

from pycrm.crm import CRM
from pycrm.domain.leads import Lead
from pycrm.domain.query import HasKey
from pycrm.errors import (
    ConcurrencyError,
    ConfigurationError,
    CRMError,
    DuplicateError,
    FieldError,
    StorageError,
    ValidationError,
)
from pycrm.session import Session
from pycrm.web.forms import LeadForm
from pycrm.web.limits import RateLimiter, SlidingWindowLimiter, client_key
from pycrm.web.mailers import Mailer
from pycrm.web.snippet import render_page, render_snippet
from pycrm.web.tokens import TokenError, TokenSigner

__all__ = ["DEFAULT_MAX_BODY", "FormApp", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
"""An ASGI connection scope."""
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
"""The ASGI ``receive`` callable."""
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
"""The ASGI ``send`` callable."""

#: The largest request body the form endpoint reads (64 KiB); larger ones get 413.
DEFAULT_MAX_BODY = 64 * 1024

log = logging.getLogger("pycrm.web")

_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
_FALSE = {"", "0", "false", "no", "off"}
_CAPTURE_FIELDS = {"emails": "email", "phones": "phone", "contact_points": "email"}
_PAGE_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    ),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


@attrs.define
class _Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[bytes, bytes]] = attrs.field(factory=list)

    def header(self, name: str, value: str) -> _Response:
        self.headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        return self

    async def send(self, send: Send, *, head: bool = False) -> None:
        headers = list(self.headers)
        if self.content_type is not None:
            headers.append((b"content-type", self.content_type.encode("latin-1")))
        headers.append((b"content-length", str(len(self.body)).encode("ascii")))
        headers.append((b"x-content-type-options", b"nosniff"))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else self.body})


def _json(status: int, content: Mapping[str, Any]) -> _Response:
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return _Response(status, body, "application/json")


def _html(status: int, text: str, *, page: bool = True) -> _Response:
    response = _Response(status, text.encode("utf-8"), "text/html; charset=utf-8")
    if page:
        response.headers.extend(_PAGE_HEADERS)
    return response


def _redirect(url: str) -> _Response:
    return _Response(303, b"").header("location", url)


class _Refused(Exception):
    """The request is answered with ``status`` and an error code; nothing was stored."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        super().__init__(message)


class _Request:
    """What the app reads from an HTTP scope."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        root = scope.get("root_path", "") or ""
        path: str = scope["path"]
        if root and (path == root or path.startswith(root + "/")):
            path = path[len(root) :]  # servers that follow the spec's clarification keep it
        self.root_path: str = root.rstrip("/")
        self.path = path or "/"
        self.headers: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text
        client = scope.get("client")
        self.client: str | None = client[0] if client else None

    @property
    def origin(self) -> str | None:
        value = self.headers.get("origin")
        return value.lower() if value else None

    @property
    def own_origin(self) -> str | None:
        host = self.headers.get("host")
        if host is None or not _HOST.fullmatch(host):
            return None
        return f"{self.scope.get('scheme', 'http')}://{host}".lower()

    @property
    def wants_json(self) -> bool:
        accept = self.headers.get("accept", "").lower()
        if "application/json" in accept:
            return True
        return "text/html" not in accept and self.media_type == "application/json"

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


class FormApp:
    """An ASGI 3 application that turns web form submissions into leads.

    Mount it in Starlette or FastAPI (``app.mount("/crm", form_app)``), route
    to it from Django's ``asgi.py``, or run it alone with uvicorn. Routes,
    relative to where it is mounted:

    - ``POST /forms/<name>``: a submission (``application/x-www-form-urlencoded``
      or ``application/json``). A browser is redirected (303) to the form's
      ``success_url``; a client that accepts ``application/json`` gets 201
      (captured) or 202 (confirmation email sent). Refusals: 400 (honeypot
      filled, malformed body), 403 (origin not allowed), 413 (body too large),
      415 (other content type), 422 (invalid fields, each named), 429 (rate
      limit, with ``Retry-After``), 503 (the CRM or mail is unavailable).
    - ``OPTIONS /forms/<name>``: the CORS preflight, for allowed origins only.
    - ``GET /forms/<name>.html``: the embeddable HTML snippet.
    - ``GET /confirm/<token>`` shows a confirmation button; ``POST
      /confirm/<token>`` confirms a double opt-in (400 tampered, 410 expired).

    Each submission is captured with ``s.leads.capture`` in a session of the
    form's actor, so duplicate checks, scoring, routing, signals and audit
    apply as for any capture; consent is granted with ``s.consent.grant`` in
    the same session. CRM calls run in worker threads, off the event loop.

    :param crm: the connected CRM.
    :param forms: the forms it serves (distinct names).
    :param mailer: sends confirmation emails (needed when a form uses double opt-in).
    :param secret: signs confirmation links (at least 32 bytes; needed for
        double opt-in). A sequence: the first signs, all are accepted.
    :param public_url: the app's address as visitors see it, e.g.
        ``"https://crm.example.com/crm"``, for the snippet's ``action`` and the
        confirmation links. None: taken from each request (scheme, ``Host``
        header, ASGI ``root_path``); set it when the ``Host`` header cannot be
        trusted (see the security notes in the guide).
    :param rate_limiter: counts submissions per client address;
        ``"default"``: 10 per 10 minutes in this process; None: no limit.
    :param max_body: the largest request body read, in bytes.
    :raises ConfigurationError: on a bad form, a duplicate form name, or a
        double opt-in form without ``mailer`` or ``secret``.
    """

    def __init__(
        self,
        crm: CRM,
        forms: Iterable[LeadForm],
        *,
        mailer: Mailer | None = None,
        secret: str | bytes | Sequence[str | bytes] | None = None,
        public_url: str | None = None,
        rate_limiter: RateLimiter | Literal["default"] | None = "default",
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        if not isinstance(crm, CRM):
            raise ConfigurationError(f"FormApp needs a CRM from pycrm.connect(), not {crm!r}")
        self.crm = crm
        """The CRM leads are captured in."""
        self.forms: dict[str, LeadForm] = {}
        """The forms by name."""
        for form in forms:
            if not isinstance(form, LeadForm):
                raise ConfigurationError(f"forms must be LeadForm objects, not {form!r}")
            if form.name in self.forms:
                raise ConfigurationError(f"two forms are named {form.name!r}")
            self.forms[form.name] = form
        confirming = [f.name for f in self.forms.values() if f.double_opt_in]
        if confirming and mailer is None:
            raise ConfigurationError(f"form {confirming[0]} uses double opt-in: pass mailer=")
        if mailer is not None and not callable(getattr(mailer, "send", None)):
            raise ConfigurationError("mailer must have a send(to, subject, text) method")
        self.mailer = mailer
        """Where confirmation emails go."""
        self._signer: TokenSigner | None = None
        if secret is not None:
            keys = [secret] if isinstance(secret, str | bytes) else list(secret)
            self._signer = TokenSigner(keys)
        elif confirming:
            raise ConfigurationError(f"form {confirming[0]} uses double opt-in: pass secret=")
        if public_url is not None:
            if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", public_url or ""):
                raise ConfigurationError(f"public_url {public_url!r} is not an http(s) URL")
            public_url = public_url.rstrip("/")
        self.public_url = public_url
        """The app's public address, or None (taken from each request)."""
        if rate_limiter == "default":
            rate_limiter = SlidingWindowLimiter()
        if rate_limiter is not None and not callable(getattr(rate_limiter, "hit", None)):
            raise ConfigurationError("rate_limiter must have a hit(key) method")
        self.rate_limiter: RateLimiter | None = rate_limiter
        """Counts submissions per client address (None: no limit)."""
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1024:
            raise ConfigurationError(f"max_body must be at least 1024 bytes, not {max_body!r}")
        self.max_body = max_body
        """The largest request body read, in bytes."""
        self._confirm_lock = threading.Lock()

    # -- ASGI ------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (``http``; ``lifespan`` is acknowledged)."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            return
        request = _Request(scope)
        try:
            response = await self._route(request, receive)
        except _Refused as refused:
            response = self._refusal(request, refused)
        form = self._form_of(request)
        if form is not None:
            self._cors(request, form, response)
        await response.send(send, head=request.method == "HEAD")

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, request: _Request, receive: Receive) -> _Response:
        parts = request.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "forms":
            name = parts[1]
            if name.endswith(".html"):
                form = self._known(name.removesuffix(".html"))
                if request.method not in ("GET", "HEAD"):
                    raise _Refused(
                        405, "method_not_allowed", "use GET", headers=[("allow", "GET, HEAD")]
                    )
                return self._snippet(request, form)
            form = self._known(name)
            if request.method == "POST":
                return await self._submit(request, form, receive)
            if request.method == "OPTIONS":
                return self._preflight(request, form)
            raise _Refused(
                405, "method_not_allowed", "use POST", headers=[("allow", "POST, OPTIONS")]
            )
        if len(parts) == 2 and parts[0] == "confirm" and parts[1]:
            if request.method in ("GET", "HEAD"):
                return await self._confirm_page(request, parts[1])
            if request.method == "POST":
                await self._drain(receive)
                return await self._confirm(request, parts[1])
            raise _Refused(
                405, "method_not_allowed", "use GET or POST", headers=[("allow", "GET, HEAD, POST")]
            )
        raise _Refused(404, "not_found", "there is nothing here")

    def _known(self, name: str) -> LeadForm:
        form = self.forms.get(name)
        if form is None:
            raise _Refused(404, "not_found", "there is no form of that name")
        return form

    def _form_of(self, request: _Request) -> LeadForm | None:
        parts = request.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "forms":
            return self.forms.get(parts[1].removesuffix(".html"))
        return None

    # -- answers ---------------------------------------------------------------

    def _refusal(self, request: _Request, refused: _Refused) -> _Response:
        if request.wants_json or request.method not in ("GET", "HEAD", "POST"):
            content: dict[str, Any] = {"error": refused.code, "message": refused.message}
            if isinstance(refused, _Invalid):
                content["errors"] = refused.errors
            response = _json(refused.status, content)
        else:
            lines = [refused.message]
            if isinstance(refused, _Invalid):
                lines = [f"{e['field']}: {e['reason']}" for e in refused.errors]
                lines.append("Please go back and correct the form.")
            title = "Please check the form" if refused.status == 422 else "Sorry"
            response = _html(refused.status, render_page(title, lines))
        for name, value in refused.headers:
            response.header(name, value)
        return response

    def _allowed(self, request: _Request, form: LeadForm) -> bool:
        origin = request.origin
        if origin is None:
            return True  # not a cross-origin browser request
        if "*" in form.allowed_origins or origin in form.allowed_origins:
            return True
        if self.public_url is not None:
            parts = urlsplit(self.public_url)
            return origin == f"{parts.scheme}://{parts.netloc}".lower()
        return origin == request.own_origin

    def _cors(self, request: _Request, form: LeadForm, response: _Response) -> None:
        origin = request.origin
        if origin is None or not self._allowed(request, form):
            return
        response.header("access-control-allow-origin", origin)
        response.header("vary", "Origin")
        if response.status in (413, 422, 429, 503):
            response.header("access-control-expose-headers", "Retry-After")

    def _preflight(self, request: _Request, form: LeadForm) -> _Response:
        if request.origin is None or not self._allowed(request, form):
            raise _Refused(403, "origin_not_allowed", "this origin may not post the form")
        method = request.headers.get("access-control-request-method", "POST").upper()
        if method != "POST":
            raise _Refused(
                405,
                "method_not_allowed",
                "only POST is allowed",
                headers=[("allow", "POST, OPTIONS")],
            )
        return (
            _Response(204)
            .header("access-control-allow-methods", "POST")
            .header("access-control-allow-headers", "Content-Type, Accept")
            .header("access-control-max-age", "600")
        )

    def _base(self, request: _Request) -> str:
        if self.public_url is not None:
            return self.public_url
        return f"{request.own_origin or 'http://localhost'}{request.root_path}"

    def _snippet(self, request: _Request, form: LeadForm) -> _Response:
        action = f"{self._base(request)}/forms/{quote(form.name)}"
        response = _html(200, render_snippet(form, action), page=False)
        return response.header("cache-control", "public, max-age=300")

    @staticmethod
    def _done(
        request: _Request,
        status: int,
        state: str,
        url: str | None,
        title: str,
        text: str,
    ) -> _Response:
        if request.wants_json:
            return _json(status, {"status": state})
        if url is not None:
            return _redirect(url)
        return _html(status, render_page(title, [text]))

    # -- submissions -----------------------------------------------------------

    async def _submit(self, request: _Request, form: LeadForm, receive: Receive) -> _Response:
        if not self._allowed(request, form):
            raise _Refused(403, "origin_not_allowed", "this origin may not post the form")
        await self._limit(request)
        media = request.media_type
        if media not in ("application/x-www-form-urlencoded", "application/json"):
            raise _Refused(
                415,
                "unsupported_media_type",
                "send application/x-www-form-urlencoded or application/json",
            )
        body = await self._read(request, receive)
        fields = self._parse(media, body, request.headers.get("content-type", ""))
        if self._spam(fields, form):
            log.info("form %s: honeypot filled by %s; refused", form.name, request.client)
            raise _Refused(400, "refused", "the submission was refused")
        values, consents = self._values(form, fields)
        now = self.crm.clock.now()
        proof = {
            "form": form.name,
            "ip": _printable(request.client or "unknown"),
            "submitted_at": now.isoformat(),
        }
        referer = _printable(request.headers.get("referer", ""))
        if referer:
            proof["page"] = referer
        if form.double_opt_in:
            return await self._ask_confirmation(request, form, values, consents, proof)
        outcome = await self._work(
            functools.partial(self._capture, form, values, consents, "form", proof, now, None)
        )
        if outcome == "duplicate":
            log.info("form %s: a duplicate was blocked by the dedupe policy", form.name)
        return self._done(
            request, 201, "received", form.success_url, "Thank you", "We received your message."
        )

    async def _limit(self, request: _Request) -> None:
        if self.rate_limiter is None:
            return
        wait = self.rate_limiter.hit(client_key(request.client))
        if inspect.isawaitable(wait):
            wait = await wait
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise _Refused(
                429,
                "rate_limited",
                f"too many submissions from your address; try again in {seconds} seconds",
                headers=[("retry-after", str(seconds))],
            )

    async def _read(self, request: _Request, receive: Receive) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            raise _Refused(413, "too_large", f"the body may hold at most {self.max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Refused(400, "disconnected", "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _Refused(413, "too_large", f"the body may hold at most {self.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _drain(receive: Receive) -> None:
        size = 0
        while size <= DEFAULT_MAX_BODY:
            message = await receive()
            size += len(message.get("body", b""))
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                return

    @staticmethod
    def _parse(media: str, body: bytes, content_type: str) -> dict[str, str | bool]:
        charset = re.search(r"charset=\"?([A-Za-z0-9_-]+)", content_type)
        if charset and charset.group(1).lower() not in ("utf-8", "utf8"):
            raise _Refused(415, "unsupported_media_type", "send the body in UTF-8")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused(400, "malformed", "the body is not UTF-8") from None
        fields: dict[str, str | bool] = {}
        if media == "application/json":
            try:
                content = json.loads(text) if text.strip() else None
            except ValueError:
                raise _Refused(400, "malformed", "the body is not valid JSON") from None
            if not isinstance(content, dict):
                raise _Refused(400, "malformed", "the JSON body must be an object of fields")
            errors = []
            for key, value in content.items():
                if isinstance(value, bool | str):
                    fields[key] = value
                elif isinstance(value, int | float):
                    fields[key] = str(value)
                elif value is not None:
                    errors.append(FieldError(key, value, "must be text, a number or true/false"))
            if errors:
                raise _Invalid.named(errors)
            return fields
        try:
            pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=200)
        except ValueError:
            raise _Refused(400, "malformed", "the form holds too many fields") from None
        for key, value in pairs:
            fields.setdefault(key, value)  # a repeated field: the first value counts
        return fields

    @staticmethod
    def _spam(fields: Mapping[str, str | bool], form: LeadForm) -> bool:
        value = fields.get(form.honeypot)
        return value is True or (isinstance(value, str) and value.strip() != "")

    @staticmethod
    def _values(
        form: LeadForm, fields: Mapping[str, str | bool]
    ) -> tuple[dict[str, str], list[str]]:
        """The lead fields and consent purposes a submission gives; 422 on blanks or bad types."""
        errors: list[FieldError] = []
        values: dict[str, str] = {}
        for field, target in form.mapping.items():
            value = fields.get(field)
            if isinstance(value, bool):
                errors.append(FieldError(field, value, "must be text"))
                continue
            text = (value or "").strip()
            if text:
                values[target] = text
            elif field in form.required:
                errors.append(FieldError(field, value, "is required"))
        consents = []
        for purpose, box in form.consent.items():
            value = fields.get(box)
            given = value is True or (
                isinstance(value, str) and value.strip().lower() not in _FALSE
            )
            if given:
                consents.append(purpose)
            elif box in form.required:
                errors.append(FieldError(box, value, "must be ticked"))
        if form.double_opt_in and "email" not in values and not errors:
            box = next(f for f, t in form.mapping.items() if t == "email")
            errors.append(FieldError(box, None, "is needed for the confirmation email"))
        if errors:
            raise _Invalid.named(errors)
        return values, consents

    async def _work(self, call: Callable[[], str]) -> str:
        """Run ``call`` (CRM work) in a worker thread; CRM failures become answers."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, call)
        except _Refused:
            raise
        except (ConcurrencyError, StorageError) as exc:
            log.warning("form submission failed, the visitor may retry: %s", exc)
            raise _Refused(
                503, "unavailable", "please try again in a moment", headers=[("retry-after", "5")]
            ) from None
        except CRMError as exc:
            log.error("form submission failed: the form is set up wrongly: %s", exc)
            raise _Refused(503, "unavailable", "the form is not available right now") from None

    def _capture(
        self,
        form: LeadForm,
        values: Mapping[str, str],
        consents: Sequence[str],
        method: str,
        proof: Mapping[str, str],
        at: datetime,
        external_id: str | None,
    ) -> str:
        """Capture the lead and grant its consents in one session: ``captured``, ``duplicate`` or ``known``."""
        with self.crm.session(actor=form.actor, tenant=form.tenant) as s:
            if external_id is not None and _by_external_id(s, external_id) is not None:
                return "known"
            try:
                lead = self._capture_in(s, form, values, external_id)
            except DuplicateError:
                return "duplicate"  # the dedupe policy blocks it: nothing is stored
            for purpose in consents:
                _grant(s, lead.id, purpose, method=method, proof=proof, at=at)
        return "captured"

    @staticmethod
    def _capture_in(
        s: Session, form: LeadForm, values: Mapping[str, str], external_id: str | None = None
    ) -> Lead:
        given = dict(values)
        name = given.pop("name", None)
        if external_id is not None:
            given["external_id"] = external_id
        try:
            return s.leads.capture(name, source=form.source, **form.fixed, **given)
        except ValidationError as exc:
            raise _Invalid.of(exc, form.mapping) from None

    # -- double opt-in -----------------------------------------------------------

    def _check(self, form: LeadForm, values: Mapping[str, str]) -> str:
        """Capture in a session that is rolled back: ``ok`` or ``duplicate`` (422 on bad fields)."""
        s = self.crm.session(actor=form.actor, tenant=form.tenant)
        try:
            self._capture_in(s, form, values)
        except DuplicateError:
            return "duplicate"
        finally:
            s.rollback()
        return "ok"

    async def _ask_confirmation(
        self,
        request: _Request,
        form: LeadForm,
        values: dict[str, str],
        consents: list[str],
        proof: dict[str, str],
    ) -> _Response:
        assert self._signer is not None  # checked in __init__
        assert self.mailer is not None
        outcome = await self._work(functools.partial(self._check, form, values))
        if outcome == "ok":
            expires = self.crm.clock.now() + form.confirm_within
            data = {
                "form": form.name,
                "nonce": secrets.token_urlsafe(16),
                "values": values,
                "consents": consents,
                "proof": proof,
            }
            token = self._signer.dumps(data, expires)
            link = f"{self._base(request)}/confirm/{token}"
            name = values.get("name") or " ".join(
                v for v in (values.get("given_name"), values.get("family_name")) if v
            )
            fill = {
                "name": " ".join(name.split()) or "there",
                "link": link,
                "expires": expires.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "form": form.name,
            }
            subject = form.confirmation_subject.format_map(fill)
            text = form.confirmation_text.format_map(fill)
            await self._mail(values["email"], subject, text)
        else:
            log.info("form %s: a duplicate was blocked by the dedupe policy", form.name)
        return self._done(
            request,
            202,
            "confirmation_sent",
            form.pending_url or form.success_url,
            "Please check your email",
            "We sent you an email: open its link to confirm your request.",
        )

    async def _mail(self, to: str, subject: str, text: str) -> None:
        assert self.mailer is not None
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, functools.partial(self.mailer.send, to, subject, text))
        except Exception:
            log.exception("the confirmation email could not be sent")
            raise _Refused(
                503, "unavailable", "the confirmation email could not be sent; please try later"
            ) from None

    def _token(self, token: str) -> tuple[LeadForm, dict[str, Any]]:
        if self._signer is None:
            raise _Refused(404, "not_found", "there is nothing here")
        try:
            data = self._signer.loads(token, self.crm.clock.now())
        except TokenError as exc:
            raise _Refused(
                exc.status, "expired" if exc.status == 410 else "invalid_token", exc.reason
            ) from None
        form = self.forms.get(data.get("form", ""))
        if form is None or not form.double_opt_in:
            raise _Refused(410, "expired", "this form no longer takes confirmations")
        return form, data

    async def _confirm_page(self, request: _Request, token: str) -> _Response:
        self._token(token)
        return _html(
            200,
            render_page(
                "Confirm your request",
                ["Please press the button to confirm the request you sent us."],
                button="Confirm",
            ),
        )

    async def _confirm(self, request: _Request, token: str) -> _Response:
        form, data = self._token(token)
        try:
            values = {str(k): str(v) for k, v in dict(data["values"]).items()}
            consents = [str(p) for p in data["consents"] if str(p) in form.consent]
            proof = {str(k): str(v) for k, v in dict(data["proof"]).items()}
            external_id = f"webform:{data['nonce']}"
        except (KeyError, TypeError, ValueError):
            raise _Refused(400, "invalid_token", "the confirmation link is not valid") from None
        now = self.crm.clock.now()
        proof["confirmed_at"] = now.isoformat()
        proof["confirmed_ip"] = _printable(request.client or "unknown")

        def confirm() -> str:
            with self._confirm_lock:  # one confirmation at a time: confirming twice finds the lead
                return self._capture(
                    form, values, consents, "double_opt_in", proof, now, external_id
                )

        try:
            outcome = await self._work(confirm)
        except _Invalid:
            raise _Refused(
                410, "expired", "the request can no longer be accepted; please send the form again"
            ) from None
        if outcome == "duplicate":
            log.info("form %s: a confirmed duplicate was blocked by the dedupe policy", form.name)
        return self._done(
            request, 200, "confirmed", form.confirmed_url, "Thank you", "Your request is confirmed."
        )


class _Invalid(_Refused):
    """422: the fields named in :attr:`errors` were refused."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(422, "invalid", "some fields are not valid")
        self.errors = errors

    @classmethod
    def named(cls, errors: Iterable[FieldError]) -> _Invalid:
        """Errors that already name the form's fields."""
        return cls([{"field": e.field, "reason": e.reason} for e in errors])

    @classmethod
    def of(cls, error: ValidationError, mapping: Mapping[str, str]) -> _Invalid:
        """The errors of a capture, named by the form's fields (``mapping``: form field → lead field).

        A lead field no form field fills (a name made from its parts, say) keeps its own name.
        """
        by_target = {target: field for field, target in mapping.items()}
        named = []
        for one in error.errors:
            base = re.split(r"[.\[]", one.field, maxsplit=1)[0]
            target = _CAPTURE_FIELDS.get(base, base)
            named.append({"field": by_target.get(target, target), "reason": one.reason})
        return cls(named)


def _printable(text: str, limit: int = 500) -> str:
    """``text`` without control characters, at most ``limit`` characters (for consent proof)."""
    return "".join(c for c in text if c.isprintable())[:limit]


def _by_external_id(s: Session, external_id: str) -> Lead | None:
    with s._guard.bypass():  # pycrm's own bookkeeping: whoever the actor may read
        found = s.read(Lead, quiet=True).find(HasKey("external_id", external_id), limit=1)
    return found[0] if found else None


def _grant(
    s: Session,
    lead_id: str,
    purpose: str,
    *,
    method: str,
    proof: Mapping[str, str],
    at: datetime,
) -> None:
    """Record the visitor's consent to ``purpose`` with the lead, in the capture's session."""
    s.consent.grant(lead_id, purpose, channel="email", method=method, proof=proof, at=at)
