"""Provider-agnostic unified models (pydantic v2).

The eight models of the unified API (Morph's ids and field names are the floor)::

    genericContact  -> Contact        crmOpportunity -> Opportunity
    genericCompany  -> Company        crmPipeline    -> Pipeline
    genericUser     -> User           crmStage       -> Stage
    genericWorkspace-> Workspace      crmEngagement  -> Engagement

plus :class:`CustomObject` for ``custom:<type>`` models, :class:`ResourceRef` references,
:class:`FieldDefinition`, :class:`Event` and :class:`Page`. This package imports nothing from
``connectors``.
"""

from __future__ import annotations

from unified_models._base import (
    CompanyRef,
    ContactRef,
    Email,
    EngagementRef,
    OpportunityRef,
    Phone,
    PipelineRef,
    ResourceRef,
    StageRef,
    UnifiedObject,
    UnifiedResource,
    UserRef,
    ref,
)
from unified_models._registry import MODELS, model_class, partial
from unified_models.crm import Engagement, Opportunity, Pipeline, Stage
from unified_models.custom import CUSTOM_PREFIX, CustomObject
from unified_models.events import Event, Trigger
from unified_models.fields import FieldDefinition, FieldOption, FieldType
from unified_models.generic import Company, Contact, User, Workspace
from unified_models.page import Page

__all__ = [
    "CUSTOM_PREFIX",
    "MODELS",
    "Company",
    "CompanyRef",
    "Contact",
    "ContactRef",
    "CustomObject",
    "Email",
    "Engagement",
    "EngagementRef",
    "Event",
    "FieldDefinition",
    "FieldOption",
    "FieldType",
    "Opportunity",
    "OpportunityRef",
    "Page",
    "Phone",
    "Pipeline",
    "PipelineRef",
    "ResourceRef",
    "Stage",
    "StageRef",
    "Trigger",
    "UnifiedObject",
    "UnifiedResource",
    "User",
    "UserRef",
    "Workspace",
    "model_class",
    "partial",
    "ref",
]
