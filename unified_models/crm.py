"""CRM models: opportunities, pipelines, stages and engagements (Morph's ``crm*`` models)."""

from __future__ import annotations

import re
from datetime import date
from typing import ClassVar, Literal

from pydantic import Field, NonNegativeInt, field_validator, model_validator

from unified_models._base import (
    CompanyRef,
    ContactRef,
    EngagementRef,
    OpportunityRef,
    PipelineRef,
    StageRef,
    UnifiedResource,
    UserRef,
    UTCDateTime,
)

__all__ = [
    "Engagement",
    "EngagementDirection",
    "EngagementStatus",
    "EngagementType",
    "Opportunity",
    "OpportunityStatus",
    "Pipeline",
    "Stage",
    "StageType",
]

OpportunityStatus = Literal["open", "won", "lost"]
StageType = Literal["open", "won", "lost", "unknown"]
EngagementType = Literal["call", "meeting", "email", "task", "note"]
EngagementDirection = Literal["inbound", "outbound"]
EngagementStatus = Literal["planned", "inProgress", "completed", "canceled"]

_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
Probability = float


class Opportunity(UnifiedResource):
    """``crmOpportunity``: a deal in a pipeline. ``probability`` is a percentage (0-100)."""

    MODEL: ClassVar[str] = "crmOpportunity"

    name: str | None = None
    description: str | None = None
    amount: float | None = None
    currency: str | None = None
    stage: StageRef | None = None
    pipeline: PipelineRef | None = None
    owner: UserRef | None = None
    contacts: list[ContactRef] = Field(default_factory=list)
    companies: list[CompanyRef] = Field(default_factory=list)
    engagements: list[EngagementRef] = Field(default_factory=list)
    status: OpportunityStatus | None = None
    close_date: date | None = None
    probability: Probability | None = Field(default=None, ge=0, le=100)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.upper()
        if not _CURRENCY_RE.match(value):
            raise ValueError(f"currency must be an ISO 4217 code like 'USD', not {value!r}")
        return value


class Pipeline(UnifiedResource):
    """``crmPipeline``: an ordered set of stages. ``name`` and ``stages`` are required."""

    MODEL: ClassVar[str] = "crmPipeline"

    name: str = Field(min_length=1)
    stages: list[StageRef]


class Stage(UnifiedResource):
    """``crmStage``: one step of a pipeline. ``name`` and ``type`` are required."""

    MODEL: ClassVar[str] = "crmStage"

    name: str = Field(min_length=1)
    type: StageType
    pipeline: PipelineRef | None = None
    order: NonNegativeInt | None = None
    probability: Probability | None = Field(default=None, ge=0, le=100)


class Engagement(UnifiedResource):
    """``crmEngagement``: a call, meeting, email, task or note. ``type`` and ``started_at`` are required.

    ``duration`` is in seconds.
    """

    MODEL: ClassVar[str] = "crmEngagement"

    type: EngagementType
    direction: EngagementDirection | None = None
    status: EngagementStatus | None = None
    title: str | None = None
    description: str | None = None
    started_at: UTCDateTime
    ended_at: UTCDateTime | None = None
    duration: NonNegativeInt | None = None
    owner: UserRef | None = None
    users: list[UserRef] = Field(default_factory=list)
    companies: list[CompanyRef] = Field(default_factory=list)
    contacts: list[ContactRef] = Field(default_factory=list)
    opportunities: list[OpportunityRef] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Engagement:
        if self.ended_at is not None and self.started_at is not None and self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self
