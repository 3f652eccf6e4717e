"""JSON:API envelopes and page/pageSize pagination (kustomer-api.md §3.1, §3.2).

Single: ``{"data": {...}}``. Lists::

    {"meta": {"page": 2, "pageSize": 100, "total": 230, "totalPages": 3},
     "links": {"self": "/v1/customers?page=2&pageSize=100", "first": "...page=1...", "prev": "...page=1...",
               "next": "/v1/customers?page=3&pageSize=100", "last": "...page=3..."},
     "data": [...]}

Links are relative, keep the request's other query parameters (filters, sort) and ``next`` is ``null`` on the
last page.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse

from connectors.kustomer.sandbox.errors import ErrorStyle, SandboxError

__all__ = ["list_body", "page_params", "single", "status_response"]


def single(resource: dict[str, Any], *, status: int = 200) -> JSONResponse:
    """A single-resource response."""
    return JSONResponse({"data": resource}, status_code=status)


def status_response(body: Any, *, status: int = 200) -> JSONResponse:
    """Any JSON response."""
    return JSONResponse(body, status_code=status)


def _int_param(request: Request, name: str, default: int, style: ErrorStyle) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SandboxError(400, f'"{name}" must be an integer', parameter=name, style=style) from None


def page_params(
    request: Request, *, max_size: int, default_size: int = 100, style: ErrorStyle = "jsonapi"
) -> tuple[int, int]:
    """Parse ``page`` (1-based) and ``pageSize`` (default 100).

    Raises:
        SandboxError: 400 for a non-integer, a page below 1, or a page size outside ``1..max_size``.
    """
    page = _int_param(request, "page", 1, style)
    size = _int_param(request, "pageSize", min(default_size, max_size), style)
    if page < 1:
        raise SandboxError(400, '"page" must be 1 or more', parameter="page", style=style)
    if size < 1 or size > max_size:
        raise SandboxError(
            400,
            f'"pageSize" must be between 1 and {max_size}',
            parameter="pageSize",
            style=style,
            meta={"maxPageSize": max_size},
        )
    return page, size


def _link(path: str, extra: Sequence[tuple[str, str]], page: int, size: int) -> str:
    return f"{path}?" + urlencode([("page", str(page)), ("pageSize", str(size)), *extra], safe="[]:,")


def list_body(
    request: Request,
    data: Iterable[dict[str, Any]],
    *,
    page: int,
    size: int,
    total: int,
    path: str | None = None,
    keep_params: bool | Sequence[str] = True,
) -> dict[str, Any]:
    """Build a list envelope.

    Args:
        request: the request (its path and other query parameters go into the links).
        data: the page's resources.
        page: 1-based page number.
        size: page size.
        total: number of matches over all pages.
        path: link path (default: the request path).
        keep_params: repeat the request's other query parameters in the links (True), none of them
            (False), or only these.

    Returns:
        ``{"meta", "links", "data"}``.
    """
    link_path = path or request.url.path
    extra = [
        (k, v)
        for k, v in request.query_params.multi_items()
        if k not in ("page", "pageSize") and (keep_params is True or (keep_params and k in keep_params))
    ]
    total_pages = max(1, math.ceil(total / size)) if total else 0
    return {
        "meta": {"page": page, "pageSize": size, "total": total, "totalPages": total_pages},
        "links": {
            "self": _link(link_path, extra, page, size),
            "first": _link(link_path, extra, 1, size),
            "prev": _link(link_path, extra, page - 1, size) if page > 1 else None,
            "next": _link(link_path, extra, page + 1, size) if page < total_pages else None,
            "last": _link(link_path, extra, max(total_pages, 1), size),
        },
        "data": list(data),
    }
