"""Example plugin: replace the built-in Kustomer mapper of one model.

This one maps a Kustomer customer's ``displayName`` into ``first_name`` (an org that stores display names
only), delegating everything else to the built-in mapper.
"""

from __future__ import annotations

from typing import Any

from connectors import hookimpl
from connectors.kustomer.mappers import MAPPERS
from connectors.mapping import MappingContext
from unified_models import UnifiedResource

_BUILTIN = next(m for m in MAPPERS if m.model == "genericContact")


class DisplayNameContactMapper:
    model = "genericContact"

    def to_unified(self, resource: Any, context: MappingContext) -> UnifiedResource:
        contact = _BUILTIN.to_unified(resource, context)
        attrs = resource.get("attributes", {}) if isinstance(resource, dict) else {}
        display = attrs.get("displayName")
        return contact.model_copy(update={"first_name": display}) if display else contact

    def to_provider(self, obj: UnifiedResource, context: MappingContext) -> dict[str, Any]:
        return _BUILTIN.to_provider(obj, context)


@hookimpl
def register_mappers(register: Any) -> None:
    register("kustomer", "genericContact", DisplayNameContactMapper(), replace=True)
