"""The in-memory adapter: the same behaviour as SQL, no database.

Each unit of work writes to its own overlay; commit checks versions and unique
keys against the shared tables under a lock and then applies the overlay, so
concurrent sessions see only committed data and stale writes are refused, just
as with SQL.
"""

from pycrm.adapters.memory.store import MemoryStore

__all__ = ["MemoryStore"]
