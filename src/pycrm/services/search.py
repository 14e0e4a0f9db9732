"""Search criteria shared by the services: paging, contact-point lookups, name search."""

from __future__ import annotations

from typing import Any, TypeVar

import attrs

from pycrm.domain.contact_points import normalise_email, normalise_phone, search_key
from pycrm.domain.custom_fields import check_value, comparable
from pycrm.domain.fields import Checks, check_id, check_int, check_key, check_text
from pycrm.domain.normalise import email_key
from pycrm.domain.query import Contains, Eq, Filter, HasKey
from pycrm.domain.records import Stored
from pycrm.errors import ValidationError

__all__ = [
    "MAX_PAGE",
    "category_filter",
    "check_page",
    "custom_filter",
    "name_filters",
    "point_filter",
    "referenced",
    "text_filter",
]

S = TypeVar("S", bound=Stored)

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


def referenced(session: Any, cls: type[S], field: str, value: Any) -> S | None:
    """The stored record of ``cls`` that argument ``field`` refers to by id (None for None).

    A value that cannot be an id, or the id of no record, is refused with a
    ValidationError naming ``field``. Permissions are the caller's to check.
    """
    if value is None:
        return None
    found: S | None = session._uow.repo(cls).get(check_id(field, value))
    if found is None:
        raise ValidationError(field, value, f"is not the id of a {cls.resource}")
    return found


def custom_filter(session: Any, entity: str, custom: Any) -> list[Filter]:
    """Equality on custom fields: ``{"tier": "gold"}`` (values in any form the field accepts)."""
    from pycrm.services.fields import check_custom_read

    if custom is None:
        return []
    if not isinstance(custom, dict):
        raise ValidationError("custom", custom, "must be a mapping of field key → value")
    defs = session._field_definitions(entity)
    parts: list[Filter] = []
    for key, value in custom.items():
        if key not in defs:
            raise ValidationError(f"custom.{key}", value, "is not a defined custom field")
        defn = defs[key]
        check_custom_read(session, defn)  # a search on a hidden field would reveal its values
        stored = check_value(attrs.evolve(defn, required=False), value)
        parts.append(Eq(f"custom.{key}", comparable(defn, stored)))
    return parts


def category_filter(session: Any, path: Any) -> list[Filter]:
    """Records in category ``path`` or anything under it."""
    if path is None:
        return []
    session.categories.by_path(check_key("category", path))
    return [HasKey("category", path)]


def name_filters(given_name: Any, family_name: Any) -> list[Filter]:
    """Records whose name is known in parts with this given and/or family name (any case)."""
    return [
        HasKey(kind, search_key(check_text(field, value, required=True, limit=100)))
        for kind, field, value in (
            ("given", "given_name", given_name),
            ("family", "family_name", family_name),
        )
        if value is not None
    ]


def text_filter(field: str, value: Any) -> Filter | None:
    """A case-insensitive substring search on a ``*_key`` column."""
    if value is None:
        return None
    text = check_text(field, value, limit=200)
    return None if text is None else Contains("name_key", search_key(text))
