"""Record linkage: the Fellegi–Sunter engine behind ``s.dedupe``.

Outside :mod:`pycrm.domain` because it uses pycountry (ISO 3166 data); it
reads domain records and returns plain values. :mod:`~pycrm.matching.features`
folds a record's identifying values, :mod:`~pycrm.matching.comparisons`
compares two of them field by field, :mod:`~pycrm.matching.model` weighs the
comparison levels and fits the weights without labels, and
:mod:`~pycrm.matching.blocking` picks the pairs worth comparing and groups
matches into clusters that do not chain.
"""

from pycrm.matching.countries import country_code, phone_region
from pycrm.matching.model import FieldWeight, Model, default_model, fit, probability

__all__ = [
    "FieldWeight",
    "Model",
    "country_code",
    "default_model",
    "fit",
    "phone_region",
    "probability",
]
