"""``genericUser`` <-> Kustomer user (``/v1/users``, kustomer-api.md §2.6).

Rules:

* ``name`` is split into ``first_name`` / ``last_name`` and composed back exactly as for contacts
  (partial updates take the other half from ``context.current``).
* ``display_name`` <-> ``displayName``, ``email``, ``user_type`` <-> ``userType``; ``roles`` is read-only
  (read from ``roles``, never written).
* Kustomer users have no custom attributes: ``custom_fields`` is always empty on read, and writing a
  non-empty ``custom_fields`` is a :class:`~connectors.errors.MappingError` ("users have no custom
  attributes").
"""

from __future__ import annotations

from typing import Any, ClassVar

from connectors.kustomer.mappers._common import (
    KustomerMapper,
    Sources,
    View,
    check_no_custom_fields,
    opt_str,
    put_fields,
    split_name,
    write_name,
)
from connectors.mapping import MappingContext
from unified_models import User

__all__ = ["UserMapper"]

MODEL = "genericUser"
_PLAIN = {"email": "email", "display_name": "displayName", "user_type": "userType"}


class UserMapper(KustomerMapper[User]):
    """Maps Kustomer users to ``genericUser`` and back."""

    model = MODEL
    unified_type = User
    field_paths: ClassVar = {"first_name": "attributes.name", "last_name": "attributes.name"}

    def read(self, view: View, context: MappingContext, sources: Sources) -> dict[str, Any]:
        """Read a user's fields (see the module docstring)."""
        a = view.attributes
        first, last = split_name(opt_str(a, "name", MODEL))
        return {
            "first_name": first,
            "last_name": last,
            "email": a.get("email") or None,
            "display_name": a.get("displayName"),
            "user_type": a.get("userType"),
            "roles": a.get("roles") or [],
        }

    def write(self, obj: User, fields: set[str], current: View | None, context: MappingContext) -> dict[str, Any]:
        """Build a user create/update body (see the module docstring)."""
        check_no_custom_fields(obj, fields, MODEL, "users")
        body: dict[str, Any] = {}
        if "first_name" in fields or "last_name" in fields:
            current_name = opt_str(current.attributes, "name", MODEL) if current is not None else None
            body["name"] = write_name(obj.first_name, obj.last_name, fields, current_name)
        put_fields(body, obj, fields, _PLAIN)
        return body
