"""The emulator's aiohttp application: routes of every service plus journal, faults and gateway."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import orjson
from aiohttp import web

from airflow_provider_capillary.testing.aep_emulator import (
    batch_ingestion,
    catalog,
    control,
    dcs,
    flow_service,
    identity,
    ims,
    profile,
    schema_registry,
)
from airflow_provider_capillary.testing.aep_emulator.errors import APIError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from airflow_provider_capillary.testing.aep_emulator.context import EmulatorContext
    from airflow_provider_capillary.testing.aep_emulator.faults import Fault

#: Largest request body read at all (Batch Ingestion files and chunks are checked against their own limits).
CLIENT_MAX_SIZE = 600 * 1024 * 1024
REDACTED = "***REDACTED***"
_SECRET_FIELDS = ("client_secret", "access_token")
_FAULT_TITLES = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


def build_app(ctx: EmulatorContext) -> web.Application:
    """
    Build the application serving IMS, the platform APIs, DCS and the control API on one port.

    :param ctx: the emulator context.
    """

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        path = request.path
        faultable = not path.startswith(control.BASE + "/")
        entry = await _journal_request(request) if ctx.journal is not None and faultable else None
        try:
            if faultable:
                fault = ctx.faults.decide(request.method, path, ims=path.startswith("/ims/"))
                if fault is not None:
                    dropped = await _apply(ctx, request, fault)
                    if dropped is not None:
                        return dropped
                with ctx.state.lock:
                    ctx.state.request_count += 1
                if path.startswith("/data/"):
                    ctx.check_gateway(request)
            response = await handler(request)
        except APIError as err:
            response = ctx.json(err.body, status=err.status, headers=err.headers)
        except web.HTTPException as err:
            if err.status < 400:
                raise
            response = ctx.json(
                {"title": err.reason, "status": err.status, "detail": f"{request.method} {path} is not served here"},
                status=err.status,
            )
        if entry is not None and ctx.journal is not None:
            ctx.journal.append(_journal_response(entry, response))
        return response

    app = web.Application(middlewares=[middleware], client_max_size=CLIENT_MAX_SIZE)
    for module in (ims, schema_registry, identity, catalog, flow_service, dcs, profile, batch_ingestion, control):
        app.add_routes(module.routes(ctx))
    return app


async def _apply(ctx: EmulatorContext, request: web.Request, fault: Fault) -> web.StreamResponse | None:
    """Apply a fault; return the (empty) response of a dropped connection, raise for a status fault."""
    if fault.revoke:
        ctx.revoke_tokens()
    if fault.latency:
        await asyncio.sleep(fault.latency)
    if fault.drop:
        # Close the socket without writing a response: the client sees a dropped connection.
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=500)
    if fault.status is not None:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        raise APIError(
            fault.status,
            {
                "type": f"http://ns.adobe.com/aep/errors/EMULATOR-{fault.status}",
                "status": fault.status,
                "title": _FAULT_TITLES.get(fault.status, "Error"),
                "detail": "fault injected by the AEP emulator",
            },
            headers,
        )
    return None


async def _journal_request(request: web.Request) -> dict[str, Any]:
    """The request half of a journal entry, with secrets redacted."""
    headers = {
        str(key): (REDACTED if key.lower() == "authorization" else value) for key, value in request.headers.items()
    }
    raw = await request.read() if request.body_exists else b""
    return {
        "method": request.method,
        "path": request.path,
        "query": _redact_pairs(list(request.query.items())),
        "headers": headers,
        "body": _redact_body(raw, request.content_type),
    }


def _journal_response(entry: dict[str, Any], response: web.StreamResponse) -> dict[str, Any]:
    raw = response.body if isinstance(response, web.Response) and isinstance(response.body, bytes) else b""
    entry.update(
        {
            "status": response.status,
            "response_headers": {str(key): value for key, value in response.headers.items()},
            "response_body": _redact_body(raw, response.content_type),
        }
    )
    return entry


def _redact_pairs(pairs: list[tuple[str, str]]) -> dict[str, str]:
    return {key: (REDACTED if key in _SECRET_FIELDS else value) for key, value in pairs}


def _redact_body(raw: bytes, content_type: str) -> Any:
    """Decode a body for the journal, replacing client secrets and access tokens."""
    if not raw:
        return None
    if content_type == "application/x-www-form-urlencoded":
        pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        return urlencode(list(_redact_pairs(pairs).items()))
    if content_type in ("application/json", "application/json-patch+json"):
        try:
            return _redact_json(orjson.loads(raw))
        except orjson.JSONDecodeError:
            return raw.decode("utf-8", "replace")
    if content_type == "application/octet-stream":
        return f"<{len(raw)} bytes>"
    return raw.decode("utf-8", "replace")


def _redact_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: (REDACTED if key in _SECRET_FIELDS else _redact_json(sub)) for key, sub in value.items()}
    if isinstance(value, list):
        return [_redact_json(sub) for sub in value]
    return value
