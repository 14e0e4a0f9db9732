"""The ``redis`` relay: each event appended to a Redis stream with ``XADD``.

Each entry has the fields ``id`` (the event id: consumers de-duplicate by it,
since a redelivery after a crash appends it again), ``name``, ``tenant``,
``record_id`` and ``payload`` (the event as JSON). The stream name is a
template: ``"pycrm:{tenant}"`` by default, ``"pycrm:{tenant}:{name}"`` for a
stream per signal. One batch is one pipelined round trip.

It needs the ``redis`` package (``pip install 'pycrm[redis]'``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pycrm.errors import ConfigurationError
from pycrm.relays import Envelope, EventFilter

__all__ = ["RedisStreamRelay"]


class RedisStreamRelay:
    """Append events to Redis streams.

    ``url`` is a ``redis://`` URL (``url_env`` names an environment variable
    holding it instead); ``maxlen`` trims each stream to about that many
    entries (``XADD … MAXLEN ~``), none by default.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        url_env: str | None = None,
        name: str = "redis",
        stream: str = "pycrm:{tenant}",
        events: str | Iterable[str] | None = None,
        maxlen: int | None = None,
        client: Any = None,
    ) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - the extra is part of the dev install
            raise ConfigurationError("the redis relay needs: pip install 'pycrm[redis]'") from exc
        if url_env is not None:
            import os

            url = os.environ.get(url_env)
            if not url:
                raise ConfigurationError(f"environment variable {url_env} holds no Redis URL")
        if client is None:
            if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigurationError(f"redis url must be a redis:// URL, not {url!r}")
            client = redis.Redis.from_url(url, socket_timeout=10)
        try:
            stream.format(tenant="t", name="n")
        except (AttributeError, KeyError, IndexError, ValueError) as exc:
            raise ConfigurationError(
                f"redis stream must be a template using {{tenant}} and {{name}}: {stream!r}"
            ) from exc
        if maxlen is not None and (isinstance(maxlen, bool) or not isinstance(maxlen, int)):
            raise ConfigurationError("redis maxlen must be a whole number")
        self.name = name
        self._client = client
        self._stream = stream
        self._filter = EventFilter.of(events)
        self._maxlen = maxlen

    def accepts(self, envelope: Envelope) -> bool:
        """Whether the event's name matches the relay's filter."""
        return self._filter(envelope)

    def send(self, envelopes: Sequence[Envelope]) -> list[BaseException | None]:
        """``XADD`` every event in one pipelined round trip."""
        pipe = self._client.pipeline(transaction=False)
        for envelope in envelopes:
            pipe.xadd(
                self._stream.format(tenant=envelope.tenant_id, name=envelope.name),
                {
                    "id": envelope.id,
                    "name": envelope.name,
                    "tenant": envelope.tenant_id,
                    "record_id": envelope.record_id,
                    "payload": envelope.body(),
                },
                maxlen=self._maxlen,
                approximate=True,
            )
        results = pipe.execute(raise_on_error=False)
        return [r if isinstance(r, BaseException) else None for r in results]

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()
