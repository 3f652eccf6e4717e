"""The one error tree of unified-connectors.

Every failure the package raises on purpose is a :class:`ConnectorError`. Catch the
narrowest class you can act on::

    ConnectorError
    ├── ConfigurationError                 bad settings, unknown region, missing key file, ...
    ├── PluginError                        a plugin registered something wrong (names the plugin)
    ├── MappingError                       a payload or value could not be mapped (names model + field)
    ├── UnsupportedOperationError          the provider cannot do this (e.g. Kustomer has no company delete)
    ├── NotConnectedError                  no connection for (connector, owner[, label])
    ├── InvalidCursorError                 a page cursor was edited, forged or belongs to another query
    ├── QueryError                         a list query uses an unknown filter, operator or sort
    ├── StoreConflictError                 a concurrent change won (compare-and-swap, lock wait); retry
    ├── AuthError
    │   ├── NeedsReauthError               refresh failed for good; the owner must reconnect
    │   ├── InsufficientPermissionsError   the credential lacks roles an operation needs (also a mapped 403)
    │   └── OAuthFlowError                 state expired/replayed/mismatched, PKCE or code exchange failed
    ├── ProxyRefusedError                  a proxy path tried to leave the connection's Kustomer host
    ├── WebhookError
    │   ├── WebhookSignatureError          bad or missing signature, unknown sender: never dispatched
    │   ├── WebhookPayloadError            malformed delivery body or headers (``reason``)
    │   └── WebhookLimitError              the provider's webhook limits are reached (5 per org)
    ├── BulkError                          a bulk job could not be run to completion
    ├── CommandError                       Apps Platform command definition or run failed
    │   └── CommandDefinitionError         an app definition broke a documented rule (has ``path``)
    └── APIError                           talking to Kustomer failed (carries ``method`` and ``url``)
        ├── APIConnectionError             could not connect / connection dropped
        │   └── APITimeoutError
        ├── ResponseValidationError        Kustomer answered with JSON we could not parse
        └── APIStatusError                 Kustomer answered 4xx/5xx (status, code, detail, request id)
            ├── BadRequestError            400
            ├── AuthenticationError        401
            │   └── RegionMismatchError    401 "token associated with pod X": tells which region to set
            ├── PermissionDeniedError      403 (raised as the cause of InsufficientPermissionsError)
            ├── NotFoundError              404
            ├── ConflictError              409
            ├── PayloadTooLargeError       413
            ├── UnprocessableEntityError   422
            ├── RateLimitError             429 (``retry_at``: epoch seconds, or None)
            └── ServerError                5xx

Messages never contain secrets: API keys, tokens, client secrets and webhook tokens are
redacted before they could reach an exception, a log line or a repr.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Final

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthError",
    "AuthenticationError",
    "BadRequestError",
    "BulkError",
    "CommandDefinitionError",
    "CommandError",
    "ConfigurationError",
    "ConflictError",
    "ConnectorError",
    "InsufficientPermissionsError",
    "InvalidCursorError",
    "MappingError",
    "NeedsReauthError",
    "NotConnectedError",
    "NotFoundError",
    "OAuthFlowError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PluginError",
    "ProxyRefusedError",
    "QueryError",
    "RateLimitError",
    "RegionMismatchError",
    "ResponseValidationError",
    "ServerError",
    "StoreConflictError",
    "UnprocessableEntityError",
    "UnsupportedOperationError",
    "WebhookError",
    "WebhookLimitError",
    "WebhookPayloadError",
    "WebhookSignatureError",
    "error_class_for_status",
]


class ConnectorError(Exception):
    """Base class of every error raised by unified-connectors."""

    #: A short machine-readable code, used in HTTP error bodies of the host app.
    code: ClassVar[str] = "connector_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe description (used for typed error bodies)."""
        return {"type": type(self).__name__, "code": self.code, "message": self.message}


class ConfigurationError(ConnectorError):
    """Settings are missing or invalid (names the setting)."""

    code = "configuration_error"


class PluginError(ConnectorError):
    """A plugin registered something invalid; the message names the plugin."""

    code = "plugin_error"

    def __init__(self, message: str, *, plugin: str | None = None) -> None:
        super().__init__(f"plugin {plugin!r}: {message}" if plugin else message)
        self.plugin = plugin


class MappingError(ConnectorError):
    """A value could not be mapped between Kustomer and a unified model.

    Attributes:
        model: the unified model id (e.g. ``genericContact``).
        field: the dotted path of the offending field (e.g. ``custom.ageNum`` or ``emails.0.email``).
    """

    code = "mapping_error"

    def __init__(self, message: str, *, model: str, field: str | None = None) -> None:
        where = f"{model}.{field}" if field else model
        super().__init__(f"{where}: {message}")
        self.model = model
        self.field = field
        self.reason = message

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe description including model and field."""
        return {**super().to_dict(), "model": self.model, "field": self.field}


class UnsupportedOperationError(ConnectorError):
    """The provider cannot perform this operation at all (not a permission problem)."""

    code = "unsupported_operation"

    def __init__(self, message: str, *, operation: str) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation


class NotConnectedError(ConnectorError):
    """No connection exists for the given connector and owner."""

    code = "not_connected"


class InvalidCursorError(ConnectorError):
    """A page cursor was edited, forged, truncated or belongs to another model or query."""

    code = "invalid_cursor"


class QueryError(ConnectorError):
    """A list query uses a filter, operator or sort the connector cannot apply (names it)."""

    code = "invalid_query"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe description including the offending field."""
        return {**super().to_dict(), "field": self.field}


class StoreConflictError(ConnectorError):
    """A concurrent change won: a compare-and-swap failed, or a lock was not obtained in time. Retry."""

    code = "store_conflict"


class AuthError(ConnectorError):
    """Authentication or authorization failed before or while calling the provider."""

    code = "auth_error"


class NeedsReauthError(AuthError):
    """The connection's credential cannot be refreshed any more; the owner must reconnect."""

    code = "needs_reauth"


class InsufficientPermissionsError(AuthError):
    """The credential was not granted the roles an operation needs.

    Raised before any request when the granted roles are known, and from a 403 response otherwise.

    Attributes:
        operation: the operation that was attempted (e.g. ``genericContact::create``).
        missing_roles: roles of which the credential needs at least one (Kustomer accepts any one of an
            operation's alternatives; the first listed is the one to grant).
        granted_roles: what the credential holds, when known.
    """

    code = "insufficient_permissions"

    def __init__(
        self,
        *,
        operation: str,
        missing_roles: Sequence[str],
        granted_roles: Iterable[str] | None = None,
        detail: str | None = None,
    ) -> None:
        missing = ", ".join(missing_roles) if missing_roles else "unknown roles"
        msg = f"{operation} needs Kustomer role(s) the credential was not granted: {missing}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
        self.operation = operation
        self.missing_roles = tuple(missing_roles)
        self.granted_roles = tuple(sorted(granted_roles)) if granted_roles is not None else None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe description including the missing roles."""
        return {**super().to_dict(), "operation": self.operation, "missingRoles": list(self.missing_roles)}


class OAuthFlowError(AuthError):
    """An OAuth authorization could not be completed (state, PKCE, code or token exchange)."""

    code = "oauth_error"

    def __init__(self, message: str, *, error: str = "invalid_request") -> None:
        super().__init__(message)
        self.error = error


class ProxyRefusedError(ConnectorError):
    """The proxy refused a path that would leave the connection's Kustomer API host."""

    code = "proxy_refused"


class WebhookError(ConnectorError):
    """A webhook delivery or subscription failed."""

    code = "webhook_error"


class WebhookSignatureError(WebhookError):
    """A delivery's signature is missing or wrong, or nothing is registered to verify it; never dispatched.

    Attributes:
        reason: a short machine-readable cause (``missing_signature``, ``malformed_signature``,
            ``bad_signature``, ``unknown_sender``).
    """

    code = "webhook_signature"

    def __init__(self, message: str, *, reason: str = "bad_signature") -> None:
        super().__init__(message)
        self.reason = reason

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe description including the reason."""
        return {**super().to_dict(), "reason": self.reason}


class WebhookPayloadError(WebhookError):
    """A delivery's body or headers are malformed (or a hook payload is too large to send).

    Attributes:
        reason: a short machine-readable cause (``not_json``, ``not_object``, ``missing_<field>``,
            ``bad_data``, ``event_mismatch``, ``too_large``, ...).
    """

    code = "webhook_payload"

    def __init__(self, message: str, *, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe description including the reason."""
        return {**super().to_dict(), "reason": self.reason}


class WebhookLimitError(WebhookError):
    """The provider's webhook limits leave no room (Kustomer: 5 outbound webhooks per org, 12 events each).

    Attributes:
        limit: the limit that was reached.
    """

    code = "webhook_limit"

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe description including the limit."""
        return {**super().to_dict(), "limit": self.limit}


class BulkError(ConnectorError):
    """A bulk job could not be run to completion."""

    code = "bulk_error"


class CommandError(ConnectorError):
    """An Apps Platform command failed to validate or to run."""

    code = "command_error"


class CommandDefinitionError(CommandError):
    """An app definition broke a documented rule.

    Attributes:
        path: JSON-pointer-like location of the problem (e.g. ``commands/0/cacheSeconds``).
    """

    code = "command_definition"

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class APIError(ConnectorError):
    """Talking to Kustomer failed.

    Attributes:
        method: HTTP method of the request.
        url: URL of the request (never includes credentials; Kustomer takes them in a header).
    """

    code = "api_error"

    def __init__(self, message: str, *, method: str | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.method = method
        self.url = url


class APIConnectionError(APIError):
    """The connection to Kustomer failed or was dropped."""

    code = "api_connection_error"


class APITimeoutError(APIConnectionError):
    """Kustomer did not answer in time."""

    code = "api_timeout"


class ResponseValidationError(APIError):
    """Kustomer answered with a body we could not parse into the expected shape."""

    code = "response_validation_error"


class APIStatusError(APIError):
    """Kustomer answered with an error status.

    Attributes:
        status_code: HTTP status.
        error_code: Kustomer's error ``code`` (``bad_request``, ``not_found``, ...), when given.
        detail: Kustomer's human-readable message (``message``, ``detail`` or ``title``).
        request_id: the request id header, when present (quote it to Kustomer support).
        body: the parsed error body (dict) or raw text.
        headers: response headers (lower-cased keys).
    """

    code = "api_status_error"
    status: ClassVar[int | None] = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        error_code: str | None = None,
        detail: str | None = None,
        request_id: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message, method=method, url=url)
        self.status_code = status_code
        self.error_code = error_code
        self.detail = detail
        self.request_id = request_id
        self.body = body
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        base = self.message
        if self.request_id:
            base += f" (request id {self.request_id})"
        return base

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe description including status and Kustomer's code/detail."""
        return {
            **super().to_dict(),
            "status": self.status_code,
            "kustomerCode": self.error_code,
            "detail": self.detail,
            "requestId": self.request_id,
        }


class BadRequestError(APIStatusError):
    """400: invalid body or parameters (also a bad custom-attribute suffix)."""

    code = "bad_request"
    status = 400


class AuthenticationError(APIStatusError):
    """401: the token is missing, invalid, expired or revoked."""

    code = "authentication_error"
    status = 401


class RegionMismatchError(AuthenticationError):
    """401 because the credential belongs to another Kustomer pod; ``expected_region`` says which to set."""

    code = "region_mismatch"

    def __init__(self, message: str, *, expected_region: str | None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.expected_region = expected_region


class PermissionDeniedError(APIStatusError):
    """403: the credential lacks a role for this endpoint."""

    code = "permission_denied"
    status = 403


class NotFoundError(APIStatusError):
    """404: no such object (also a lookup by email/phone/externalId with no match)."""

    code = "not_found"
    status = 404


class ConflictError(APIStatusError):
    """409: optimistic-locking or duplicate conflict."""

    code = "conflict"
    status = 409


class PayloadTooLargeError(APIStatusError):
    """413: body above Kustomer's limit (100 kb; 400 kb for hooks)."""

    code = "payload_too_large"
    status = 413


class UnprocessableEntityError(APIStatusError):
    """422: the body was understood but refused."""

    code = "unprocessable_entity"
    status = 422


class RateLimitError(APIStatusError):
    """429, or the client-side wait cap was reached.

    Attributes:
        retry_at: epoch seconds at which the budget is expected to refill, when known.
    """

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_at: float | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("status_code", 429)
        super().__init__(message, **kwargs)
        self.retry_at = retry_at

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe description including ``retryAt``."""
        return {**super().to_dict(), "retryAt": self.retry_at}


class ServerError(APIStatusError):
    """5xx: Kustomer failed; retried automatically where the request is safe to repeat."""

    code = "server_error"


_STATUS_ERRORS: Final[Mapping[int, type[APIStatusError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_class_for_status(status_code: int) -> type[APIStatusError]:
    """Return the :class:`APIStatusError` subclass for an HTTP status code."""
    cls = _STATUS_ERRORS.get(status_code)
    if cls is not None:
        return cls
    return ServerError if status_code >= 500 else APIStatusError
