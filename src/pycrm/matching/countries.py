"""Country names, ISO 3166 alpha-3 and numeric codes, and common spellings → alpha-2.

The table is built from ``pycountry`` (the ISO 3166-1 data Debian's iso-codes
maintains): every country's alpha-2, alpha-3 and numeric code, its short,
official and common names, and their translations in the languages a CRM
meets most often ("Deutschland", "Allemagne", "德国"). It is built once, on
first use, never at import.
"""

from __future__ import annotations

import gettext
import re
import unicodedata
from functools import cache

import phonenumbers
import pycountry

__all__ = ["LANGUAGES", "country_code", "phone_region"]

#: Languages whose country names are recognised besides English.
LANGUAGES = (
    "de", "fr", "es", "it", "nl", "pt", "pt_BR", "pl", "sv", "da", "nb_NO", "fi", "cs",
    "hu", "ro", "tr", "ru", "uk", "el", "zh_CN", "zh_TW", "ja", "ko", "ar", "he",
)  # fmt: skip

#: Codes ISO 3166/MA reserves exceptionally for a country that has another alpha-2.
EXCEPTIONALLY_RESERVED = {"uk": "GB", "el": "GR"}

_NOISE = re.compile(r"[^\w]+", re.UNICODE)


def _fold(text: str) -> str:
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    plain = "".join(ch for ch in folded if not unicodedata.combining(ch))
    words = _NOISE.sub(" ", plain).split()
    if words and words[0] == "the":
        words = words[1:]
    return " ".join(words)


@cache
def _table() -> dict[str, str]:
    table: dict[str, str] = {}
    translations = []
    for language in LANGUAGES:
        try:
            translations.append(
                gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[language])
            )
        except OSError:  # a pycountry without this language
            continue
    for country in pycountry.countries:
        code = country.alpha_2
        names = [getattr(country, attr, None) for attr in ("name", "official_name", "common_name")]
        keys = [country.alpha_3, country.numeric]
        for name in filter(None, names):
            keys.append(name)
            keys.extend(t.gettext(name) for t in translations)
        for key in keys:
            table.setdefault(_fold(key), code)
    for key, code in EXCEPTIONALLY_RESERVED.items():
        table.setdefault(key, code)
    for country in pycountry.countries:  # alpha-2 codes win over any name
        table[_fold(country.alpha_2)] = country.alpha_2
    return table


def country_code(value: str | None) -> str | None:
    """The ISO 3166-1 alpha-2 code of a country written as a code, a name or a common spelling.

    "de", "DEU", "276", "Germany", "Federal Republic of Germany",
    "Deutschland" → "DE"; "United States", "USA" → "US". None when ``value``
    is empty or names no country.
    """
    if not value:
        return None
    table, key = _table(), _fold(value)
    # "U.S.A." folds to "u s a": try the letters run together too.
    return table.get(key) or table.get(key.replace(" ", ""))


def phone_region(country: str | None, default: str | None) -> str | None:
    """The region to read national phone numbers in: the record's country, else ``default``."""
    if country and country in phonenumbers.SUPPORTED_REGIONS:
        return country
    return default
