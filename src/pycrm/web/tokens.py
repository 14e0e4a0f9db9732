"""Signed, expiring, stateless confirmation tokens for the double opt-in.

A token is ``<payload>.<signature>``: the payload is the submission as
compact JSON, deflated and base64url-encoded; the signature is an
HMAC-SHA256 of the payload under the app's secret. Nothing is stored until
the token comes back, so a visitor who never confirms leaves no personal
data behind. The token is signed, not encrypted: whoever holds the link can
read what the visitor typed (it goes to the visitor's own address).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pycrm.errors import ConfigurationError

__all__ = ["TokenError", "TokenSigner"]

_CONTEXT = b"pycrm.web.confirm.v1\x00"
#: The longest payload a token may unpack to; larger ones are refused unread.
_MAX_UNPACKED = 64 * 1024


class TokenError(Exception):
    """A token was refused: ``status`` 400 (tampered, malformed) or 410 (expired)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: str | bytes) -> bytes:
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not isinstance(raw, bytes) or len(raw) < 32:
        raise ConfigurationError(
            "secret must be at least 32 bytes; make one with secrets.token_urlsafe(32)"
        )
    return hashlib.sha256(_CONTEXT + raw).digest()


class TokenSigner:
    """Signs payloads into tokens and checks tokens back into payloads.

    :param secrets: the signing secret first, then older ones still accepted
        (to rotate a secret without breaking links already sent).
    :raises ConfigurationError: when there is no secret or one is shorter than 32 bytes.
    """

    def __init__(self, secrets: Sequence[str | bytes]) -> None:
        if not secrets:
            raise ConfigurationError("a secret is needed to sign confirmation links")
        self._keys = [_key(s) for s in secrets]

    def _sign(self, key: bytes, payload: str) -> str:
        return _b64(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())

    def dumps(self, data: Mapping[str, Any], expires: datetime) -> str:
        """A token carrying ``data`` (JSON-able) until ``expires``."""
        body = json.dumps(
            {"exp": int(expires.timestamp()), "data": data},
            separators=(",", ":"),
            ensure_ascii=False,
            sort_keys=True,
        ).encode("utf-8")
        payload = _b64(zlib.compress(body, 9))
        return f"{payload}.{self._sign(self._keys[0], payload)}"

    def loads(self, token: str, now: datetime) -> dict[str, Any]:
        """The data of a token signed by one of the secrets and not expired at ``now``.

        :raises TokenError: 400 when the token is malformed or its signature
            does not match; 410 when it has expired.
        """
        payload, dot, signature = token.partition(".")
        if not dot or not payload or not signature or not payload.isascii():
            raise TokenError(400, "the confirmation link is incomplete")
        if not any(hmac.compare_digest(self._sign(key, payload), signature) for key in self._keys):
            raise TokenError(400, "the confirmation link is not valid")
        try:
            unpacker = zlib.decompressobj()
            body = unpacker.decompress(_unb64(payload), _MAX_UNPACKED)
            if unpacker.unconsumed_tail:
                raise ValueError("too large")
            content = json.loads(body)
            expires = int(content["exp"])
            data = content["data"]
        except (ValueError, KeyError, TypeError, zlib.error, binascii.Error):
            raise TokenError(400, "the confirmation link is not valid") from None
        if not isinstance(data, dict):
            raise TokenError(400, "the confirmation link is not valid")
        if now.timestamp() >= expires:
            raise TokenError(410, "the confirmation link has expired; please send the form again")
        return data
