"""What a duplicate decision carries, and where fitted matching parameters are kept.

The engine itself (comparisons, the Fellegi–Sunter model, EM, blocking) lives
in :mod:`pycrm.matching`; the domain keeps the values it hands back
(:class:`Evidence`) and the stored record kind of its fitted parameters
(:class:`MatchModel`), so that adapters store them like any other record.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from pycrm.domain.records import Record

__all__ = ["Evidence", "MatchModel"]


@attrs.frozen
class Evidence:
    """One field's contribution to a match, summed over its comparisons."""

    field: str
    """``name``, ``email``, ``phone``, ``address``, ``company``, ``website`` or a custom key."""
    similarity: float
    """How alike the two values are, 0..1 (1: exact on every compared part)."""
    detail: str
    """What matched, e.g. ``"same email bob@example.com"``."""
    weight: float = 0.0
    """The match weight in bits this field added (see ``Candidate.weights`` for each part)."""


@attrs.frozen(kw_only=True)
class MatchModel(Record):
    """One version of the fitted matching parameters of one record kind in one tenant.

    Every fit adds a version; the highest ``number`` of a kind is the one in
    use. Candidates and clusters name the version that decided them.
    """

    resource: ClassVar[str] = "match_model"
    indexes: ClassVar[tuple[tuple[str, ...], ...]] = (("record_type", "number"),)
    unique: ClassVar[tuple[tuple[str, ...], ...]] = (("record_type", "number"),)

    record_type: str
    """``customer``, ``contact`` or ``lead``."""
    number: int
    """The version: 1 for a kind's first fit, then 2, 3, …"""
    records: int
    """How many records the fit read."""
    pairs: int
    """How many candidate pairs EM saw."""
    parameters: dict[str, Any] = attrs.field(factory=dict)
    """The fitted model in JSON form (:meth:`pycrm.matching.Model.to_json`): m, u and
    place probabilities per comparison level, priors, name frequencies, identifying fields."""
