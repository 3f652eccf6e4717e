"""A faithful local emulator of the Kustomer REST API (like stripe-mock or moto, for Kustomer).

In process::

    from connectors.kustomer.sandbox import Sandbox, SandboxSettings

    sb = Sandbox(SandboxSettings(seed=42, customers=200))
    token = sb.mint_api_key(roles=["org.permission.customer.read"])
    async with httpx.AsyncClient(transport=sb.transport(), base_url=sb.base_url,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        page = (await client.get("/v1/customers", params={"pageSize": 50})).json()

Over HTTP: ``serve(settings, port=8900)`` (what ``connectors sandbox`` runs), or in tests
``with running_sandbox(settings) as (sb, base_url): ...``.

What is emulated, and every choice made where Kustomer's behaviour is unconfirmed, is documented in the
modules: :mod:`.resources` (write semantics), :mod:`.search`, :mod:`.bulk`, :mod:`.auth`, :mod:`.oauth`,
:mod:`.ratelimit`, :mod:`.faults`, :mod:`.webhooks`, :mod:`.hooks`, :mod:`.middleware`, :mod:`.errors`,
:mod:`.routes.admin` (``/sandbox`` admin routes) and :mod:`.settings`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.kustomer.sandbox.app import DEFAULT_BASE_URL, Sandbox, create_app
    from connectors.kustomer.sandbox.auth import DEFAULT_DEMO_ROLES, Principal
    from connectors.kustomer.sandbox.errors import SandboxError
    from connectors.kustomer.sandbox.server import running_sandbox, serve
    from connectors.kustomer.sandbox.settings import SandboxSettings
    from connectors.kustomer.sandbox.store import SandboxState
    from connectors.kustomer.sandbox.webhooks import sign as webhook_signature

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_DEMO_ROLES",
    "Principal",
    "Sandbox",
    "SandboxError",
    "SandboxSettings",
    "SandboxState",
    "create_app",
    "running_sandbox",
    "serve",
    "webhook_signature",
]

# Importing the package is cheap: the FastAPI app and friends load on first use of a name.
_LAZY: dict[str, tuple[str, str]] = {
    "DEFAULT_BASE_URL": ("app", "DEFAULT_BASE_URL"),
    "Sandbox": ("app", "Sandbox"),
    "create_app": ("app", "create_app"),
    "DEFAULT_DEMO_ROLES": ("auth", "DEFAULT_DEMO_ROLES"),
    "Principal": ("auth", "Principal"),
    "SandboxError": ("errors", "SandboxError"),
    "running_sandbox": ("server", "running_sandbox"),
    "serve": ("server", "serve"),
    "SandboxSettings": ("settings", "SandboxSettings"),
    "SandboxState": ("store", "SandboxState"),
    "webhook_signature": ("webhooks", "sign"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
