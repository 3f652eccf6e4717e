"""Klasses, KObjects and custom-attribute metadata (kustomer-api.md §2.7).

``/v1/klasses/{x}`` is overloaded as in Kustomer: Klass-level routes (``GET/PUT/DELETE``) address a Klass by
its 24-hex id, KObject routes address the Klass by **name** (``GET/POST /v1/klasses/{name}``,
``GET/PUT/DELETE /v1/klasses/{name}/{id}``, ``GET /v1/klasses/{name}/externalId={externalId}``). A ``GET``
of a 24-hex ``x`` that is the id of a Klass returns that Klass; otherwise ``x`` is a Klass name and the
answer is its KObjects.

Metadata resources: ``customer``, ``company``, ``conversation``, ``message``, ``note``, ``user``, ``team``
and ``kobject_<klassName>`` (the Klass must exist). ``PUT`` merges ``properties`` by attribute name
(``null`` removes one); names must carry a valid type suffix; ``type`` defaults to the lower-cased suffix and
must match it; ``Id`` attributes need a ``target`` (a resource name above, or a Klass name); ``enumeration``
is only allowed on ``Str`` (and is then enforced on writes). A name's type cannot change once defined.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from connectors.kustomer.custom_fields import CustomAttributeError, is_object_id, parse_attribute_name
from connectors.kustomer.sandbox.bodies import MetadataBody
from connectors.kustomer.sandbox.envelopes import single
from connectors.kustomer.sandbox.errors import SandboxError
from connectors.kustomer.sandbox.resources import dump_provided, validation_error
from connectors.kustomer.sandbox.routes.common import (
    authorize,
    get_sandbox,
    json_body,
    path_value,
    write_context,
)
from connectors.kustomer.sandbox.routes.crud import Crud, list_response
from connectors.kustomer.sandbox.store import Record

__all__ = ["METADATA_RESOURCES", "build_router", "kobject_create", "kobject_list_for"]

KLASSES = Crud("klass", "/v1/klasses", "klass")
METADATA_RESOURCES = ("customer", "company", "conversation", "message", "note", "user", "team")


def _klass(request: Request, name: str | None = None) -> Record:
    sb = get_sandbox(request)
    name = name or request.path_params["name"]
    klass = sb.state.klass_by_name(name)
    if klass is None:
        raise SandboxError(404, f"Klass {name!r} not found")
    return klass


def _per_klass(request: Request, action: str) -> tuple[str, ...]:
    name = request.path_params.get("name") or request.path_params.get("x")
    return (f"org.permission.kobject.kobject_{name}.{action}",)


def kobject_list_for(request: Request, rel: str, target: str) -> Response:
    """KObjects of the path's Klass linked to a customer or company."""
    sb = get_sandbox(request)
    klass = _klass(request)
    rt = sb.types["kobject"]
    subset = [r for r in rt.coll.related(rel, target) if r.rels.get("klass") == klass.id]
    return list_response(request, rt, subset=subset)


async def kobject_create(request: Request, *, forced: dict[str, Any] | None = None) -> Response:
    """Create a KObject of the Klass named in the path."""
    sb, principal = authorize(request, "kobject.create", extra=_per_klass(request, "create"))
    klass = _klass(request, request.path_params.get("name") or request.path_params.get("x"))
    if klass.attrs.get("status", "enabled") != "enabled":
        raise SandboxError(400, f"Klass {klass.attrs.get('name')!r} does not accept new objects (status)")
    rt = sb.types["kobject"]
    body = await json_body(request)
    ctx = write_context(sb, principal, forced=forced, klass=klass)
    return single(rt.render(rt.commit(rt.plan_create(body, ctx))), status=201)


async def klass_list(request: Request) -> Response:
    """``GET /v1/klasses`` (``status=enabled|existing_only|disabled``, default ``enabled``)."""
    sb, _ = authorize(request, "klass.read")
    status = request.query_params.get("status") or "enabled"
    if status not in ("enabled", "existing_only", "disabled"):
        raise SandboxError(400, '"status" must be enabled, existing_only or disabled', parameter="status")
    return list_response(request, sb.types["klass"], where=lambda r: r.attrs.get("status", "enabled") == status)


async def klass_or_kobjects(request: Request) -> Response:
    """``GET /v1/klasses/{x}``: the Klass with id ``x``, else the KObjects of the Klass named ``x``."""
    sb = get_sandbox(request)
    x = request.path_params["x"]
    if is_object_id(x) and sb.state.klasses.get(x) is not None:
        authorize(request, "klass.read")
        return single(sb.types["klass"].render(sb.state.klasses.live[x]))
    authorize(request, "kobject.list", extra=_per_klass(request, "read"))
    klass = _klass(request, x)
    rt = sb.types["kobject"]
    return list_response(request, rt, subset=rt.coll.related("klass", klass.id))


def _klass_by_id(request: Request) -> Record:
    sb = get_sandbox(request)
    x = request.path_params["x"]
    klass = sb.state.klasses.get(x) if is_object_id(x) else None
    if klass is None:
        raise SandboxError(404, f"klass {x} not found (Klass-level routes take the Klass id)")
    return klass


async def klass_update(request: Request) -> Response:
    """``PUT /v1/klasses/{id}``."""
    sb, principal = authorize(request, "klass.update")
    klass = _klass_by_id(request)
    rt = sb.types["klass"]
    body = await json_body(request)
    rt.commit(rt.plan_update(klass, body, write_context(sb, principal)))
    return single(rt.render(klass))


async def klass_delete(request: Request) -> Response:
    """``DELETE /v1/klasses/{id}``."""
    sb, principal = authorize(request, "klass.delete")
    klass = _klass_by_id(request)
    sb.types["klass"].delete(klass, write_context(sb, principal))
    return Response(status_code=204)


async def kobject_post(request: Request) -> Response:
    """``POST /v1/klasses/{name}``."""
    return await kobject_create(request)


def _kobject(request: Request, klass: Record) -> Record:
    sb = get_sandbox(request)
    record = sb.state.kobjects.get(request.path_params["id"])
    if record is None or record.rels.get("klass") != klass.id:
        raise SandboxError(404, f"kobject {request.path_params['id']} not found")
    return record


async def kobject_get(request: Request) -> Response:
    """``GET /v1/klasses/{name}/{id}``."""
    sb, _ = authorize(request, "kobject.read", extra=_per_klass(request, "read"))
    return single(sb.types["kobject"].render(_kobject(request, _klass(request))))


async def kobject_put(request: Request) -> Response:
    """``PUT /v1/klasses/{name}/{id}`` (merge; ``?replace=true`` replaces)."""
    sb, principal = authorize(request, "kobject.update", extra=_per_klass(request, "update"))
    klass = _klass(request)
    record = _kobject(request, klass)
    rt = sb.types["kobject"]
    body = await json_body(request)
    replace = request.query_params.get("replace", "").lower() == "true"
    ctx = write_context(sb, principal, klass=klass)
    rt.commit(rt.plan_update(record, body, ctx, replace=replace))
    return single(rt.render(record))


async def kobject_delete(request: Request) -> Response:
    """``DELETE /v1/klasses/{name}/{id}``."""
    sb, principal = authorize(request, "kobject.delete", extra=_per_klass(request, "delete"))
    record = _kobject(request, _klass(request))
    sb.types["kobject"].delete(record, write_context(sb, principal))
    return Response(status_code=204)


async def kobject_by_external_id(request: Request) -> Response:
    """``GET /v1/klasses/{name}/externalId={externalId}``."""
    sb, _ = authorize(request, "kobject.read", extra=_per_klass(request, "read"))
    klass = _klass(request)
    value = path_value(request)
    found = sb.state.kobjects.lookup("externalId", f"{klass.id}:{value}")
    if not found:
        raise SandboxError(404, f"No {klass.attrs.get('name')} with externalId {value!r}")
    return single(sb.types["kobject"].render(found[0]))


# -- metadata -----------------------------------------------------------------------------------------------
def _metadata_resource(request: Request) -> str:
    sb = get_sandbox(request)
    resource = str(request.path_params["resource"])
    if resource in METADATA_RESOURCES:
        return resource
    if resource.startswith("kobject_") and sb.state.klass_by_name(resource[len("kobject_") :]) is not None:
        return resource
    raise SandboxError(
        404,
        f"Unknown metadata resource {resource!r}: use one of {', '.join(METADATA_RESOURCES)} or kobject_<klass>",
    )


def _render_metadata(request: Request, resource: str) -> Response:
    sb = get_sandbox(request)
    properties = sb.state.metadata.get(resource, {})
    return single(
        {
            "type": "metadata",
            "id": resource,
            "attributes": {"properties": {k: dict(v) for k, v in properties.items()}},
            "links": {"self": f"/v1/metadata/{resource}"},
        }
    )


async def metadata_get(request: Request) -> Response:
    """``GET /v1/metadata/{resource}``."""
    authorize(request, "metadata.read")
    return _render_metadata(request, _metadata_resource(request))


def _valid_target(request: Request, target: str) -> bool:
    sb = get_sandbox(request)
    return target in METADATA_RESOURCES or sb.state.klass_by_name(target.removeprefix("kobject_")) is not None


async def metadata_put(request: Request) -> Response:
    """``PUT /v1/metadata/{resource}``: merge attribute definitions."""
    sb, _ = authorize(request, "metadata.update")
    resource = _metadata_resource(request)
    body = await json_body(request)
    try:
        parsed = MetadataBody.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
    current = {k: dict(v) for k, v in sb.state.metadata.get(resource, {}).items()}
    for name, prop in parsed.properties.items():
        pointer = f"/properties/{name}"
        if prop is None:
            current.pop(name, None)
            continue
        try:
            _, suffix = parse_attribute_name(name)
        except CustomAttributeError as exc:
            raise SandboxError(400, str(exc), pointer=pointer, meta={"attribute": name}) from None
        definition = {**current.get(name, {}), **dump_provided(prop)}
        expected = suffix.lower()
        kind = str(definition.get("type") or expected)
        if kind.lower() != expected:
            raise SandboxError(
                400,
                f"attribute {name!r}: type {kind!r} does not match its suffix {suffix!r}",
                pointer=pointer,
            )
        previous = current.get(name, {}).get("type")
        if previous and previous != expected:
            raise SandboxError(400, f"attribute {name!r}: the type of an attribute cannot change", pointer=pointer)
        definition["type"] = expected
        if suffix == "Id":
            target = definition.get("target")
            if not target or not _valid_target(request, str(target)):
                raise SandboxError(
                    400,
                    f"attribute {name!r}: Id attributes need a valid target (e.g. 'user')",
                    pointer=pointer,
                )
        if definition.get("enumeration") is not None and suffix != "Str":
            raise SandboxError(400, f"attribute {name!r}: only Str attributes take an enumeration", pointer=pointer)
        current[name] = definition
    sb.state.metadata[resource] = current
    return _render_metadata(request, resource)


def build_router() -> APIRouter:
    """Klass, KObject and metadata routes (the KObject bulk routes live in the bulk router)."""
    router = APIRouter(tags=["klasses"])
    router.add_api_route("/v1/klasses", klass_list, methods=["GET"], summary="List Klasses")
    router.add_api_route("/v1/klasses", KLASSES.create, methods=["POST"], summary="Create a Klass")
    router.add_api_route("/v1/klasses/{name}/externalId={value}", kobject_by_external_id, methods=["GET"])
    router.add_api_route("/v1/klasses/{x}", klass_or_kobjects, methods=["GET"], summary="Klass by id, or KObjects")
    router.add_api_route("/v1/klasses/{x}", klass_update, methods=["PUT"], summary="Update a Klass by id")
    router.add_api_route("/v1/klasses/{x}", klass_delete, methods=["DELETE"], summary="Delete a Klass by id")
    router.add_api_route("/v1/klasses/{x}", kobject_post, methods=["POST"], summary="Create a KObject")
    router.add_api_route("/v1/klasses/{name}/{id}", kobject_get, methods=["GET"])
    router.add_api_route("/v1/klasses/{name}/{id}", kobject_put, methods=["PUT"])
    router.add_api_route("/v1/klasses/{name}/{id}", kobject_delete, methods=["DELETE"])
    router.add_api_route("/v1/metadata/{resource}", metadata_get, methods=["GET"])
    router.add_api_route("/v1/metadata/{resource}", metadata_put, methods=["PUT"])
    return router
