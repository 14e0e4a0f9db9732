"""The pure domain: entities, values, events and rules with no I/O.

Imports only the standard library, attrs, phonenumbers, email-validator,
rapidfuzz and :mod:`pycrm.errors`.
"""

from pycrm.domain.activities import Activity, ActivityKind
from pycrm.domain.assessments import Assessment
from pycrm.domain.audit import AuditEntry, FieldChange
from pycrm.domain.campaigns import Campaign, CampaignMember, Quota, Segment
from pycrm.domain.classification import Category
from pycrm.domain.consent import Consent, ConsentState
from pycrm.domain.contact_points import Address, ContactPoint, PointKind
from pycrm.domain.contracts import Contract
from pycrm.domain.custom_fields import FieldDefinition
from pycrm.domain.customers import Contact, Customer, RecordStatus
from pycrm.domain.deals import Deal, Pipeline, StageVisit
from pycrm.domain.display import record_repr, record_rich
from pycrm.domain.documents import Document
from pycrm.domain.events import Event
from pycrm.domain.leads import Lead
from pycrm.domain.matching import MatchModel
from pycrm.domain.merging import Merge
from pycrm.domain.money import Money
from pycrm.domain.org import Actor, Department, Team, User
from pycrm.domain.outbox import OutboxMessage
from pycrm.domain.privacy import LegalHold, PrivacyRequest
from pycrm.domain.products import ExchangeRate, Price, PriceList, Product
from pycrm.domain.quotes import Quote
from pycrm.domain.receivables import Receivable
from pycrm.domain.records import Record, Stored
from pycrm.domain.settings import Setting
from pycrm.domain.tasks import BehaviourEvent, Task
from pycrm.domain.tickets import Article, Ticket

__all__ = [
    "Activity",
    "ActivityKind",
    "Actor",
    "Address",
    "Article",
    "BehaviourEvent",
    "Consent",
    "ConsentState",
    "Contract",
    "Deal",
    "ExchangeRate",
    "Lead",
    "LegalHold",
    "MatchModel",
    "Merge",
    "OutboxMessage",
    "Pipeline",
    "Price",
    "PriceList",
    "PrivacyRequest",
    "Product",
    "Quote",
    "Receivable",
    "Task",
    "Assessment",
    "AuditEntry",
    "Contact",
    "ContactPoint",
    "Customer",
    "Department",
    "Event",
    "FieldChange",
    "Money",
    "PointKind",
    "Record",
    "RecordStatus",
    "Setting",
    "StageVisit",
    "Stored",
    "Team",
    "Ticket",
    "User",
]

#: Every stored record type, in dependency order. Adapters create one table each.
RECORD_TYPES: tuple[type[Stored], ...] = (
    Department,
    Team,
    User,
    Customer,
    Contact,
    Activity,
    Assessment,
    Lead,
    Pipeline,
    Deal,
    StageVisit,
    Contract,
    Receivable,
    Task,
    BehaviourEvent,
    OutboxMessage,
    Merge,
    MatchModel,
    Ticket,
    Article,
    Segment,
    Campaign,
    CampaignMember,
    Quota,
    FieldDefinition,
    Category,
    Document,
    Setting,
    Product,
    PriceList,
    Price,
    ExchangeRate,
    Quote,
    Consent,
    ConsentState,
    LegalHold,
    PrivacyRequest,
    AuditEntry,
)

#: Record type by resource name (``"customer"`` → :class:`Customer`).
RECORD_BY_RESOURCE: dict[str, type[Stored]] = {cls.resource: cls for cls in RECORD_TYPES}

# attrs writes each record class a repr of every field; records print as one short
# line instead (see pycrm.domain.display), set here for every kind at once.
for _kind in RECORD_TYPES:
    _kind.__repr__ = record_repr  # type: ignore[method-assign]
    _kind.__rich__ = record_rich  # type: ignore[attr-defined]
