"""Storage adapters: ``memory`` for tests, ``sqlalchemy`` for SQLite and PostgreSQL."""
