"""Bearer tokens, roles and the per-endpoint role table.

API keys and OAuth access tokens are HS256 JWTs signed with a key derived from the seed, with claims shaped
like a real Kustomer key (kustomer-api.md §1.3)::

    {"id": <token id>, "user": <user id>, "org": <org id>, "orgName": "sandbox", "userType": "machine",
     "roles": [...], "aud": "urn:consumer", "iss": "urn:api", "sub": <user id>, "pod": "prod1", "iat": ...}

Signing uses ``joserfc`` (authlib's successor to the deprecated ``authlib.jose``, by the same author).

Every token is also a :class:`~connectors.kustomer.sandbox.store.TokenRecord`, so it can expire or be revoked.

Roles: each endpoint accepts ANY ONE of its alternatives (a permission-set role
``org.permission.<obj>.<action>`` or a legacy ``org.user.*``/``org.admin.*`` role). A granted role also
covers every role it is a dotted prefix of, so the very old broad roles work: ``org.admin`` grants
``org.admin.*``, ``org.user`` grants ``org.user.*``, ``org.permission.customer`` grants
``org.permission.customer.*``. ``org.admin`` does NOT imply ``org.user.*`` (real keys carry both, as in the
public example key).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from connectors.kustomer.sandbox.errors import SandboxError
from connectors.kustomer.sandbox.store import TokenRecord

if TYPE_CHECKING:
    from connectors.kustomer.sandbox.app import Sandbox

__all__ = [
    "DEFAULT_DEMO_ROLES",
    "ROLES",
    "Authenticator",
    "Principal",
    "RoleChoice",
    "grants",
    "is_known_role",
    "perm",
    "signing_key",
]

RoleChoice = tuple[str, ...]
"""Alternatives: a credential needs any one of them."""

_ADMIN_OBJECTS: Final = frozenset({"klass", "metadata", "hook", "team", "user", "brand", "tag"})
_KOBJECT_ROLE: Final = re.compile(r"org\.permission\.kobject\.kobject_[a-z0-9_-]+\.(read|create|update|delete)")


def perm(obj: str, action: Literal["read", "create", "update", "delete"]) -> RoleChoice:
    """The roles Kustomer accepts for ``action`` on ``obj``.

    The permission-set role first, then legacy ones: ``org.admin.<obj>.{read,write}`` for admin-managed
    objects, and ``org.user.<obj>.{read,write,delete}`` (create/update fold into ``write``).

    Args:
        obj: object name (``customer``).
        action: ``read``, ``create``, ``update`` or ``delete``.

    Returns:
        The alternatives.
    """
    legacy = {"read": "read", "create": "write", "update": "write", "delete": "delete"}[action]
    choices = [f"org.permission.{obj}.{action}"]
    if obj in _ADMIN_OBJECTS:
        choices.append(f"org.admin.{obj}.{'read' if action == 'read' else 'write'}")
    choices.append(f"org.user.{obj}.{legacy}")
    return tuple(choices)


_SEARCH: Final = (
    "org.permission.search.create",
    "org.user.search.read",
    "org.admin.search.read",
    "org.permission.search.update",
    "org.permission.search_global.create",
    "org.permission.search_preview.create",
)


def _outbound(action: str) -> RoleChoice:
    return (
        f"org.permission.outbound_webhook.{action}",
        "org.admin.outbound_webhooks",
        "org.outbound_webhooks",
    )


def _build_roles() -> dict[str, RoleChoice]:
    table: dict[str, RoleChoice] = {}
    actions: tuple[Literal["read", "create", "update", "delete"], ...] = (
        "read",
        "create",
        "update",
        "delete",
    )
    for obj in ("customer", "company", "conversation", "message", "note", "kobject", "user", "team", "klass"):
        for action in actions:
            table[f"{obj}.{action}"] = perm(obj, action)
    table["kobject.list"] = tuple(dict.fromkeys((*perm("kobject", "read"), *table["klass.read"])))
    table["metadata.read"] = perm("metadata", "read")
    table["metadata.update"] = ("org.permission.metadata.update", "org.admin.metadata.write")
    table["tag.read"] = perm("tag", "read")
    table["search"] = _SEARCH
    table["bulk.read"] = ("org.permission.bulk.read", "org.user.bulk.read")
    for action in ("read", "create", "update", "delete"):
        table[f"outbound_webhook.{action}"] = _outbound(action)
    table["hook.create"] = ("org.permission.hook.create", "org.admin.hook.write")
    table["hook.read"] = ("org.permission.hook.read", "org.admin.hook.read")
    table["hook.post"] = ("org.hooks",)
    table["apps.read"] = ("org.permission.apps.read", "org.user.apps.read", "org.admin.apps")
    table["conversation.tags.remove"] = ("org.permission.conversation.delete", "org.user.conversation.write")
    table["any"] = ()
    return table


ROLES: Final[dict[str, RoleChoice]] = _build_roles()
"""Endpoint requirement name -> accepted roles (empty: any valid token)."""

DEFAULT_DEMO_ROLES: Final[tuple[str, ...]] = tuple(
    sorted(
        {role for choice in ROLES.values() for role in choice}
        | {
            "org.admin",
            "org.user",
            "org.hooks",
            "org.tracking",
            "org.permission.apps.read",
            "org.user.apps.read",
        }
    )
)
"""Every role the sandbox knows (a key minted with these can call every endpoint)."""

_KNOWN: Final = frozenset(DEFAULT_DEMO_ROLES)


def is_known_role(role: str) -> bool:
    """Whether ``role`` is a role the sandbox knows (incl. per-Klass ``org.permission.kobject.kobject_*``)."""
    return role in _KNOWN or _KOBJECT_ROLE.fullmatch(role) is not None


def grants(granted: Iterable[str], role: str) -> bool:
    """Whether the ``granted`` roles include ``role`` itself or a dotted prefix of it (``org.admin``)."""
    have = granted if isinstance(granted, frozenset | set) else frozenset(granted)
    if role in have:
        return True
    parts = role.split(".")
    return any(".".join(parts[:n]) in have for n in range(2, len(parts)))


def signing_key(seed: int) -> bytes:
    """The HS256 key of a sandbox with this seed."""
    return hashlib.sha256(f"kustomer-sandbox-signing:{seed}".encode()).digest()


def encode_jwt(claims: dict[str, Any], key: bytes) -> str:
    """Sign ``claims`` as an HS256 JWT."""
    return jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, OctKey.import_key(key))


def decode_jwt(token: str, key: bytes) -> dict[str, Any]:
    """Verify an HS256 JWT and return its claims.

    Raises:
        SandboxError: 401 when the token is malformed or its signature is wrong.
    """
    try:
        claims = jwt.decode(token, OctKey.import_key(key), algorithms=["HS256"]).claims
    except (JoseError, ValueError, TypeError, IndexError) as exc:
        raise SandboxError(401, "Invalid auth token") from exc
    return dict(claims)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a ``/v1`` request.

    Attributes:
        token_id: id of the API key or access token.
        user_id: the key's machine user, or the user who authorised an OAuth client.
        org_id: the org.
        roles: granted roles.
        kind: ``api_key`` or ``oauth``.
        user_type: ``machine`` for API keys, ``user`` for OAuth tokens.
    """

    token_id: str
    user_id: str
    org_id: str
    roles: frozenset[str]
    kind: Literal["api_key", "oauth"]
    user_type: str

    def has_any(self, choice: Iterable[str]) -> bool:
        """Whether any one of ``choice`` is granted (an empty choice is always satisfied)."""
        alternatives = tuple(choice)
        return not alternatives or any(grants(self.roles, role) for role in alternatives)


class Authenticator:
    """Mints and verifies the sandbox's bearer tokens.

    Args:
        sandbox: the owning sandbox (state, settings, clock, ids).
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox
        self._key = signing_key(sandbox.settings.seed)
        self._verified: dict[str, dict[str, Any]] = {}

    def mint(
        self,
        *,
        kind: Literal["api_key", "oauth"],
        name: str,
        user_id: str,
        user_type: str,
        roles: Iterable[str],
        expires_in: float | None,
        pod: str | None = None,
        grant_id: str | None = None,
    ) -> tuple[TokenRecord, str]:
        """Create a token record and its signed JWT.

        Args:
            kind: ``api_key`` or ``oauth``.
            name: the key's label.
            user_id: the user the token acts as.
            user_type: ``machine`` or ``user``.
            roles: granted roles.
            expires_in: seconds until expiry, or None for a key that never expires.
            pod: pod claim (default: the sandbox's pod).
            grant_id: OAuth grant the token belongs to.

        Returns:
            The record and the bearer token.
        """
        sb = self._sb
        now = sb.now_ms()
        token_id = sb.ids.new()
        role_list = tuple(dict.fromkeys(roles))
        expires_ms = None if expires_in is None else now + round(expires_in * 1000)
        claims: dict[str, Any] = {
            "id": token_id,
            "user": user_id,
            "org": sb.state.org.id,
            "orgName": sb.state.org.name,
            "userType": user_type,
            "roles": list(role_list),
            "aud": "urn:consumer",
            "iss": "urn:api",
            "sub": user_id,
            "pod": pod or sb.settings.pod,
            "iat": now // 1000,
        }
        if expires_ms is not None:
            claims["exp"] = expires_ms // 1000
        if grant_id is not None:
            claims["grant"] = grant_id
        token = encode_jwt(claims, self._key)
        record = TokenRecord(
            id=token_id,
            kind=kind,
            name=name,
            user_id=user_id,
            roles=role_list,
            created_ms=now,
            expires_ms=expires_ms,
            pod=claims["pod"],
            last_chars=token[-6:],
            grant_id=grant_id,
        )
        sb.state.tokens[token_id] = record
        return record, token

    def authenticate(self, authorization: str | None) -> Principal:
        """Turn an ``Authorization`` header into a :class:`Principal`.

        Raises:
            SandboxError: 401 for a missing, malformed, unknown, expired or revoked token, or one issued for
                another pod (with Kustomer's exact message).
        """
        if not authorization:
            raise SandboxError(401, "Missing auth token: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise SandboxError(401, "Invalid authorization header: expected 'Bearer <token>'")
        claims = self._verified.get(token)
        if claims is None:
            claims = decode_jwt(token, self._key)
            if len(self._verified) > 4096:
                self._verified.clear()
            self._verified[token] = claims
        sb = self._sb
        pod = claims.get("pod")
        if pod and pod != sb.settings.pod:
            raise SandboxError(
                401, f"Auth token associated with pod {pod} but request is being handled by {sb.settings.pod}"
            )
        record = sb.state.tokens.get(str(claims.get("id")))
        if record is None or record.revoked:
            raise SandboxError(401, "Auth token has been revoked or does not exist")
        now = sb.now_ms()
        if record.expires_ms is not None and now >= record.expires_ms:
            raise SandboxError(401, "Expired auth token")
        record.last_accessed_ms = now
        user = sb.state.users.get(record.user_id)
        return Principal(
            token_id=record.id,
            user_id=record.user_id,
            org_id=sb.state.org.id,
            roles=frozenset(record.roles),
            kind=record.kind,
            user_type=str(user.attrs.get("userType", "machine")) if user else "machine",
        )
