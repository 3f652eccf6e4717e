"""Audit log of command runs, behind a sink protocol.

An entry holds what an administrator needs to track usage (org, command, args, outcome, status, source,
time) and nothing that could carry the secret app setting: no resolved headers, no resolved body. Args are
logged, as Kustomer's docs warn ("args can appear in audit logs").
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = ["AuditEntry", "AuditOutcome", "AuditSink", "InMemoryAuditLog", "ResultSource"]

ResultSource = Literal["live", "cache", "fallback"]
AuditOutcome = Literal["ok", "upstream_error", "transport_error", "refused"]


class AuditEntry(BaseModel):
    """One audited command run.

    Attributes:
        org_id: the Kustomer org that ran the command.
        command: the command's full name.
        args: the args as given (strings), never app settings.
        outcome: ``ok``; ``upstream_error`` (the target answered 4xx/5xx and no cached value was served);
            ``transport_error`` (the target could not be reached); ``refused`` (bad args, body or setup:
            nothing was sent).
        status: the status returned to the caller (a cached status when ``source`` is cache/fallback).
        upstream_status: the status the target answered during this run (None when no request was made or it
            failed at the transport level).
        source: where the returned response came from (None when refused or unreachable without a cache).
        timestamp: when the run finished (UTC, from the runner's clock).
    """

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, validate_by_name=True, validate_by_alias=True)

    org_id: str
    command: str
    args: dict[str, str] = Field(default_factory=dict)
    outcome: AuditOutcome
    status: int | None = None
    upstream_status: int | None = None
    source: ResultSource | None = None
    timestamp: datetime


class AuditSink(Protocol):
    """Where audit entries go (a database table, a log shipper, ...)."""

    async def record(self, entry: AuditEntry) -> None:
        """Persist one entry."""


class InMemoryAuditLog:
    """An :class:`AuditSink` keeping entries in a list (tests, the sandbox, the CLI)."""

    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    def __repr__(self) -> str:
        return f"InMemoryAuditLog(entries={len(self.entries)})"

    async def record(self, entry: AuditEntry) -> None:
        """Append ``entry``."""
        self.entries.append(entry)
