"""Record identifiers."""

from __future__ import annotations

import os
import threading
import time

__all__ = ["new_id"]

_lock = threading.Lock()
_last = (0, 0)


def new_id() -> str:
    """Return a new 32-character, time-ordered, random identifier.

    The first 12 hex digits are the creation time in milliseconds and the
    other 20 are random, so ids created later sort later and new rows land at
    the end of B-tree indexes (the layout of a UUIDv7, without its version
    bits). Within one process ids are strictly increasing, even within a
    millisecond, so ordering by id is ordering by creation.
    """
    global _last
    with _lock:
        millis = time.time_ns() // 1_000_000
        last_millis, last_random = _last
        if millis <= last_millis:
            millis, rand = last_millis, last_random + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1
        _last = (millis, rand)
    return f"{millis:012x}{rand:020x}"
