"""Per-address rate limits for the form endpoint.

The endpoint asks a :class:`RateLimiter` before it reads a submission. The
built-in :class:`SlidingWindowLimiter` keeps its counts in the process that
runs the app: several worker processes (``uvicorn --workers 4``, several
containers) each keep their own, so a visitor may submit up to ``limit``
times per window *per process*. To share one limit, pass an object with a
``hit`` method of your own (one backed by Redis or the database, say).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from pycrm.errors import ConfigurationError

__all__ = ["RateLimiter", "SlidingWindowLimiter", "client_key"]


@runtime_checkable
class RateLimiter(Protocol):
    """Counts submissions per client and says when one is one too many.

    ``hit`` may also be a coroutine function (``async def hit``): the app
    awaits its result. A limiter that asks another server should answer
    quickly; it runs before the submission is read.
    """

    def hit(self, key: str) -> float | Awaitable[float | None] | None:
        """Count one submission from ``key`` (see :func:`client_key`).

        :returns: None when it is allowed, else the seconds until the next
            one would be (the app answers 429 with ``Retry-After``).
        """
        ...


class SlidingWindowLimiter:
    """At most ``limit`` submissions per key in any ``window`` seconds (a sliding log).

    Counts live in this process (see the module's notes) and are safe to
    use from several threads. At most ``max_keys`` clients are tracked: when
    more have submitted within a window, the longest-quiet ones are forgotten.

    :param limit: submissions allowed per window.
    :param window: the window's length in seconds.
    :param clock: monotonic seconds (inject a fake one in tests).
    :param max_keys: how many clients are remembered at most.
    :raises ConfigurationError: when ``limit``, ``window`` or ``max_keys`` is not positive.
    """

    def __init__(
        self,
        limit: int = 10,
        window: float = 600.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"limit must be a whole number of at least 1, not {limit!r}")
        if isinstance(window, bool) or not isinstance(window, int | float) or window <= 0:
            raise ConfigurationError(f"window must be a positive number of seconds, not {window!r}")
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ConfigurationError(f"max_keys must be at least 1, not {max_keys!r}")
        self.limit = limit
        """Submissions allowed per window."""
        self.window = float(window)
        """The window's length in seconds."""
        self._clock = clock
        self._max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Count one submission from ``key``; None if allowed, else seconds to wait.

        A refused submission is not counted, so a client that waits as told
        gets through.
        """
        with self._lock:
            now = self._clock()
            hits = self._hits.get(key)
            if hits is None:
                hits = self._hits[key] = deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            self._hits.move_to_end(key)
            if len(hits) >= self.limit:
                return max(hits[0] + self.window - now, 0.001)
            hits.append(now)
            while len(self._hits) > self._max_keys:
                self._hits.popitem(last=False)
            return None


def client_key(address: str | None) -> str:
    """The rate-limit key of a client address.

    An IPv4 address is its own key; an IPv6 address counts by its /64
    network, since one host usually has a whole /64 to pick addresses from.
    Anything else (a Unix socket, no address) is kept as given.
    """
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)
