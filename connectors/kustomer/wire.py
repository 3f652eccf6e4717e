"""Wire models: Kustomer's JSON:API resources exactly as the API returns them.

Every model is permissive (``extra="allow"``: attributes Kustomer adds later, or response-only attributes
we don't map, are kept and dumped back unchanged) and accepts both the camelCase JSON names and the
snake_case Python names. Resources and their attributes are models; the small value objects inside them
(``emails`` entries, relationship identifiers...) are typed dicts, which parse faster and are what the
JSON is. Parse a response body straight from bytes::

    page = ListEnvelope[CustomerResource].model_validate_json(response.content)
    for record in page.data:           # CustomerResource, or the record's dict (see below)
        contact = mapper.to_unified(record, context)

The mappers read plain JSON; they accept these models too (through a shallow dict view). For mapping
alone, the dict from ``json.loads`` is the cheapest input (measured: ``json.loads`` + mapping of a 2 KB
customer is about 2.6x the ``json.loads`` time; parsing into wire models first adds about 0.5x).

Leniency rules (kustomer-api.md §3; real orgs produce odd data):

* every attribute is optional and ``null`` is accepted everywhere (``emails: null`` is an empty list to the
  mappers); unknown attributes are kept; ``relationships`` stay plain JSON (parsed on access with
  :meth:`Resource.relationship`), so an odd relationship nobody reads never fails a page;
* timestamps (``createdAt``...) stay the strings Kustomer sent, so dumping a resource gives back what was
  received and a page never fails on an odd date: the mappers parse the timestamps they need;
* a record of a page that does not fit its wire model (an attribute has the wrong type) does not fail the
  page: :class:`ListEnvelope` and :class:`Envelope` keep that record as the plain ``dict`` it was, and
  the mapper then raises a :class:`~connectors.errors.MappingError` naming the attribute path
  (``attributes.emails.0.email``). The well-formed records of the page are unaffected.

This module is pure (no I/O) and imports nothing from the rest of the connector.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, with_config
from pydantic.alias_generators import to_camel
from typing_extensions import TypedDict

__all__ = [
    "RESOURCE_TYPES",
    "Attributes",
    "CompanyAttributes",
    "CompanyResource",
    "ConversationAttributes",
    "ConversationResource",
    "CustomerAttributes",
    "CustomerResource",
    "DomainEntry",
    "EmailEntry",
    "Envelope",
    "KObjectAttributes",
    "KObjectResource",
    "KlassAttributes",
    "KlassResource",
    "KustomerModel",
    "LastDone",
    "ListEnvelope",
    "MessageAttributes",
    "MessageResource",
    "NoteAttributes",
    "NoteResource",
    "PhoneEntry",
    "Relationship",
    "Resource",
    "ResourceIdentifier",
    "TeamAttributes",
    "TeamResource",
    "UserAttributes",
    "UserResource",
]


class KustomerModel(BaseModel):
    """Base of every wire model: camelCase JSON, snake_case Python, unknown fields kept."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="allow",
    )


# --- value objects --------------------------------------------------------------------------------------
# The small objects inside attributes are typed dicts, not models: they are what the JSON is, they parse
# faster, and a mapper reads them without conversion. Unknown keys (e.g. the ``id`` Kustomer gives each
# entry of ``emails``) are kept.

_ALLOW = ConfigDict(extra="allow")


@with_config(_ALLOW)
class ResourceIdentifier(TypedDict, total=False):
    """A JSON:API resource identifier: ``{"type": "customer", "id": "5f..."}``."""

    type: str | None
    id: str | None


@with_config(_ALLOW)
class Relationship(TypedDict, total=False):
    """A JSON:API relationship: ``{"links": {...}, "data": {type, id} | [{type, id}, ...] | null}``."""

    data: ResourceIdentifier | list[ResourceIdentifier] | None
    links: dict[str, Any] | None


@with_config(_ALLOW)
class EmailEntry(TypedDict, total=False):
    """An entry of ``emails``: ``{"type": "home|work|other", "email": ..., "verified": ...}``."""

    type: str | None
    email: str | None
    verified: bool | None


@with_config(_ALLOW)
class PhoneEntry(TypedDict, total=False):
    """An entry of ``phones``: ``{"type": "mobile|home|work|fax|other", "phone": ..., "verified": ...}``."""

    type: str | None
    phone: str | None
    verified: bool | None


@with_config(_ALLOW)
class DomainEntry(TypedDict, total=False):
    """An entry of a company's ``domains``: ``{"domain": "example.com"}``."""

    domain: str | None


@with_config(_ALLOW)
class LastDone(TypedDict, total=False):
    """A conversation's ``lastDone`` / ``firstDone``: when (and by whom) it was marked done."""

    createdAt: str | None


_RELATIONSHIP: TypeAdapter[Relationship] = TypeAdapter(Relationship)


# --- attributes per resource type ----------------------------------------------------------------------


class Attributes(KustomerModel):
    """Attributes every resource has (all optional); the rest depends on the type."""

    created_at: str | None = None
    updated_at: str | None = None
    modified_at: str | None = None
    external_id: str | None = None
    custom: dict[str, Any] | None = None


class CustomerAttributes(Attributes):
    """A customer (§3.4). ``company`` is the company id when Kustomer returns it as an attribute."""

    name: str | None = None
    display_name: str | None = None
    emails: list[EmailEntry] | None = None
    phones: list[PhoneEntry] | None = None
    company: str | None = None
    tags: list[str] | None = None
    locale: str | None = None
    time_zone: str | None = None


class CompanyAttributes(Attributes):
    """A company (§3.5). ``domains`` entries are objects; bare strings are accepted too."""

    name: str | None = None
    domains: list[DomainEntry | str] | None = None
    emails: list[EmailEntry] | None = None
    phones: list[PhoneEntry] | None = None
    employee_count: int | None = None
    tags: list[str] | None = None


class UserAttributes(Attributes):
    """A user (§2.6). ``roles`` is read-only."""

    name: str | None = None
    display_name: str | None = None
    email: str | None = None
    mobile: str | None = None
    user_type: str | None = None
    roles: list[str] | None = None


class TeamAttributes(Attributes):
    """A team (§2.6). ``members`` are user ids."""

    name: str | None = None
    display_name: str | None = None
    icon: str | None = None
    members: list[str] | None = None


class ConversationAttributes(Attributes):
    """A conversation (§3.6). ``preview`` is the last message's text (a string, sometimes an object)."""

    name: str | None = None
    channels: list[str] | None = None
    reply_channel: str | None = None
    status: str | None = None
    direction: str | None = None
    preview: str | dict[str, Any] | None = None
    priority: int | None = None
    assigned_users: list[str] | None = None
    assigned_teams: list[str] | None = None
    customer: str | None = None
    ended_at: str | None = None
    last_done: LastDone | None = None
    tags: list[str] | None = None


class MessageAttributes(Attributes):
    """A message (§3.7)."""

    channel: str | None = None
    direction: str | None = None
    app: str | None = None
    preview: str | None = None
    subject: str | None = None
    status: str | None = None
    sent_at: str | None = None


class NoteAttributes(Attributes):
    """A note (§3.7). Its conversation, customer and author are relationships."""

    body: str | None = None


class KObjectAttributes(Attributes):
    """A KObject, an object of a custom Klass (§2.7). ``customer``/``company`` may come as ids."""

    title: str | None = None
    description: str | None = None
    icon: str | None = None
    customer: str | None = None
    company: str | None = None
    tags: list[str] | None = None


class KlassAttributes(Attributes):
    """A Klass, the definition of a custom object type (§2.7)."""

    name: str | None = None
    display_name: str | None = None
    icon: str | None = None
    color: str | None = None
    status: str | None = None


# --- resources ---------------------------------------------------------------------------------------


class Resource(KustomerModel):
    """A JSON:API resource ``{type, id, attributes, relationships, links}`` with the common attributes.

    ``relationships`` stays the JSON it was (most are links the mappers never read, and building models
    for them would cost more than the rest of a record): :meth:`relationship` parses one on access.
    """

    type: str | None = None
    id: str
    attributes: Attributes = Field(default_factory=Attributes)
    relationships: dict[str, Any] | None = None
    links: dict[str, Any] | None = None

    def relationship(self, key: str) -> Relationship | None:
        """Return the relationship ``key`` as a :class:`Relationship`, or ``None`` when absent.

        Raises:
            pydantic.ValidationError: the relationship is not a JSON:API relationship object.
        """
        value = (self.relationships or {}).get(key)
        return None if value is None else _RELATIONSHIP.validate_python(value)


class CustomerResource(Resource):
    """A customer resource (``type: "customer"``)."""

    attributes: CustomerAttributes = Field(default_factory=CustomerAttributes)


class CompanyResource(Resource):
    """A company resource (``type: "company"``)."""

    attributes: CompanyAttributes = Field(default_factory=CompanyAttributes)


class UserResource(Resource):
    """A user resource (``type: "user"``)."""

    attributes: UserAttributes = Field(default_factory=UserAttributes)


class TeamResource(Resource):
    """A team resource (``type: "team"``)."""

    attributes: TeamAttributes = Field(default_factory=TeamAttributes)


class ConversationResource(Resource):
    """A conversation resource (``type: "conversation"``)."""

    attributes: ConversationAttributes = Field(default_factory=ConversationAttributes)


class MessageResource(Resource):
    """A message resource (``type: "message"``)."""

    attributes: MessageAttributes = Field(default_factory=MessageAttributes)


class NoteResource(Resource):
    """A note resource (``type: "note"``)."""

    attributes: NoteAttributes = Field(default_factory=NoteAttributes)


class KObjectResource(Resource):
    """A KObject resource (``type: "kobject"``)."""

    attributes: KObjectAttributes = Field(default_factory=KObjectAttributes)


class KlassResource(Resource):
    """A Klass resource (``type: "klass"``)."""

    attributes: KlassAttributes = Field(default_factory=KlassAttributes)


RESOURCE_TYPES: Mapping[str, type[Resource]] = MappingProxyType(
    {
        "customer": CustomerResource,
        "company": CompanyResource,
        "user": UserResource,
        "team": TeamResource,
        "conversation": ConversationResource,
        "message": MessageResource,
        "note": NoteResource,
        "kobject": KObjectResource,
        "klass": KlassResource,
    }
)
"""Kustomer resource ``type`` -> wire model."""


# --- envelopes ---------------------------------------------------------------------------------------

R = TypeVar("R", bound=Resource)

# A record that does not fit its wire model stays a dict (left-to-right: the model is tried first, so the
# common case costs nothing extra); the mapper then names the offending attribute.
_Record = Annotated[R | dict[str, Any], Field(union_mode="left_to_right")]


class ListEnvelope(KustomerModel, Generic[R]):
    """A page: ``{"data": [...], "meta": {...}, "links": {"next": ...}, "included": [...]}``.

    ``data`` holds wire models, or the plain dict of a record that does not fit its model.
    """

    data: list[_Record[R]] = Field(default_factory=list)
    meta: dict[str, Any] | None = None
    links: dict[str, Any] | None = None
    included: list[dict[str, Any]] | None = None


class Envelope(KustomerModel, Generic[R]):
    """A single resource: ``{"data": {...}, "included": [...]}`` (``data`` as in :class:`ListEnvelope`)."""

    data: _Record[R]
    meta: dict[str, Any] | None = None
    links: dict[str, Any] | None = None
    included: list[dict[str, Any]] | None = None
