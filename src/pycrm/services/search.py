"""Search criteria shared by the services: paging, contact-point lookups, name search."""

from __future__ import annotations

from typing import Any

from pycrm.domain.contact_points import normalise_email, normalise_phone, search_key
from pycrm.domain.fields import Checks, check_int, check_text
from pycrm.domain.normalise import email_key
from pycrm.domain.query import Contains, Filter, HasKey

__all__ = ["MAX_PAGE", "check_page", "point_filter", "text_filter"]

#: The most rows one list or search call returns.
MAX_PAGE = 1000


def check_page(limit: Any, offset: Any) -> tuple[int, int]:
    """A limit in 1..1000 and an offset ≥ 0."""
    with Checks() as checks:
        limit = checks(check_int, "limit", limit, minimum=1, maximum=MAX_PAGE)
        offset = checks(check_int, "offset", offset, minimum=0)
    return limit, offset


def point_filter(email: Any, phone: Any, region: str | None) -> list[Filter]:
    """Index lookups for an email and/or a phone given in any accepted format."""
    parts: list[Filter] = []
    if email is not None:
        parts.append(HasKey("email", email_key(normalise_email(email))))
    if phone is not None:
        parts.append(HasKey("phone", normalise_phone(phone, region=region)))
    return parts


def text_filter(field: str, value: Any) -> Filter | None:
    """A case-insensitive substring search on a ``*_key`` column."""
    if value is None:
        return None
    text = check_text(field, value, limit=200)
    return None if text is None else Contains("name_key", search_key(text))
