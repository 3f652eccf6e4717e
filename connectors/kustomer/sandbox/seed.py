"""Deterministic seed data.

Everything is derived from ``settings.seed``: the same settings give the same ids, names and timestamps on
every run. Data: human users (the first is the org owner, an admin; the last is pending; one extra user is
deleted), teams with members, companies with ``domains`` on reserved ``example.*`` domains, customers with
emails (``example.com``/``example.net``), E.164 phones (``+1555...``), external ids, tags and custom
attributes (``loyaltyTierStr`` with an enumeration, ``lifetimeValueNum``, ``lastOrderAt``,
``marketingOptInBool``, ``accountUrl``, ``accountManagerId``), conversations on every channel in every status
with messages and notes, a Klass ``order`` with KObjects, and custom-attribute metadata for all of it.

Timestamps lie on a ``seed_timestamp_grid_seconds`` grid before ``seed_time`` and are drawn from few grid
points, so many records share an identical ``updatedAt``; ``seed_import_cluster_fraction`` of the customers
share ONE ``updatedAt`` (an "import"), enough to break keyset paging that ignores ties. Seeding bypasses
request validation and builds indexes once at the end, so 10,000 customers take well under two seconds.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Final

from connectors.kustomer.sandbox.bodies import CHANNELS
from connectors.kustomer.sandbox.store import Collection, Record
from connectors.kustomer.sandbox.timeutil import iso, to_ms

if TYPE_CHECKING:
    from connectors.kustomer.sandbox.app import Sandbox

__all__ = ["SEED_METADATA", "seed"]

_FIRST: Final = (
    "Ada", "Alan", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Edsger", "Radia",
    "Tim", "Hedy", "John", "Katherine", "Guido", "Anita", "Bjarne", "Sophie", "Niklaus", "Joan", "Donald",
    "Shafi", "Leslie", "Mary", "Yukihiro", "Carol", "Ivan", "Fran", "Vint", "Lynn", "Ward",
)  # fmt: skip
_LAST: Final = (
    "Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie", "Allen",
    "Dijkstra", "Perlman", "Berners-Lee", "Lamarr", "McCarthy", "Johnson", "van Rossum", "Borg", "Stroustrup",
    "Wilson", "Wirth", "Clarke", "Knuth", "Goldwasser", "Lamport", "Shaw", "Matsumoto", "Shaw", "Sutherland",
    "Bilas", "Cerf", "Conway", "Cunningham",
)  # fmt: skip
_COMPANY_A: Final = (
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka", "Tyrell", "Cyberdyne",
    "Soylent", "Vandelay", "Pied Piper", "Aperture", "Black Mesa", "Gringotts", "Oceanic", "Monarch",
)  # fmt: skip
_COMPANY_B: Final = (
    "Labs",
    "Industries",
    "Systems",
    "Goods",
    "Logistics",
    "Foods",
    "Media",
    "Health",
    "Works",
)
_INDUSTRIES: Final = ("retail", "software", "logistics", "food", "media", "health")
_TIERS: Final = ("bronze", "silver", "gold", "platinum")
_CUSTOMER_TAGS: Final = ("vip", "newsletter", "wholesale", "churn-risk", "beta")
_CONVERSATION_TAGS: Final = ("billing", "shipping", "returns", "bug", "feedback", "urgent")
_LOCALES: Final = (("en_US", "America/New_York"), ("en_GB", "Europe/London"), ("fr_FR", "Europe/Paris"),
                   ("de_DE", "Europe/Berlin"), ("en_US", "America/Los_Angeles"))  # fmt: skip
_SUBJECTS: Final = (
    "Where is my order?", "Refund request", "Cannot log in", "Change shipping address", "Damaged item",
    "Question about pricing", "Cancel subscription", "Feature request", "Invoice copy", "Wrong size",
)  # fmt: skip
_LINES: Final = (
    "Hi, I need some help with this.", "Thanks for reaching out! Let me check.", "Any update on this?",
    "I've issued the refund; it should arrive in 3-5 days.", "Could you send a photo of the item?",
    "That worked, thank you!", "We're sorry for the trouble.", "Please confirm your order number.",
)  # fmt: skip
_NOTES: Final = (
    "Customer is a repeat buyer; be generous.", "Escalated to billing.", "Waiting on warehouse.",
    "Possible fraud: verify identity.", "Follow up next week.",
)  # fmt: skip
_APPS: Final = {
    "email": "postmark", "sms": "twilio", "chat": "chat", "facebook": "facebook", "twitter-dm": "twitter",
    "twitter-tweet": "twitter", "voice": "voice", "instagram": "instagram", "whatsapp": "whatsapp",
}  # fmt: skip
_STATUSES: Final = ("open", "open", "open", "snoozed", "done", "done", "done", "done", "done", "done")
_ORDER_STATUSES: Final = ("pending", "paid", "shipped", "delivered", "refunded")
_REASONS: Final = ("billing.refund", "billing.invoice", "shipping.delay", "product.defect", "account.access")

SEED_METADATA: Final[dict[str, dict[str, dict[str, Any]]]] = {
    "customer": {
        "loyaltyTierStr": {"displayName": "Loyalty Tier", "type": "str", "enumeration": list(_TIERS)},
        "lifetimeValueNum": {"displayName": "Lifetime Value", "type": "num"},
        "lastOrderAt": {"displayName": "Last Order", "type": "at"},
        "marketingOptInBool": {"displayName": "Marketing Opt In", "type": "bool"},
        "accountUrl": {"displayName": "Account", "type": "url"},
        "accountManagerId": {
            "displayName": "Account Manager",
            "type": "id",
            "target": "user",
            "multi": False,
        },
        "notesTxt": {"displayName": "Notes", "type": "txt"},
    },
    "company": {
        "industryStr": {"displayName": "Industry", "type": "str", "enumeration": list(_INDUSTRIES)},
        "annualRevenueNum": {"displayName": "Annual Revenue", "type": "num"},
    },
    "conversation": {
        "contactReasonTree": {"displayName": "Contact Reason", "type": "tree"},
        "csatNum": {"displayName": "CSAT", "type": "num"},
    },
    "message": {},
    "note": {},
    "user": {},
    "kobject_order": {
        "orderTotalNum": {"displayName": "Order Total", "type": "num"},
        "orderStatusStr": {
            "displayName": "Order Status",
            "type": "str",
            "enumeration": list(_ORDER_STATUSES),
        },
        "orderUrl": {"displayName": "Order", "type": "url"},
        "placedAt": {"displayName": "Placed", "type": "at"},
    },
}
"""Custom-attribute metadata the sandbox starts with (``GET /v1/metadata/{resource}``)."""


def _count(rng: random.Random, average: float) -> int:
    """A count with the given average (uniform on ``0..2*average``, rounded)."""
    return int(rng.random() * 2 * average + 0.5) if average > 0 else 0


def seed(sb: Sandbox) -> None:
    """Fill an empty state with the seeded world."""
    settings = sb.settings
    state = sb.state
    new_id = sb.ids.new
    rng = random.Random(f"seed:{settings.seed}")
    now = to_ms(settings.seed_time)
    grid = settings.seed_timestamp_grid_seconds * 1000
    state.metadata = {k: {n: dict(v) for n, v in props.items()} for k, props in SEED_METADATA.items()}

    def insert(coll: Collection, record: Record) -> Record:
        coll.insert(record, index=False)
        return record

    # -- users and teams ---------------------------------------------------------------------------------
    users = state.users
    human_ids: list[str] = []
    for i in range(settings.users + 1):
        first, last = _FIRST[i % len(_FIRST)], _LAST[(i * 7) % len(_LAST)]
        created = now - (400 - i) * 86_400_000
        record = insert(
            users,
            Record(
                "user",
                new_id(),
                {
                    "name": f"{first} {last}",
                    "displayName": first,
                    "email": f"{first}.{last.replace(' ', '')}@example.com".lower(),
                    "mobile": f"+1555{2000000 + i:07d}",
                    "userType": "user" if i % 5 else ("user" if i == 0 else "limited"),
                    "roles": ["org.admin", "org.user"] if i == 0 else ["org.user"],
                    "pending": i == settings.users - 1 and i > 0,
                },
                {},
                created,
                created,
                created,
            ),
        )
        if i == settings.users:
            users.delete(record, now - 86_400_000)
        else:
            human_ids.append(record.id)
    sb.owner_id = human_ids[0]
    owner = human_ids[0]
    team_names = ("Support Tier 1", "Support Tier 2", "Billing", "VIP Desk", "Escalations", "Returns")
    team_ids: list[str] = []
    for i in range(settings.teams):
        created = now - (300 - i) * 86_400_000
        members = sorted(rng.sample(human_ids, k=min(len(human_ids), 1 + rng.randrange(4))))
        name = team_names[i % len(team_names)] + ("" if i < len(team_names) else f" {i}")
        team = Record("team", new_id(), {"name": name, "members": members}, {}, created, created, created)
        team.created_by = team.modified_by = owner
        team_ids.append(insert(state.teams, team).id)

    # -- companies ---------------------------------------------------------------------------------------
    company_ids: list[str] = []
    for i in range(settings.companies):
        label = f"{_COMPANY_A[i % len(_COMPANY_A)]} {_COMPANY_B[(i // len(_COMPANY_A)) % len(_COMPANY_B)]}"
        if i >= len(_COMPANY_A) * len(_COMPANY_B):
            label += f" {i}"
        slug = label.lower().replace(" ", "-")
        updated = now - rng.randrange(0, max(10, settings.companies // 5)) * grid
        created = updated - rng.randrange(0, 2000) * grid
        attrs: dict[str, Any] = {
            "name": label,
            "domains": [{"id": new_id(), "domain": f"{slug}.example.org"}],
            "employeeCount": rng.choice((5, 12, 50, 120, 800, 4000)),
            "tags": [],
            "custom": {
                "industryStr": rng.choice(_INDUSTRIES),
                "annualRevenueNum": rng.randrange(1, 900) * 10_000,
            },
        }
        if rng.random() < 0.7:
            attrs["externalId"] = f"cmp-{i:05d}"
        company = Record("company", new_id(), attrs, {}, created, updated, updated, rev=1 + (updated > created))
        company.created_by = company.modified_by = owner
        company_ids.append(insert(state.companies, company).id)

    # -- klass ---------------------------------------------------------------------------------------------
    klass_created = now - 500 * 86_400_000
    order_klass = insert(
        state.klasses,
        Record(
            "klass",
            new_id(),
            {
                "name": "order",
                "displayName": "Order",
                "icon": "cart",
                "color": "#2f80ed",
                "status": "enabled",
            },
            {},
            klass_created,
            klass_created,
            klass_created,
            created_by=owner,
            modified_by=owner,
        ),
    )

    # -- customers and everything hanging off them ---------------------------------------------------------
    customers, conversations, messages, notes, kobjects = (
        state.customers, state.conversations, state.messages, state.notes, state.kobjects
    )  # fmt: skip
    slots = max(10, settings.customers // 10)
    cluster = now - (slots // 2) * grid
    cluster_fraction = settings.seed_import_cluster_fraction
    random_ = rng.random
    randrange = rng.randrange
    order_no = 10000
    conv_avg = settings.conversations_per_customer
    msg_avg = settings.messages_per_conversation
    note_avg = settings.notes_per_conversation
    order_avg = settings.orders_per_customer
    channels = (*CHANNELS[:7], "whatsapp")
    for i in range(settings.customers):
        first, last = _FIRST[randrange(len(_FIRST))], _LAST[randrange(len(_LAST))]
        updated = cluster if random_() < cluster_fraction else now - randrange(slots) * grid
        created = updated - randrange(2000) * grid
        local = f"{first}.{last}".lower().replace(" ", "").replace("-", "")
        emails = [{"id": new_id(), "type": "home", "email": f"{local}.{i}@example.com", "verified": random_() < 0.5}]
        if random_() < 0.2:
            emails.append({"id": new_id(), "type": "work", "email": f"{local}.{i}@example.net", "verified": False})
        locale, zone = _LOCALES[i % len(_LOCALES)]
        custom: dict[str, Any] = {
            "loyaltyTierStr": _TIERS[randrange(4)],
            "lifetimeValueNum": round(random_() * 5000, 2),
            "marketingOptInBool": random_() < 0.6,
            "accountUrl": f"https://app.example.com/accounts/{i}",
        }
        if random_() < 0.7:
            custom["lastOrderAt"] = iso(created + randrange(1, 500) * grid)
        if random_() < 0.3:
            custom["accountManagerId"] = human_ids[randrange(len(human_ids))]
        attrs = {
            "name": f"{first} {last}",
            "emails": emails,
            "phones": (
                [{"id": new_id(), "type": "mobile", "phone": f"+1555{1000000 + i:07d}", "verified": False}]
                if random_() < 0.6
                else []
            ),
            "locale": locale,
            "timeZone": zone,
            "tags": [t for t in _CUSTOMER_TAGS if random_() < 0.15],
            "custom": custom,
        }
        if random_() < 0.5:
            attrs["externalId"] = f"cus-{i:06d}"
        rels: dict[str, Any] = {
            "company": company_ids[randrange(len(company_ids))] if company_ids and random_() < 0.6 else None
        }
        customer = Record(
            "customer",
            new_id(),
            attrs,
            rels,
            created,
            updated,
            updated,
            1 + (updated > created),
            owner,
            owner,
        )
        insert(customers, customer)
        cid = customer.id
        for _ in range(_count(rng, conv_avg)):
            conv_created = min(now - grid, created + randrange(max(1, (now - created) // grid)) * grid)
            channel = channels[randrange(len(channels))]
            status = _STATUSES[randrange(len(_STATUSES))]
            conv_attrs: dict[str, Any] = {
                "name": _SUBJECTS[randrange(len(_SUBJECTS))],
                "status": status,
                "priority": 1 + randrange(5),
                "direction": "in" if random_() < 0.85 else "out",
                "channels": [channel],
                "tags": [t for t in _CONVERSATION_TAGS if random_() < 0.15],
                "assignedUsers": [human_ids[randrange(len(human_ids))]] if random_() < 0.7 else [],
                "assignedTeams": [team_ids[randrange(len(team_ids))]] if team_ids and random_() < 0.5 else [],
                "custom": {"contactReasonTree": _REASONS[randrange(len(_REASONS))]},
                "messageCount": 0,
                "noteCount": 0,
                "outboundMessageCount": 0,
            }
            conv = Record(
                "conversation",
                new_id(),
                conv_attrs,
                {"customer": cid},
                conv_created,
                conv_created,
                conv_created,
                created_by=owner,
                modified_by=owner,
            )
            insert(conversations, conv)
            last_ms = conv_created
            direction = "in"
            for j in range(_count(rng, msg_avg)):
                sent = conv_created + j * grid
                if sent >= now:
                    break
                line = _LINES[randrange(len(_LINES))]
                msg_attrs: dict[str, Any] = {
                    "channel": channel,
                    "direction": direction,
                    "app": _APPS[channel],
                    "preview": line,
                    "body": line,
                    "status": "received" if direction == "in" else "sent",
                    "sentAt": iso(sent),
                }
                if channel == "email":
                    msg_attrs["subject"] = conv_attrs["name"]
                rels = {"customer": cid, "conversation": conv.id}
                message = Record("message", new_id(), msg_attrs, rels, sent, sent, sent)
                message.created_by = message.modified_by = owner
                insert(messages, message)
                conv_attrs["messageCount"] += 1
                if direction == "out":
                    conv_attrs["outboundMessageCount"] += 1
                conv_attrs["lastMessageAt"] = iso(sent)
                last_ms = sent
                direction = "out" if direction == "in" else "in"
            for _ in range(_count(rng, note_avg)):
                author = human_ids[randrange(len(human_ids))]
                insert(
                    notes,
                    Record("note", new_id(), {"body": _NOTES[randrange(len(_NOTES))]},
                           {"conversation": conv.id, "customer": cid}, last_ms, last_ms, last_ms,
                           created_by=author, modified_by=author),
                )  # fmt: skip
                conv_attrs["noteCount"] += 1
            if status == "done":
                conv_attrs["lastDone"] = {"createdAt": iso(last_ms)}
            conv.updated_ms = conv.modified_ms = last_ms
            conv.rev = 1 + conv_attrs["messageCount"] + conv_attrs["noteCount"]
        for _ in range(_count(rng, order_avg)):
            order_no += 1
            placed = created + randrange(1, 1000) * grid
            placed = min(placed, now - grid)
            insert(
                kobjects,
                Record(
                    "kobject",
                    new_id(),
                    {
                        "title": f"Order #{order_no}",
                        "externalId": f"ord-{order_no:06d}",
                        "icon": "cart",
                        "data": {"currency": "USD", "lineItems": 1 + randrange(5)},
                        "custom": {
                            "orderTotalNum": round(random_() * 400, 2),
                            "orderStatusStr": _ORDER_STATUSES[randrange(len(_ORDER_STATUSES))],
                            "orderUrl": f"https://shop.example.com/orders/{order_no}",
                            "placedAt": iso(placed),
                        },
                        "tags": [],
                    },
                    {"klass": order_klass.id, "customer": cid, "company": None},
                    placed,
                    placed,
                    placed,
                    created_by=owner,
                    modified_by=owner,
                ),
            )
    for name in sorted({*_CUSTOMER_TAGS, *_CONVERSATION_TAGS}):
        insert(state.tags, Record("tag", new_id(), {"name": name, "color": "#888888"}, {}, now, now, now))
    for coll in state.collections.values():
        coll.rebuild_indexes()
