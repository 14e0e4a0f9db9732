"""``pycrm demo``: a small company's CRM, department by department, printed to the terminal."""

from __future__ import annotations

from datetime import timedelta

from rich.console import Console
from rich.table import Table

from pycrm.crm import CRM
from pycrm.domain.money import Money

__all__ = ["run_demo"]


def run_demo(crm: CRM, tenant: str, console: Console) -> dict[str, int]:
    """Build the demo organisation and customers in ``tenant`` and print them.

    Returns how many records of each kind it created (used by the tests).
    """
    with crm.session(actor=crm.system_actor, tenant=tenant) as s:
        hr = s.org.create_user(
            name="Hana Reyes", email="hana@demo.example", department="admin", roles=["admin"]
        )
        sales_team = s.org.create_team("Sales DACH", "sales")
        rep = s.org.create_user(
            name="Sam Weber",
            email="sam@demo.example",
            department="sales",
            roles=["sales_rep"],
            team_ids=[sales_team.id],
        )
        agent = s.org.create_user(
            name="Li Na", email="li.na@demo.example", department="service", roles=["agent"]
        )
    console.rule(f"[bold]Admin/HR: organisation (tenant {tenant})")
    users = Table("name", "email", "department", "roles")
    for user in (hr, rep, agent):
        users.add_row(user.name, user.email, user.department, ", ".join(user.roles))
    console.print(users)

    with crm.session(actor=rep.id, tenant=tenant) as s:
        acme = s.customers.create(
            "Acme Maschinenbau GmbH",
            industry="machinery",
            size=420,
            region="DACH",
            annual_revenue=Money.of("48000000", "EUR"),
            phones=["+49 30 901820"],
            emails=["info@acme-maschinen.example"],
            tags=["key account"],
            address={
                "line1": "Hauptstr. 1",
                "city": "Berlin",
                "postcode": "10115",
                "country": "DE",
            },
            owner_id=rep.id,
        )
        shop = s.customers.create(
            "上海星辰贸易有限公司",
            industry="retail",
            region="APAC",
            phones=["+86 21 6232 1234"],
            tags=["importer"],
            owner_id=rep.id,
        )
        anna = s.contacts.create(
            "Anna Schmidt",
            customer_id=acme.id,
            title="Head of Purchasing",
            emails=["anna.schmidt@acme-maschinen.example"],
            phones=[("+49 151 23456789", "mobile")],
        )
        wang = s.contacts.create(
            "王芳", customer_id=shop.id, title="采购经理", emails=["wang.fang@xingchen.example"]
        )
        s.activities.log(
            "call",
            "Discovery call: new packaging line",
            contact_id=anna.id,
            body="Needs 3 machines by Q3; budget approved.",
        )
        s.activities.log(
            "meeting",
            "Site visit in Berlin",
            customer_id=acme.id,
            occurred_at=crm.clock.now() + timedelta(days=7),
        )
        s.activities.log("email", "Sent catalogue", contact_id=wang.id)
        s.activities.log("note", "Competitor quoted 8% lower", customer_id=acme.id, private=True)
        s.customers.assess(acme.id, "grade", "A", note="Large, growing account")

    with crm.session(actor=agent.id, tenant=tenant) as s:
        s.activities.log("call", "Installation question", contact_id=anna.id)
        s.customers.assess(acme.id, "grade", "B", note="Many support calls")

    with crm.session(actor=rep.id, tenant=tenant) as s:
        console.rule("[bold]Sales: customers")
        table = Table("customer", "industry", "region", "grade", "phones", "tags")
        for customer in s.customers.search():
            phones = ", ".join(p.value for p in customer.contact_points if p.kind.value == "phone")
            table.add_row(
                customer.name,
                customer.industry or "",
                customer.region or "",
                customer.grade or "",
                phones,
                ", ".join(customer.tags),
            )
        console.print(table)
        view = s.customers.view(acme.id)
        console.rule(f"[bold]Sales: 360 view of {view.customer.name}")
        contacts = Table("contact", "title", "reach at")
        for contact in view.contacts:
            contacts.add_row(
                contact.name,
                contact.title or "",
                ", ".join(p.value for p in contact.contact_points),
            )
        console.print(contacts)
        timeline = Table("when", "kind", "subject", "private")
        for activity in view.activities:
            timeline.add_row(
                activity.occurred_at.strftime("%Y-%m-%d %H:%M"),
                activity.kind.value,
                activity.subject,
                "yes" if activity.private else "",
            )
        console.print(timeline)
        ratings = Table("attribute", "source", "value", "note")
        for a in view.assessments:
            ratings.add_row(a.attribute, a.source, a.value, a.note or "")
        console.print(ratings)
        console.print(
            f"Consolidated grade (latest rating wins by default): [bold]{view.customer.grade}"
        )
        counts = {
            "customers": s.customers.count(),
            "activities_seen_by_sales": len(view.activities),
        }

    with crm.session(actor=agent.id, tenant=tenant) as s:
        seen = s.customers.view(acme.id)
        console.rule("[bold]Service: the same customer")
        console.print(
            f"{len(seen.activities)} activities visible (the sales rep's private note is not)."
        )
        counts["activities_seen_by_service"] = len(seen.activities)

    with crm.session(actor=hr.id, tenant=tenant) as s:
        console.rule("[bold]Audit: who changed the customer's grade")
        audit = Table("when", "who (department)", "old → new")
        for change in s.customers.history(acme.id, "grade"):
            audit.add_row(
                change.at.strftime("%H:%M:%S"),
                f"{change.actor_id[:8]}… ({change.department})",
                f"{change.old} → {change.new}",
            )
        console.print(audit)
        counts["audit_entries"] = len(s.audit.find(limit=1000))
    return counts
