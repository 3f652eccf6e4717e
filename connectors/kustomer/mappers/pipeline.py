"""``crmPipeline`` <-> KObject of the pipeline Klass (default ``crm-pipeline``).

Rules (see :mod:`._kobject` and :mod:`connectors.kustomer.klasses`): ``name`` <-> ``title``; ``stages`` <->
``stagesId`` (a list of stage KObject ids; missing reads as an empty list). The KObject ``description``
has no unified field and stays in ``raw``. Other custom attributes <-> ``custom_fields``.
"""

from __future__ import annotations

from connectors.kustomer.mappers._kobject import CrmKObjectMapper
from unified_models import Pipeline

__all__ = ["PipelineMapper"]


class PipelineMapper(CrmKObjectMapper[Pipeline]):
    """Maps pipeline KObjects to ``crmPipeline`` and back."""

    model = "crmPipeline"
    unified_type = Pipeline
