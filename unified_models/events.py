"""Webhook events: a unified resource was created, updated or deleted."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializeAsAny, model_validator

from unified_models._base import UnifiedObject, UnifiedResource, UTCDateTime
from unified_models._registry import model_class

__all__ = ["Event", "Trigger"]

Trigger = Literal["created", "updated", "deleted"]


class Event(UnifiedObject):
    """One unified event.

    Attributes:
        model: the unified model id (``genericContact``, ``custom:order``...).
        trigger: ``created``, ``updated`` or ``deleted``.
        id: the id of the resource the event is about.
        data: the resource as mapped at the time of the event (``None`` for a deletion whose last state
            is unknown; deletions are never re-fetched).
        idempotency_key: stable across redeliveries of the same provider event; dedupe on it.
        occurred_at: when the change happened at the provider.
        connector_id: the connector that produced it (``kustomer``).
        owner_id: the tenant whose connection produced it.
        source: ``webhook`` (pushed by the provider) or ``poll`` (a virtual webhook).
    """

    object: Literal["event"] = "event"
    model: str = Field(min_length=1)
    trigger: Trigger
    id: str = Field(min_length=1)
    data: SerializeAsAny[UnifiedResource] | None = None
    idempotency_key: str = Field(min_length=1)
    occurred_at: UTCDateTime
    connector_id: str | None = None
    owner_id: str | None = None
    source: Literal["webhook", "poll"] = "webhook"

    @property
    def name(self) -> str:
        """``<model>::<trigger>``, the name handlers subscribe to."""
        return f"{self.model}::{self.trigger}"

    @model_validator(mode="before")
    @classmethod
    def _typed_data(cls, values: Any) -> Any:
        # Validate ``data`` as the model the event names, so a JSON round trip gives a Contact back.
        if isinstance(values, dict):
            data = values.get("data")
            model = values.get("model")
            if isinstance(data, dict) and isinstance(model, str):
                values = {**values, "data": model_class(model).model_validate(data)}
        return values
