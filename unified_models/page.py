"""``Page[T]``: one page of a list, with an opaque cursor to the next one."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny
from pydantic.alias_generators import to_camel

from unified_models._base import UnifiedResource

__all__ = ["Page"]

T = TypeVar("T", bound=UnifiedResource)


class Page(BaseModel, Generic[T]):
    """One page of results.

    Attributes:
        data: the records of this page.
        next: an opaque cursor for the next page, or ``None`` on the last page. Pass it back unchanged;
            connectors sign their cursors, so an edited cursor is refused.
        total: the total count when the provider reports one cheaply, else ``None``.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
    )

    object: Literal["list"] = "list"
    data: list[SerializeAsAny[T]] = Field(default_factory=list)
    next: str | None = None
    total: int | None = None

    def __len__(self) -> int:
        return len(self.data)
