"""Apps Platform commands in the sandbox: ``POST /v1/commands/{name}/run`` and app registration.

The command runner of :mod:`connectors.kustomer.commands` serves the routes; this module adapts it to the
sandbox's state, so app definitions and app settings live in one place whichever route set them:

* app definitions: ``POST /v1/apps/available`` (validated) or ``PUT /sandbox/apps/{app}``;
* app settings (secrets such as ``<app>.default.authToken``): ``PUT /sandbox/app-settings``.

Runs need the role ``org.permission.apps.read`` (or ``org.user.apps.read``), like other app endpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request

from connectors.kustomer.commands import AppDefinition, CommandRegistry, CommandRunner, commands_router
from connectors.kustomer.sandbox.routes.common import authorize, get_principal

if TYPE_CHECKING:
    from connectors.kustomer.sandbox.app import Sandbox

__all__ = ["build_commands_router"]


class _StateSettings:
    """App settings read from the sandbox state (never copied elsewhere)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def __repr__(self) -> str:
        return "SandboxAppSettings(values='***')"

    async def get_setting(self, org_id: str, key: str) -> str | None:
        return self._sandbox.state.app_settings.get(org_id, {}).get(key)


class _StateRegistry(CommandRegistry):
    """A registry built from the sandbox's app definitions; registering writes back to the state."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        super().__init__(sandbox.state.app_definitions.values())

    def register(self, definition: Any) -> AppDefinition:
        app = super().register(definition)
        dumped = app.model_dump(mode="json", by_alias=True, exclude_none=True)
        self._sandbox.state.app_definitions[app.app] = dumped
        return app


def build_commands_router(sandbox: Sandbox) -> APIRouter:
    """The command routes, bound to ``sandbox``'s state and auth."""
    runner = CommandRunner(registries=lambda _org: _StateRegistry(sandbox), settings=_StateSettings(sandbox))

    def org_of(request: Request) -> str:
        return get_principal(request).org_id

    def require_apps(request: Request) -> None:
        authorize(request, "apps.read")

    router = APIRouter(dependencies=[Depends(require_apps)])
    router.include_router(commands_router(runner, org_resolver=org_of))
    return router
