"""Bulk jobs (kustomer-api.md §2.11).

``POST|PUT /v1/{customers,companies,conversations,messages,notes}/bulk``, ``POST|PUT|DELETE
/v1/klasses/{name}/bulk`` and ``DELETE /v1/customers/bulk?ids=`` take a JSON array of at most
``bulk_max_items`` single-record bodies (PUT items carry ``id``; any item may carry ``_clientRef``; a PUT may
instead apply one object body to ``?ids=a,b``). The request is answered at once with ``201 {"data": {"type":
"bulk", ...}}`` and counts as ONE request against the rate budget; the job then runs in an asyncio task:
``queued`` -> ``running`` -> ``complete``.

Items are split into batches of ``bulk_batch_size``. A batch is planned item by item and committed only if
every item is valid: **one invalid item rejects the whole batch** — nothing of it is written,
``failureCount`` is the batch size and ``errors`` holds the reason of the first invalid item *without saying
which item it was* (hence clients' split retries). Successful items are reported in ``results`` as
``{"_clientRef", "id"}`` and in ``objectIds``.

Bulk endpoints answer errors in the ``simple`` shape (``{"errors": [{"code", "message", "meta"}]}``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal

from connectors.kustomer.custom_fields import is_object_id
from connectors.kustomer.sandbox.errors import SandboxError
from connectors.kustomer.sandbox.resources import Plan, WriteContext
from connectors.kustomer.sandbox.store import BulkBatch, BulkJob, Record
from connectors.kustomer.sandbox.timeutil import iso

if TYPE_CHECKING:
    from connectors.kustomer.sandbox.app import Sandbox
    from connectors.kustomer.sandbox.auth import Principal

__all__ = ["BulkRunner"]

Method = Literal["POST", "PUT", "DELETE"]


class BulkRunner:
    """Creates, runs and renders bulk jobs.

    Args:
        sandbox: the owning sandbox.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox
        self._tasks: set[asyncio.Task[None]] = set()
        self._principals: dict[str, Principal] = {}

    def submit(
        self,
        *,
        resource: str,
        method: Method,
        path: str,
        body: Any,
        ids: list[str] | None,
        principal: Principal,
        klass: Record | None = None,
    ) -> BulkJob:
        """Validate the request shape, store a queued job and start it.

        Raises:
            SandboxError: 400 (simple shape) for a body that is not an array, too many items, or bad ``ids``.
        """
        sb = self._sb
        settings = sb.settings
        items = self._items(method, body, ids)
        if len(items) > settings.bulk_max_items:
            raise SandboxError(
                400,
                f"A bulk request may contain at most {settings.bulk_max_items} items ({len(items)} given)",
                style="simple",
                meta={"maxItems": settings.bulk_max_items},
            )
        if not items:
            raise SandboxError(400, "A bulk request needs at least one item", style="simple")
        size = settings.bulk_batch_size
        batches = [BulkBatch(index=i // size, items=items[i : i + size]) for i in range(0, len(items), size)]
        now = sb.now_ms()
        job = BulkJob(
            id=sb.ids.new(),
            resource=resource,
            context=sb.types[resource].type,
            method=method,
            path=path,
            klass=klass.id if klass else None,
            batches=batches,
            user_id=principal.user_id,
            created_ms=now,
            updated_ms=now,
        )
        sb.state.bulk_jobs[job.id] = job
        self._principals[job.id] = principal
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def _items(self, method: Method, body: Any, ids: list[str] | None) -> list[Any]:
        if method == "DELETE":
            if ids:
                return list(ids)
            if isinstance(body, list) and all(isinstance(i, str | dict) for i in body):
                return [i if isinstance(i, str) else i.get("id") for i in body]
            raise SandboxError(400, "A bulk delete needs ?ids=<id>,<id> or a JSON array of ids", style="simple")
        if method == "PUT" and ids:
            if not isinstance(body, dict):
                raise SandboxError(400, "With ?ids= the body must be one JSON object", style="simple")
            return [{**body, "id": record_id} for record_id in ids]
        if not isinstance(body, list):
            raise SandboxError(400, "The request body must be a JSON array of objects", style="simple")
        return list(body)

    @property
    def pending(self) -> int:
        """Jobs not complete yet."""
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait until every started job is complete (polls, so it also works from another event loop)."""
        loop = asyncio.get_running_loop()
        while self._tasks:
            local = [task for task in self._tasks if task.get_loop() is loop]
            if local:
                await asyncio.wait(local)
            else:  # the tasks run on another loop (a sandbox served in a thread): poll
                await asyncio.sleep(0.002)

    async def _run(self, job: BulkJob) -> None:
        sb = self._sb
        delay = sb.settings.bulk_processing_seconds
        await asyncio.sleep(delay)
        job.status = "running"
        job.updated_ms = sb.now_ms()
        for batch in job.batches:
            batch.status = "running"
            self._run_batch(job, batch)
            batch.status = "complete"
            batch.completed_ms = sb.now_ms()
            job.updated_ms = batch.completed_ms
            if delay:
                await asyncio.sleep(delay)
        job.status = "complete"
        job.updated_ms = sb.now_ms()
        self._principals.pop(job.id, None)

    def _run_batch(self, job: BulkJob, batch: BulkBatch) -> None:
        sb = self._sb
        rt = sb.types[job.resource]
        principal = self._principals.get(job.id)
        klass = sb.state.klasses.get(job.klass) if job.klass else None
        ctx = WriteContext(job.user_id, principal, sb.now_ms(), source="bulk", klass=klass)
        try:
            plans = self._plan_batch(job, batch, ctx)
        except SandboxError as exc:
            batch.failure_count = len(batch.items)
            batch.errors = [{"code": exc.code, "message": exc.detail, "meta": {"status": exc.status}}]
            return
        for ref, planned in plans:
            if isinstance(planned, Record):
                rt.delete(planned, ctx)
                record_id = planned.id
            else:
                record_id = rt.commit(planned).id
            batch.object_ids.append(record_id)
            batch.results.append({"_clientRef": ref, "id": record_id})
        batch.success_count = len(plans)

    def _plan_batch(self, job: BulkJob, batch: BulkBatch, ctx: WriteContext) -> list[tuple[Any, Plan | Record]]:
        """Validate every item of a batch (no side effects); the first invalid one raises."""
        rt = self._sb.types[job.resource]
        if job.klass and ctx.klass is None:
            raise SandboxError(404, "Klass not found")
        plans: list[tuple[Any, Plan | Record]] = []
        seen_external: set[str] = set()
        for item in batch.items:
            ref = item.get("_clientRef") if isinstance(item, dict) else None
            if job.method == "DELETE":
                plans.append((ref, self._target(rt.coll.get, item, job)))
                continue
            if not isinstance(item, dict):
                raise SandboxError(400, "Each item must be a JSON object")
            if job.method == "PUT":
                plan = rt.plan_update(self._target(rt.coll.get, item.get("id"), job), item, ctx)
            else:
                plan = rt.plan_create(item, ctx)
            ext = plan.attrs.get("externalId") if rt.unique_external_id else None
            if ext:
                if ext in seen_external:
                    raise SandboxError(409, f"Duplicate externalId {ext!r} in one batch")
                seen_external.add(ext)
            plans.append((ref, plan))
        return plans

    def _target(self, get: Any, record_id: Any, job: BulkJob) -> Record:
        if not isinstance(record_id, str) or not is_object_id(record_id):
            raise SandboxError(400, '"id" is required and must be an object id')
        record: Record | None = get(record_id)
        if record is None or (job.klass and record.rels.get("klass") != job.klass):
            raise SandboxError(404, f"{self._sb.types[job.resource].type} {record_id} not found")
        return record

    def render(self, job: BulkJob) -> dict[str, Any]:
        """The ``bulk`` resource of a job."""
        complete = sum(1 for b in job.batches if b.status == "complete")
        org = self._sb.state.org.id
        return {
            "type": "bulk",
            "id": job.id,
            "attributes": {
                "ids": [i for b in job.batches for i in b.object_ids],
                "context": job.context,
                "status": job.status,
                "v2": True,
                "payload": {"api": {"method": job.method, "path": job.path}},
                "completed": job.status == "complete",
                "batches": {"complete": complete, "total": len(job.batches)},
                "successCount": sum(b.success_count for b in job.batches),
                "failureCount": sum(b.failure_count for b in job.batches),
                "createdAt": iso(job.created_ms),
                "updatedAt": iso(job.updated_ms),
            },
            "relationships": {
                "org": {"data": {"type": "org", "id": org}, "links": {"self": f"/v1/orgs/{org}"}},
                "createdBy": {
                    "data": {"type": "user", "id": job.user_id},
                    "links": {"self": f"/v1/users/{job.user_id}"},
                },
            },
            "links": {"self": f"/v1/bulk/{job.id}"},
        }

    def render_batch(self, job: BulkJob, batch: BulkBatch) -> dict[str, Any]:
        """One batch as a ``bulk_batch`` resource."""
        return {
            "type": "bulk_batch",
            "id": f"{job.id}-{batch.index}",
            "attributes": {
                "status": batch.status,
                "successCount": batch.success_count,
                "failureCount": batch.failure_count,
                "objectIds": list(batch.object_ids),
                "completedAt": iso(batch.completed_ms) if batch.completed_ms is not None else None,
                "errors": list(batch.errors),
                "results": list(batch.results),
            },
        }
