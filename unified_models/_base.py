"""Base classes and shared value types of the unified models.

Conventions (the same for every model):

* Python attributes are ``snake_case``; JSON (``model_dump(mode="json")``, ``model_validate``) uses
  Morph's ``camelCase`` names. Both spellings are accepted on input.
* Models are immutable (``frozen``) and strict about unknown fields (``extra="forbid"``), so a typo is a
  validation error that names the field path instead of a silently dropped value.
* Every resource carries ``id``, ``created_at``, ``updated_at``, ``custom_fields`` (keyed by the unified
  field key chosen in the connection's field mapping) and an opt-in ``raw`` copy of the provider object.
* Datetimes are timezone-aware UTC; a naive datetime is read as UTC.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "CompanyRef",
    "ContactRef",
    "Email",
    "EmailAddress",
    "EngagementRef",
    "JSONValue",
    "OpportunityRef",
    "Phone",
    "PhoneNumber",
    "PipelineRef",
    "ResourceRef",
    "StageRef",
    "UTCDateTime",
    "UnifiedObject",
    "UnifiedResource",
    "UserRef",
    "ref",
]

JSONValue: TypeAlias = Any
"""A JSON-compatible value (str, int, float, bool, None, list, dict)."""

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE_RE = re.compile(r"^\+?[0-9 ()./-]{3,32}$")


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UTCDateTime = Annotated[datetime, AfterValidator(_to_utc)]
"""A datetime normalised to UTC (naive input is taken as UTC)."""


def _check_email(value: str) -> str:
    if not _EMAIL_RE.match(value):
        raise ValueError(f"not an email address: {value!r}")
    return value


def _check_phone(value: str) -> str:
    if not _PHONE_RE.match(value):
        raise ValueError(f"not a phone number: {value!r}")
    return value


EmailAddress = Annotated[str, AfterValidator(_check_email)]
"""An email address (``local@domain.tld``; deliberately permissive, like providers are)."""

PhoneNumber = Annotated[str, AfterValidator(_check_phone)]
"""A phone number: digits with optional ``+``, spaces, dots, dashes and parentheses."""


class UnifiedObject(BaseModel):
    """Base of every unified value: camelCase JSON, snake_case Python, immutable, no unknown keys."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
    )


class ResourceRef(UnifiedObject):
    """A reference to another unified resource: ``{"object": "resourceRef", "model": ..., "id": ...}``.

    ``resource`` holds the referenced object when it was expanded (``retrieve(id, expand=[...])``); it is
    left out of the JSON otherwise.
    """

    object: Literal["resourceRef"] = "resourceRef"
    model: str = Field(min_length=1)
    id: str = Field(min_length=1)
    resource: SerializeAsAny[UnifiedResource] | None = Field(default=None, exclude_if=lambda v: v is None)

    @field_validator("resource", mode="before")
    @classmethod
    def _typed_resource(cls, value: Any, info: ValidationInfo) -> Any:
        # Runs only when a resource is given: a dict is validated as the model the reference names.
        model = info.data.get("model")
        if isinstance(value, dict) and isinstance(model, str):
            from unified_models._registry import model_class

            return model_class(model).model_validate(value)
        return value


def _must_reference(model: str) -> Callable[[ResourceRef], ResourceRef]:
    def check(value: ResourceRef) -> ResourceRef:
        if value.model != model:
            raise ValueError(f"must reference a {model}, not {value.model}")
        return value

    return check


ContactRef = Annotated[ResourceRef, AfterValidator(_must_reference("genericContact"))]
CompanyRef = Annotated[ResourceRef, AfterValidator(_must_reference("genericCompany"))]
UserRef = Annotated[ResourceRef, AfterValidator(_must_reference("genericUser"))]
OpportunityRef = Annotated[ResourceRef, AfterValidator(_must_reference("crmOpportunity"))]
PipelineRef = Annotated[ResourceRef, AfterValidator(_must_reference("crmPipeline"))]
StageRef = Annotated[ResourceRef, AfterValidator(_must_reference("crmStage"))]
EngagementRef = Annotated[ResourceRef, AfterValidator(_must_reference("crmEngagement"))]


def ref(model: str, id: str) -> ResourceRef:
    """Build a :class:`ResourceRef` (``ref("genericUser", "5f...")``)."""
    return ResourceRef(model=model, id=id)


class Email(UnifiedObject):
    """An email address with an optional type (``home``, ``work``, ``other``...)."""

    type: str | None = None
    value: EmailAddress


class Phone(UnifiedObject):
    """A phone number with an optional type (``mobile``, ``work``, ``home``, ``fax``, ``other``...)."""

    type: str | None = None
    value: PhoneNumber


class UnifiedResource(UnifiedObject):
    """Base of the eight unified models and of custom objects.

    Attributes:
        id: the provider's id (``None`` for an object that has not been created yet).
        created_at: when the provider created it (read-only).
        updated_at: when the provider last changed it (read-only).
        custom_fields: custom field values keyed by unified field key.
        raw: the provider object as received, only when asked for (``include_raw``).
    """

    #: The unified model id, e.g. ``genericContact``.
    MODEL: ClassVar[str] = ""
    #: Fields the provider computes; they are ignored on create/update.
    READ_ONLY_FIELDS: ClassVar[frozenset[str]] = frozenset({"id", "created_at", "updated_at", "raw"})

    id: str | None = None
    created_at: UTCDateTime | None = None
    updated_at: UTCDateTime | None = None
    custom_fields: dict[str, JSONValue] = Field(default_factory=dict)
    raw: dict[str, JSONValue] | None = Field(default=None, repr=False)

    @property
    def model_id(self) -> str:
        """The unified model id of this object (``genericContact``, ``custom:order``...)."""
        return self.MODEL

    def as_ref(self) -> ResourceRef:
        """Return a :class:`ResourceRef` pointing at this object.

        Raises:
            ValueError: when the object has no ``id`` yet.
        """
        if self.id is None:
            raise ValueError(f"{self.model_id} has no id yet; create it first")
        return ResourceRef(model=self.model_id, id=self.id)


ResourceRef.model_rebuild()
