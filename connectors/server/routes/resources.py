"""``/resources/{model}`` (Morph-compatible CRUD + list/search) and ``/fields/{model}``."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from starlette.requests import Request
from starlette.responses import JSONResponse

from connectors.server.envelope import (
    check_id,
    check_model,
    delete_envelope,
    fields_envelope,
    list_envelope,
    parse_filters,
    read_json_object,
    resource_envelope,
    split_list,
    validate_resource_body,
)
from connectors.server.errors import validation_problem
from connectors.server.security import ConnectionDep, PrincipalDep
from unified_models import CUSTOM_PREFIX

__all__ = ["build_router", "operation_name"]


def operation_name(model: str, action: str) -> str:
    """The operation a request on ``model`` performs (``custom:<klass>`` models share ``custom::<action>``)."""
    return f"{'custom' if model.startswith(CUSTOM_PREFIX) else model}::{action}"


class FieldCreate(BaseModel):
    """Body of ``POST /fields/{model}``: a new custom field."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Display name, e.g. 'Loyalty Tier'.")
    type: str = Field(min_length=1, description="text, number, datetime, boolean, select, url, reference...")
    options: list[str] | None = Field(default=None, description="Allowed values of a select field.")
    key: str | None = Field(default=None, description="Unified key to map it to (default: the Kustomer name).")


Raw = Annotated[bool, Query(description="Include the Kustomer object as rawResource.")]


async def list_resources(
    request: Request,
    model: str,
    principal: PrincipalDep,
    connection: ConnectionDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Records per page.")] = 100,
    cursor: Annotated[str | None, Query(max_length=4096, description="next from the previous page.")] = None,
    q: Annotated[str | None, Query(max_length=1000, description="Free-text search.")] = None,
    sort: Annotated[str | None, Query(max_length=100, description="updatedAt, -updatedAt, createdAt...")] = None,
    fields: Annotated[str | None, Query(description="Comma-separated fields to return (a hint).")] = None,
    raw: Raw = False,
) -> JSONResponse:
    """List and search records: ``filter[<name>]=value``, ``filter[custom.<key>][<op>]=value``, ``q``, cursor."""
    check_model(model)
    principal.require(operation_name(model, "list"))
    filters = parse_filters(request.query_params.multi_items())
    page = await connection.resources(model).list(
        limit=limit,
        cursor=cursor or None,
        filters=filters,
        q=q or None,
        fields=split_list([fields]) if fields else None,
        sort=sort or None,
        include_raw=raw,
    )
    return JSONResponse(list_envelope(model, page, include_raw=raw))


async def retrieve_resource(
    model: str,
    id: str,
    principal: PrincipalDep,
    connection: ConnectionDep,
    expand: Annotated[list[str] | None, Query(description="References to expand (comma-separated/repeated).")] = None,
    raw: Raw = False,
) -> JSONResponse:
    """Retrieve one record."""
    check_model(model)
    principal.require(operation_name(model, "retrieve"))
    expanded = split_list(expand or [])
    if any(not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.]{0,100}", e) for e in expanded):
        raise validation_problem([{"path": "query.expand", "message": "expected field names"}])
    obj = await connection.resources(model).retrieve(check_id(id), expand=expanded, include_raw=raw)
    return JSONResponse(resource_envelope(model, obj, include_raw=raw))


async def create_resource(
    request: Request, model: str, principal: PrincipalDep, connection: ConnectionDep, raw: Raw = False
) -> JSONResponse:
    """Create a record from ``{"fields": {...}}`` (or the fields themselves); answers 201 with the record."""
    check_model(model)
    principal.require(operation_name(model, "create"))
    obj = validate_resource_body(model, await read_json_object(request), update=False)
    created = await connection.resources(model).create(obj, include_raw=raw)
    return JSONResponse(resource_envelope(model, created, include_raw=raw), status_code=201)


async def update_resource(
    request: Request, model: str, id: str, principal: PrincipalDep, connection: ConnectionDep, raw: Raw = False
) -> JSONResponse:
    """Update only the given fields (PATCH semantics) and answer the record as stored."""
    check_model(model)
    principal.require(operation_name(model, "update"))
    obj = validate_resource_body(model, await read_json_object(request), update=True)
    updated = await connection.resources(model).update(check_id(id), obj, include_raw=raw)
    return JSONResponse(resource_envelope(model, updated, include_raw=raw))


async def delete_resource(model: str, id: str, principal: PrincipalDep, connection: ConnectionDep) -> JSONResponse:
    """Delete a record."""
    check_model(model)
    principal.require(operation_name(model, "delete"))
    await connection.resources(model).delete(check_id(id))
    return JSONResponse(delete_envelope(model, id))


async def list_fields(model: str, principal: PrincipalDep, connection: ConnectionDep) -> JSONResponse:
    """Standard and custom field definitions of a model on this connection."""
    check_model(model)
    principal.require(operation_name(model, "fieldRead"))
    return JSONResponse(fields_envelope(model, await connection.fields(model).list()))


async def create_field(
    model: str, body: FieldCreate, principal: PrincipalDep, connection: ConnectionDep
) -> JSONResponse:
    """Create a custom field (Kustomer's attribute name is derived from the display name and type)."""
    check_model(model)
    principal.require(operation_name(model, "fieldWrite"))
    definition = await connection.fields(model).create(body.name, body.type, options=body.options, key=body.key)
    payload: dict[str, Any] = {"object": "field", **definition.model_dump(mode="json", by_alias=True)}
    return JSONResponse(payload, status_code=201)


_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": 'The unified fields (camelCase), or {"fields": {...}} (Morph\'s envelope).',
                },
                "example": {"fields": {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com"}},
            }
        },
    }
}


def build_router() -> APIRouter:
    """The resources and fields routes."""
    router = APIRouter(tags=["resources"])
    router.add_api_route("/resources/{model}", list_resources, methods=["GET"], summary="List and search records")
    router.add_api_route(
        "/resources/{model}", create_resource, methods=["POST"], summary="Create a record", openapi_extra=_BODY
    )
    router.add_api_route("/resources/{model}/{id}", retrieve_resource, methods=["GET"], summary="Retrieve a record")
    router.add_api_route(
        "/resources/{model}/{id}", update_resource, methods=["PATCH"], summary="Update a record", openapi_extra=_BODY
    )
    router.add_api_route("/resources/{model}/{id}", delete_resource, methods=["DELETE"], summary="Delete a record")
    fields_router = APIRouter(tags=["fields"])
    fields_router.add_api_route("/fields/{model}", list_fields, methods=["GET"], summary="List field definitions")
    fields_router.add_api_route("/fields/{model}", create_field, methods=["POST"], summary="Create a custom field")
    router.include_router(fields_router)
    return router
