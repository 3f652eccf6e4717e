"""FastAPI routes serving command runs and app-definition registration (mounted by the sandbox)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from connectors.errors import CommandDefinitionError, CommandError
from connectors.kustomer.commands._models import definition_errors
from connectors.kustomer.commands._runner import DEFAULT_ORG, CommandRunner, CommandRunRequest

__all__ = ["DEFAULT_REGISTER_PATH", "OrgResolver", "commands_router", "request_state_org"]

DEFAULT_REGISTER_PATH = "/v1/apps/available"
"""Where app definitions are registered by default: Kustomer's own path for registering a (private) app."""

OrgResolver = Callable[[Request], str | Awaitable[str]]


def request_state_org(request: Request) -> str:
    """Default org resolver: ``request.state.org_id`` (set by the host's auth layer), else ``default``.

    Args:
        request: the incoming request.

    Returns:
        The org id.
    """
    org_id = getattr(request.state, "org_id", None)
    return org_id if isinstance(org_id, str) and org_id else DEFAULT_ORG


def _error_response(status: int, code: str, problems: Sequence[tuple[str, str | None]]) -> JSONResponse:
    """A Kustomer-style error body: ``{"errors": [{status, code, title, source.pointer?}]}``."""
    errors: list[dict[str, Any]] = []
    for title, path in problems:
        error: dict[str, Any] = {"status": str(status), "code": code, "title": title}
        if path is not None:
            error["source"] = {"pointer": "" if path == "(root)" else f"/{path}"}
        errors.append(error)
    return JSONResponse({"errors": errors}, status_code=status)


async def _json_body(request: Request) -> tuple[Any, JSONResponse | None]:
    raw = await request.body()
    if not raw.strip():
        return None, None
    try:
        return json.loads(raw), None
    except ValueError:
        return None, _error_response(400, "bad_request", [("the request body is not valid JSON", None)])


def commands_router(
    runner: CommandRunner,
    *,
    org_resolver: OrgResolver = request_state_org,
    register_path: str | None = DEFAULT_REGISTER_PATH,
) -> APIRouter:
    """Build the routes for command runs and app-definition registration.

    Routes:

    * ``POST /v1/commands/{name}/run`` with ``{"body", "headers", "args"}`` (``urlArgs`` accepted): 200 with
      the :class:`CommandResult` JSON; 502 with the same JSON plus ``errors`` when the target failed and no
      cached value could be served; 404 for an unknown command; 400 when the run is refused.
    * ``POST {register_path}`` with an app definition: 201 ``{"data": {"type": "app", "id", "attributes"}}``;
      400 listing every problem, each with ``source.pointer`` (e.g. ``/commands/0/cacheSeconds``).

    Args:
        runner: the runner (its registry provider, settings, cache and audit sink serve every request).
        org_resolver: returns the org id of a request (sync or async).
        register_path: path of the registration route; None leaves it out (when the host serves it).

    Returns:
        A router for ``app.include_router(...)``.
    """
    router = APIRouter(tags=["commands"])

    async def resolve_org(request: Request) -> str:
        org_id = org_resolver(request)
        return await org_id if inspect.isawaitable(org_id) else org_id

    @router.post("/v1/commands/{name}/run")
    async def run_command(name: str, request: Request) -> JSONResponse:
        org_id = await resolve_org(request)
        payload, error = await _json_body(request)
        if error is not None:
            return error
        try:
            run = CommandRunRequest.model_validate(payload if payload is not None else {})
        except ValidationError as exc:
            problems = [
                (str(item["msg"]), "/".join(str(part) for part in item["loc"]) or None)
                for item in exc.errors(include_url=False, include_input=False)
            ]
            return _error_response(400, "bad_request", problems)
        if runner.registry_for(org_id).find(name) is None:
            return _error_response(404, "not_found", [(f"unknown command {name!r}", None)])
        try:
            result = await runner.run(name, org_id=org_id, body=run.body, headers=run.headers, args=run.args)
        except CommandError as exc:
            return _error_response(400, exc.code, [(exc.message, None)])
        content = result.to_json()
        if result.ok:
            return JSONResponse(content)
        content["errors"] = [{"status": "502", "code": "command_target_error", "title": result.error}]
        return JSONResponse(content, status_code=502)

    if register_path is not None:

        @router.post(register_path, status_code=201)
        async def register_app(request: Request) -> JSONResponse:
            org_id = await resolve_org(request)
            payload, error = await _json_body(request)
            if error is not None:
                return error
            try:
                app = runner.registry_for(org_id).register(payload)
            except CommandDefinitionError as exc:
                errors = definition_errors(payload) or [exc]
                problems = [(item.message.removeprefix(f"{item.path}: "), item.path) for item in errors]
                return _error_response(400, CommandDefinitionError.code, problems)
            attributes = app.model_dump(mode="json", by_alias=True, exclude_none=True)
            return JSONResponse({"data": {"type": "app", "id": app.app, "attributes": attributes}}, status_code=201)

    return router
