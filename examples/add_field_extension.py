"""Example plugin: add a field to a mapping without replacing the mapper.

Copies Kustomer's response-only ``conversationCounts.open`` into ``custom_fields["openConversations"]`` on
every contact that is read.
"""

from __future__ import annotations

from typing import Any

from connectors import MappingExtension, hookimpl
from connectors.mapping import MappingContext
from unified_models import UnifiedResource


class OpenConversations(MappingExtension):
    def after_to_unified(self, obj: UnifiedResource, resource: Any, context: MappingContext) -> UnifiedResource:
        attrs = resource.get("attributes", {}) if isinstance(resource, dict) else {}
        counts = attrs.get("conversationCounts") or {}
        if "open" in counts:
            return obj.model_copy(update={"custom_fields": {**obj.custom_fields, "openConversations": counts["open"]}})
        return obj


@hookimpl
def register_mapping_extensions(register: Any) -> None:
    register("kustomer", "genericContact", OpenConversations())
