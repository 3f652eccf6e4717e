"""Helpers shared by the route modules, and the seam for extra routers.

Extra routers (e.g. Apps Platform commands) mounted with ``Sandbox(settings, extra_routers=[...])`` or
``sb.include_router(router)`` get authentication and rate limiting from the middleware for free; inside a
handler use :func:`get_sandbox`, :func:`get_principal`, and :func:`authorize` (or the :func:`require_roles`
dependency) for the role check, and raise :class:`~connectors.kustomer.sandbox.errors.SandboxError` for
errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from starlette.requests import Request

from connectors.kustomer.sandbox.auth import ROLES, Principal, RoleChoice
from connectors.kustomer.sandbox.errors import ErrorStyle, SandboxError
from connectors.kustomer.sandbox.resources import WriteContext
from connectors.kustomer.sandbox.store import TimeRange
from connectors.kustomer.sandbox.timeutil import parse_ms

if TYPE_CHECKING:
    from connectors.kustomer.sandbox.app import Sandbox

__all__ = [
    "authorize",
    "get_principal",
    "get_sandbox",
    "json_body",
    "list_order",
    "path_value",
    "query_bool",
    "require_roles",
    "time_ranges",
    "write_context",
]


def path_value(request: Request, name: str = "value") -> str:
    """A path parameter that may contain an encoded slash (``externalId=a%2Fb``), decoded."""
    return str(request.path_params[name]).replace("%2F", "/")


def get_sandbox(request: Request) -> Sandbox:
    """The sandbox serving this request."""
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox


def get_principal(request: Request) -> Principal:
    """The authenticated caller (set by the middleware for every ``/v1`` request).

    Raises:
        SandboxError: 401 if the request was not authenticated (a route outside ``/v1``).
    """
    principal = request.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):
        raise SandboxError(401, "Missing auth token")
    return principal


def authorize(
    request: Request, requirement: str | RoleChoice, *, extra: Iterable[str] = ()
) -> tuple[Sandbox, Principal]:
    """Check that the caller holds any one of the requirement's roles.

    Args:
        request: the request.
        requirement: a key of :data:`~connectors.kustomer.sandbox.auth.ROLES` (``"customer.read"``) or the
            alternatives themselves.
        extra: more acceptable alternatives (e.g. a per-Klass role).

    Returns:
        The sandbox and the principal.

    Raises:
        SandboxError: ``missing_role_status`` (403 by default) naming the roles, any one of which is needed.
    """
    sb = get_sandbox(request)
    principal = get_principal(request)
    roles = ROLES[requirement] if isinstance(requirement, str) else tuple(requirement)
    choices = (*roles, *extra)
    if not principal.has_any(choices):
        raise SandboxError(
            sb.settings.missing_role_status,
            f"Missing required role: this endpoint needs one of {', '.join(choices)}",
            meta={"requiredRoles": list(choices)},
        )
    return sb, principal


def require_roles(*roles: str) -> Callable[[Request], Principal]:
    """A FastAPI dependency for extra routers: ``Depends(require_roles("org.permission.apps.read"))``."""

    def dependency(request: Request) -> Principal:
        return authorize(request, roles)[1]

    return dependency


async def json_body(request: Request, *, style: ErrorStyle = "jsonapi") -> Any:
    """Parse the request body as JSON.

    Raises:
        SandboxError: 400 for an empty or malformed body.
    """
    raw = await request.body()
    if not raw.strip():
        raise SandboxError(400, "The request body is empty; send JSON", style=style)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SandboxError(400, f"Invalid JSON body: {exc}", style=style) from None


def write_context(
    sb: Sandbox, principal: Principal, *, forced: dict[str, Any] | None = None, **kwargs: Any
) -> WriteContext:
    """A write context for the caller at the sandbox's current time."""
    return WriteContext(principal.user_id, principal, sb.now_ms(), forced=dict(forced or {}), **kwargs)


def query_bool(request: Request, name: str, *, default: bool = False) -> bool:
    """A ``true``/``false`` query parameter.

    Raises:
        SandboxError: 400 for another value.
    """
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise SandboxError(400, f'"{name}" must be true or false', parameter=name)


_SORTS: dict[str, tuple[Literal["id", "created", "updated"], bool]] = {
    "asc": ("id", False),
    "desc": ("id", True),
    "createdAt": ("created", False),
    "-createdAt": ("created", True),
    "updatedAt": ("updated", False),
    "-updatedAt": ("updated", True),
}


def list_order(request: Request) -> tuple[Literal["id", "created", "updated"], bool]:
    """``sort``: ``asc``/``desc`` (by id), ``[-]createdAt`` or ``[-]updatedAt``; default by id ascending.

    Raises:
        SandboxError: 400 for another value.
    """
    raw = request.query_params.get("sort")
    if raw is None or raw == "":
        return "id", False
    if raw not in _SORTS:
        raise SandboxError(400, f'"sort" must be one of {", ".join(_SORTS)}', parameter="sort")
    return _SORTS[raw]


def time_ranges(request: Request) -> list[TimeRange]:
    """``filter[createdAt|updatedAt][gt|gte|lt|lte]=<date-time>`` and ``fromDate`` (updatedAt >=).

    Bounds on one field merge into one range (the stricter bound wins).

    Raises:
        SandboxError: 400 for an unknown filter or a value that is not a date-time.
    """
    bounds: dict[str, TimeRange] = {}
    for key, value in request.query_params.multi_items():
        if key == "fromDate":
            field, op = "updatedAt", "gte"
        elif key.startswith("filter["):
            parts = key.removeprefix("filter[").removesuffix("]").split("][")
            if len(parts) != 2 or parts[0] not in ("createdAt", "updatedAt") or parts[1] not in _OPS:
                raise SandboxError(
                    400,
                    f"Unsupported filter {key!r}: use filter[createdAt|updatedAt][gt|gte|lt|lte]",
                    parameter=key,
                )
            field, op = parts
        else:
            continue
        ms = _ms(key, value)
        name: Literal["created", "updated"] = "created" if field == "createdAt" else "updated"
        current = bounds.get(name, TimeRange(name))
        if op in ("gt", "gte"):
            inclusive = op == "gte"
            if current.lo is None or ms > current.lo or (ms == current.lo and not inclusive):
                current = replace(current, lo=ms, lo_inclusive=inclusive)
        else:
            inclusive = op == "lte"
            if current.hi is None or ms < current.hi or (ms == current.hi and not inclusive):
                current = replace(current, hi=ms, hi_inclusive=inclusive)
        bounds[name] = current
    return list(bounds.values())


_OPS = frozenset({"gt", "gte", "lt", "lte"})


def _ms(name: str, value: str) -> int:
    try:
        return parse_ms(value)
    except ValueError:
        raise SandboxError(400, f'"{name}" must be an ISO 8601 date-time', parameter=name) from None
