"""``pycrm demo``: one customer's journey through a company, department by department.

The admin defines the company's own customer fields; marketing captures
leads and imports a trade-show list; a sales manager assigns them; sales
converts and wins a deal; legal and the sales manager approve the contract;
the customer signs; finance records payments and the deal owner is told;
service answers the customer's ticket within its SLA while seeing the whole
history; and the managers read the funnel, receivables aging and service
figures. Each department's view is printed as it would see it. Dates follow
the CRM's clock: the deal is won today, and the first instalment falls due a
month after signing. :func:`next_steps` ends the command with the tenant, the
users' emails and commands to try next.
"""

from __future__ import annotations

import csv
import io
import shlex
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pycrm import signals
from pycrm.crm import CRM
from pycrm.domain.events import Event
from pycrm.domain.money import Money
from pycrm.reports import report_rows

__all__ = ["SAMPLE_LEADS", "next_steps", "run_demo"]

#: The list marketing brings back from the trade show: a lead already captured by
#: hand, a new one, a phone number that cannot exist, and the new one again.
TRADE_SHOW = """name,email,phone,company
Anna Schmidt,ANNA.SCHMIDT@acme-maschinen.example,,ACME Maschinenbau GmbH
Jonas Berg,jonas@berg-verpackung.example,+49 40 30701234,Berg Verpackung KG
Petra Lang,petra@lang-logistik.example,12345,Lang Logistik AG
Jonas Berg,Jonas@Berg-Verpackung.example,,Berg Verpackung KG
"""


#: A file to try ``pycrm import`` on after the demo: two new leads with national
#: (German) phone numbers, one phone number that cannot exist, and a duplicate.
SAMPLE_LEADS = """name,email,phone,company,source
Clara Vogel,clara@vogel-druck.example,040 41234567,Vogel Druck GmbH,webform
Deniz Aydin,deniz@aydin-logistik.example,089 21804455,Aydin Logistik GmbH,trade show
Emil Brandt,emil@brandt.example,12345,Brandt & Söhne KG,webform
Clara Vogel,CLARA@vogel-druck.example,,Vogel Druck GmbH,webform
"""


def _table(
    console: Console, title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]
) -> None:
    table = Table(
        *map(escape, columns), title=escape(title), title_justify="left", min_width=len(title)
    )
    for row in rows:
        table.add_row(*(escape(str(value)) if value is not None else "" for value in row))
    console.print(table)


def run_demo(crm: CRM, tenant: str, console: Console) -> dict[str, Any]:
    """Run the flow in ``tenant`` and print it. Returns figures the tests check."""
    heard: list[str] = []

    def listen(sender: object, event: Event) -> None:
        if sender is crm and event.tenant_id == tenant:
            heard.append(event.name)

    receivers = [
        signals.signal_for(name)
        for name in signals.__all__
        if name not in ("dispatch", "signal_for")
    ]
    for signal in receivers:
        signal.connect(listen)
    try:
        return _flow(crm, tenant, console, heard)
    finally:
        for signal in receivers:
            signal.disconnect(listen)


def _flow(crm: CRM, tenant: str, console: Console, heard: list[str]) -> dict[str, Any]:
    def session(actor: Any) -> Any:
        return crm.session(actor=actor, tenant=tenant)

    today = crm.clock.now().date()

    # -- Admin/HR ----------------------------------------------------------
    with session(crm.system_actor) as s:
        hr = s.org.create_user(
            name="Hana Reyes", email="hana@demo.example", department="admin", roles=["admin"]
        )
    with session(hr.id) as s:
        team = s.org.create_team("Sales DACH", "sales")
        boss = s.org.create_user(
            name="Max Bauer", email="max@demo.example", department="sales",
            roles=["sales_manager"], team_ids=[team.id],
        )  # fmt: skip
        rep = s.org.create_user(
            name="Sam Weber", email="sam@demo.example", department="sales",
            roles=["sales_rep"], team_ids=[team.id], manager_id=boss.id,
        )  # fmt: skip
        mia = s.org.create_user(name="Mia Chen", email="mia@demo.example", department="marketing")
        lea = s.org.create_user(
            name="Lea Roth", email="lea@demo.example", department="legal", roles=["legal"]
        )
        fin = s.org.create_user(name="Finn Ode", email="finn@demo.example", department="finance")
        agent = s.org.create_user(name="Li Na", email="li.na@demo.example", department="service")
        people = {u.id: u.name for u in (hr, boss, rep, mia, lea, fin, agent)}
        fields = [
            s.fields.define("customer", "headcount", "number", label="Headcount", minimum=0),
            s.fields.define(
                "customer", "tier", "choice", label="Tier", searchable=True,
                choices=["gold", "silver", "bronze"], group="grade",
            ),
        ]  # fmt: skip
    console.rule(f"[bold]Admin/HR: the organisation (tenant {escape(tenant)})")
    _table(
        console, "Users", ["name", "department", "roles"],
        [(u.name, u.department, ", ".join(u.roles)) for u in (hr, boss, rep, mia, lea, fin, agent)],
    )  # fmt: skip
    _table(
        console, "The company's own customer fields", ["key", "label", "type", "rule"],
        [(f.key, f.label, f.type.value, ", ".join(f.choices) if f.choices else f"≥ {f.minimum}")
         for f in fields],
    )  # fmt: skip

    # -- Marketing ---------------------------------------------------------
    with session(mia.id) as s:
        anna = s.leads.capture(
            "Anna Schmidt", source="trade show", campaign="Hannover Messe", company="ACME Maschinenbau GmbH",
            email="Anna.Schmidt@acme-maschinen.example", phone="+49 30 901820", region="DACH",
            industry="machinery", needs="Three packaging machines by Q3",
        )  # fmt: skip
        s.leads.capture("王芳", source="webform", company="上海星辰贸易有限公司", phone="+86 21 6232 1234",
                        region="APAC", needs="Catalogue")  # fmt: skip
        tom = s.leads.capture(
            "Tom Novak", source="webform", email="tom@example.org", needs="Student project"
        )
        # The form's newsletter box was ticked: the consent goes with the lead, with its proof.
        s.consent.grant(tom.id, "marketing", method="form", proof={"form": "contact-us"})
    with session(mia.id) as s:  # the importer commits chunk by chunk, so in a session of its own
        imported = s.importer.leads(
            csv.DictReader(io.StringIO(TRADE_SHOW)), source="trade show", campaign="Hannover Messe"
        )
        console.rule("[bold]Marketing: leads captured, and a trade-show list imported")
        _table(
            console, "Import of the trade-show list",
            ["rows", "created", "skipped", "rejected", "why"],
            [(imported.rows, imported.created, imported.skipped, imported.rejected,
              "; ".join(f"{reason} ({n})" for reason, n in sorted(imported.reasons.items())))],
        )  # fmt: skip
    with session(mia.id) as s:  # a new session: it sees what the import committed
        _table(
            console,
            "New leads",
            ["name", "company", "source", "campaign", "status", "newsletter"],
            [
                (x.name, x.company, x.source, x.campaign, x.status.value,
                 "agreed" if s.consent.allows(x.id, "marketing") else "")
                for x in s.leads.search()
            ],
        )  # fmt: skip
    # -- Sales manager -----------------------------------------------------
    with session(boss.id) as s:
        leads = {x.name: x for x in s.leads.search()}
        s.leads.assign(anna.id, rep.id, reason="DACH machinery goes to Sam")
        s.leads.assign(leads["王芳"].id, rep.id, reason="APAC overflow")
        s.leads.assign(leads["Tom Novak"].id, rep.id, reason="webform round-robin")
    # -- Sales -------------------------------------------------------------
    with session(rep.id) as s:
        console.rule("[bold]Sales: Sam's inbox")
        _table(console, "Open tasks", ["task", "due"],
               [(t.title, t.due_at.strftime("%Y-%m-%d %H:%M") if t.due_at else "")
                for t in s.tasks.list(assignee_id=rep.id)])  # fmt: skip
        s.leads.disqualify(leads["Tom Novak"].id, "No budget: student project")
        s.leads.mark_contacted(anna.id)
        s.leads.qualify(anna.id)
        customer, contact, deal = s.leads.convert(
            anna.id, amount=Money.of("180000", "EUR"), expected_close=today
        )
        s.activities.log(
            "call",
            "Discovery call",
            contact_id=contact.id,
            body="Needs 3 machines, budget approved.",
        )
        s.activities.log(
            "note", "Competitor quoted 8% lower", customer_id=customer.id, private=True
        )
        s.activities.track(contact.id, "viewed_pricing_page", {"page": "/pricing/packaging"})
        s.customers.update(customer.id, custom={"headcount": 420, "tier": "gold"})
        s.deals.move(deal.id, "proposal")
        s.deals.move(deal.id, "negotiation")
        deal = s.deals.win(deal.id)
        contract = s.contracts.draft(
            deal.id, list_amount=Money.of("211764.71", "EUR"), discount_percent=15, standard_terms=False,
            terms="Extended warranty: 36 months", instalments=3, first_due=today + timedelta(days=30), every_months=3,
        )  # fmt: skip
        contract = s.contracts.submit(contract.id)
        console.rule("[bold]Sales: deal won, contract submitted")
        _table(
            console,
            f"Deal {deal.name}",
            ["stage", "entered", "by"],
            [
                (h.stage, h.at.strftime("%H:%M:%S"), people.get(h.by, h.by))
                for h in deal.stage_history
            ],
        )
        _table(
            console,
            "Approvals needed",
            ["role", "why"],
            [(a.role, a.reason) for a in contract.approvals],
        )
    # -- Legal and the sales manager approve ---------------------------------
    with session(lea.id) as s:
        console.rule("[bold]Legal: contracts awaiting legal review")
        _table(
            console,
            "Inbox",
            ["contract", "amount", "terms"],
            [(c.title, c.amount, c.terms) for c in s.contracts.awaiting("legal")],
        )
        s.contracts.approve(contract.id, comment="Warranty clause acceptable")
    with session(boss.id) as s:
        s.contracts.approve(contract.id, comment="15% ok for a three-machine order")
    with session(rep.id) as s:
        contract = s.contracts.sign(contract.id)
    # -- Finance -----------------------------------------------------------
    with session(fin.id) as s:
        receivables = s.receivables.list(contract_id=contract.id)
        first = receivables[0]
        s.receivables.record_payment(first.id, Money.of("30000", "EUR"), reference="BANK-0001")
        s.receivables.record_payment(
            first.id, first.amount - Money.of("30000", "EUR"), reference="BANK-0002"
        )
        s.receivables.record_payment(
            first.id, Money.of("30000", "EUR"), reference="BANK-0001"
        )  # a re-import
        finance_view = s.customers.view(customer.id)
        figures: dict[str, Any] = {
            "receivables": len(finance_view.receivables),
            "outstanding": finance_view.outstanding,
        }
        console.rule("[bold]Finance: receivables of the signed contract")
        _table(console, contract.title, ["#", "due", "amount", "paid", "status"],
               [(r.instalment, r.due, r.amount, r.paid, r.status.value)
                for r in s.receivables.list(contract_id=contract.id)])  # fmt: skip
    with session(rep.id) as s:
        console.rule("[bold]Sales: the deal owner is told")
        _table(
            console,
            "Sam's open tasks",
            ["task", "kind"],
            [(t.title, t.kind) for t in s.tasks.list(assignee_id=rep.id)],
        )
    # -- Sales quotes a service subscription from the catalogue ---------------
    with session(hr.id) as s:
        s.settings.set("tax_rates", {"standard": "19"})
        maint = s.products.create("SVC-MAINT", "Maintenance, per machine", unit="machine",
                                  cost=Money.of("220", "EUR"))  # fmt: skip
        remote = s.products.create(
            "SVC-REMOTE", "Remote monitoring", unit="month", cost=Money.of("40", "EUR")
        )
        plans = s.price_lists.create("Service plans EUR", "EUR")
        s.price_lists.set_price(plans.id, maint.id, Money.of("450", "EUR"))
        s.price_lists.set_price(plans.id, remote.id, Money.of("90", "EUR"))
    with session(rep.id) as s:
        upkeep = s.deals.create(
            "Maintenance for 3 machines", customer_id=customer.id, amount=Money.of("1", "EUR")
        )
        quote = s.quotes.draft(upkeep.id, billing_period="monthly", lines=[
            {"product_id": maint.id, "quantity": 3, "discount_percent": 5},
            {"product_id": remote.id},
        ])  # fmt: skip
        quote = s.quotes.send(quote.id)  # 5 % is within the policy: no approval
        quote = s.quotes.accept(quote.id, start=today)  # a year, billed monthly from today
        assert quote.contract_id is not None
        s.contracts.submit(quote.contract_id)
        subscription = s.contracts.sign(quote.contract_id)
        console.rule("[bold]Sales: a monthly service plan, quoted from the catalogue")
        _table(console, f"Quote: {quote.title} (per month)",
               ["line", "qty", "unit price", "discount", "net", "tax"],
               [(ln.description, ln.quantity, ln.unit_price, f"{ln.discount_percent}%", ln.net,
                 ln.tax) for ln in quote.lines])  # fmt: skip
        console.print(
            f"Total {quote.total} a month ({quote.subtotal} net); accepted: "
            f"{subscription.recurring} a month, {subscription.start} to {subscription.end}, "
            f"{len(subscription.schedule)} monthly receivables, renewal reminder "
            f"{subscription.notice_days} days before the end"
        )
        figures["quote_total"] = quote.total
        figures["subscription"] = (subscription.start, subscription.end, len(subscription.schedule))
        figures["mrr"] = s.customers.view(customer.id).mrr
    # -- Service -----------------------------------------------------------
    with session(agent.id) as s:
        article = s.articles.create(
            "Packaging machine shows E42",
            "E42 means the film roll is empty or misaligned: reload it and press reset.",
            tags=["packaging", "error codes"],
            publish=True,
        )
        ticket = s.tickets.open(
            "Machine 2 stops with error E42", channel="phone", contact_id=contact.id,
            category="packaging", priority="high", contract_id=contract.id,
        )  # fmt: skip
        if ticket.assignee_id is None:  # no routing rules configured: the agent takes it
            s.tickets.assign(ticket.id, agent.id, reason="took the call")
        s.tickets.start(ticket.id)
        s.tickets.reply(
            ticket.id, "Please reload the film roll and press reset (see the linked article)."
        )
        s.tickets.link_article(ticket.id, article.id)
        s.tickets.note(ticket.id, "Known issue with the first film batch.")
        ticket = s.tickets.resolve(ticket.id)
        ticket = s.tickets.rate(ticket.id, 5, comment="Fixed in five minutes")
        console.rule("[bold]Service: a ticket from the customer")
        _table(
            console, "Ticket", ["subject", "agent", "first reply due", "answered", "status", "CSAT"],
            [(ticket.subject, people.get(ticket.assignee_id or "", ticket.assignee_id),
              ticket.first_response_due.strftime("%a %H:%M") if ticket.first_response_due else "",
              ticket.first_response_at.strftime("%a %H:%M") if ticket.first_response_at else "",
              ticket.status.value, ticket.csat_score)],
        )  # fmt: skip
        faq = [a.title for a in s.articles.faq("error E42")]
        console.print(f"Self-service search for 'error E42' finds: {escape(str(faq))}")
    with session(agent.id) as s:
        view = s.customers.view(customer.id)
        console.rule(f"[bold]Service: 360 view of {escape(view.customer.name)}")
        _table(
            console,
            "Contracts (purchase history)",
            ["contract", "amount", "status"],
            [(c.title, c.amount, c.status.value) for c in view.contracts],
        )
        _table(
            console,
            "Timeline",
            ["kind", "subject"],
            [(a.kind.value, a.subject) for a in view.activities],
        )
        console.print(
            f"{len(view.receivables)} receivables shown: they are finance's. "
            "The sales rep's private note is not shown either."
        )
        _table(
            console, "Past tickets", ["subject", "status", "CSAT"],
            [(t.subject, t.status.value, t.csat_score) for t in view.tickets],
        )  # fmt: skip
        console.print(f"Satisfaction: [bold]{view.satisfaction}[/bold] / 5")
        console.print(
            "The company's own fields: "
            + escape(", ".join(f"{k} {v}" for k, v in sorted(view.customer.custom.items())))
        )
        figures["custom"] = dict(view.customer.custom)
        figures["service_sees_activities"] = len(view.activities)
        figures["tickets"] = len(view.tickets)
        figures["satisfaction"] = view.satisfaction
        figures["service_sees_receivables"] = len(view.receivables)
    # -- Managers ----------------------------------------------------------
    with session(hr.id) as s:
        console.rule("[bold]Managers: the numbers (SQL aggregates, over what they may read)")
        for name, title in (
            ("funnel", "Funnel by lead source"),
            ("aging", "Receivables aging"),
            ("service", "Service by priority"),
        ):
            head, rows = report_rows(s, name)
            _table(console, title, head, rows)
            figures[name] = rows
    figures["imported"] = (imported.created, imported.skipped, imported.rejected)
    figures["users"] = [
        (u.name, u.email, u.department, ", ".join(u.roles))
        for u in (hr, boss, rep, mia, lea, fin, agent)
    ]
    figures["deal_expected_close"] = deal.expected_close
    figures["first_due"] = min(r.due for r in receivables)
    console.rule("[bold]Handoffs: signals sent after each commit")
    console.print(", ".join(heard))
    figures["signals"] = heard
    figures["pending_outbox"] = len(crm.outbox.pending(tenant=tenant, limit=1000))
    console.print(
        f"{figures['pending_outbox']} events wait in the outbox for another process to relay."
    )
    return figures


def _sample_file(db: str) -> Path | None:
    """Where the sample leads file goes: beside a SQLite database, else here; None in memory."""
    if db == "memory://":
        return None
    folder = Path(".")
    if db.startswith("sqlite:///"):
        database = db.removeprefix("sqlite:///").split("?")[0]
        if not database or database == ":memory:":
            return None
        folder = Path(database).expanduser().parent
    return folder / "pycrm-demo-leads.csv"


def next_steps(console: Console, db: str, tenant: str, figures: dict[str, Any]) -> Path | None:
    """Print the demo's tenant, its users and commands to paste next; write the sample file.

    The sample leads file (:data:`SAMPLE_LEADS`) is written beside a SQLite
    database (here for other databases) unless it exists; returns its path,
    or None when the demo ran in memory and nothing is left to try.
    """
    console.rule("[bold]Your turn")
    _table(
        console,
        f"Users in tenant {tenant} (use an email with --as)",
        ["name", "email", "department", "roles"],
        figures["users"],
    )
    sample = _sample_file(db)
    if sample is None:
        console.print(
            "The demo ran in memory, so its data is gone now. Run [bold]pycrm demo[/bold] "
            "to keep it in ./pycrm.db and try the commands it prints."
        )
        return None
    if not sample.exists():
        sample.write_text(SAMPLE_LEADS, encoding="utf-8")
    from pycrm.crm import DEFAULT_URL

    where = "" if db == DEFAULT_URL else f" --db {shlex.quote(db)}"
    scope = f"{where} --tenant {shlex.quote(tenant)}"
    file = shlex.quote(str(sample))
    commands = [
        ("try the import without writing anything",
         f"pycrm import leads {file}{scope} --as mia@demo.example --default-region DE --dry-run"),
        ("import it, as Mia from marketing",
         f"pycrm import leads {file}{scope} --as mia@demo.example --default-region DE"),
        ("the funnel, as a table and as a chart",
         f"pycrm report funnel{scope} --chart funnel.png"),
        ("the forecast, as the sales manager sees it",
         f"pycrm report forecast{scope} --as max@demo.example"),
        ("receivables aging, as JSON for a script",
         f"pycrm report aging{scope} --json"),
        ("who works here", f"pycrm users list{scope}"),
        ("the events waiting for a relay (pycrm relay sends them on)",
         f"pycrm outbox stats{scope}"),
    ]  # fmt: skip
    console.print(
        f"The demo's data is in tenant [bold]{escape(tenant)}[/bold]; "
        f"a sample leads file is in {escape(str(sample))}. Try:"
    )
    for why, command in commands:
        console.print(f"  [dim]# {escape(why)}[/dim]")
        console.print(f"  {escape(command)}", soft_wrap=True, highlight=False)
    return sample
