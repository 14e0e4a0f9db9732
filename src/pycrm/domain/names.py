"""People's names in parts: given name, family name, and the order their culture writes them.

A contact or lead always has a display ``name``; it may also carry its
``given_name`` and ``family_name``. When only the parts are given, the
display name is made from them in the person's name order: given name first
("Anna Schmidt") in most of the world, family name first in Chinese,
Japanese, Korean, Vietnamese and Hungarian names ("王芳", "Nagy Anna").
"""

from __future__ import annotations

import enum

from pycrm.domain.normalise import is_cjk

__all__ = ["FAMILY_FIRST_COUNTRIES", "NameOrder", "display_name", "name_order"]


class NameOrder(enum.StrEnum):
    """Which part of a person's name comes first."""

    GIVEN_FIRST = "given_first"
    """"Anna Schmidt"."""
    FAMILY_FIRST = "family_first"
    """"王芳", "Nagy Anna", "Nguyễn Văn An"."""


#: Countries (ISO 3166 alpha-2) whose people write the family name first.
FAMILY_FIRST_COUNTRIES = frozenset({"CN", "HK", "MO", "TW", "JP", "KR", "KP", "VN", "HU", "KH"})


def name_order(
    given: str | None,
    family: str | None,
    order: NameOrder | None = None,
    country: str | None = None,
) -> NameOrder:
    """The order to write these parts in: ``order`` if given, else from the script or country.

    Chinese, Japanese and Korean script means family name first; otherwise a
    country in :data:`FAMILY_FIRST_COUNTRIES` does; otherwise given name first.
    """
    if order is not None:
        return order
    if is_cjk(f"{family or ''}{given or ''}"):
        return NameOrder.FAMILY_FIRST
    if country is not None and country.upper() in FAMILY_FIRST_COUNTRIES:
        return NameOrder.FAMILY_FIRST
    return NameOrder.GIVEN_FIRST


def display_name(
    given: str | None,
    family: str | None,
    order: NameOrder | None = None,
    country: str | None = None,
) -> str:
    """The name as its culture writes it; CJK names without a space ("王" + "芳" → "王芳")."""
    parts = [p for p in (given, family) if p]
    if name_order(given, family, order, country) is NameOrder.FAMILY_FIRST:
        parts.reverse()
    if len(parts) == 2 and is_cjk(parts[0][-1]) and is_cjk(parts[1][0]):
        return "".join(parts)
    return " ".join(parts)
