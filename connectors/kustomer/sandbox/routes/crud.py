"""The one generic list/get/create/update/delete route set, configured per resource type."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connectors.kustomer.sandbox.envelopes import list_body, page_params, single
from connectors.kustomer.sandbox.errors import SandboxError
from connectors.kustomer.sandbox.resources import ResourceType
from connectors.kustomer.sandbox.routes.common import (
    authorize,
    get_sandbox,
    json_body,
    list_order,
    query_bool,
    time_ranges,
    write_context,
)
from connectors.kustomer.sandbox.store import Record

__all__ = ["Crud", "list_response"]

Where = Callable[[Request], Callable[[Record], bool] | None]


def list_response(
    request: Request,
    rt: ResourceType,
    *,
    subset: Iterable[Record] | None = None,
    where: Callable[[Record], bool] | None = None,
) -> JSONResponse:
    """A paginated list of records (``page``, ``pageSize``, ``sort``, ``filter[...]``, ``fromDate``)."""
    page, size = page_params(request, max_size=rt.max_page_size)
    order, descending = list_order(request)
    total, records = rt.coll.page(
        order=order,
        descending=descending,
        ranges=time_ranges(request),
        where=where,
        subset=subset,
        offset=(page - 1) * size,
        limit=size,
    )
    return JSONResponse(list_body(request, [rt.render(r) for r in records], page=page, size=size, total=total))


@dataclass(frozen=True)
class Crud:
    """Generic routes of one resource type.

    Attributes:
        type: resource type key (``customer``).
        base: collection path (``/v1/customers``).
        roles: requirement key prefix in ``ROLES`` (``customer`` -> ``customer.read`` ...).
        where: builds an extra list predicate from the request (resource-specific filters).
    """

    type: str
    base: str
    roles: str
    where: Where | None = None

    def _rt(self, request: Request) -> ResourceType:
        return get_sandbox(request).types[self.type]

    async def list(self, request: Request) -> Response:
        """``GET <base>``."""
        authorize(request, f"{self.roles}.read")
        where = self.where(request) if self.where else None
        return list_response(request, self._rt(request), where=where)

    async def get(self, request: Request) -> Response:
        """``GET <base>/{id}``."""
        authorize(request, f"{self.roles}.read")
        rt = self._rt(request)
        return single(rt.render(rt.get_or_404(request.path_params["id"])))

    async def create(self, request: Request) -> Response:
        """``POST <base>``: 201 with the created resource."""
        sb, principal = authorize(request, f"{self.roles}.create")
        rt = self._rt(request)
        body = await json_body(request)
        record = rt.commit(rt.plan_create(body, write_context(sb, principal)))
        return single(rt.render(record), status=201)

    async def put(self, request: Request) -> Response:
        """``PUT <base>/{id}``: merge, or replace with ``?replace=true``."""
        return await self._update(request, replace=query_bool(request, "replace"))

    async def patch(self, request: Request) -> Response:
        """``PATCH <base>/{id}``: merge."""
        return await self._update(request, replace=False)

    async def _update(self, request: Request, *, replace: bool) -> Response:
        sb, principal = authorize(request, f"{self.roles}.update")
        rt = self._rt(request)
        record = rt.get_or_404(request.path_params["id"])
        body = await json_body(request)
        rt.commit(rt.plan_update(record, body, write_context(sb, principal), replace=replace))
        return single(rt.render(record))

    async def delete(self, request: Request) -> Response:
        """``DELETE <base>/{id}``: 204."""
        sb, principal = authorize(request, f"{self.roles}.delete")
        rt = self._rt(request)
        rt.delete(rt.get_or_404(request.path_params["id"]), write_context(sb, principal))
        return Response(status_code=204)

    def add_collection_routes(self, router: APIRouter, *, create: bool = True) -> None:
        """Register ``GET`` (and ``POST``) on the collection path."""
        router.add_api_route(self.base, self.list, methods=["GET"], summary=f"List {self.type} records")
        if create:
            router.add_api_route(self.base, self.create, methods=["POST"], summary=f"Create a {self.type}")

    def add_item_routes(self, router: APIRouter, *, ops: Iterable[str] = ("get", "put", "patch", "delete")) -> None:
        """Register the ``{id}`` routes (register these after any literal sibling paths)."""
        handlers: dict[str, tuple[str, Any]] = {
            "get": ("GET", self.get),
            "put": ("PUT", self.put),
            "patch": ("PATCH", self.patch),
            "delete": ("DELETE", self.delete),
        }
        for op in ops:
            method, handler = handlers[op]
            router.add_api_route(
                f"{self.base}/{{id}}", handler, methods=[method], summary=f"{method} a {self.type} by id"
            )


def method_not_allowed() -> SandboxError:
    """The 405 an unknown method on a known path gets."""
    return SandboxError(405, "Method Not Allowed")
