"""Request bodies Kustomer accepts, as pydantic models (kustomer-api.md §3.4-§3.7, §2.6-§2.9).

Requests carry FLAT attributes (never wrapped in ``data``/``attributes``) and set relationships by id
(``"company": "<id>"``). Models forbid unknown keys, as Kustomer's request validation does; the sandbox
setting ``reject_unknown_attributes=False`` drops unknown keys instead. Every model has only optional fields:
which ones a *create* needs is declared by the resource type, so the same model serves create, PATCH and PUT.
``null`` is accepted wherever a value may be cleared.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from connectors.kustomer.custom_fields import format_datetime, parse_datetime

__all__ = [
    "CHANNELS",
    "Body",
    "Channel",
    "CompanyBody",
    "ConversationBody",
    "CustomerBody",
    "KObjectBody",
    "KlassBody",
    "MessageBody",
    "MetadataBody",
    "NoteBody",
    "OutboundWebhookBody",
    "TagBody",
    "TeamBody",
    "UserBody",
    "WebHookBody",
]

Channel = Literal["email", "sms", "chat", "facebook", "twitter-dm", "twitter-tweet", "voice", "instagram", "whatsapp"]
"""Message channels (kustomer-api.md §3.7)."""
CHANNELS: Final[tuple[str, ...]] = get_args(Channel)

_EMAIL_RE: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_E164_RE: Final = re.compile(r"\+?[1-9]\d{1,14}")
_PHONE_NOISE: Final = re.compile(r"[\s\-().]")


def _timestamp(value: object) -> object:
    if value is None:
        return None
    try:
        return format_datetime(parse_datetime(value))
    except ValueError as exc:
        raise ValueError(f"must be an ISO 8601 date-time ({exc})") from None


def _email(value: str) -> str:
    value = value.strip()
    if not _EMAIL_RE.fullmatch(value):
        raise ValueError("must be a valid email")
    return value


def _phone(value: str) -> str:
    value = value.strip()
    if not _E164_RE.fullmatch(_PHONE_NOISE.sub("", value)):
        raise ValueError("must be a phone number in E.164 format (e.g. +15551234567)")
    return value


Timestamp = Annotated[str | None, BeforeValidator(_timestamp)]
Email = Annotated[str, AfterValidator(_email)]
Phone = Annotated[str, AfterValidator(_phone)]
Name = Annotated[str, Field(min_length=1, max_length=1024)]


class Body(BaseModel):
    """Base of request bodies: camelCase keys, unknown keys refused."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_alias=True, validate_by_name=False, extra="forbid")


class _Item(Body):
    id: str | None = None


class EmailItem(_Item):
    """``emails[]`` item."""

    type: Literal["home", "work", "other"] = "other"
    email: Email
    verified: bool = False


class PhoneItem(_Item):
    """``phones[]`` item (E.164)."""

    type: Literal["mobile", "home", "work", "fax", "other"] = "other"
    phone: Phone
    verified: bool = False


class WhatsappItem(_Item):
    """``whatsapps[]`` item."""

    type: Literal["mobile"] = "mobile"
    phone: Phone


class ExternalIdItem(_Item):
    """``externalIds[]`` item."""

    external_id: str
    verified: bool = False


class SocialItem(_Item):
    """``socials[]`` item."""

    type: Literal["twitter", "facebook", "instagram", "linkedin", "pinterest"]
    userid: str | None = None
    username: str | None = None
    url: str | None = None
    verified: bool = False


class UrlItem(_Item):
    """``urls[]`` item."""

    type: Literal["website", "blog", "other"] = "other"
    url: str


class LocationItem(_Item):
    """``locations[]`` item."""

    type: str | None = None
    name: str | None = None
    address: str | None = None
    address2: str | None = None
    address3: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    country_code: str | None = None
    country_name: str | None = None
    region_code: str | None = None
    region_name: str | None = None
    city_name: str | None = None
    zip_code: str | None = None
    area_code: str | None = None


class DomainItem(_Item):
    """``domains[]`` item of a company (an object, not a plain string)."""

    domain: Annotated[str, Field(min_length=1, max_length=253)]


class Sentiment(Body):
    """Sentiment."""

    polarity: Literal[-1, 0, 1]
    confidence: float | None = None


class CustomerBody(Body):
    """Create/update body of a customer (SPEC ``CreateCustomerData``)."""

    name: str | None = None
    company: str | None = None
    external_id: str | None = None
    username: str | None = None
    signed_up_at: Timestamp = None
    last_activity_at: Timestamp = None
    last_customer_activity_at: Timestamp = None
    last_seen_at: Timestamp = None
    avatar_url: str | None = None
    external_ids: list[ExternalIdItem] | None = None
    shared_external_ids: list[ExternalIdItem] | None = None
    emails: list[EmailItem] | None = None
    shared_emails: list[EmailItem] | None = None
    phones: list[PhoneItem] | None = None
    shared_phones: list[PhoneItem] | None = None
    whatsapps: list[WhatsappItem] | None = None
    facebook_ids: list[dict[str, Any]] | None = None
    instagram_ids: list[dict[str, Any]] | None = None
    socials: list[SocialItem] | None = None
    shared_socials: list[SocialItem] | None = None
    urls: list[UrlItem] | None = None
    locations: list[LocationItem] | None = None
    locale: str | None = None
    time_zone: str | None = None
    tags: list[str] | None = None
    sentiment: Sentiment | None = None
    custom: dict[str, Any] | None = None
    birthday_at: Timestamp = None
    gender: Literal["m", "f"] | None = None
    created_at: Timestamp = None
    imported_at: Timestamp = None
    rev: int | None = None
    default_lang: str | None = None


class CompanyBody(Body):
    """Create/update body of a company (SPEC ``CreateCompanyData``)."""

    name: Name | None = None
    external_id: str | None = None
    avatar_url: str | None = None
    emails: list[EmailItem] | None = None
    phones: list[PhoneItem] | None = None
    whatsapps: list[WhatsappItem] | None = None
    socials: list[SocialItem] | None = None
    urls: list[UrlItem] | None = None
    domains: list[DomainItem] | None = None
    locations: list[LocationItem] | None = None
    employee_count: Annotated[int, Field(ge=0)] | None = None
    tags: list[str] | None = None
    created_at: Timestamp = None
    imported_at: Timestamp = None
    rev: int | None = None
    custom: dict[str, Any] | None = None
    default_lang: str | None = None


class Snooze(Body):
    """Conversation snooze."""

    time: Timestamp = None
    status: Literal["scheduled", "canceled", "elapsed"] | None = None


class ConversationBody(Body):
    """Create/update body of a conversation (SPEC; §3.6)."""

    customer: str | None = None
    external_id: str | None = None
    name: str | None = None
    status: Literal["open", "snoozed", "done"] | None = None
    priority: Annotated[int, Field(ge=1, le=5)] | None = None
    created_at: Timestamp = None
    imported_at: Timestamp = None
    direction: Literal["in", "out"] | None = None
    reply_channel: str | None = None
    tags: list[str] | None = None
    assigned_users: Annotated[list[str], Field(max_length=10)] | None = None
    assigned_teams: Annotated[list[str], Field(max_length=10)] | None = None
    custom: dict[str, Any] | None = None
    default_lang: str | None = None
    queue: dict[str, Any] | None = None
    satisfaction: int | None = None
    satisfaction_level: dict[str, Any] | None = None
    suggested_shortcuts: list[Any] | None = None
    sub_status: str | None = None
    snooze: Snooze | None = None
    suggested_tags: list[Any] | None = None
    sentiment: Sentiment | None = None
    ended: bool | None = None
    ended_at: Timestamp = None
    ended_reason: str | None = None
    ended_by: str | None = None
    ended_by_type: Literal["user", "customer"] | None = None
    locked: bool | None = None
    rev: int | None = None


class MessageBody(Body):
    """Create/update body of a message (SPEC ``CreateMessageData``; ``body`` is a sandbox superset)."""

    channel: Channel | None = None
    direction: Literal["in", "out"] | None = None
    app: str | None = None
    customer: str | None = None
    conversation: str | None = None
    external_id: str | None = None
    reference: dict[str, Any] | None = None
    preview: str | None = None
    body: str | None = None
    subject: str | None = None
    size: int | None = None
    status: Literal["sent", "received", "error"] | None = None
    error: dict[str, Any] | None = None
    error_at: Timestamp = None
    auto: bool | None = None
    sent_at: Timestamp = None
    source: Literal["bulk", "satisfaction"] | None = None
    shortcuts: list[Any] | None = None
    kb_articles: list[Any] | None = None
    attachments: list[Any] | None = None
    location: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    custom: dict[str, Any] | None = None
    sentiment: Sentiment | None = None
    created_at: Timestamp = None
    modified_at: Timestamp = None
    created_by: str | None = None
    modified_by: str | None = None
    imported_at: Timestamp = None
    lang: str | None = None
    queue: dict[str, Any] | None = None
    rev: int | None = None


class NoteBody(Body):
    """Create/update body of a note."""

    body: str | None = None
    conversation: str | None = None
    external_id: str | None = None
    user_mentions: list[dict[str, Any]] | None = None
    attachments: list[Any] | None = None
    created_at: Timestamp = None
    modified_at: Timestamp = None
    created_by: str | None = None
    modified_by: str | None = None
    imported_at: Timestamp = None
    lang: str | None = None
    custom: dict[str, Any] | None = None
    rev: int | None = None


class UserBody(Body):
    """Create/update body of a user."""

    name: Name | None = None
    email: Email | None = None
    display_name: str | None = None
    avatar_url: str | None = None
    mobile: Phone | None = None
    email_signature: str | None = None
    user_type: Literal["user", "machine", "limited", "hourly"] | None = None
    role_groups: list[str] | None = None
    roles: list[str] | None = None
    custom: dict[str, Any] | None = None
    rev: int | None = None


class TeamBody(Body):
    """Create/update body of a team."""

    name: Name | None = None
    display_name: str | None = None
    icon: str | None = None
    members: list[str] | None = None
    external_id: str | None = None
    created_at: Timestamp = None
    imported_at: Timestamp = None
    rev: int | None = None


class KlassBody(Body):
    """Create/update body of a Klass."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)] | None = None
    display_name: str | None = None
    description: str | None = None
    icon: str | None = None
    color: str | None = None
    json_schema: dict[str, Any] | None = None
    klass_schema: Literal["task"] | None = None
    mixins: list[Literal["commentable", "assignable", "editable", "creatable"]] | None = None
    status: Literal["enabled", "existing_only", "disabled"] | None = None
    rev: int | None = None


class KObjectBody(Body):
    """Create/update body of a KObject (custom object)."""

    title: Name | None = None
    customer: str | None = None
    company: str | None = None
    external_id: str | None = None
    description: str | None = None
    icon: str | None = None
    images: list[Any] | None = None
    data: dict[str, Any] | None = None
    custom: dict[str, Any] | None = None
    tags: list[str] | None = None
    status: Literal["open", "done"] | None = None
    created_at: Timestamp = None
    imported_at: Timestamp = None
    rev: int | None = None


class TagBody(Body):
    """A tag."""

    name: Name | None = None
    color: str | None = None


class WebhookHeader(Body):
    """A custom header sent with every delivery."""

    name: Annotated[str, Field(min_length=1, max_length=256)]
    value: Annotated[str, Field(max_length=4096)]


class OutboundWebhookBody(Body):
    """Create/update body of an outbound webhook (§2.9)."""

    name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    url: str | None = None
    events: Annotated[list[str], Field(min_length=1, max_length=12)] | None = None
    headers: list[WebhookHeader] | None = None
    enabled: bool | None = None
    description: str | None = None


class WebHookBody(Body):
    """Create body of an inbound web hook (§2.8)."""

    name: Annotated[str, Field(max_length=255)] | None = None
    description: str | None = None
    enabled: bool | None = None


class MetadataProperty(Body):
    """One custom attribute definition."""

    display_name: str | None = None
    type: str | None = None
    enumeration: list[Any] | None = None
    target: str | None = None
    multi: bool | None = None
    tree: dict[str, Any] | list[Any] | None = None
    description: str | None = None
    hidden: bool | None = None


class MetadataBody(Body):
    """``PUT /v1/metadata/{resource}`` body."""

    properties: dict[str, MetadataProperty | None] = {}
