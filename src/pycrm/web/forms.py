"""A form's configuration: which form field fills which lead field, and what happens on submit."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from datetime import timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import attrs

from pycrm.domain.org import Actor
from pycrm.errors import ConfigurationError

__all__ = ["FIXED_FIELDS", "LEAD_FIELDS", "LeadForm"]

#: Lead fields a form field may fill (the keyword arguments of ``s.leads.capture``).
LEAD_FIELDS = (
    "name",
    "given_name",
    "family_name",
    "email",
    "phone",
    "company",
    "title",
    "region",
    "industry",
    "needs",
    "campaign",
)

#: Lead fields a form may set to a fixed value for every submission.
FIXED_FIELDS = ("campaign", "region", "industry", "tags", "categories", "phone_region")

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_PURPOSE = re.compile(r"[a-z][a-z0-9_]{0,39}")
_PLACEHOLDERS = {"name", "link", "expires", "form"}

DEFAULT_SUBJECT = "Please confirm your request"
DEFAULT_TEXT = (
    "Hello {name},\n"
    "\n"
    "please confirm that you sent us this request by opening the link below:\n"
    "\n"
    "{link}\n"
    "\n"
    "The link works until {expires}. If you did not send the form, ignore this\n"
    "email: nothing about you is kept unless you confirm.\n"
)


def _frozen_map(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


def _strings(value: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _origin(value: str) -> str:
    if value == "*":
        return value
    parts = urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise ConfigurationError(
            f"allowed_origins: {value!r} is not an origin such as 'https://shop.example.com'"
        )
    return f"{parts.scheme}://{parts.netloc}".lower()


def _url(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or any(c in value for c in "\r\n\t "):
        raise ConfigurationError(f"{field} must be a URL without spaces, not {value!r}")
    scheme = urlsplit(value).scheme
    if scheme not in ("", "http", "https"):
        raise ConfigurationError(f"{field} must be an http(s) URL or a path, not {value!r}")
    return value


@attrs.frozen(kw_only=True)
class LeadForm:
    """One web form: the fields it takes, the lead it makes, and what follows a submit.

    :raises ConfigurationError: when the form is set up wrongly (the message
        names the setting); nothing touches the database until a request comes.
    """

    name: str
    """The form's name in its URL (``/forms/<name>``): lower-case letters, digits, ``-`` and ``_``."""
    actor: str | Actor
    """The user (id) leads are captured as: audited, checked and routed as that user's captures.

    Typically a marketing user set aside for the website; :attr:`pycrm.CRM.system_actor` works too.
    """
    mapping: Mapping[str, str] = attrs.field(converter=_frozen_map)
    """Form field name → lead field (one of :data:`LEAD_FIELDS`), e.g. ``{"mail": "email"}``."""
    required: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    """Form fields that must not be blank (besides what the lead itself needs: a name)."""
    source: str = "webform"
    """The captured lead's ``source``."""
    fixed: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_map)
    """Lead fields every submission gets (:data:`FIXED_FIELDS`), e.g. ``{"campaign": "spring"}``."""
    consent: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map)
    """Consent purpose → the checkbox field that grants it, e.g. ``{"marketing": "newsletter"}``."""
    double_opt_in: bool = False
    """Capture the lead only once the visitor opens the link emailed to them."""
    success_url: str | None = None
    """Where a browser goes after a submit (303); None: a short thank-you page."""
    pending_url: str | None = None
    """Where a browser goes after a double opt-in submit; None: :attr:`success_url`."""
    confirmed_url: str | None = None
    """Where a browser goes once the visitor confirmed; None: a short thank-you page."""
    allowed_origins: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    """Origins of the pages that may post the form from another site (CORS), or ``"*"``."""
    tenant: str | None = None
    """The tenant the leads go to (None: the default tenant)."""
    honeypot: str = "website"
    """A field hidden from people: a submission that fills it is refused as spam."""
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map)
    """Form field name → its label in the snippet (default: the field name in words)."""
    submit_label: str = "Send"
    """The snippet's button text."""
    confirm_within: timedelta = timedelta(days=3)
    """How long a confirmation link works."""
    confirmation_subject: str = DEFAULT_SUBJECT
    """The confirmation email's subject."""
    confirmation_text: str = DEFAULT_TEXT
    """The confirmation email's body: ``{name}``, ``{link}``, ``{expires}`` and ``{form}`` are filled in."""

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigurationError(
                f"form name {self.name!r} must be 1-64 lower-case letters, digits, '-' or '_'"
            )
        if not isinstance(self.actor, str | Actor) or not self.actor:
            raise ConfigurationError(f"form {self.name}: actor must be a user id or an Actor")
        self._check_fields()
        self._check_fixed()
        object.__setattr__(self, "allowed_origins", tuple(_origin(o) for o in self.allowed_origins))
        for field in ("success_url", "pending_url", "confirmed_url"):
            _url(f"form {self.name}: {field}", getattr(self, field))
        if not isinstance(self.confirm_within, timedelta) or self.confirm_within <= timedelta(0):
            raise ConfigurationError(
                f"form {self.name}: confirm_within must be a positive timedelta"
            )
        if self.double_opt_in and "email" not in self.mapping.values():
            raise ConfigurationError(
                f"form {self.name}: double_opt_in needs a form field mapped to 'email'"
            )
        self._check_template()

    def _check_fields(self) -> None:
        where = f"form {self.name}"
        if not self.mapping:
            raise ConfigurationError(f"{where}: mapping must name at least one form field")
        seen: dict[str, str] = {}
        for field, target in self.mapping.items():
            if not isinstance(field, str) or not _FIELD.fullmatch(field):
                raise ConfigurationError(f"{where}: {field!r} is not a usable form field name")
            if target not in LEAD_FIELDS:
                raise ConfigurationError(
                    f"{where}: mapping[{field!r}] = {target!r} is not one of {', '.join(LEAD_FIELDS)}"
                )
            if target in seen:
                raise ConfigurationError(
                    f"{where}: {seen[target]!r} and {field!r} both fill the lead's {target}"
                )
            seen[target] = field
        boxes = list(self.consent.values())
        for purpose, box in self.consent.items():
            if not isinstance(purpose, str) or not _PURPOSE.fullmatch(purpose):
                raise ConfigurationError(
                    f"{where}: consent purpose {purpose!r} must be a lower-case slug "
                    "(a letter, then letters, digits or _; at most 40)"
                )
            if not isinstance(box, str) or not _FIELD.fullmatch(box):
                raise ConfigurationError(f"{where}: consent[{purpose!r}] is not a form field name")
            if box in self.mapping or boxes.count(box) > 1:
                raise ConfigurationError(f"{where}: the consent field {box!r} is used twice")
        if not isinstance(self.honeypot, str) or not _FIELD.fullmatch(self.honeypot):
            raise ConfigurationError(f"{where}: honeypot {self.honeypot!r} is not a field name")
        if self.honeypot in self.mapping or self.honeypot in boxes:
            raise ConfigurationError(f"{where}: the honeypot {self.honeypot!r} is a real field")
        for field in self.required:
            if field not in self.mapping and field not in boxes:
                raise ConfigurationError(f"{where}: required field {field!r} is not on the form")
        for field in self.labels:
            if field not in self.mapping and field not in boxes:
                raise ConfigurationError(f"{where}: label for {field!r}, which is not on the form")

    def _check_fixed(self) -> None:
        for field in self.fixed:
            if field not in FIXED_FIELDS:
                raise ConfigurationError(
                    f"form {self.name}: fixed field {field!r} is not one of {', '.join(FIXED_FIELDS)}"
                )
            if field in self.mapping.values():
                raise ConfigurationError(
                    f"form {self.name}: {field!r} is both fixed and filled by the visitor"
                )

    def _check_template(self) -> None:
        for setting in ("confirmation_subject", "confirmation_text"):
            text = getattr(self, setting)
            if not isinstance(text, str) or not text.strip():
                raise ConfigurationError(f"form {self.name}: {setting} must be non-blank text")
            try:
                used = {
                    name for _, name, _, _ in string.Formatter().parse(text) if name is not None
                }
            except ValueError as exc:
                raise ConfigurationError(f"form {self.name}: {setting}: {exc}") from None
            unknown = used - _PLACEHOLDERS
            if unknown:
                raise ConfigurationError(
                    f"form {self.name}: {setting} uses {{{sorted(unknown)[0]}}}; "
                    f"it may use {', '.join('{' + p + '}' for p in sorted(_PLACEHOLDERS))}"
                )
        if "\n" in self.confirmation_subject or "\r" in self.confirmation_subject:
            raise ConfigurationError(f"form {self.name}: confirmation_subject must be one line")
        if "{link}" not in self.confirmation_text:
            raise ConfigurationError(f"form {self.name}: confirmation_text must contain {{link}}")

    @property
    def consent_fields(self) -> dict[str, str]:
        """Checkbox field → the consent purpose it grants."""
        return {box: purpose for purpose, box in self.consent.items()}

    def label(self, field: str) -> str:
        """The label of ``field`` in the snippet."""
        if field in self.labels:
            return self.labels[field]
        purpose = self.consent_fields.get(field)
        if purpose is not None:
            return f"I agree to: {purpose}"
        words = re.sub(r"[_.-]+", " ", field).strip()
        return words[:1].upper() + words[1:]
