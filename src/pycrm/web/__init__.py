"""Web-to-lead: an ASGI application that turns web form submissions into leads.

No web framework is needed: :class:`FormApp` is a plain ASGI 3 callable
that an embedding application mounts (Starlette, FastAPI, Django through
asgiref) or that runs alone under uvicorn::

    import pycrm
    from pycrm.web import FormApp, LeadForm

    crm = pycrm.connect("sqlite:///crm.db")
    app = FormApp(
        crm,
        [LeadForm(name="contact-us", actor=web_user_id, mapping={"full_name": "name", "mail": "email"})],
    )

See the guide's *Web forms* page for spam protection, CORS, double opt-in and consent.
"""

from __future__ import annotations

from pycrm.web.app import DEFAULT_MAX_BODY, FormApp
from pycrm.web.forms import FIXED_FIELDS, LEAD_FIELDS, LeadForm
from pycrm.web.limits import RateLimiter, SlidingWindowLimiter, client_key
from pycrm.web.mailers import FakeMailer, Mailer, SentMail
from pycrm.web.snippet import render_snippet

__all__ = [
    "DEFAULT_MAX_BODY",
    "FIXED_FIELDS",
    "LEAD_FIELDS",
    "FakeMailer",
    "FormApp",
    "LeadForm",
    "Mailer",
    "RateLimiter",
    "SentMail",
    "SlidingWindowLimiter",
    "client_key",
    "render_snippet",
]
