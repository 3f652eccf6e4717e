"""Short-lived signed session tokens: one owner (and optionally a set of operations) for an end-user front end.

A token is ``cs1.<base64url(json claims)>.<base64url(HMAC-SHA256(key, "cs1." + claims))>``. The key is
``store.secret_box.derive_key("session")``, derived from the deployment's secret key, so every worker of a
deployment accepts every other worker's tokens and none is stored anywhere. Claims::

    {"o": "<owner id>", "ops": ["genericContact::list", ...] | absent, "iat": <epoch>, "exp": <epoch>, "n": "<nonce>"}

Tokens cannot be revoked one by one (keep them short: 15 minutes by default); rotating the deployment key
invalidates all of them. They are secrets: never logged, and the Connect page keeps them in an ``HttpOnly``
cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["TOKEN_PREFIX", "SessionClaims", "SessionCodec", "SessionTokenError"]

TOKEN_PREFIX: Final = "cs1."  # noqa: S105 - a format marker, not a secret
_MAX_TOKEN_LENGTH: Final = 16 * 1024


class SessionTokenError(Exception):
    """A session token is malformed, forged, or expired (the message says which, never the token)."""


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """What a session token grants.

    Attributes:
        owner_id: the only owner whose connections the token reaches.
        operations: the operations it may perform, or ``None`` for every operation of that owner.
        issued_at: epoch seconds.
        expires_at: epoch seconds.
    """

    owner_id: str
    operations: tuple[str, ...] | None
    issued_at: float
    expires_at: float

    def allows(self, operation: str) -> bool:
        """Whether the token may perform ``operation``."""
        return self.operations is None or operation in self.operations

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (camelCase)."""
        return {
            "ownerId": self.owner_id,
            "operations": list(self.operations) if self.operations is not None else None,
            "issuedAt": self.issued_at,
            "expiresAt": self.expires_at,
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    """Mints and verifies session tokens.

    Args:
        key: the HMAC key (at least 16 bytes; use ``store.secret_box.derive_key("session")``).
        clock: time source in epoch seconds.
    """

    def __init__(self, key: bytes, *, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 16:
            raise ValueError("the session key must be at least 16 bytes")
        self._key = key
        self._clock = clock

    def __repr__(self) -> str:
        return "SessionCodec(key='***')"

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, (TOKEN_PREFIX + body).encode("ascii"), hashlib.sha256).digest())

    def mint(self, owner_id: str, *, ttl: float, operations: Sequence[str] | None = None) -> tuple[str, SessionClaims]:
        """Return a new token for ``owner_id`` and its claims.

        Raises:
            ValueError: empty owner or non-positive ``ttl``.
        """
        if not owner_id or not owner_id.strip():
            raise ValueError("owner_id must not be empty")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        now = self._clock()
        claims = SessionClaims(
            owner_id=owner_id,
            operations=tuple(dict.fromkeys(operations)) if operations is not None else None,
            issued_at=float(int(now)),
            expires_at=float(int(now + ttl)),
        )
        payload: dict[str, Any] = {"o": owner_id, "iat": int(now), "exp": int(now + ttl), "n": secrets.token_hex(8)}
        if claims.operations is not None:
            payload["ops"] = list(claims.operations)
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"))
        return f"{TOKEN_PREFIX}{body}.{self._sign(body)}", claims

    def verify(self, token: str) -> SessionClaims:
        """Check the signature and expiry of ``token`` and return its claims.

        Raises:
            SessionTokenError: malformed, bad signature, or expired.
        """
        if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_LENGTH:
            raise SessionTokenError("not a session token")
        body, sep, signature = token[len(TOKEN_PREFIX) :].partition(".")
        if not sep or not body or not signature:
            raise SessionTokenError("malformed session token")
        try:
            expected = self._sign(body)
        except UnicodeEncodeError:
            raise SessionTokenError("malformed session token") from None
        if not hmac.compare_digest(expected, signature):
            raise SessionTokenError("invalid session token signature")
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError):
            raise SessionTokenError("malformed session token") from None
        owner = payload.get("o") if isinstance(payload, dict) else None
        expires = payload.get("exp") if isinstance(payload, dict) else None
        ops = payload.get("ops") if isinstance(payload, dict) else None
        if not isinstance(owner, str) or not owner or not isinstance(expires, int | float):
            raise SessionTokenError("malformed session token")
        if ops is not None and not (isinstance(ops, list) and all(isinstance(o, str) for o in ops)):
            raise SessionTokenError("malformed session token")
        if self._clock() >= expires:
            raise SessionTokenError("the session token has expired")
        return SessionClaims(
            owner_id=owner,
            operations=tuple(ops) if ops is not None else None,
            issued_at=float(payload.get("iat", 0)),
            expires_at=float(expires),
        )

    def csrf_token(self, subject: str) -> str:
        """A token binding a form to ``subject`` (a session token or ``local:<owner>``) for CSRF checks."""
        return _b64(hmac.new(self._key, f"csrf|{subject}".encode(), hashlib.sha256).digest())

    def check_csrf(self, subject: str, token: str) -> bool:
        """Whether ``token`` is :meth:`csrf_token` of ``subject`` (constant time)."""
        return hmac.compare_digest(self.csrf_token(subject), token)
