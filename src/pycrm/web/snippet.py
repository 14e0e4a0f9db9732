"""The embeddable HTML of a form, and the few pages the app shows itself."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from pycrm.web.forms import LeadForm

__all__ = ["render_page", "render_snippet"]

#: ``type`` and ``autocomplete`` of the input for each lead field (``needs`` is a textarea).
_INPUTS: dict[str, tuple[str, str]] = {
    "name": ("text", "name"),
    "given_name": ("text", "given-name"),
    "family_name": ("text", "family-name"),
    "email": ("email", "email"),
    "phone": ("tel", "tel"),
    "company": ("text", "organization"),
    "title": ("text", "organization-title"),
}
_LIMITS = {"needs": 5000, "given_name": 100, "family_name": 100}

# The honeypot is moved off-screen rather than display:none (which simple bots skip).
_STYLE = (
    ".pycrm-form .pycrm-hp{position:absolute!important;left:-10000px!important;"
    "top:auto!important;width:1px!important;height:1px!important;overflow:hidden!important}"
)


def _attr(value: str) -> str:
    return escape(value, quote=True)


def render_snippet(form: LeadForm, action: str) -> str:
    """The form as an HTML fragment posting to ``action``, ready to paste into a page.

    Every field has a label; required ones are marked ``required``; the
    honeypot sits off-screen, out of the tab order and hidden from screen
    readers. All text is HTML-escaped.
    """
    prefix = f"pycrm-{form.name}-"
    lines = [
        f'<form class="pycrm-form" id="pycrm-form-{_attr(form.name)}" action="{_attr(action)}" '
        'method="post" accept-charset="utf-8" enctype="application/x-www-form-urlencoded">',
        f"<style>{_STYLE}</style>",
    ]
    for field, target in form.mapping.items():
        ident = _attr(prefix + field)
        required = " required" if field in form.required else ""
        label = f'<label for="{ident}">{escape(form.label(field))}</label>'
        limit = _LIMITS.get(target, 200)
        if target == "needs":
            control = (
                f'<textarea id="{ident}" name="{_attr(field)}" rows="5" '
                f'maxlength="{limit}"{required}></textarea>'
            )
        else:
            kind, complete = _INPUTS.get(target, ("text", "off"))
            control = (
                f'<input id="{ident}" name="{_attr(field)}" type="{kind}" '
                f'autocomplete="{complete}" maxlength="{limit}"{required}>'
            )
        lines.append(f'<p class="pycrm-field pycrm-{_attr(target)}">{label}<br>{control}</p>')
    hp = _attr(prefix + form.honeypot)
    lines.append(
        f'<p class="pycrm-hp" aria-hidden="true"><label for="{hp}">Leave this field empty</label>'
        f'<input id="{hp}" name="{_attr(form.honeypot)}" type="text" tabindex="-1" '
        'autocomplete="off" value=""></p>'
    )
    for box in form.consent.values():
        ident = _attr(prefix + box)
        required = " required" if box in form.required else ""
        lines.append(
            f'<p class="pycrm-consent"><input id="{ident}" name="{_attr(box)}" type="checkbox" '
            f'value="yes"{required}> <label for="{ident}">{escape(form.label(box))}</label></p>'
        )
    lines.append(f'<p><button type="submit">{escape(form.submit_label)}</button></p>')
    lines.append("</form>")
    return "\n".join(lines) + "\n"


def render_page(title: str, paragraphs: Sequence[str], *, button: str | None = None) -> str:
    """A minimal standalone HTML page; with ``button``, a form posting back to the same URL."""
    body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    if button is not None:
        body += f'<form method="post"><button type="submit">{escape(button)}</button></form>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{escape(title)}</title></head>'
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
