"""Which Kustomer roles each operation needs.

Kustomer accepts, per endpoint, any one of several roles: a permission-set role
(``org.permission.customer.read``) or a legacy one (``org.user.customer.read``). Each requirement below
lists those alternatives, preferred first; the preferred ones are what an OAuth connection requests and
what ``connectors connections roles`` tells you to grant an API key (the way Hightouch's setup page lists
the roles to give its key). Sources: kustomer-api.md §1.4 and Appendix A (SPEC role tables).

Roles for users and teams are not documented by Kustomer's published spec (UNCONFIRMED); the names below
follow the documented pattern and can be overridden per deployment with the ``role_overrides`` connector
setting (``{"genericUser::list": [["org.user.read"]]}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from connectors.runtime.connector import Operation, RoleChoice

__all__ = ["KUSTOMER_OPERATIONS", "OFFLINE_ACCESS", "SEARCH", "outbound_webhook", "perm"]

OFFLINE_ACCESS: Final = "offline_access"
"""The OAuth scope that makes Kustomer return a refresh token (UNCONFIRMED; configurable)."""


def perm(obj: str, action: str) -> RoleChoice:
    """The alternatives Kustomer accepts for ``action`` on ``obj``.

    ``action`` is one of ``read``, ``create``, ``update``, ``delete``. Legacy roles fold create/update into
    ``write``; objects administered by admins (klass, metadata, hook, brand) use ``org.admin.*``.
    """
    legacy_action = {"read": "read", "create": "write", "update": "write", "delete": "delete"}[action]
    admin_objects = {"klass", "metadata", "hook", "team", "user", "brand"}
    choices = [f"org.permission.{obj}.{action}"]
    if obj in admin_objects:
        choices.append(f"org.admin.{obj}.{'write' if legacy_action != 'read' else 'read'}")
    choices.append(f"org.user.{obj}.{legacy_action}")
    return tuple(dict.fromkeys(choices))


SEARCH: Final[RoleChoice] = ("org.permission.search.create", "org.user.search.read", "org.admin.search.read")
METADATA_READ: Final[RoleChoice] = ("org.permission.metadata.read", "org.user.metadata.read", "org.admin.metadata.read")
METADATA_WRITE: Final[RoleChoice] = ("org.permission.metadata.update", "org.admin.metadata.write")
KLASS_READ: Final[RoleChoice] = ("org.permission.klass.read", "org.user.klass.read", "org.admin.klass.read")
BULK_READ: Final[RoleChoice] = ("org.permission.bulk.read", "org.user.bulk.read")


def outbound_webhook(action: str) -> RoleChoice:
    """Outbound-webhook roles: permission set, or the legacy ``org.admin.outbound_webhooks``."""
    return (f"org.permission.outbound_webhook.{action}", "org.admin.outbound_webhooks", "org.outbound_webhooks")


def _crud(model: str, obj: str, *, search: bool, list_extra: tuple[RoleChoice, ...] = ()) -> dict[str, Operation]:
    list_requires = (perm(obj, "read"), *list_extra, *((SEARCH,) if search else ()))
    ops = {
        "list": Operation(f"{model}::list", list_requires, f"List and search {model}"),
        "retrieve": Operation(f"{model}::retrieve", (perm(obj, "read"), *list_extra), f"Retrieve one {model}"),
        "create": Operation(f"{model}::create", (perm(obj, "create"),), f"Create a {model}"),
        "update": Operation(f"{model}::update", (perm(obj, "update"),), f"Update a {model}"),
        "delete": Operation(f"{model}::delete", (perm(obj, "delete"),), f"Delete a {model}"),
        "fieldRead": Operation(f"{model}::fieldRead", (METADATA_READ,), f"Read {model} field definitions"),
        "fieldWrite": Operation(
            f"{model}::fieldWrite", (METADATA_READ, METADATA_WRITE), f"Create {model} custom fields"
        ),
    }
    return {op.name: op for op in ops.values()}


def _kobject(model: str) -> dict[str, Operation]:
    ops = _crud(model, "kobject", search=True, list_extra=(KLASS_READ,))
    ops[f"{model}::fieldRead"] = Operation(f"{model}::fieldRead", (METADATA_READ, KLASS_READ), "Read fields")
    return ops


def _build() -> dict[str, Operation]:
    ops: dict[str, Operation] = {}
    ops |= _crud("genericContact", "customer", search=True)
    company = _crud("genericCompany", "company", search=True)
    company["genericCompany::delete"] = Operation(
        "genericCompany::delete",
        (perm("company", "delete"),),
        "Delete a company (Kustomer's public API has no company delete endpoint)",
    )
    ops |= company
    ops |= _crud("genericUser", "user", search=False)
    ops |= _crud("genericWorkspace", "team", search=False)
    for model in ("crmOpportunity", "crmPipeline", "crmStage"):
        ops |= _kobject(model)
    engagement = _crud(
        "crmEngagement", "conversation", search=True, list_extra=(perm("note", "read"), perm("message", "read"))
    )
    engagement["crmEngagement::create"] = Operation(
        "crmEngagement::create",
        (perm("conversation", "create"), perm("note", "create"), perm("message", "create")),
        "Create an engagement (a conversation, or a note for type=note)",
    )
    engagement["crmEngagement::update"] = Operation(
        "crmEngagement::update", (perm("conversation", "update"), perm("note", "update")), "Update an engagement"
    )
    engagement["crmEngagement::delete"] = Operation(
        "crmEngagement::delete", (perm("conversation", "delete"), perm("note", "delete")), "Delete an engagement"
    )
    ops |= engagement
    # Custom objects (resources("custom:<klass>")) share the KObject roles.
    ops |= _kobject("custom")
    extra = [
        Operation("whoami", (), "Identify the org and user behind the credential (any valid token)"),
        Operation("proxy", (), "Raw passthrough; the endpoint called decides the roles (403 is reported)"),
        Operation("bulk::read", (BULK_READ,), "Poll bulk jobs (bulk sync push)"),
        Operation(
            "webhooks::subscribe",
            (
                outbound_webhook("read"),
                outbound_webhook("create"),
                outbound_webhook("update"),
                outbound_webhook("delete"),
            ),
            "Create, reuse or extend Kustomer outbound webhooks (moving a webhook's URL deletes the old one)",
        ),
        Operation("webhooks::unsubscribe", (outbound_webhook("delete"),), "Delete outbound webhooks"),
        Operation("hooks::send", (("org.hooks",),), "Post to a Kustomer inbound web hook"),
        Operation(
            "klasses::provision",
            (KLASS_READ, perm("klass", "create"), METADATA_READ, METADATA_WRITE),
            "Create the CRM Klasses and their attributes",
        ),
        Operation("commands::run", (("org.permission.apps.read", "org.user.apps.read"),), "Run app commands"),
    ]
    ops |= {op.name: op for op in extra}
    return ops


KUSTOMER_OPERATIONS: Final[Mapping[str, Operation]] = MappingProxyType(_build())
"""Every Kustomer operation by name."""
