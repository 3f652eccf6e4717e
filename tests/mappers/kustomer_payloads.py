"""Realistic Kustomer resources (as ``GET`` returns them) and helpers shared by the mapper tests.

The payloads follow kustomer-api.md §3 and the sandbox's responses: 24-hex ids, millisecond ``Z``
timestamps, response-only attributes, relationships with ``links``.
"""

from __future__ import annotations

import copy
from typing import Any

from connectors.mapping import FieldMapping, MappingContext

ORG = "5f8481c6a22ab5b9d5f2dd8a"
CUSTOMER_ID = "6717c29de5b1f00012ab34b9"
COMPANY_ID = "6717c29de5b1f00012ab3400"
USER_ID = "6717c29de5b1f00012ab3501"
USER2_ID = "6717c29de5b1f00012ab3502"
TEAM_ID = "6717c29de5b1f00012ab3600"
CONVERSATION_ID = "6717c2a4e5b1f00012ab3700"
NOTE_ID = "6717c2a4e5b1f00012ab3800"
OPPORTUNITY_ID = "6717c2a4e5b1f00012ab3900"
PIPELINE_ID = "6717c2a4e5b1f00012ab3a00"
STAGE_ID = "6717c2a4e5b1f00012ab3b00"
ORDER_ID = "6717c2a4e5b1f00012ab3c00"
KLASS_ID = "6717c2a4e5b1f00012ab3d00"
T0 = "2026-10-21T14:02:11.925Z"
T1 = "2026-10-22T09:30:00.000Z"


def rel(type_: str, id_: str, collection: str) -> dict[str, Any]:
    """A to-one JSON:API relationship as Kustomer returns it."""
    return {"data": {"type": type_, "id": id_}, "links": {"self": f"/v1/{collection}/{id_}"}}


CUSTOMER: dict[str, Any] = {
    "type": "customer",
    "id": CUSTOMER_ID,
    "attributes": {
        "name": "Ada King Lovelace",
        "displayName": "Ada King Lovelace",
        "displayColor": "purple",
        "displayIcon": "flower",
        "externalId": "crm-000123",
        "username": "ada.lovelace",
        "emails": [
            {
                "id": "6717c29de5b1f00012ab34b1",
                "type": "work",
                "email": "ada@analytical.example.com",
                "verified": True,
            },
            {
                "id": "6717c29de5b1f00012ab34b2",
                "type": "home",
                "email": "ada.lovelace@example.org",
                "verified": False,
            },
        ],
        "phones": [
            {"id": "6717c29de5b1f00012ab34b3", "type": "mobile", "phone": "+14155550100", "verified": True},
            {"id": "6717c29de5b1f00012ab34b4", "type": "work", "phone": "+14155550199", "verified": False},
        ],
        "socials": [],
        "urls": [{"type": "website", "url": "https://ada.example.com"}],
        "locale": "en-GB",
        "timeZone": "Europe/London",
        "tags": ["vip", "beta"],
        "sentiment": {"polarity": 1, "confidence": 0.82},
        "custom": {
            "loyaltyTierStr": "gold",
            "lifetimeValueNum": 1840.5,
            "ordersNum": 12,
            "lastOrderAt": "2026-10-02T15:04:05.000Z",
            "marketingOptInBool": True,
            "accountUrl": "https://shop.example.com/accounts/123",
            "notesTxt": "Prefers email.",
        },
        "conversationCounts": {"all": 14, "open": 1, "snoozed": 0, "done": 13},
        "lastConversation": {"id": CONVERSATION_ID, "channels": ["email"], "tags": []},
        "progressiveStatus": "open",
        "verified": True,
        "createdAt": "2025-01-02T10:00:00.000Z",
        "updatedAt": T0,
        "modifiedAt": T0,
        "rev": 7,
    },
    "relationships": {
        "org": rel("org", ORG, "orgs"),
        "company": rel("company", COMPANY_ID, "companies"),
        "createdBy": rel("user", USER_ID, "users"),
        "modifiedBy": rel("user", USER_ID, "users"),
        "messages": {"links": {"self": f"/v1/customers/{CUSTOMER_ID}/messages"}},
    },
    "links": {"self": f"/v1/customers/{CUSTOMER_ID}"},
}

COMPANY: dict[str, Any] = {
    "type": "company",
    "id": COMPANY_ID,
    "attributes": {
        "name": "Analytical Engines Ltd",
        "externalId": "acct-42",
        "domains": [{"domain": "analytical.example.com"}, {"domain": "engines.example.org"}],
        "emails": [{"type": "work", "email": "hello@analytical.example.com"}],
        "phones": [{"type": "work", "phone": "+442071234567"}],
        "employeeCount": 250,
        "tags": ["enterprise"],
        "custom": {"industryStr": "Manufacturing", "arrNum": 120000, "renewalAt": "2027-01-01T00:00:00.000Z"},
        "createdAt": "2024-05-01T08:00:00.000Z",
        "updatedAt": T0,
        "modifiedAt": T0,
        "rev": 3,
    },
    "relationships": {"org": rel("org", ORG, "orgs")},
    "links": {"self": f"/v1/companies/{COMPANY_ID}"},
}

USER: dict[str, Any] = {
    "type": "user",
    "id": USER_ID,
    "attributes": {
        "name": "Grace Brewster Hopper",
        "displayName": "Grace",
        "email": "grace@support.example.com",
        "mobile": "+14155550111",
        "userType": "user",
        "roles": ["org.user", "org.permission.customer.read"],
        "avatarUrl": "https://cdn.example.com/u/grace.png",
        "createdAt": "2024-01-01T00:00:00.000Z",
        "updatedAt": T0,
    },
    "relationships": {"org": rel("org", ORG, "orgs")},
    "links": {"self": f"/v1/users/{USER_ID}"},
}

TEAM: dict[str, Any] = {
    "type": "team",
    "id": TEAM_ID,
    "attributes": {
        "name": "tier-2",
        "displayName": "Tier 2 support",
        "icon": "account-multiple",
        "members": [USER_ID, USER2_ID],
        "createdAt": "2024-02-01T00:00:00.000Z",
        "updatedAt": T0,
        "modifiedAt": T0,
    },
    "relationships": {"org": rel("org", ORG, "orgs")},
    "links": {"self": f"/v1/teams/{TEAM_ID}"},
}

CONVERSATION: dict[str, Any] = {
    "type": "conversation",
    "id": CONVERSATION_ID,
    "attributes": {
        "name": "Refund for order 1042",
        "channels": ["email"],
        "status": "done",
        "direction": "in",
        "preview": "Hi, I would like a refund for order 1042...",
        "priority": 3,
        "messageCount": 4,
        "noteCount": 1,
        "assignedUsers": [USER_ID, USER2_ID],
        "assignedTeams": [TEAM_ID],
        "tags": ["refund"],
        "custom": {"orderNumberStr": "1042", "refundAmountNum": 25.5},
        "firstDone": {"createdAt": T1},
        "lastDone": {"createdAt": T1, "createdBy": USER_ID},
        "createdAt": T0,
        "updatedAt": T1,
        "modifiedAt": T1,
        "rev": 9,
    },
    "relationships": {
        "customer": rel("customer", CUSTOMER_ID, "customers"),
        "org": rel("org", ORG, "orgs"),
        "messages": {"links": {"self": f"/v1/conversations/{CONVERSATION_ID}/messages"}},
        "createdBy": rel("user", USER_ID, "users"),
    },
    "links": {"self": f"/v1/conversations/{CONVERSATION_ID}"},
}

NOTE: dict[str, Any] = {
    "type": "note",
    "id": NOTE_ID,
    "attributes": {
        "body": "Customer called back; refund approved.",
        "userMentions": [],
        "createdAt": T1,
        "updatedAt": T1,
    },
    "relationships": {
        "customer": rel("customer", CUSTOMER_ID, "customers"),
        "conversation": rel("conversation", CONVERSATION_ID, "conversations"),
        "createdBy": rel("user", USER_ID, "users"),
        "org": rel("org", ORG, "orgs"),
    },
    "links": {"self": f"/v1/notes/{NOTE_ID}"},
}

MESSAGE: dict[str, Any] = {
    "type": "message",
    "id": "6717c2a4e5b1f00012ab3701",
    "attributes": {
        "channel": "email",
        "app": "postmark",
        "direction": "in",
        "preview": "Hi, I would like a refund",
        "subject": "Refund",
        "status": "received",
        "sentAt": T0,
        "meta": {"to": "support@example.com", "cc": ["a@example.com"]},
        "createdAt": T0,
        "updatedAt": T0,
    },
    "relationships": {
        "customer": rel("customer", CUSTOMER_ID, "customers"),
        "conversation": rel("conversation", CONVERSATION_ID, "conversations"),
    },
    "links": {"self": "/v1/messages/6717c2a4e5b1f00012ab3701"},
}


def kobject(id_: str, klass: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """A KObject resource of ``klass``."""
    return {
        "type": "kobject",
        "id": id_,
        "attributes": {
            "icon": "briefcase",
            "images": [],
            "rev": 1,
            "createdAt": T0,
            "updatedAt": T1,
            **attributes,
        },
        "relationships": {"org": rel("org", ORG, "orgs"), "klass": rel("klass", KLASS_ID, "klasses")},
        "links": {"self": f"/v1/klasses/{klass}/{id_}"},
    }


OPPORTUNITY = kobject(
    OPPORTUNITY_ID,
    "crm-opportunity",
    {
        "title": "Analytical Engines renewal",
        "description": "Three-year renewal",
        "externalId": "opp-7",
        "custom": {
            "amountNum": 42000,
            "currencyStr": "EUR",
            "statusStr": "open",
            "closeDateAt": "2026-12-31T00:00:00.000Z",
            "probabilityNum": 60,
            "stageId": STAGE_ID,
            "pipelineId": PIPELINE_ID,
            "ownerId": USER_ID,
            "contactsId": [CUSTOMER_ID],
            "companiesId": [COMPANY_ID],
            "engagementsId": [CONVERSATION_ID, f"note:{NOTE_ID}"],
            "sourceStr": "webinar",
        },
    },
)

PIPELINE = kobject(
    PIPELINE_ID,
    "crm-pipeline",
    {"title": "Sales", "description": "Default pipeline", "custom": {"stagesId": [STAGE_ID]}},
)

STAGE = kobject(
    STAGE_ID,
    "crm-stage",
    {
        "title": "Negotiation",
        "custom": {"typeStr": "open", "orderNum": 3, "probabilityNum": 60.5, "pipelineId": PIPELINE_ID},
    },
)

ORDER = kobject(
    ORDER_ID,
    "order",
    {
        "title": "Order #1042",
        "description": "2 items",
        "externalId": "ord-1042",
        "tags": ["web"],
        "customer": CUSTOMER_ID,
        "custom": {"totalNum": 99.9, "placedAt": "2026-10-01T10:00:00.000Z", "giftBool": False},
    },
)
ORDER["relationships"]["company"] = rel("company", COMPANY_ID, "companies")


def ctx(
    model: str,
    *,
    current: Any = None,
    settings: dict[str, Any] | None = None,
    fields: dict[str, str] | None = None,
    passthrough: bool = True,
    include_raw: bool = False,
) -> MappingContext:
    """A mapping context for the Kustomer connector."""
    return MappingContext(
        connector_id="kustomer",
        model=model,
        field_mapping=FieldMapping(fields=fields or {}, passthrough=passthrough),
        settings=settings or {},
        include_raw=include_raw,
        current=current,
    )


# Flat body key -> (relationship key, resource type) that a create/update body sets by id.
_RELATIONSHIPS = {
    "customer": {"company": ("company", "company")},
    "conversation": {"customer": ("customer", "customer")},
    "note": {"customer": ("customer", "customer")},
    "kobject": {"customer": ("customer", "customer"), "company": ("company", "company")},
}


def respond(type_: str, body: dict[str, Any], id_: str, **attributes: Any) -> dict[str, Any]:
    """What a Kustomer-like server returns for a created ``body``: the JSON:API resource.

    Relationship keys of the flat body (``company`` of a customer, ``customer`` of a conversation) become
    relationships; ``attributes`` adds server-assigned attributes (``createdAt``...).
    """
    table = _RELATIONSHIPS.get(type_, {})
    attrs: dict[str, Any] = {}
    rels: dict[str, Any] = {}
    for key, value in copy.deepcopy(body).items():
        if key in table:
            name, rtype = table[key]
            rels[name] = {"data": {"type": rtype, "id": value} if value else None}
        else:
            attrs[key] = value
    attrs.update(attributes)
    return {"type": type_, "id": id_, "attributes": attrs, "relationships": rels, "links": {"self": "/v1/x"}}
