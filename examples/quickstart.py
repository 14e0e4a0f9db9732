"""The README's first steps: users, a customer, a contact, a call, the 360 view.

Runs on the in-memory adapter; pass a URL to connect() to keep the data.
"""

from __future__ import annotations

import pycrm


def main() -> None:
    crm = pycrm.connect("memory://", default_region="GB")
    with crm.session(actor=crm.system_actor) as s:
        ada = s.org.create_user(name="Ada", email="ada@example.com", department="sales")

    with crm.session(actor=ada.id) as s:
        acme = s.customers.create("Acme Ltd", phones=["020 7946 0958"], tags=["key account"])
        bea = s.contacts.create("Bea Jones", customer_id=acme.id, emails=["Bea@Acme.example"])
        s.activities.log("call", "Discovery call", contact_id=bea.id, body="Wants a quote.")
        view = s.customers.view(acme.id)

    print(view.customer.name, [p.value for p in view.customer.contact_points])
    print([c.name for c in view.contacts], [a.subject for a in view.activities])
    assert view.customer.contact_points[0].value == "+442079460958"
    assert view.contacts[0].contact_points[0].value == "Bea@acme.example"


if __name__ == "__main__":
    main()
