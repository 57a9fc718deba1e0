"""Emulated streaming ingestion (Data Collection Core Service): single and multi-message endpoints."""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from airflow_provider_capillary.testing.aep_emulator.catalog import queue_landing
from airflow_provider_capillary.testing.aep_emulator.errors import APIError, dcs_authorization_error, dcs_error
from airflow_provider_capillary.testing.aep_emulator.state import now_ms
from airflow_provider_capillary.testing.aep_emulator.validation import RecordInvalid, check

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_capillary.testing.aep_emulator.context import EmulatorContext
    from airflow_provider_capillary.testing.aep_emulator.state import DatasetRecords, SandboxState
    from airflow_provider_capillary.testing.aep_emulator.validation import Validator

#: Request size limit of both DCS endpoints. Adobe documents "1 MB" without saying whether that is
#: 10^6 or 2^20 bytes; the emulator enforces the smaller reading so that a client passing here also
#: passes on AEP whichever reading the platform applies.
MAX_BODY_BYTES = 1_000_000
#: ``syncValidation`` guardrail: requests per minute per inlet.
SYNC_VALIDATION_PER_MINUTE = 60
_TRANSIENT_MESSAGE = "transient processing error, retry the message"


def routes(ctx: EmulatorContext) -> list[web.RouteDef]:
    """
    The DCS routes (on the emulator's one port, like ``inletUrl`` says).

    :param ctx: the emulator context.
    """
    dcs = _DataCollection(ctx)
    return [
        web.post("/collection/batch/{inlet}", dcs.multiple),
        web.post("/collection/{inlet}", dcs.single),
    ]


class _Route:
    """Where messages of one (dataset, flow, schema) combination go; resolved once per request."""

    __slots__ = ("dataset_id", "store", "validator")

    def __init__(self, validator: Validator, store: DatasetRecords, dataset_id: str) -> None:
        self.validator = validator
        self.store = store
        self.dataset_id = dataset_id


class _DataCollection:
    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx
        self._sequence = itertools.count(1)
        self._sync_calls: dict[str, deque[float]] = {}

    def _inlet(self, request: web.Request) -> tuple[str, SandboxState, dict[str, Any]]:
        inlet_id = request.match_info["inlet"]
        found = self.ctx.state.inlets.get(inlet_id)
        if found is None:
            raise dcs_error(404, "Not Found", f"inletId: [{inlet_id}] is not a known inlet")
        sandbox = self.ctx.state.sandboxes[found[0]]
        connection = sandbox.connections[found[1]]
        params = connection["auth"]["params"]
        if params.get("authenticationRequired"):
            authorization = request.headers.get("Authorization")
            if not authorization:
                raise dcs_authorization_error(f"[{inlet_id}] Ims service token is empty")
            if not self.ctx.token_valid(authorization):
                raise dcs_authorization_error(f"[{inlet_id}] Ims service token is invalid or expired")
        if connection.get("state", "enabled") != "enabled":
            raise dcs_error(400, "Inlet disabled", f"inletId: [{inlet_id}] is disabled")
        return inlet_id, sandbox, connection

    async def _body(self, request: web.Request, inlet_id: str) -> Any:
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            raise dcs_error(
                413,
                "Payload Too Large",
                f"inletId: [{inlet_id}] request body of {len(raw)} bytes exceeds the {MAX_BODY_BYTES} byte limit",
            )
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise dcs_error(400, "Invalid JSON", f"inletId: [{inlet_id}] body is not valid JSON: {err}") from None

    def _prefix(self, inlet_id: str) -> str:
        return f"inletId: [{inlet_id}] imsOrgId: [{self.ctx.config.org_id}] "

    def _route(
        self, sandbox: SandboxState, connection: Mapping[str, Any], header: Mapping[str, Any], schema_id: Any
    ) -> _Route | str:
        """Resolve a message header to its route, or return why messages with it are rejected."""
        dataset_id = header.get("datasetId")
        dataset = sandbox.datasets.get(dataset_id) if isinstance(dataset_id, str) else None
        if dataset is None or not isinstance(dataset_id, str):
            return f"Message has an unknown datasetId [{dataset_id}]"
        flow_id = header.get("flowId")
        if not isinstance(flow_id, str):
            return "Message header has no flowId"
        flow = sandbox.flows.get(flow_id)
        if flow is None:
            return f"Message has an unknown flowId [{flow_id}]"
        sources = [sandbox.source_connections.get(each, {}) for each in flow.get("sourceConnectionIds", [])]
        if not any(source.get("baseConnectionId") == connection["id"] for source in sources):
            return f"flowId [{flow_id}] is not a dataflow of this inlet"
        targets = [sandbox.target_connections.get(each, {}) for each in flow.get("targetConnectionIds", [])]
        if not any(target.get("params", {}).get("dataSetId") == dataset_id for target in targets):
            return f"flowId [{flow_id}] does not deliver to datasetId [{dataset_id}]"
        if flow.get("state", "enabled") != "enabled":
            return f"flowId [{flow_id}] is disabled"
        expected = dataset["schemaRef"]["id"]
        if schema_id != expected:
            return f"schemaRef [{schema_id}] is not the schema of datasetId [{dataset_id}] ({expected})"
        schema = sandbox.schemas.get(expected)
        if schema is None:
            return f"the schema of datasetId [{dataset_id}] no longer exists"
        return _Route(self.ctx.validator(sandbox, schema), sandbox.records(dataset_id), dataset_id)

    def _envelope(
        self,
        message: Any,
        sandbox: SandboxState,
        connection: Mapping[str, Any],
        routes: dict[tuple[Any, Any, Any], _Route | str],
    ) -> tuple[_Route, dict[str, Any]]:
        """Check one message's envelope; return its route and ``xdmEntity`` or raise ``ValueError(reason)``."""
        if not isinstance(message, dict):
            raise ValueError("Message has unknown xdm format")
        header = message.get("header")
        body = message.get("body")
        if not isinstance(header, dict) or not isinstance(body, dict):
            raise ValueError("Message has unknown xdm format")
        if header.get("imsOrgId") != self.ctx.config.org_id:
            raise ValueError("Message has an absent or wrong ims org in the header")
        schema_ref = header.get("schemaRef")
        if not isinstance(schema_ref, dict) or not isinstance(schema_ref.get("id"), str):
            raise ValueError("Message has unknown xdm format: header.schemaRef.id is missing")
        meta = body.get("xdmMeta")
        if not isinstance(meta, dict) or meta.get("schemaRef") != schema_ref:
            raise ValueError("Message has unknown xdm format: body.xdmMeta.schemaRef must equal header.schemaRef")
        entity = body.get("xdmEntity")
        if not isinstance(entity, dict):
            raise ValueError("Message has unknown xdm format: body.xdmEntity must be an object")
        key = (header.get("datasetId"), header.get("flowId"), schema_ref["id"])
        route = routes.get(key)
        if route is None:
            route = routes[key] = self._route(sandbox, connection, header, schema_ref["id"])
        if isinstance(route, str):
            raise ValueError(route)
        return route, entity

    async def multiple(self, request: web.Request) -> web.Response:
        inlet_id, sandbox, connection = self._inlet(request)
        payload = await self._body(request, inlet_id)
        messages = payload.get("messages") if isinstance(payload, dict) else None
        if not isinstance(messages, list):
            raise dcs_error(
                400, "Invalid XDM Message Format", f'{self._prefix(inlet_id)}body must be {{"messages": [...]}}'
            )
        received = now_ms()
        sequence = next(self._sequence)
        prefix = self._prefix(inlet_id)
        faults = self.ctx.faults
        routes: dict[tuple[Any, Any, Any], _Route | str] = {}
        accepted: dict[str, int] = {}
        failed: dict[str, list[dict[str, Any]]] = {}
        responses: list[dict[str, Any]] = []
        append = responses.append
        dumps = orjson.dumps
        deferred = self.ctx.config.async_validation
        with self.ctx.state.lock:
            for index, message in enumerate(messages):
                try:
                    route, entity = self._envelope(message, sandbox, connection, routes)
                except ValueError as err:
                    append({"statusCode": 400, "message": prefix + str(err)})
                    continue
                invalid: RecordInvalid | None = None
                try:
                    check(route.validator, entity)
                except RecordInvalid as err:
                    if not deferred:
                        append({"statusCode": 400, "message": f"{prefix}Message failed schema validation: {err}"})
                        continue
                    invalid = err
                transient = faults.partial_status()
                if transient is not None:
                    append({"statusCode": transient, "message": prefix + _TRANSIENT_MESSAGE})
                    continue
                if invalid is None:
                    route.store.add(entity.get("_id"), dumps(entity))
                    accepted[route.dataset_id] = accepted.get(route.dataset_id, 0) + 1
                else:
                    failed.setdefault(route.dataset_id, []).append(_fail_later(route, entity, invalid))
                append({"xactionId": f"{received}:{sequence}:{index}"})
            for dataset_id in accepted.keys() | failed.keys():
                errors = failed.get(dataset_id, [])
                queue_landing(sandbox.records(dataset_id).pending, accepted.get(dataset_id, 0), len(errors), errors)
        return self.ctx.json(
            {
                "inletId": inlet_id,
                "batchId": f"{received}:{sequence}",
                "receivedTimeMs": received,
                "responses": responses,
            },
            status=207,
        )

    async def single(self, request: web.Request) -> web.Response:
        inlet_id, sandbox, connection = self._inlet(request)
        sync = "true" in (request.query.get("syncValidation"), request.query.get("synchronousValidation"))
        if sync:
            self._rate_limit(inlet_id)
        message = await self._body(request, inlet_id)
        prefix = self._prefix(inlet_id)
        received = now_ms()
        sequence = next(self._sequence)
        with self.ctx.state.lock:
            try:
                route, entity = self._envelope(message, sandbox, connection, {})
            except ValueError as err:
                raise dcs_error(400, "Invalid XDM Message Format", prefix + str(err)) from None
            try:
                check(route.validator, entity)
            except RecordInvalid as err:
                if sync:
                    raise APIError(
                        400,
                        {
                            "type": "http://ns.adobe.com/adobecloud/problem/data-collection-service/inlet",
                            "status": 400,
                            "title": "Invalid XDM Message Format",
                            "report": {
                                "message": prefix + "Message is invalid",
                                "cause": {"_streamingValidation": [err.report()]},
                            },
                        },
                    ) from None
                # Asynchronous validation: DCS answers 200 and the record lands in a failed batch.
                queue_landing(route.store.pending, 0, 1, [_fail_later(route, entity, err)])
            else:
                route.store.add(entity.get("_id"), orjson.dumps(entity))
                queue_landing(route.store.pending, 1, 0, [])
        body: dict[str, Any] = {
            "inletId": inlet_id,
            "xactionId": f"{received}:{sequence}:0",
            "receivedTimeMs": received,
        }
        body["syncValidation"] = {"status": "pass"} if sync else {"skipped": True}
        return self.ctx.json(body)

    def _rate_limit(self, inlet_id: str) -> None:
        """Enforce the ``syncValidation`` guardrail of the inlet (429 with ``Retry-After`` above it)."""
        now = time.monotonic()
        calls = self._sync_calls.setdefault(inlet_id, deque())
        while calls and calls[0] <= now - 60:
            calls.popleft()
        if len(calls) >= SYNC_VALIDATION_PER_MINUTE:
            retry = max(1, int(calls[0] + 60 - now) + 1)
            error = dcs_error(
                429,
                "Too Many Requests",
                f"inletId: [{inlet_id}] syncValidation is limited to {SYNC_VALIDATION_PER_MINUTE} requests per minute",
            )
            error.headers["Retry-After"] = str(retry)
            raise error
        calls.append(now)


def _fail_later(route: _Route, entity: dict[str, Any], error: RecordInvalid) -> dict[str, Any]:
    """Keep a record that failed asynchronous validation; return its Catalog ``errors[]`` entry."""
    route.store.failed.append((orjson.dumps(entity), str(error)))
    return {"code": "XDM-STREAMING-VALIDATION", "description": str(error), "rows": []}
