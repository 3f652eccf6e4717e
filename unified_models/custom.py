"""Custom objects: the user's own models, backed by a provider object type (a Kustomer Klass).

Their model id is ``custom:<objectType>`` (``custom:order`` for the Klass ``order``). Every attribute of
the object type other than the standard ones lives in ``custom_fields``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from unified_models._base import ResourceRef, UnifiedResource

__all__ = ["CUSTOM_PREFIX", "CustomObject"]

CUSTOM_PREFIX = "custom:"


class CustomObject(UnifiedResource):
    """An object of a custom type (``custom:<object_type>``)."""

    MODEL: ClassVar[str] = "custom"

    object_type: str = Field(min_length=1)
    title: str | None = None
    description: str | None = None
    external_id: str | None = None
    contact: ResourceRef | None = None
    company: ResourceRef | None = None
    tags: list[str] = Field(default_factory=list)

    @property
    def model_id(self) -> str:
        """``custom:<object_type>``."""
        return f"{CUSTOM_PREFIX}{self.object_type}"
