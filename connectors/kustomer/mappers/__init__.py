"""Kustomer mappers: one module per unified model, pure functions between wire and unified models.

==================  =============================  ==========================================
unified model       Kustomer object                module
==================  =============================  ==========================================
genericContact      customer                       :mod:`.contact`
genericCompany      company                        :mod:`.company`
genericUser         user                           :mod:`.user`
genericWorkspace    team                           :mod:`.workspace`
crmEngagement       conversation, or note          :mod:`.engagement`
crmOpportunity      KObject (``crm-opportunity``)  :mod:`.opportunity`
crmPipeline         KObject (``crm-pipeline``)     :mod:`.pipeline`
crmStage            KObject (``crm-stage``)        :mod:`.stage`
custom:<klass>      KObject of ``<klass>``         :mod:`.custom_object`
==================  =============================  ==========================================

Each module's docstring states its mapping rules; the rules every mapper shares (custom attribute
coercion, ids, timestamps, ``raw``, errors, PATCH semantics) are in :mod:`._common`. :data:`MAPPERS` is
what the plugin registers.
"""

from __future__ import annotations

from connectors.kustomer.mappers.company import CompanyMapper
from connectors.kustomer.mappers.contact import ContactMapper
from connectors.kustomer.mappers.custom_object import CustomObjectMapper
from connectors.kustomer.mappers.engagement import (
    EngagementMapper,
    engagement_id,
    parse_engagement_id,
)
from connectors.kustomer.mappers.opportunity import OpportunityMapper
from connectors.kustomer.mappers.pipeline import PipelineMapper
from connectors.kustomer.mappers.stage import StageMapper
from connectors.kustomer.mappers.user import UserMapper
from connectors.kustomer.mappers.workspace import WorkspaceMapper
from connectors.mapping import Mapper

__all__ = [
    "MAPPERS",
    "CompanyMapper",
    "ContactMapper",
    "CustomObjectMapper",
    "EngagementMapper",
    "OpportunityMapper",
    "PipelineMapper",
    "StageMapper",
    "UserMapper",
    "WorkspaceMapper",
    "engagement_id",
    "parse_engagement_id",
]

MAPPERS: tuple[Mapper, ...] = (
    ContactMapper(),
    CompanyMapper(),
    UserMapper(),
    WorkspaceMapper(),
    OpportunityMapper(),
    PipelineMapper(),
    StageMapper(),
    EngagementMapper(),
    CustomObjectMapper(),
)
"""One mapper instance per unified model, plus ``custom`` for ``custom:<klass>`` KObjects."""
