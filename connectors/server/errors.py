"""Typed error bodies of the host app: every failure is ``{"error": {"type", "code", "message", ...}}``.

Library errors (:mod:`connectors.errors`) keep their ``to_dict()`` fields and get the status of
:func:`status_for`. Problems with the HTTP request itself (no or bad token, unknown route, body too large,
invalid input) are :class:`HTTPProblem`. Nothing here ever puts a secret, a stack trace or a request body into a
response: unexpected exceptions answer ``500 internal_error`` and are logged server-side.

======================================  ======  =============================================================
error                                   status  why
======================================  ======  =============================================================
NotConnectedError, NotFoundError        404     no such connection/record, or it belongs to another owner
InsufficientPermissionsError            403     the credential lacks Kustomer roles (``missingRoles``)
MappingError, QueryError, cursor        422     bad input (``field`` names where)
ConfigurationError                      422     the request asks for something unknown or misconfigured
ProxyRefusedError, BadRequestError      400
NeedsReauthError                        409     the owner must reconnect (``needs_reauth``)
ConflictError, StoreConflictError       409
PayloadTooLargeError                    413
UnsupportedOperationError               405     Kustomer cannot do this at all (e.g. delete a company)
RateLimitError                          429     with ``Retry-After``
WebhookSignatureError                   401
WebhookPayloadError                     400
WebhookLimitError                       409     the org has no room for another Kustomer webhook
AuthenticationError (from Kustomer)     502     Kustomer refused the connection's credential
APITimeoutError                         504
other APIError                          502
======================================  ======  =============================================================
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connectors.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    AuthError,
    BadRequestError,
    BulkError,
    CommandError,
    ConfigurationError,
    ConflictError,
    ConnectorError,
    InsufficientPermissionsError,
    InvalidCursorError,
    MappingError,
    NeedsReauthError,
    NotConnectedError,
    NotFoundError,
    OAuthFlowError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ProxyRefusedError,
    QueryError,
    RateLimitError,
    StoreConflictError,
    UnprocessableEntityError,
    UnsupportedOperationError,
    WebhookError,
    WebhookLimitError,
    WebhookPayloadError,
    WebhookSignatureError,
)

__all__ = [
    "HTTPProblem",
    "error_response",
    "install_error_handlers",
    "problem_response",
    "pydantic_errors",
    "status_for",
    "validation_problem",
]

logger = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[ConnectorError], int], ...] = (
    (NotConnectedError, 404),
    (InsufficientPermissionsError, 403),
    (NeedsReauthError, 409),
    (OAuthFlowError, 400),
    (MappingError, 422),
    (QueryError, 422),
    (InvalidCursorError, 422),
    (ConfigurationError, 422),
    (ProxyRefusedError, 400),
    (StoreConflictError, 409),
    (UnsupportedOperationError, 405),
    (WebhookSignatureError, 401),
    (WebhookPayloadError, 400),
    (WebhookLimitError, 409),
    (WebhookError, 400),
    (CommandError, 400),
    (BulkError, 502),
    (RateLimitError, 429),
    (NotFoundError, 404),
    (ConflictError, 409),
    (PayloadTooLargeError, 413),
    (UnprocessableEntityError, 422),
    (BadRequestError, 400),
    (PermissionDeniedError, 403),
    (AuthenticationError, 502),
    (APITimeoutError, 504),
    (APIConnectionError, 502),
    (AuthError, 401),
    (APIStatusError, 502),
    (APIError, 502),
)


class HTTPProblem(Exception):
    """A problem with the HTTP request itself, answered with a typed error body.

    Args:
        status: HTTP status.
        code: machine-readable code (``unauthorized``, ``not_found``, ``validation_error``...).
        message: human-readable explanation (never contains a secret).
        type: the ``type`` of the body (defaults to a name derived from the status).
        errors: field-level problems (``[{"path": "query.limit", "message": ...}]``).
        headers: extra response headers (``WWW-Authenticate``, ``Retry-After``, ``Allow``).
        extra: more JSON-safe members of the body.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        type: str | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.type = type or _TYPE_NAMES.get(status, "HTTPProblem")
        self.errors = [dict(e) for e in errors] if errors is not None else None
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` member of the body."""
        body: dict[str, Any] = {"type": self.type, "code": self.code, "message": self.message, **self.extra}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


_TYPE_NAMES: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "ValidationError",
    429: "RateLimited",
    500: "InternalError",
}


# What else a route answers when one action is unsupported (``Allow`` of the 405).
_ALLOW: dict[str, str] = {"delete": "GET, PATCH", "update": "GET, DELETE", "create": "GET"}


def status_for(exc: ConnectorError) -> int:
    """The HTTP status a library error answers with (see the module docstring)."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _retry_after(exc: RateLimitError) -> str | None:
    if exc.retry_at is None:
        raw = exc.headers.get("retry-after")
        return raw if raw and raw.isdigit() else None
    return str(max(1, math.ceil(exc.retry_at - time.time())))


def error_response(exc: ConnectorError) -> JSONResponse:
    """The response for a library error."""
    status = status_for(exc)
    body = exc.to_dict()
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimitError):
        retry = _retry_after(exc)
        if retry is not None:
            headers["Retry-After"] = retry
    if isinstance(exc, UnsupportedOperationError):
        action = exc.operation.rpartition("::")[2]
        headers["Allow"] = _ALLOW.get(action, "GET")
    if isinstance(exc, InsufficientPermissionsError) and exc.granted_roles is not None:
        body["grantedRoles"] = list(exc.granted_roles)
    if isinstance(exc, APIStatusError):
        # Kustomer's own detail is useful; its headers and raw body are not ours to relay.
        body.pop("body", None)
    if status >= 500:
        logger.warning("request failed upstream: %s: %s", type(exc).__name__, exc)
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def problem_response(problem: HTTPProblem) -> JSONResponse:
    """The response for an :class:`HTTPProblem`."""
    return JSONResponse({"error": problem.to_dict()}, status_code=problem.status, headers=problem.headers)


def validation_problem(errors: Sequence[Mapping[str, Any]], *, message: str | None = None) -> HTTPProblem:
    """A 422 listing field problems; ``message`` defaults to the first problem."""
    first = errors[0] if errors else {"path": "", "message": "invalid request"}
    where = first.get("path") or "request"
    return HTTPProblem(422, "validation_error", message or f"{where}: {first.get('message')}", errors=list(errors))


def pydantic_errors(errors: Sequence[Mapping[str, Any]], *, prefix: Sequence[str | int] = ()) -> list[dict[str, Any]]:
    """Turn pydantic error dicts into ``[{"path", "message", "kind"}]`` with dotted paths."""
    out: list[dict[str, Any]] = []
    for err in errors:
        loc = [*prefix, *err.get("loc", ())]
        out.append(
            {"path": ".".join(str(p) for p in loc), "message": str(err.get("msg", "invalid")), "kind": err.get("type")}
        )
    return out


async def _connector_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConnectorError)
    return error_response(exc)


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPProblem)
    return problem_response(exc)


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_response(validation_problem(pydantic_errors(exc.errors())))


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        problem = HTTPProblem(404, "not_found", f"no route for {request.method} {request.url.path}")
    elif exc.status_code == 405:
        problem = HTTPProblem(
            405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}", headers=exc.headers
        )
    else:
        problem = HTTPProblem(exc.status_code, "http_error", str(exc.detail), headers=exc.headers)
    return problem_response(problem)


async def _invalid_url(request: Request, exc: Exception) -> Response:
    # A URL built from the caller's input could not be sent (a character httpx refuses): bad input, not a crash.
    return problem_response(
        HTTPProblem(400, "bad_request", "the request holds characters that cannot be sent on to Kustomer")
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(HTTPProblem(500, "internal_error", "internal server error"))


def install_error_handlers(app: FastAPI) -> None:
    """Register the typed error handlers on ``app``."""
    app.add_exception_handler(ConnectorError, _connector_error)
    app.add_exception_handler(HTTPProblem, _problem)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(httpx.InvalidURL, _invalid_url)
    app.add_exception_handler(Exception, _unexpected)
