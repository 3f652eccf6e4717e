"""HTTP errors the sandbox answers with, in Kustomer's two documented body shapes.

Kustomer documents two error bodies (kustomer-api.md §4.1) and clients must accept both:

* ``jsonapi`` (used by resource, auth, rate-limit and size errors)::

    {"errors": [{"status": "400", "code": "bad_request", "title": "Bad Request", "detail": "...",
                 "source": {"pointer": "/emails/0/email"}, "meta": {}}]}

* ``simple`` (used by search and bulk endpoints)::

    {"errors": [{"code": "bad_request", "message": "...", "meta": {}}]}

The sandbox is an emulated *server*: it returns these bodies, it does not raise ``connectors.errors``.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final, Literal

from starlette.responses import JSONResponse

__all__ = ["CODES", "ErrorStyle", "SandboxError", "error_body", "error_response"]

ErrorStyle = Literal["jsonapi", "simple"]

CODES: Final[Mapping[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "too_many_requests",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
}
"""HTTP status -> Kustomer-style error ``code``."""


class SandboxError(Exception):
    """An error response; raised inside the sandbox and turned into JSON by the app's exception handler.

    Attributes:
        status: HTTP status code.
        detail: human-readable explanation (``detail`` or ``message`` in the body).
        code: machine code; defaults from :data:`CODES`.
        pointer: JSON pointer into the request body (``source.pointer``).
        parameter: offending query parameter (``source.parameter``).
        meta: extra machine-readable facts.
        style: which body shape to answer with.
        headers: extra response headers.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        pointer: str | None = None,
        parameter: str | None = None,
        meta: Mapping[str, Any] | None = None,
        style: ErrorStyle = "jsonapi",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code or CODES.get(status, "error")
        self.pointer = pointer
        self.parameter = parameter
        self.meta = dict(meta or {})
        self.style: ErrorStyle = style
        self.headers = dict(headers or {})

    def with_style(self, style: ErrorStyle) -> SandboxError:
        """Return this error answering in ``style`` (used by search and bulk routes)."""
        self.style = style
        return self

    def body(self) -> dict[str, Any]:
        """The JSON body of this error."""
        return error_body(
            self.status,
            self.detail,
            code=self.code,
            pointer=self.pointer,
            parameter=self.parameter,
            meta=self.meta,
            style=self.style,
        )

    def response(self) -> JSONResponse:
        """This error as a response."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    pointer: str | None = None,
    parameter: str | None = None,
    meta: Mapping[str, Any] | None = None,
    style: ErrorStyle = "jsonapi",
) -> dict[str, Any]:
    """Build an error body in one of the two shapes (see the module docstring).

    Args:
        status: HTTP status.
        detail: human-readable explanation.
        code: machine code (default from :data:`CODES`).
        pointer: JSON pointer into the request body.
        parameter: offending query parameter.
        meta: extra facts.
        style: ``jsonapi`` or ``simple``.

    Returns:
        The body as a dict.
    """
    code = code or CODES.get(status, "error")
    if style == "simple":
        entry: dict[str, Any] = {"code": code, "message": detail, "meta": dict(meta or {})}
        return {"errors": [entry]}
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    entry = {"status": str(status), "code": code, "title": title, "detail": detail}
    source: dict[str, str] = {}
    if pointer is not None:
        source["pointer"] = pointer
    if parameter is not None:
        source["parameter"] = parameter
    if source:
        entry["source"] = source
    entry["meta"] = dict(meta or {})
    return {"errors": [entry]}


def error_response(
    status: int,
    detail: str,
    *,
    style: ErrorStyle = "jsonapi",
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> JSONResponse:
    """Shortcut: :func:`error_body` wrapped in a ``JSONResponse``."""
    return JSONResponse(error_body(status, detail, style=style, **kwargs), status_code=status, headers=headers)
