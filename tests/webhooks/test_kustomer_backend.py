"""Pure parts of the Kustomer webhook backend: signatures, versions, settings, plans, normalisation."""

from __future__ import annotations

import json

import pytest

from connectors import Connection
from connectors.errors import ConfigurationError, WebhookPayloadError, WebhookSignatureError
from connectors.kustomer.webhooks import (
    KustomerWebhooks,
    KustomerWebhookSettings,
    sign,
    verify_signature,
    version_of,
)
from connectors.runtime.webhooks import EventPlan, check_pattern, endpoint_id, event_matches, parse_event_name

pytestmark = pytest.mark.anyio


def test_signatures() -> None:
    body = b'{"id":"e"}'
    good = sign("tok", body)
    assert len(good) == 64 and good == good.lower()
    assert verify_signature("tok", body, good)
    assert verify_signature("tok", body, "sha256=" + good.upper())
    assert not verify_signature("tok", body + b" ", good)
    assert not verify_signature("other", body, good)
    assert not verify_signature("tok", body, "")


def test_versions_sort_by_time_then_revision() -> None:
    def v(updated: str | None, rev: object = None) -> str | None:
        return version_of({"attributes": {"updatedAt": updated, "rev": rev}})

    assert v("2026-01-01T00:00:00.000Z", 2) < v("2026-01-01T00:00:00.000Z", 10)  # type: ignore[operator]
    assert v("2026-01-01T00:00:00.001Z", 1) > v("2026-01-01T00:00:00.000Z", 99)  # type: ignore[operator]
    assert v("2026-01-01T00:00:00.000Z", True) == v("2026-01-01T00:00:00Z", 0)
    assert v(None, 3) is None and v("not a date") is None
    assert version_of({}) is None
    assert (v("2999-01-01T00:00:00.000Z", 10**9) or "") < "~"


def test_settings_are_validated() -> None:
    assert KustomerWebhookSettings.from_settings(None) == KustomerWebhookSettings()
    custom = KustomerWebhookSettings.from_settings({"message_events": True, "page_size": 50, "deletions": "reconcile"})
    assert custom.message_events and custom.page_size == 50 and custom.deletions == "reconcile"
    for bad in (
        {"nope": 1},
        {"page_size": 0},
        {"page_size": 501},
        {"deletions": "never"},
        {"update_method": "POST"},
        {"reconcile_every": True},
        {"settle_seconds": -1},
        "x",
    ):
        with pytest.raises(ConfigurationError):
            KustomerWebhookSettings.from_settings(bad)


def test_names_and_patterns() -> None:
    assert parse_event_name("genericContact::created") == ("genericContact", "created")
    assert check_pattern("*::deleted") == "*::deleted"
    assert event_matches("*::deleted", "crmStage::deleted") and not event_matches("*::deleted", "crmStage::created")
    assert event_matches("crmStage::*", "crmStage::updated") and not event_matches(
        "crmStage::*", "crmPipeline::updated"
    )
    assert len(endpoint_id("kustomer", "org", "https://a")) == 32
    assert endpoint_id("kustomer", "org", "https://a") != endpoint_id("kustomer", "org", "https://b")


async def test_plans(conn: Connection) -> None:
    backend = conn.webhooks.backend
    assert isinstance(backend, KustomerWebhooks)
    assert backend.event_plan("genericContact", "created", native=True) == EventPlan(
        native=("kustomer.customer.create",)
    )
    assert backend.event_plan("genericContact", "created", native=False) == EventPlan(polls=("customer",))
    assert backend.event_plan("genericContact", "deleted", native=True) == EventPlan(polls=("customer",))
    assert backend.event_plan("crmEngagement", "created", native=True) == EventPlan(
        native=("kustomer.conversation.create",), polls=("note",)
    )
    assert backend.event_plan("crmEngagement", "deleted", native=True).polls == ("conversation", "note")
    assert backend.event_plan("crmStage", "updated", native=True).polls == ("kobject_crm-stage",)
    assert backend.event_plan("custom:order", "created", native=True).polls == ("kobject_order",)
    assert backend.model_of("kobject_crm-stage") == "crmStage" and backend.model_of("kobject_order") == "custom:order"
    assert backend.operation_for("custom:order") == "custom::list"
    with pytest.raises(ConfigurationError):
        backend.event_plan("widget", "created", native=True)
    with pytest.raises(ConfigurationError):
        backend.model_of("nope")


async def test_parse_and_normalize(conn: Connection) -> None:
    backend = conn.webhooks.backend
    resource = {"type": "customer", "id": "c1", "attributes": {"name": "A", "updatedAt": "2026-01-02T00:00:00.000Z"}}
    body = json.dumps({"id": "e1", "name": "kustomer.customer.update", "org": "o1", "data": resource}).encode()
    delivery = backend.parse_delivery(body, {"X-Kustomer-Webhook-Signature": sign("t", body)})
    assert (delivery.routing_key, delivery.event_id, delivery.name) == ("o1", "e1", "kustomer.customer.update")
    (change,) = backend.normalize(delivery)
    assert (change.model, change.trigger, change.object_id) == ("genericContact", "updated", "c1")
    assert change.occurred_at.isoformat().startswith("2026-01-02T00:00:00")
    message = json.dumps(
        {
            "id": "e2",
            "name": "kustomer.message.create",
            "org": "o1",
            "data": {"type": "message", "id": "m1", "attributes": {}},
        }
    ).encode()
    parsed = backend.parse_delivery(message, {"X-Kustomer-Webhook-Signature": sign("t", message)})
    with pytest.raises(WebhookPayloadError) as exc:
        backend.normalize(parsed)
    assert exc.value.reason == "bad_data"
    with pytest.raises(WebhookSignatureError):
        backend.parse_delivery(body, {"x-kustomer-webhook-signature": "zz"})
