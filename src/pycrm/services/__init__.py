"""Services: the use cases a session offers, one module per area."""
