"""``custom:<klass>`` <-> KObject of the Klass ``<klass>`` (:class:`~unified_models.CustomObject`).

Rules:

* ``object_type`` is the Klass name, taken from ``context.model`` (``custom:<klass>``) on read; it is the
  URL of the KObject, never written in a body.
* ``title`` <-> ``title`` (required by Kustomer: creating without one or clearing it is a
  ``MappingError``), ``description``, ``external_id`` <-> ``externalId``, ``tags``.
* ``contact`` <-> the ``customer`` relationship (or a string ``attributes.customer``) as a
  ``genericContact`` reference; ``company`` <-> the ``company`` relationship, likewise.
* every custom attribute <-> ``custom_fields`` (coerced by suffix, see :mod:`._common`).
"""

from __future__ import annotations

from typing import Any

from connectors.errors import MappingError
from connectors.kustomer.mappers._common import (
    KustomerMapper,
    Sources,
    View,
    linked_id,
    put_fields,
    read_custom,
    ref,
    ref_id,
    write_custom,
)
from connectors.kustomer.mappers._kobject import write_title
from connectors.mapping import MappingContext
from unified_models import CUSTOM_PREFIX, CustomObject

__all__ = ["CustomObjectMapper"]

_PLAIN = {"description": "description", "external_id": "externalId", "tags": "tags"}


class CustomObjectMapper(KustomerMapper[CustomObject]):
    """Maps KObjects of any Klass to ``custom:<klass>`` objects and back."""

    model = "custom"
    unified_type = CustomObject

    def read(self, view: View, context: MappingContext, sources: Sources) -> dict[str, Any]:
        """Read a KObject's fields (see the module docstring)."""
        model = context.model
        if not model.startswith(CUSTOM_PREFIX) or len(model) == len(CUSTOM_PREFIX):
            raise MappingError(
                f"the mapping context's model must be 'custom:<klass>', not {model!r}",
                model=self.model,
                field="objectType",
            )
        a = view.attributes
        contact, sources["contact"] = linked_id(view, "customer", model)
        company, sources["company"] = linked_id(view, "company", model)
        return {
            "object_type": model[len(CUSTOM_PREFIX) :],
            "title": a.get("title"),
            "description": a.get("description"),
            "external_id": a.get("externalId"),
            "contact": ref("genericContact", contact),
            "company": ref("genericCompany", company),
            "tags": a.get("tags") or [],
            "custom_fields": read_custom(a, context.field_mapping, model),
        }

    def write(
        self, obj: CustomObject, fields: set[str], current: View | None, context: MappingContext
    ) -> dict[str, Any]:
        """Build a KObject create/update body (see the module docstring)."""
        body: dict[str, Any] = {}
        write_title(body, obj.title, "title" in fields, current is None, context.model, "title")
        put_fields(body, obj, fields, _PLAIN)
        if "contact" in fields:
            body["customer"] = ref_id(obj.contact)
        if "company" in fields:
            body["company"] = ref_id(obj.company)
        if "custom_fields" in fields and obj.custom_fields:
            body["custom"] = write_custom(obj.custom_fields, context.field_mapping, context.model)
        return body
