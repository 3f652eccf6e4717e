"""``genericContact`` <-> Kustomer customer (``/v1/customers``, kustomer-api.md §3.4).

Rules:

* ``name`` is split on its first whitespace into ``first_name`` / ``last_name`` (no whitespace: first name
  only). Writes compose ``name`` from first + last; when only one of them is written, the other is taken
  from ``context.current`` (the customer before the update), so a partial update never loses half the
  name.
* ``emails[{type, email, verified}]`` <-> ``emails[{type, value}]``; ``email`` is the first entry. Written
  alone, ``email`` replaces the first entry of the current list and keeps the others (see
  :func:`~connectors.kustomer.mappers._common.write_points`). The same for ``phones[{type, phone}]`` /
  ``phone``. Entries without a value are skipped on read; ``verified`` is kept in ``raw`` only.
* ``company`` <-> the ``company`` relationship (``relationships.company.data.id``, or a string
  ``attributes.company``) as a ``genericCompany`` reference. **On an update (``context.current`` given)
  the current company id is written even when ``company`` is not**: Kustomer unlinks the company when it
  is omitted from an update (kustomer-api.md §2.1).
* ``external_id`` <-> ``externalId``, ``tags``, ``locale``, ``time_zone`` <-> ``timeZone``; custom
  attributes <-> ``custom_fields`` (coerced by suffix, see :mod:`._common`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from connectors.kustomer.mappers._common import (
    KustomerMapper,
    Sources,
    View,
    linked_id,
    opt_str,
    put_fields,
    read_custom,
    read_points,
    split_name,
    write_custom,
    write_name,
    write_points,
)
from connectors.mapping import MappingContext
from unified_models import Contact

__all__ = ["ContactMapper"]

MODEL = "genericContact"
_PLAIN = {"external_id": "externalId", "tags": "tags", "locale": "locale", "time_zone": "timeZone"}


class ContactMapper(KustomerMapper[Contact]):
    """Maps Kustomer customers to ``genericContact`` and back."""

    model = MODEL
    unified_type = Contact
    field_paths: ClassVar = {
        "first_name": "attributes.name",
        "last_name": "attributes.name",
        "custom_fields": "attributes.custom",
    }

    def read(self, view: View, context: MappingContext, sources: Sources) -> dict[str, Any]:
        """Read a customer's fields (see the module docstring)."""
        a = view.attributes
        first, last = split_name(opt_str(a, "name", MODEL))
        emails, sources["emails"] = read_points(a, "email", "emails", MODEL)
        phones, sources["phones"] = read_points(a, "phone", "phones", MODEL)
        company, sources["company"] = linked_id(view, "company", MODEL)
        if emails:
            sources["email"] = sources["emails"][0]
        if phones:
            sources["phone"] = sources["phones"][0]
        return {
            "first_name": first,
            "last_name": last,
            "email": emails[0]["value"] if emails else None,
            "phone": phones[0]["value"] if phones else None,
            "emails": emails,
            "phones": phones,
            "company": {"model": "genericCompany", "id": company} if company else None,
            "external_id": a.get("externalId"),
            "tags": a.get("tags") or [],
            "locale": a.get("locale"),
            "time_zone": a.get("timeZone"),
            "custom_fields": read_custom(a, context.field_mapping, MODEL),
        }

    def write(self, obj: Contact, fields: set[str], current: View | None, context: MappingContext) -> dict[str, Any]:
        """Build a customer create/update body (see the module docstring)."""
        body: dict[str, Any] = {}
        cur = current.attributes if current is not None else None
        if "first_name" in fields or "last_name" in fields:
            current_name = opt_str(cur, "name", MODEL) if cur is not None else None
            body["name"] = write_name(obj.first_name, obj.last_name, fields, current_name)
        emails = write_points(obj, fields, list_field="emails", single_field="email", key="email", current=cur)
        if emails is not None:
            body["emails"] = emails
        phones = write_points(obj, fields, list_field="phones", single_field="phone", key="phone", current=cur)
        if phones is not None:
            body["phones"] = phones
        if "company" in fields:
            body["company"] = obj.company.id if obj.company is not None else None
        elif current is not None:
            kept, _ = linked_id(current, "company", MODEL)
            if kept:
                body["company"] = kept
        put_fields(body, obj, fields, _PLAIN)
        if "custom_fields" in fields and obj.custom_fields:
            body["custom"] = write_custom(obj.custom_fields, context.field_mapping, MODEL)
        return body
