"""The default region for phone numbers: an ISO 3166 code, checked where it comes in.

``connect(default_region=...)``, ``s.importer.leads(default_region=...)`` and
``pycrm import --default-region`` all take it through :func:`region_code`,
so each accepts ``"de"`` for ``"DE"`` and refuses a country name with the
code to write instead.
"""

from __future__ import annotations

from typing import Any

import phonenumbers

from pycrm.errors import ValidationError

__all__ = ["region_code"]

_EXAMPLE = "a two-letter ISO 3166 code such as DE (Germany), FR (France) or CN (China)"


def _named(value: str) -> str | None:
    """The alpha-2 code of a country name or alpha-3 code (``"Germany"``, ``"DEU"``)."""
    from pycrm.matching.countries import country_code  # its tables load on first use

    return country_code(value)


def region_code(value: Any, field: str = "default_region") -> str:
    """Return ``value`` as the upper-case ISO 3166 alpha-2 region phonenumbers knows.

    ``"de"`` and ``" DE "`` both give ``"DE"``. A country name (``"Germany"``),
    an alpha-3 code (``"DEU"``) or a code without phone numbers (``"XX"``)
    raises :class:`~pycrm.errors.ValidationError` saying what to write instead.
    """
    if not isinstance(value, str):
        raise ValidationError(field, value, f"must be text, not {type(value).__name__}")
    code = value.strip().upper()
    if code in phonenumbers.SUPPORTED_REGIONS:
        return code
    meant = _named(value.strip())
    if meant in phonenumbers.SUPPORTED_REGIONS:
        kind = "an ISO 3166 alpha-3 code" if len(code) == 3 and code.isalpha() else "a country name"
        raise ValidationError(field, value, f"is {kind}, not a region code: write {meant}")
    if len(code) == 2 and code.isascii() and code.isalpha():
        raise ValidationError(field, value, f"is not a region with phone numbers: use {_EXAMPLE}")
    raise ValidationError(field, value, f"is not a region code: use {_EXAMPLE}")
