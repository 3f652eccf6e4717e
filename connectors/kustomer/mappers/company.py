"""``genericCompany`` <-> Kustomer company (``/v1/companies``, kustomer-api.md §3.5).

Rules:

* ``name`` (required by both sides), ``external_id`` <-> ``externalId``, ``employee_count`` <->
  ``employeeCount``, ``tags``.
* ``domains[{domain}]`` <-> a list of strings (bare strings in ``domains`` are accepted on read; entries
  without a domain are skipped).
* ``emails``/``phones`` as for contacts (a company has no primary ``email``/``phone`` field).
* custom attributes <-> ``custom_fields`` (coerced by suffix, see :mod:`._common`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.errors import MappingError
from connectors.kustomer.mappers._common import (
    KustomerMapper,
    Sources,
    View,
    opt_list,
    put_fields,
    read_custom,
    read_points,
    write_custom,
    write_points,
)
from connectors.mapping import MappingContext
from unified_models import Company

__all__ = ["CompanyMapper"]

MODEL = "genericCompany"
_PLAIN = {"name": "name", "external_id": "externalId", "employee_count": "employeeCount", "tags": "tags"}


class CompanyMapper(KustomerMapper[Company]):
    """Maps Kustomer companies to ``genericCompany`` and back."""

    model = MODEL
    unified_type = Company

    def read(self, view: View, context: MappingContext, sources: Sources) -> dict[str, Any]:
        """Read a company's fields (see the module docstring)."""
        a = view.attributes
        emails, sources["emails"] = read_points(a, "email", "emails", MODEL)
        phones, sources["phones"] = read_points(a, "phone", "phones", MODEL)
        domains: list[str] = []
        paths: list[str] = []
        for index, entry in enumerate(opt_list(a, "domains", MODEL)):
            domain = entry.get("domain") if isinstance(entry, Mapping) else entry
            if domain is None or domain == "":
                continue
            if not isinstance(domain, str):
                raise MappingError(
                    f"expected a domain object or string, got {type(domain).__name__}",
                    model=MODEL,
                    field=f"attributes.domains.{index}",
                )
            domains.append(domain)
            paths.append(f"attributes.domains.{index}")
        sources["domains"] = paths
        return {
            "name": a.get("name"),
            "domains": domains,
            "external_id": a.get("externalId"),
            "emails": emails,
            "phones": phones,
            "employee_count": a.get("employeeCount"),
            "tags": a.get("tags") or [],
            "custom_fields": read_custom(a, context.field_mapping, MODEL),
        }

    def write(self, obj: Company, fields: set[str], current: View | None, context: MappingContext) -> dict[str, Any]:
        """Build a company create/update body (see the module docstring)."""
        body: dict[str, Any] = {}
        put_fields(body, obj, fields, _PLAIN)
        if "domains" in fields:
            body["domains"] = [{"domain": domain} for domain in obj.domains or ()]
        for list_field, key in (("emails", "email"), ("phones", "phone")):
            points = write_points(obj, fields, list_field=list_field, single_field=None, key=key, current=None)
            if points is not None:
                body[list_field] = points
        if "custom_fields" in fields and obj.custom_fields:
            body["custom"] = write_custom(obj.custom_fields, context.field_mapping, MODEL)
        return body
