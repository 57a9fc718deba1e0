"""The emulator's own control API under ``/_emulator/`` (never faulted, never authenticated)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from airflow_provider_capillary.testing.aep_emulator.catalog import land
from airflow_provider_capillary.testing.aep_emulator.errors import APIError
from airflow_provider_capillary.testing.aep_emulator.faults import FaultPlan

if TYPE_CHECKING:
    from airflow_provider_capillary.testing.aep_emulator.context import EmulatorContext

BASE = "/_emulator"
_PLAN_SETTINGS = tuple(FaultPlan().settings())
_SCRIPT_KEYS = ("path_regex", "status", "times", "retry_after", "drop", "method")


def routes(ctx: EmulatorContext) -> list[web.RouteDef]:
    """
    Control routes: ``GET stats``, ``GET datasets/{id}/ids``, ``GET datasets/{id}/records``,
    ``POST reset``, ``POST faults``, ``POST revoke``.

    :param ctx: the emulator context.
    """

    async def stats(request: web.Request) -> web.Response:
        for sandbox in ctx.state.sandboxes.values():
            land(ctx, sandbox)
        return ctx.json(ctx.state.stats())

    async def ids(request: web.Request) -> web.Response:
        return ctx.json(ctx.state.accepted_ids(request.match_info["id"]))

    async def records(request: web.Request) -> web.Response:
        with ctx.state.lock:
            entities = list(ctx.state.dataset_records(request.match_info["id"]).entities())
        return ctx.json(entities)

    async def reset(request: web.Request) -> web.Response:
        ctx.reset()
        return ctx.json({"reset": True})

    async def revoke(request: web.Request) -> web.Response:
        ctx.revoke_tokens()
        return ctx.json({"revoked": True})

    async def faults(request: web.Request) -> web.Response:
        body = await ctx.read_json(request)
        ctx.faults = plan_from_json(body)
        return ctx.json(ctx.faults.settings())

    return [
        web.get(f"{BASE}/stats", stats),
        web.get(BASE + "/datasets/{id}/ids", ids),
        web.get(BASE + "/datasets/{id}/records", records),
        web.post(f"{BASE}/reset", reset),
        web.post(f"{BASE}/revoke", revoke),
        web.post(f"{BASE}/faults", faults),
    ]


def plan_from_json(body: Any) -> FaultPlan:
    """
    Build a :class:`FaultPlan` from the control API's JSON: plan settings plus optional ``scripts``.

    Example: ``{"seed": 7, "rate_429": 0.1, "scripts": [{"path_regex": "/collection/", "status": 503}]}``.

    :param body: the decoded request body.
    """
    if not isinstance(body, Mapping):
        raise _bad("the body must be a JSON object of FaultPlan settings")
    unknown = set(body) - {*_PLAN_SETTINGS, "scripts"}
    if unknown:
        raise _bad(f"unknown fault settings {sorted(unknown)}; known: {list(_PLAN_SETTINGS)} and scripts")
    try:
        plan = FaultPlan(**{key: value for key, value in body.items() if key != "scripts"})
        for script in body.get("scripts", []):
            if not isinstance(script, Mapping) or set(script) - set(_SCRIPT_KEYS):
                raise ValueError(f"each script is an object with keys from {list(_SCRIPT_KEYS)}")
            plan.script(**script)
    except (TypeError, ValueError) as err:
        raise _bad(str(err)) from None
    return plan


def _bad(detail: str) -> APIError:
    return APIError(400, {"title": "Invalid emulator control request", "detail": detail})
