"""Sandbox settings: data sizes, emulated Kustomer behaviour, limits, latency and faults.

Every field has a default, so ``SandboxSettings()`` is a working sandbox. Settings are validated on
assignment, and the sandbox reads them on every request, so tests may change latency, faults and rate limits
at runtime (``sb.settings.fault_502_rate = 0.5``) or over HTTP (``PATCH /sandbox/settings``). Data-size and
seed fields only matter when the sandbox is (re)seeded.

Choices for facts kustomer-api.md marks UNCONFIRMED are settings, with the most likely behaviour as default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["REGION_PODS", "Probability", "Region", "SandboxSettings"]

Region = Literal["us", "eu", "in"]
"""Kustomer regions: US (pod ``prod1``), EU (``prod2``), India (``prod4``)."""

REGION_PODS: Final[Mapping[str, str]] = MappingProxyType({"us": "prod1", "eu": "prod2", "in": "prod4"})
"""Region -> Kustomer pod name (the ``pod`` claim of API keys)."""

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
"""A probability in ``[0, 1]``."""

_DEFAULT_SEED_TIME: Final = datetime(2026, 1, 1, tzinfo=UTC)


class SandboxSettings(BaseModel):
    """Everything that configures a :class:`~connectors.kustomer.sandbox.Sandbox`."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid", use_attribute_docstrings=True)

    # -- identity and seed data ---------------------------------------------------------------------------
    seed: int = 42
    """Seed of all generated data, ids, signing keys and of the fault/latency random generators."""
    region: Region = "us"
    """Region the sandbox emulates; tokens minted for another region are refused with Kustomer's 401."""
    org_name: str = "sandbox"
    """The org's name (``orgName`` claim of API keys)."""
    customers: int = Field(200, ge=0)
    """Number of seeded customers."""
    companies: int = Field(40, ge=0)
    """Number of seeded companies."""
    users: int = Field(12, ge=1)
    """Number of seeded human users (the first is the org owner, an admin)."""
    teams: int = Field(4, ge=0)
    """Number of seeded teams."""
    conversations_per_customer: float = Field(1.5, ge=0)
    """Average number of seeded conversations per customer."""
    messages_per_conversation: float = Field(2.0, ge=0)
    """Average number of seeded messages per conversation."""
    notes_per_conversation: float = Field(0.5, ge=0)
    """Average number of seeded notes per conversation."""
    orders_per_customer: float = Field(0.5, ge=0)
    """Average number of seeded KObjects of the seeded ``order`` Klass per customer."""
    seed_time: datetime = _DEFAULT_SEED_TIME
    """The 'now' of the seeded world; all seeded timestamps lie before it (fixed for determinism)."""
    seed_timestamp_grid_seconds: int = Field(3600, ge=1)
    """Seeded timestamps lie on this grid, so many records share an identical ``updatedAt``."""
    seed_import_cluster_fraction: Probability = 0.1
    """Fraction of seeded customers sharing one single ``updatedAt`` (an 'import'), to expose keyset bugs."""

    # -- emulated Kustomer behaviour ------------------------------------------------------------------------
    company_delete_supported: bool = False
    """Kustomer's spec has no company DELETE/PATCH; when False those answer 405 like an unknown method."""
    missing_role_status: Literal[401, 403] = 403
    """Status for a valid token that lacks the endpoint's roles (NEW docs say 403, OLD docs 401)."""
    reject_unknown_attributes: bool = True
    """Refuse request bodies with attributes the endpoint does not know (400), as Kustomer does."""
    max_body_bytes: int = Field(100 * 1024, ge=1)
    """Largest request body for most endpoints (larger -> 413)."""
    max_hook_body_bytes: int = Field(400 * 1024, ge=1)
    """Largest request body for inbound web hooks (larger -> 413)."""
    search_max_page: int = Field(100, ge=1)
    """Search's hard page cap; a higher ``page`` is refused with 400."""
    search_max_page_size: int = Field(500, ge=1)
    """Largest search ``pageSize``."""
    search_archive_after_days: int | None = Field(None, ge=1)
    """If set (Kustomer: 730), search only sees objects updated within this many days of the clock and
    archive search only older ones. Off by default so results do not depend on the wall clock."""
    list_max_page_size: int = Field(100, ge=1)
    """Largest ``pageSize`` of most list endpoints."""
    people_max_page_size: int = Field(500, ge=1)
    """Largest ``pageSize`` of the user and team lists."""
    create_limit_per_customer: int = Field(120, ge=1)
    """Conversations/messages/notes/KObjects created per customer per rate window (``importedAt`` exempts)."""
    tag_events_enabled: bool = False
    """Offer ``kustomer.tag.create``/``update`` outbound-webhook events (their names are UNCONFIRMED)."""

    # -- rate limits ----------------------------------------------------------------------------------------
    rate_limit_enabled: bool = True
    """Apply the org-wide budgets below."""
    rate_limit_per_minute: int = Field(1000, ge=1)
    """Requests per window for the whole org, shared by all its tokens (Enterprise plan: 1,000)."""
    search_limit_per_minute: int = Field(100, ge=1)
    """Search requests per window by machine users (API keys); human users only have the org budget."""
    hook_limit_per_minute: int = Field(1000, ge=1)
    """Inbound web hook posts per window (their own budget, not the org's)."""
    rate_window_seconds: float = Field(60.0, gt=0)
    """Length of the fixed, clock-aligned rate window; compress it in tests."""
    ratelimit_reset_style: Literal["epoch", "delay"] = "epoch"
    """``x-ratelimit-reset`` as epoch seconds of the window's end, or seconds until then (UNCONFIRMED)."""

    # -- OAuth ----------------------------------------------------------------------------------------------
    oauth_access_token_ttl_seconds: int = Field(86400, ge=1)
    """Lifetime of OAuth access tokens (``expires_in``)."""
    oauth_refresh_idle_seconds: int = Field(14 * 86400, ge=1)
    """A refresh token expires when unused for this long (UNCONFIRMED: 2 weeks)."""
    oauth_code_ttl_seconds: int = Field(60, ge=1)
    """Lifetime of authorization codes."""

    # -- bulk -----------------------------------------------------------------------------------------------
    bulk_max_items: int = Field(100, ge=1)
    """Most items one bulk request may carry."""
    bulk_batch_size: int = Field(100, ge=1)
    """Items per batch inside a bulk job (a batch with one invalid item is rejected whole)."""
    bulk_processing_seconds: float = Field(0.02, ge=0)
    """Delay before a bulk job starts, and between its batches."""

    # -- outbound webhooks ----------------------------------------------------------------------------------
    allow_http_webhooks: bool = True
    """Accept ``http://`` outbound-webhook URLs (Kustomer requires https; local receivers rarely have it)."""
    max_outbound_webhooks: int = Field(5, ge=0)
    """Most outbound webhooks per org."""
    webhook_max_attempts: int = Field(5, ge=1)
    """Delivery attempts per event before giving up."""
    webhook_retry_base_seconds: float = Field(0.5, ge=0)
    """First retry delay; doubles per attempt."""
    webhook_timeout_seconds: float = Field(5.0, gt=0)
    """Timeout of one delivery attempt."""
    webhook_duplicate_rate: Probability = 0.0
    """Probability that an event is delivered twice (at-least-once delivery)."""
    webhook_reorder: bool = False
    """Deliver events concurrently after a random delay, so they may arrive out of order."""
    webhook_reorder_max_delay_seconds: float = Field(0.05, ge=0)
    """Largest random delay used when ``webhook_reorder`` is on."""
    webhook_disable_after_failures: int = Field(0, ge=0)
    """Disable a webhook after this many consecutive failed deliveries (0 = never)."""

    # -- latency and faults ---------------------------------------------------------------------------------
    latency_ms: float = Field(0.0, ge=0)
    """Added to every non-admin request."""
    latency_jitter_ms: float = Field(0.0, ge=0)
    """Uniform jitter (+/-) around ``latency_ms``."""
    fault_500_rate: Probability = 0.0
    """Probability of a 500 before the request has any effect."""
    fault_502_rate: Probability = 0.0
    """Probability of a 502 (HTML, like a load balancer) before the request has any effect."""
    fault_503_rate: Probability = 0.0
    """Probability of a 503 (HTML) before the request has any effect."""
    drop_connection_rate: Probability = 0.0
    """Probability of dropping the connection before the request has any effect."""
    slow_response_rate: Probability = 0.0
    """Probability of delaying a request by ``slow_response_ms``."""
    slow_response_ms: float = Field(2000.0, ge=0)
    """Delay of a slow response."""
    burst_429_rate: Probability = 0.0
    """Probability of starting a burst of 429s regardless of the budget."""
    burst_429_length: int = Field(3, ge=1)
    """Consecutive 429s in a burst."""
    fault_after_write_rate: Probability = 0.0
    """Probability that a successful write (POST/PUT/PATCH/DELETE) IS applied but answered with a 502 or a
    dropped connection, so clients must not blindly retry non-idempotent requests."""
    fault_paths: str | None = None
    """If set, a regular expression (``re.search`` on the path) selecting the requests faults apply to."""

    # -- admin ----------------------------------------------------------------------------------------------
    admin_token: str | None = None
    """If set, ``/sandbox/*`` admin routes need ``X-Sandbox-Admin-Token: <token>``; else they are open."""

    @field_validator("fault_paths")
    @classmethod
    def _compile_fault_paths(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"fault_paths is not a regular expression: {exc}") from exc
        return value

    @field_validator("seed_time")
    @classmethod
    def _aware_seed_time(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @property
    def pod(self) -> str:
        """The Kustomer pod of :attr:`region` (``prod1`` for ``us``)."""
        return REGION_PODS[self.region]
