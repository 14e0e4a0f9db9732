"""pycrm: an embeddable CRM domain library.

::

    import pycrm

    crm = pycrm.connect("memory://")
    with crm.session(actor=crm.system_actor) as s:
        acme = s.customers.create("Acme Ltd", industry="machinery", phones=["+49 30 1234567"])
"""

from pycrm import errors
from pycrm.crm import CRM, connect
from pycrm.domain.activities import Activity, ActivityKind
from pycrm.domain.assessments import Assessment, by_priority, latest, majority
from pycrm.domain.audit import AuditEntry, FieldChange
from pycrm.domain.contact_points import Address, ContactPoint, PointKind
from pycrm.domain.customers import Contact, Customer, RecordStatus
from pycrm.domain.events import Event
from pycrm.domain.money import Money
from pycrm.domain.org import Actor, Department, Team, User
from pycrm.ports import Clock, SystemClock
from pycrm.services.customers import Customer360
from pycrm.session import Session

__all__ = [
    "CRM",
    "Activity",
    "ActivityKind",
    "Actor",
    "Address",
    "Assessment",
    "AuditEntry",
    "Clock",
    "Contact",
    "ContactPoint",
    "Customer",
    "Customer360",
    "Department",
    "Event",
    "FieldChange",
    "Money",
    "PointKind",
    "RecordStatus",
    "Session",
    "SystemClock",
    "Team",
    "User",
    "by_priority",
    "connect",
    "errors",
    "latest",
    "majority",
]

__version__ = "0.1.0"
