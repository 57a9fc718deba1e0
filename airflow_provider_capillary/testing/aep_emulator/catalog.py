"""Emulated Catalog Service (``/data/foundation/catalog``): datasets and batches."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from airflow_provider_capillary.testing.aep_emulator.context import EmulatorContext, require
from airflow_provider_capillary.testing.aep_emulator.errors import catalog_error
from airflow_provider_capillary.testing.aep_emulator.queries import filter_items, int_param
from airflow_provider_capillary.testing.aep_emulator.state import PendingLanding, new_id, now_ms

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_provider_capillary.testing.aep_emulator.state import SandboxState

BASE = "/data/foundation/catalog"
ENABLED_TAG_VALUES = ("enabled:true", "enabled: true")


def routes(ctx: EmulatorContext) -> list[web.RouteDef]:
    """
    The Catalog routes.

    :param ctx: the emulator context.
    """
    catalog = _Catalog(ctx)
    return [
        web.post(f"{BASE}/dataSets", catalog.create_dataset),
        web.get(f"{BASE}/dataSets", catalog.list_datasets),
        web.get(BASE + "/dataSets/{id}", catalog.get_dataset),
        web.patch(BASE + "/dataSets/{id}", catalog.patch_dataset),
        web.delete(BASE + "/dataSets/{id}", catalog.delete_dataset),
        web.get(f"{BASE}/lastBatches", catalog.last_batches),
        web.get(f"{BASE}/batches", catalog.list_batches),
        web.get(BASE + "/batches/{id}", catalog.get_batch),
    ]


def land(ctx: EmulatorContext, sandbox: SandboxState) -> None:
    """
    Turn streamed records older than ``landing_delay`` into system Catalog batches, one per dataset.

    :param ctx: the emulator context.
    :param sandbox: the sandbox whose datasets are checked.
    """
    cutoff = time.monotonic() - ctx.config.landing_delay
    with ctx.state.lock:
        for dataset_id, store in sandbox.ingested.items():
            ready = [pending for pending in store.pending if pending.received <= cutoff]
            if not ready:
                continue
            store.pending = [pending for pending in store.pending if pending.received > cutoff]
            accepted = sum(pending.accepted for pending in ready)
            failed = sum(pending.failed for pending in ready)
            errors = [error for pending in ready for error in pending.errors]
            if accepted:
                record_batch(sandbox, dataset_id, "success", accepted, 0, [], streaming=True)
            if failed:
                record_batch(sandbox, dataset_id, "failed", 0, failed, errors, streaming=True)


def queue_landing(
    store_pending: list[PendingLanding], accepted: int, failed: int, errors: list[dict[str, Any]]
) -> None:
    """
    Remember records accepted or failed by one streaming request, to land after the delay.

    :param store_pending: the dataset's pending list.
    :param accepted: records accepted.
    :param failed: records that failed validation asynchronously.
    :param errors: Catalog ``errors[]`` entries for the failed ones.
    """
    if accepted or failed:
        store_pending.append(PendingLanding(time.monotonic(), accepted, failed, errors))


def record_batch(
    sandbox: SandboxState,
    dataset_id: str,
    status: str,
    records: int,
    failed: int,
    errors: Sequence[Mapping[str, Any]],
    *,
    streaming: bool,
    batch_id: str | None = None,
) -> dict[str, Any]:
    """
    Create (or update) a Catalog batch object of a dataset.

    :param sandbox: the dataset's sandbox.
    :param dataset_id: the dataset.
    :param status: batch status (``loading``, ``success``, ``failed``...).
    :param records: ``recordCount``.
    :param failed: ``failedRecordCount``.
    :param errors: ``errors[]`` entries (``code``, ``description``, ``rows``).
    :param streaming: whether the platform created it for streamed data (vs. a Batch Ingestion batch).
    :param batch_id: an existing batch to update; a new one is created when ``None``.
    """
    created = now_ms()
    batch = sandbox.batches.get(batch_id or "") or {
        "id": batch_id or new_id("batch"),
        "created": created,
        "createdClient": "dcs" if streaming else "batch-ingestion",
        "relatedObjects": [{"type": "dataSet", "id": dataset_id}],
        "inputFormat": {"format": "json"},
        "tags": {"acp_stagePath": [], "acp_requestType": ["streaming" if streaming else "batch"]},
        "version": "1.0.0",
        "errors": [],
    }
    batch.update(
        {
            "status": status,
            "updated": created,
            "recordCount": records,
            "failedRecordCount": failed,
            "errors": [dict(error) for error in errors],
            "metrics": {
                "inputRecordCount": records + failed,
                "outputRecordCount": records,
                "failedRecordCount": failed,
                "partitionCount": 1,
            },
        }
    )
    if status in ("success", "failed", "active", "failure"):
        batch.setdefault("started", created)
        batch["completed"] = created
    sandbox.batches[batch["id"]] = batch
    dataset = sandbox.datasets.get(dataset_id)
    if dataset is not None and status in ("success", "failed"):
        dataset["lastBatchId"] = batch["id"]
        dataset["lastBatchStatus"] = status
        dataset["updated"] = created
    return batch


class _Catalog:
    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx

    def _dataset(self, request: web.Request) -> dict[str, Any]:
        sandbox: SandboxState = self.ctx.sandbox(request)
        dataset = sandbox.datasets.get(request.match_info["id"])
        if dataset is None:
            raise catalog_error(404, f"dataSet {request.match_info['id']} was not found")
        return dataset

    def _check_tags(self, request: web.Request, schema_id: str, tags: Any) -> None:
        require(isinstance(tags, Mapping), catalog_error(400, "tags must be an object of name -> list of strings"))
        for name, values in tags.items():
            require(
                isinstance(values, list) and all(isinstance(value, str) for value in values),
                catalog_error(400, f"tag {name!r} must be a list of strings"),
            )
        profile = any(value in ENABLED_TAG_VALUES for value in tags.get("unifiedProfile", []))
        if profile:
            schema = self.ctx.find_schema(self.ctx.sandbox(request), schema_id)
            require(
                schema is not None and "union" in schema.get("meta:immutableTags", []),
                catalog_error(
                    400,
                    f"unifiedProfile can only be enabled when schema {schema_id} is enabled for Profile "
                    '(meta:immutableTags ["union"])',
                ),
            )

    async def create_dataset(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        body = await self.ctx.read_json(request)
        require(isinstance(body, Mapping), catalog_error(400, "the body must be a JSON object"))
        name = body.get("name")
        require(isinstance(name, str) and bool(name.strip()), catalog_error(400, "name is required"))
        schema_ref = body.get("schemaRef")
        require(
            isinstance(schema_ref, Mapping) and isinstance(schema_ref.get("id"), str),
            catalog_error(400, 'schemaRef {"id": <schema $id>, "contentType": ...} is required'),
        )
        schema = self.ctx.find_schema(sandbox, schema_ref["id"])
        if schema is None:
            raise catalog_error(400, f"schemaRef.id {schema_ref['id']!r} is not a schema")
        require(
            "application/vnd.adobe.xed" in str(schema_ref.get("contentType", "")),
            catalog_error(400, "schemaRef.contentType must be an application/vnd.adobe.xed...+json;version=1 value"),
        )
        tags = body.get("tags", {})
        self._check_tags(request, schema_ref["id"], tags)
        dataset_id = new_id("dataset")
        created = now_ms()
        dataset = dict(body)
        dataset.update(
            {
                "imsOrg": self.ctx.config.org_id,
                "tags": dict(tags),
                "created": created,
                "updated": created,
                "createdClient": self.ctx.config.client_id,
                "state": "DRAFT",
                "version": "1.0.0",
                "viewId": new_id("dataset"),
                "files": f"@/dataSets/{dataset_id}/views/{dataset_id}/files",
                "schemaRef": {"id": schema["$id"], "contentType": schema_ref.get("contentType")},
            }
        )
        dataset["id"] = dataset_id
        sandbox.datasets[dataset_id] = dataset
        return self.ctx.json([f"@/dataSets/{dataset_id}"], status=201)

    async def list_datasets(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        query = request.query
        items: list[Mapping[str, Any]] = list(sandbox.datasets.values())
        if "name" in query:
            items = [item for item in items if item.get("name") == query["name"]]
        items = filter_items(items, query.getall("property", []))
        return self.ctx.json(self._page(request, items))

    def _page(self, request: web.Request, items: list[Mapping[str, Any]]) -> dict[str, Any]:
        query = request.query
        limit = int_param(query, "limit", 20, low=1, high=100)
        start = int_param(query, "start", 0, low=0, high=10**9)
        order = query.get("orderBy", "asc:created")
        direction, _, fields = order.rpartition(":")
        field = fields.split(",")[0] or "created"
        items = sorted(items, key=lambda item: (str(type(item.get(field))), item.get(field) or 0))
        if direction == "desc":
            items.reverse()
        page = items[start : start + limit]
        properties = [name for name in query.get("properties", "").split(",") if name]
        result: dict[str, Any] = {}
        for item in page:
            body = {key: value for key, value in item.items() if key != "id"}
            if properties:
                body = {key: value for key, value in body.items() if key in properties}
            result[str(item["id"])] = body
        return result

    async def get_dataset(self, request: web.Request) -> web.Response:
        dataset = self._dataset(request)
        return self.ctx.json({dataset["id"]: {key: value for key, value in dataset.items() if key != "id"}})

    async def patch_dataset(self, request: web.Request) -> web.Response:
        dataset = self._dataset(request)
        body = await self.ctx.read_json(request)
        require(isinstance(body, Mapping), catalog_error(400, "the body must be a JSON object"))
        for key in ("id", "schemaRef", "imsOrg", "created"):
            require(key not in body or body[key] == dataset.get(key), catalog_error(400, f"{key} cannot be changed"))
        if "tags" in body:
            self._check_tags(request, str(dataset["schemaRef"]["id"]), body["tags"])
            dataset["tags"] = {**dataset.get("tags", {}), **body["tags"]}
        for key, value in body.items():
            if key != "tags":
                dataset[key] = value
        dataset["updated"] = now_ms()
        return self.ctx.json([f"@/dataSets/{dataset['id']}"])

    async def delete_dataset(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        dataset = self._dataset(request)
        del sandbox.datasets[dataset["id"]]
        sandbox.ingested.pop(dataset["id"], None)
        return self.ctx.json([f"@/dataSets/{dataset['id']}"])

    async def last_batches(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        land(self.ctx, sandbox)
        wanted = [each for each in request.query.get("dataSetId", "").split(",") if each]
        require(bool(wanted), catalog_error(400, "dataSetId=<id>[,<id>...] is required"))
        result: dict[str, Any] = {}
        for dataset_id in wanted:
            if dataset_id not in sandbox.datasets:
                continue
            batches = sorted(
                (
                    batch
                    for batch in sandbox.batches.values()
                    if any(obj.get("id") == dataset_id for obj in batch.get("relatedObjects", []))
                ),
                key=lambda batch: int(batch["created"]),
            )
            summary: dict[str, Any] = {}
            if batches:
                summary["lastBatchId"] = batches[-1]["id"]
                summary["lastBatchStatus"] = batches[-1]["status"]
            for status, key in (("success", "lastSuccessfulBatchId"), ("failed", "lastFailedBatchId")):
                matching = [batch["id"] for batch in batches if batch["status"] == status]
                if matching:
                    summary[key] = matching[-1]
            result[dataset_id] = summary
        return self.ctx.json(result)

    async def list_batches(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        land(self.ctx, sandbox)
        query = request.query
        items: list[Mapping[str, Any]] = list(sandbox.batches.values())
        if "dataSet" in query:
            items = [
                item
                for item in items
                if any(obj.get("id") == query["dataSet"] for obj in item.get("relatedObjects", []))
            ]
        if "status" in query:
            wanted = query["status"].split(",")
            items = [item for item in items if item.get("status") in wanted]
        for name, compare in (("createdAfter", 1), ("createdBefore", -1)):
            if name in query:
                bound = int_param(query, name, 0, low=0, high=10**15)
                items = [item for item in items if (int(item["created"]) - bound) * compare > 0]
        items = filter_items(items, query.getall("property", []))
        return self.ctx.json(self._page(request, items))

    async def get_batch(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        land(self.ctx, sandbox)
        batch = sandbox.batches.get(request.match_info["id"])
        if batch is None:
            raise catalog_error(404, f"batch {request.match_info['id']} was not found")
        return self.ctx.json({batch["id"]: {key: value for key, value in batch.items() if key != "id"}})
