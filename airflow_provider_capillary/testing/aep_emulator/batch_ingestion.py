"""Emulated Batch Ingestion API (``/data/foundation/import``): batches, file uploads, completion."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from airflow_provider_capillary.testing.aep_emulator.catalog import record_batch
from airflow_provider_capillary.testing.aep_emulator.context import require
from airflow_provider_capillary.testing.aep_emulator.errors import APIError, problem
from airflow_provider_capillary.testing.aep_emulator.state import new_id
from airflow_provider_capillary.testing.aep_emulator.validation import RecordInvalid, check

if TYPE_CHECKING:
    from airflow_provider_capillary.testing.aep_emulator.context import EmulatorContext
    from airflow_provider_capillary.testing.aep_emulator.state import SandboxState

BASE = "/data/foundation/import"
#: Single PUT limit (larger files must use the large-file upload).
MAX_FILE_BYTES = 256 * 1024 * 1024
#: Largest chunk of a large-file upload.
MAX_CHUNK_BYTES = 512_000_000
#: At most this many row errors are listed in a failed batch's ``errors[]``.
MAX_REPORTED_ERRORS = 100
_RANGE = re.compile(r"^bytes[ =](\d+)-(\d+)(?:/(\d+|\*))?$")


def routes(ctx: EmulatorContext) -> list[web.RouteDef]:
    """
    The Batch Ingestion routes.

    :param ctx: the emulator context.
    """
    ingestion = _BatchIngestion(ctx)
    files = BASE + "/batches/{batch}/datasets/{dataset}/files/{path:.+}"
    return [
        web.post(f"{BASE}/batches", ingestion.create),
        web.post(BASE + "/batches/{batch}", ingestion.action),
        web.put(files, ingestion.put_file),
        web.post(files, ingestion.file_action),
        web.patch(files, ingestion.patch_file),
        web.head(files, ingestion.head_file),
    ]


def _bad(detail: str, status: int = 400) -> APIError:
    return problem(status, f"INGEST-{status}", "Batch ingestion request failed", detail)


class _BatchIngestion:
    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx

    def _batch(self, request: web.Request) -> dict[str, Any]:
        sandbox: SandboxState = self.ctx.sandbox(request)
        batch = sandbox.batches.get(request.match_info["batch"])
        if batch is None or batch.get("createdClient") != "batch-ingestion":
            raise _bad(f"batch {request.match_info['batch']} was not found", 404)
        return batch

    def _loading_batch(self, request: web.Request) -> dict[str, Any]:
        batch = self._batch(request)
        require(batch["status"] == "loading", _bad(f"batch {batch['id']} is {batch['status']}, not loading"))
        dataset_id = request.match_info["dataset"]
        require(
            batch["relatedObjects"][0]["id"] == dataset_id,
            _bad(f"dataset {dataset_id} is not the dataset of batch {batch['id']}"),
        )
        return batch

    async def create(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        body = await self.ctx.read_json(request)
        require(isinstance(body, Mapping), _bad("the body must be a JSON object"))
        dataset_id = body.get("datasetId")
        require(dataset_id in sandbox.datasets, _bad(f"datasetId {dataset_id!r} is not a dataset"))
        input_format = body.get("inputFormat", {})
        require(
            isinstance(input_format, Mapping) and input_format.get("format") == "json",
            _bad('inputFormat.format must be "json" (JSON lines; the emulator does not read parquet or csv)'),
        )
        batch = record_batch(sandbox, str(dataset_id), "loading", 0, 0, [], streaming=False, batch_id=new_id("batch"))
        batch["inputFormat"] = dict(input_format)
        batch["imsOrg"] = self.ctx.config.org_id
        for key in ("externalId", "replay", "tags"):
            if key in body:
                batch[key] = body[key]
        sandbox.files[batch["id"]] = {}
        sandbox.chunks[batch["id"]] = {}
        return self.ctx.json(batch, status=201)

    async def put_file(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        batch = self._loading_batch(request)
        if request.content_length is not None and request.content_length > MAX_FILE_BYTES:
            raise _bad(f"files larger than {MAX_FILE_BYTES} bytes must use the large-file upload", 413)
        data = await request.read()
        require(
            len(data) <= MAX_FILE_BYTES,
            _bad(f"files larger than {MAX_FILE_BYTES} bytes need the large-file upload", 413),
        )
        sandbox.files[batch["id"]][request.match_info["path"]] = data
        return web.Response(status=200)

    async def file_action(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        batch = self._loading_batch(request)
        action = request.query.get("action", "")
        path = request.match_info["path"]
        chunks = sandbox.chunks[batch["id"]]
        if action == "INITIALIZE":
            chunks[path] = {}
            return web.Response(status=201)
        require(action == "COMPLETE", _bad(f"action must be INITIALIZE or COMPLETE, got {action!r}"))
        require(path in chunks, _bad(f"file {path} was not initialised (action=INITIALIZE)"))
        data = bytearray()
        for start in sorted(chunks[path]):
            require(start == len(data), _bad(f"file {path}: chunks overlap or leave a gap at byte {len(data)}"))
            data.extend(chunks[path][start])
        del chunks[path]
        sandbox.files[batch["id"]][path] = bytes(data)
        return web.Response(status=201)

    async def patch_file(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        batch = self._loading_batch(request)
        path = request.match_info["path"]
        chunks = sandbox.chunks[batch["id"]]
        require(path in chunks, _bad(f"file {path} was not initialised (action=INITIALIZE)"))
        header = request.headers.get("Content-Range", "")
        match = _RANGE.match(header.strip())
        if match is None:
            raise _bad(f"Content-Range must look like 'bytes <start>-<end>', got {header!r}")
        data = await request.read()
        start, end = int(match.group(1)), int(match.group(2))
        require(len(data) <= MAX_CHUNK_BYTES, _bad(f"chunks are limited to {MAX_CHUNK_BYTES} bytes", 413))
        # Inclusive (HTTP) and exclusive end offsets are both seen in Adobe's material: accept either.
        require(
            len(data) in (end - start + 1, end - start),
            _bad(f"Content-Range {header} does not match the {len(data)} byte body"),
        )
        chunks[path][start] = data
        return web.Response(status=200)

    async def head_file(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        batch = self._batch(request)
        path = request.match_info["path"]
        done = sandbox.files.get(batch["id"], {}).get(path)
        if done is not None:
            return web.Response(status=200, headers={"Content-Length": str(len(done))})
        parts = sandbox.chunks.get(batch["id"], {}).get(path)
        if parts is None:
            raise _bad(f"file {path} was not found", 404)
        return web.Response(status=200, headers={"Content-Length": str(sum(len(part) for part in parts.values()))})

    async def action(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        batch = self._batch(request)
        action = request.query.get("action", "")
        require(action in ("COMPLETE", "ABORT", "FAIL", "REVERT"), _bad(f"unknown action {action!r}"))
        status = batch["status"]
        if action == "COMPLETE":
            if status != "loading":
                return web.Response(status=200)
            batch["status"] = "processing"
            self._schedule(sandbox, batch)
        elif action == "ABORT":
            batch["status"] = "aborted"
        elif action == "FAIL":
            batch["status"] = "failed"
        else:
            require(
                status in ("success", "active"),
                _bad(f"only a successful batch can be reverted, {batch['id']} is {status}"),
            )
            batch["status"] = "inactive"
        return web.Response(status=200)

    def _schedule(self, sandbox: SandboxState, batch: dict[str, Any]) -> None:
        delay = self.ctx.config.landing_delay
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._process, sandbox, batch)
        else:
            self._process(sandbox, batch)

    def _process(self, sandbox: SandboxState, batch: dict[str, Any]) -> None:
        """Validate every row of every uploaded file; record them all or fail the batch."""
        dataset_id = batch["relatedObjects"][0]["id"]
        files = sandbox.files.pop(batch["id"], {})
        sandbox.chunks.pop(batch["id"], None)
        with self.ctx.state.lock:
            if self.ctx.faults.batch_fails():
                error = {"code": "INGEST-500", "description": "transient platform failure; retry the batch", "rows": []}
                record_batch(sandbox, dataset_id, "failed", 0, 0, [error], streaming=False, batch_id=batch["id"])
                return
            dataset = sandbox.datasets.get(dataset_id)
            schema = sandbox.schemas.get(dataset["schemaRef"]["id"]) if dataset else None
            if dataset is None or schema is None:
                error = {"code": "INGEST-404", "description": "the dataset or its schema no longer exists", "rows": []}
                record_batch(sandbox, dataset_id, "failed", 0, 0, [error], streaming=False, batch_id=batch["id"])
                return
            validator = self.ctx.validator(sandbox, schema)
            good: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            failed = 0
            multi_line = bool(batch.get("inputFormat", {}).get("isMultiLineJson"))
            for name, data in sorted(files.items()):
                for row, record, problem_text in _rows(data, multi_line):
                    if problem_text is None:
                        try:
                            check(validator, record)
                        except RecordInvalid as err:
                            problem_text = str(err)
                    if problem_text is None:
                        good.append(record)
                        continue
                    failed += 1
                    if len(errors) < MAX_REPORTED_ERRORS:
                        errors.append(
                            {
                                "code": "INGEST-1212-400",
                                "description": f"{name} row {row}: {problem_text}",
                                "rows": [row],
                            }
                        )
            if failed:
                record_batch(sandbox, dataset_id, "failed", 0, failed, errors, streaming=False, batch_id=batch["id"])
                return
            store = sandbox.records(dataset_id)
            for record in good:
                store.add(record.get("_id"), orjson.dumps(record))
            record_batch(sandbox, dataset_id, "success", len(good), 0, [], streaming=False, batch_id=batch["id"])


def _rows(data: bytes, multi_line: bool) -> list[tuple[int, Any, str | None]]:
    """Split a JSON file into ``(row number, record, problem)``; rows are numbered from 1."""
    if multi_line:
        try:
            records = orjson.loads(data)
        except orjson.JSONDecodeError as err:
            return [(1, None, f"not valid JSON: {err}")]
        if not isinstance(records, list):
            records = [records]
        return [
            (index, record, None if isinstance(record, dict) else "not a JSON object")
            for index, record in enumerate(records, 1)
        ]
    rows: list[tuple[int, Any, str | None]] = []
    for index, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            rows.append((index, None, f"not valid JSON: {err}"))
            continue
        rows.append((index, record, None if isinstance(record, dict) else "not a JSON object"))
    return rows
