"""``crmOpportunity`` <-> KObject of the opportunity Klass (default ``crm-opportunity``).

Rules (see :mod:`._kobject` and :mod:`connectors.kustomer.klasses`): ``name`` <-> ``title``,
``description`` <-> ``description``; ``amount`` <-> ``amountNum``, ``currency`` <-> ``currencyStr``,
``status`` <-> ``statusStr`` (open/won/lost), ``close_date`` <-> ``closeDateAt`` (read as the UTC date of
the timestamp, written as midnight UTC), ``probability`` <-> ``probabilityNum``, ``stage`` <-> ``stageId``,
``pipeline`` <-> ``pipelineId``, ``owner`` <-> ``ownerId``, ``contacts``/``companies``/``engagements`` <->
``contactsId``/``companiesId``/``engagementsId`` (lists of ids; engagements must be conversations: note
engagements cannot be referenced by an ``Id`` attribute and are refused with a MappingError). Other custom
attributes <-> ``custom_fields``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from connectors.kustomer.mappers._kobject import CrmKObjectMapper
from unified_models import Opportunity

__all__ = ["OpportunityMapper"]


def _to_date(value: Any) -> Any:
    return value.date() if isinstance(value, datetime) else value


class OpportunityMapper(CrmKObjectMapper[Opportunity]):
    """Maps opportunity KObjects to ``crmOpportunity`` and back."""

    model = "crmOpportunity"
    unified_type = Opportunity
    read_converters: ClassVar = {"close_date": _to_date}
