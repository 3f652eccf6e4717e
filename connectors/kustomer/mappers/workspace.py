"""``genericWorkspace`` <-> Kustomer team (``/v1/teams``, kustomer-api.md §2.6).

Rules:

* ``name`` (required), ``display_name`` <-> ``displayName``.
* ``members`` (user ids in ``attributes.members``, or the ``members`` relationship) <-> a list of
  ``genericUser`` references; written as ``members: [ids]``.
* Kustomer teams have no custom attributes: ``custom_fields`` is always empty on read, and writing a
  non-empty ``custom_fields`` is a :class:`~connectors.errors.MappingError`.
"""

from __future__ import annotations

from typing import Any

from connectors.kustomer.mappers._common import (
    KustomerMapper,
    Sources,
    View,
    check_no_custom_fields,
    id_list,
    put_fields,
    ref_ids,
    relationship_ids,
)
from connectors.mapping import MappingContext
from unified_models import Workspace

__all__ = ["WorkspaceMapper"]

MODEL = "genericWorkspace"
_PLAIN = {"name": "name", "display_name": "displayName"}


class WorkspaceMapper(KustomerMapper[Workspace]):
    """Maps Kustomer teams to ``genericWorkspace`` and back."""

    model = MODEL
    unified_type = Workspace

    def read(self, view: View, context: MappingContext, sources: Sources) -> dict[str, Any]:
        """Read a team's fields (see the module docstring)."""
        a = view.attributes
        ids = id_list(a, "members", MODEL)
        if ids is None:
            ids = relationship_ids(view, "members", MODEL) or []
        return {
            "name": a.get("name"),
            "display_name": a.get("displayName"),
            "members": [{"model": "genericUser", "id": member} for member in ids],
        }

    def write(self, obj: Workspace, fields: set[str], current: View | None, context: MappingContext) -> dict[str, Any]:
        """Build a team create/update body (see the module docstring)."""
        check_no_custom_fields(obj, fields, MODEL, "teams")
        body: dict[str, Any] = {}
        put_fields(body, obj, fields, _PLAIN)
        if "members" in fields:
            body["members"] = ref_ids(obj.members)
        return body
