"""Generic models: contacts, companies, users and workspaces.

Morph's fields are the floor (``firstName``, ``lastName``, ``email``, ``phone`` for a contact; ``name``
for a company or workspace); the richer fields that Merge/Unified.to users expect are added.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, NonNegativeInt

from unified_models._base import (
    CompanyRef,
    Email,
    EmailAddress,
    Phone,
    PhoneNumber,
    UnifiedResource,
    UserRef,
)

__all__ = ["Company", "Contact", "User", "UserType", "Workspace"]

UserType = Literal["user", "machine", "limited", "hourly"]


class Contact(UnifiedResource):
    """``genericContact``: a person you support or sell to.

    ``email`` and ``phone`` are the primary values; ``emails``/``phones`` hold all of them. When only
    ``email`` is given on a write, it becomes the first entry of ``emails``.
    """

    MODEL: ClassVar[str] = "genericContact"

    first_name: str | None = None
    last_name: str | None = None
    email: EmailAddress | None = None
    phone: PhoneNumber | None = None
    emails: list[Email] = Field(default_factory=list)
    phones: list[Phone] = Field(default_factory=list)
    company: CompanyRef | None = None
    external_id: str | None = None
    tags: list[str] = Field(default_factory=list)
    locale: str | None = None
    time_zone: str | None = None


class Company(UnifiedResource):
    """``genericCompany``: an organisation. ``name`` is required (Kustomer requires it too)."""

    MODEL: ClassVar[str] = "genericCompany"

    name: str = Field(min_length=1)
    domains: list[str] = Field(default_factory=list)
    external_id: str | None = None
    emails: list[Email] = Field(default_factory=list)
    phones: list[Phone] = Field(default_factory=list)
    employee_count: NonNegativeInt | None = None
    tags: list[str] = Field(default_factory=list)


class User(UnifiedResource):
    """``genericUser``: an agent or machine user of the provider. ``roles`` is read-only."""

    MODEL: ClassVar[str] = "genericUser"
    READ_ONLY_FIELDS: ClassVar[frozenset[str]] = UnifiedResource.READ_ONLY_FIELDS | {"roles"}

    first_name: str | None = None
    last_name: str | None = None
    email: EmailAddress | None = None
    display_name: str | None = None
    user_type: UserType | None = None
    roles: list[str] = Field(default_factory=list)


class Workspace(UnifiedResource):
    """``genericWorkspace``: a group of users (a Kustomer team). ``name`` is required."""

    MODEL: ClassVar[str] = "genericWorkspace"

    name: str = Field(min_length=1)
    display_name: str | None = None
    members: list[UserRef] = Field(default_factory=list)
