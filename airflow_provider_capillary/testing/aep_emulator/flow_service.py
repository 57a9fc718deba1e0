"""Emulated Flow Service (``/data/foundation/flowservice``): HTTP API streaming connections and dataflows."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from airflow_provider_capillary.testing.aep_emulator.context import EmulatorContext, require
from airflow_provider_capillary.testing.aep_emulator.errors import APIError, flow_service_error
from airflow_provider_capillary.testing.aep_emulator.queries import apply_json_patch, filter_items, int_param
from airflow_provider_capillary.testing.aep_emulator.state import new_id, now_ms

if TYPE_CHECKING:
    from airflow_provider_capillary.testing.aep_emulator.state import SandboxState

BASE = "/data/foundation/flowservice"
HTTP_API_CONNECTION_SPEC = "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb"
DATA_LAKE_CONNECTION_SPEC = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
XDM_FLOW_SPEC = "d8a6f005-7eaf-4153-983e-e8574508b877"
MAPPING_FLOW_SPEC = "c1a19761-d2c7-4702-b9fa-fe91f0613e81"
_COLLECTIONS = {
    "connections": "connections",
    "sourceConnections": "source_connections",
    "targetConnections": "target_connections",
    "flows": "flows",
}


def routes(ctx: EmulatorContext) -> list[web.RouteDef]:
    """
    The Flow Service routes.

    :param ctx: the emulator context.
    """
    service = _FlowService(ctx)
    kinds = "|".join(_COLLECTIONS)
    return [
        web.post(BASE + f"/{{kind:{kinds}}}", service.create),
        web.get(BASE + f"/{{kind:{kinds}}}", service.list),
        web.get(BASE + f"/{{kind:{kinds}}}/{{id}}", service.get),
        web.patch(BASE + f"/{{kind:{kinds}}}/{{id}}", service.patch),
        web.delete(BASE + f"/{{kind:{kinds}}}/{{id}}", service.delete),
        web.post(BASE + "/flows/{id}/action", service.flow_action),
        web.get(f"{BASE}/runs", service.runs),
    ]


def _bad(detail: str) -> APIError:
    return flow_service_error(400, "2100-400", "Bad Request", detail)


def _spec_id(body: Mapping[str, Any], key: str) -> str:
    spec = body.get(key)
    if not isinstance(spec, Mapping) or not isinstance(spec.get("id"), str):
        raise _bad(f'{key} {{"id": ..., "version": "1.0"}} is required')
    return str(spec["id"])


class _FlowService:
    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx
        self._checks: dict[str, Callable[[SandboxState, dict[str, Any]], None]] = {
            "connections": self._check_connection,
            "sourceConnections": self._check_source,
            "targetConnections": self._check_target,
            "flows": self._check_flow,
        }

    def _collection(self, request: web.Request) -> dict[str, dict[str, Any]]:
        sandbox: SandboxState = self.ctx.sandbox(request)
        collection: dict[str, dict[str, Any]] = getattr(sandbox, _COLLECTIONS[request.match_info["kind"]])
        return collection

    def _item(self, request: web.Request) -> dict[str, Any]:
        item = self._collection(request).get(request.match_info["id"])
        if item is None:
            raise flow_service_error(
                404, "2101-404", "Not Found", f"{request.match_info['kind']} {request.match_info['id']} not found"
            )
        return item

    # -- validation per kind ---------------------------------------------------------------------

    def _check_connection(self, sandbox: SandboxState, item: dict[str, Any]) -> None:
        spec = _spec_id(item, "connectionSpec")
        if spec != HTTP_API_CONNECTION_SPEC:
            return
        auth = item.get("auth")
        if not isinstance(auth, Mapping) or not isinstance(auth.get("params"), Mapping):
            raise _bad('an HTTP API connection needs auth {"specName": "Streaming Connection", "params": {...}}')
        params = dict(auth["params"])
        require(params.get("dataType", "xdm") in ("xdm", "raw"), _bad('auth.params.dataType must be "xdm" or "raw"'))
        params.setdefault("dataType", "xdm")
        params.setdefault("name", item["name"])
        params.setdefault("sourceId", item["name"])
        params["authenticationRequired"] = bool(params.get("authenticationRequired", False))
        inlet_id = params.get("inletId") or new_id("inlet")
        params["inletId"] = inlet_id
        params["inletUrl"] = f"{self.ctx.url}/collection/{inlet_id}"
        item["auth"] = {**auth, "params": params}
        self.ctx.state.inlets[inlet_id] = (sandbox.name, item["id"])

    def _check_source(self, sandbox: SandboxState, item: dict[str, Any]) -> None:
        _spec_id(item, "connectionSpec")
        base = item.get("baseConnectionId")
        require(base in sandbox.connections, _bad(f"baseConnectionId {base!r} is not a connection"))

    def _check_target(self, sandbox: SandboxState, item: dict[str, Any]) -> None:
        spec = _spec_id(item, "connectionSpec")
        if spec != DATA_LAKE_CONNECTION_SPEC:
            return
        params = item.get("params")
        dataset_id = params.get("dataSetId") if isinstance(params, Mapping) else None
        require(dataset_id in sandbox.datasets, _bad(f"params.dataSetId {dataset_id!r} is not a dataset"))
        data = item.get("data", {})
        schema = data.get("schema", {}) if isinstance(data, Mapping) else {}
        if isinstance(schema, Mapping) and "id" in schema:
            expected = sandbox.datasets[str(dataset_id)]["schemaRef"]["id"]
            require(
                schema["id"] == expected,
                _bad(f"data.schema.id {schema['id']} is not the schema of dataset {dataset_id} ({expected})"),
            )

    def _check_flow(self, sandbox: SandboxState, item: dict[str, Any]) -> None:
        spec = _spec_id(item, "flowSpec")
        require(spec in (XDM_FLOW_SPEC, MAPPING_FLOW_SPEC), _bad(f"flowSpec {spec} is not an HTTP API flow spec"))
        for key, known in (
            ("sourceConnectionIds", sandbox.source_connections),
            ("targetConnectionIds", sandbox.target_connections),
        ):
            ids = item.get(key)
            if not isinstance(ids, list) or not ids:
                raise _bad(f"{key} must be a non-empty list")
            for each in ids:
                require(each in known, _bad(f"{key}: {each!r} does not exist"))
        if spec == MAPPING_FLOW_SPEC:
            transformations = item.get("transformations")
            require(
                isinstance(transformations, list)
                and any(isinstance(t, Mapping) and t.get("name") == "Mapping" for t in transformations),
                _bad('flow spec c1a19761 needs a transformation named exactly "Mapping"'),
            )
        item.setdefault("state", "enabled")

    # -- handlers --------------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        kind = request.match_info["kind"]
        body = await self.ctx.read_json(request)
        require(isinstance(body, Mapping), _bad("the body must be a JSON object"))
        require(isinstance(body.get("name"), str) and bool(body["name"]), _bad("name is required"))
        created = now_ms()
        item = dict(body)
        item.update(
            {
                "id": new_id("uuid"),
                "createdAt": created,
                "updatedAt": created,
                "createdBy": self.ctx.config.client_id,
                "createdClient": self.ctx.config.client_id,
                "sandboxId": sandbox.sandbox_id,
                "sandboxName": sandbox.name,
                "imsOrgId": self.ctx.config.org_id,
                "state": body.get("state", "enabled"),
            }
        )
        etag = f'"{new_id("uuid")}"'
        item["etag"] = item["version"] = etag
        self._checks[kind](sandbox, item)
        self._collection(request)[item["id"]] = item
        return self.ctx.json({"id": item["id"], "etag": etag}, status=201)

    async def list(self, request: web.Request) -> web.Response:
        query = request.query
        items = filter_items(list(self._collection(request).values()), query.getall("property", []))
        if query.get("count") == "true":
            return self.ctx.json({"count": len(items)})
        orderby = query.get("orderby", "")
        if orderby:
            key = orderby.lstrip("+-")
            items.sort(key=lambda item: str(item.get(key, "")), reverse=orderby.startswith("-"))
        limit = int_param(query, "limit", 100, low=1, high=10**6)
        start = _decode_token(query.get("continuationToken"))
        page = items[start : start + limit]
        links: dict[str, Any] = {}
        if start + limit < len(items):
            token = base64.urlsafe_b64encode(f"offset:{start + limit}".encode()).decode()
            params = "&".join(f"property={value}" for value in query.getall("property", []))
            extra = f"&limit={limit}" + (f"&orderby={orderby}" if orderby else "") + (f"&{params}" if params else "")
            links["next"] = {"href": f"/{request.match_info['kind']}?continuationToken={token}{extra}"}
        return self.ctx.json({"items": page, "_links": links})

    async def get(self, request: web.Request) -> web.Response:
        return self.ctx.json({"items": [self._item(request)]})

    async def patch(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        item = self._item(request)
        if_match = request.headers.get("If-Match")
        require(if_match is not None, _bad("the If-Match header (the resource's etag) is required"))
        if if_match != item["etag"]:
            raise flow_service_error(
                412, "2102-412", "Precondition Failed", f"If-Match {if_match} is not the current etag {item['etag']}"
            )
        operations = await self.ctx.read_json(request)
        patched = apply_json_patch(item, operations)
        for key in ("id", "createdAt", "sandboxName", "imsOrgId", "etag"):
            require(patched.get(key) == item.get(key), _bad(f"{key} cannot be changed"))
        self._checks[request.match_info["kind"]](sandbox, patched)
        patched["updatedAt"] = now_ms()
        patched["etag"] = patched["version"] = f'"{new_id("uuid")}"'
        self._collection(request)[patched["id"]] = patched
        return self.ctx.json({"id": patched["id"], "etag": patched["etag"]})

    async def delete(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        item = self._item(request)
        if request.match_info["kind"] == "connections":
            users = [
                flow_id
                for flow_id, source in sandbox.source_connections.items()
                if source.get("baseConnectionId") == item["id"]
            ]
            require(not users, _bad(f"connection {item['id']} is used by source connections {users}"))
            inlet = item.get("auth", {}).get("params", {}).get("inletId")
            self.ctx.state.inlets.pop(inlet, None)
        del self._collection(request)[item["id"]]
        return web.Response(status=204)

    async def runs(self, request: web.Request) -> web.Response:
        # HTTP API streaming dataflows are not documented to produce runs; the emulator reports none.
        return self.ctx.json({"items": [], "_links": {}})

    async def flow_action(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        flow = sandbox.flows.get(request.match_info["id"])
        if flow is None:
            raise flow_service_error(404, "2101-404", "Not Found", f"flow {request.match_info['id']} not found")
        op = request.query.get("op", "")
        require(op in ("ENABLE", "DISABLE"), _bad(f"op must be ENABLE or DISABLE, got {op!r}"))
        flow["state"] = "enabled" if op == "ENABLE" else "disabled"
        flow["etag"] = flow["version"] = f'"{new_id("uuid")}"'
        return self.ctx.json({"id": flow["id"], "etag": flow["etag"]})


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        prefix, _, offset = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if prefix == "offset":
            return int(offset)
    except (ValueError, UnicodeDecodeError):
        pass
    raise _bad(f"continuationToken {token!r} is not valid")
