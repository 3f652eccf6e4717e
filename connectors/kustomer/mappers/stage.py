"""``crmStage`` <-> KObject of the stage Klass (default ``crm-stage``).

Rules (see :mod:`._kobject` and :mod:`connectors.kustomer.klasses`): ``name`` <-> ``title``; ``type`` <->
``typeStr`` (open/won/lost/unknown; required), ``order`` <-> ``orderNum`` (a non-negative integer),
``probability`` <-> ``probabilityNum``, ``pipeline`` <-> ``pipelineId``. The KObject ``description`` has
no unified field and stays in ``raw``. Other custom attributes <-> ``custom_fields``.
"""

from __future__ import annotations

from connectors.kustomer.mappers._kobject import CrmKObjectMapper
from unified_models import Stage

__all__ = ["StageMapper"]


class StageMapper(CrmKObjectMapper[Stage]):
    """Maps stage KObjects to ``crmStage`` and back."""

    model = "crmStage"
    unified_type = Stage
