"""Opaque, tamper-evident page cursors.

A cursor is ``base64url(json) + "." + base64url(hmac_sha256(key, json)[:16])``. It is opaque to callers
(its content may change between releases) and an edited or forged cursor is refused with
:class:`~connectors.errors.InvalidCursorError` rather than silently paging from the wrong place. The key is
derived from the deployment's secret key, so every worker of a deployment accepts every other worker's
cursors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from connectors.errors import InvalidCursorError

__all__ = ["CursorCodec"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Signs and verifies cursors with a key.

    Args:
        key: secret bytes (derive them from the deployment key with :meth:`derive`).
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("cursor key must be at least 16 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "CursorCodec(key='***')"

    @classmethod
    def derive(cls, secret: bytes, purpose: str = "cursor") -> CursorCodec:
        """A codec whose key is derived from ``secret`` for ``purpose`` (HMAC-SHA256 as a KDF)."""
        return cls(hmac.new(secret, f"unified-connectors:{purpose}".encode(), hashlib.sha256).digest())

    def encode(self, state: Mapping[str, Any]) -> str:
        """Serialise and sign ``state`` (JSON-compatible)."""
        body = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
        tag = hmac.new(self._key, body, hashlib.sha256).digest()[:16]
        return f"{_b64(body)}.{_b64(tag)}"

    def decode(self, cursor: str, *, scope: str | None = None) -> dict[str, Any]:
        """Verify and return the state of ``cursor``.

        Args:
            cursor: a value from :meth:`encode`.
            scope: when given, the state's ``"s"`` entry must equal it (a cursor of another model or
                query is refused).

        Raises:
            InvalidCursorError: the cursor is malformed, its signature is wrong, or its scope differs.
        """
        try:
            body_text, tag_text = cursor.split(".", 1)
            body = _unb64(body_text)
            tag = _unb64(tag_text)
        except (ValueError, AttributeError) as exc:
            raise InvalidCursorError("malformed cursor: pass back the 'next' value unchanged") from exc
        expected = hmac.new(self._key, body, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(tag, expected):
            raise InvalidCursorError("the cursor's signature does not match: it was edited or comes from elsewhere")
        try:
            state = json.loads(body)
        except json.JSONDecodeError as exc:  # pragma: no cover - signed content is always our JSON
            raise InvalidCursorError("malformed cursor") from exc
        if not isinstance(state, dict):
            raise InvalidCursorError("malformed cursor")
        if scope is not None and state.get("s") != scope:
            raise InvalidCursorError("this cursor belongs to another model or query")
        return state
