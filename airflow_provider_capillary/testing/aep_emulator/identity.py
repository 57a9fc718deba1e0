"""Emulated Identity Service namespaces (``/data/core/idnamespace/identities``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from airflow_provider_capillary.testing.aep_emulator.context import require
from airflow_provider_capillary.testing.aep_emulator.errors import APIError, problem
from airflow_provider_capillary.testing.aep_emulator.state import now_ms

if TYPE_CHECKING:
    from airflow_provider_capillary.testing.aep_emulator.context import EmulatorContext
    from airflow_provider_capillary.testing.aep_emulator.state import SandboxState

BASE = "/data/core/idnamespace"
ID_TYPES = ("COOKIE", "CROSS_DEVICE", "DEVICE", "EMAIL", "MOBILE", "NON_PEOPLE", "PHONE")
_CODE = re.compile(r"^[A-Za-z0-9]+$")
#: First id given to a custom namespace (standard ones use small numbers and the 2091x range).
_FIRST_CUSTOM_ID = 1_000_000


def routes(ctx: EmulatorContext) -> list[web.RouteDef]:
    """
    The identity namespace routes.

    :param ctx: the emulator context.
    """
    namespaces = _Namespaces(ctx)
    return [
        web.get(f"{BASE}/identities", namespaces.list),
        web.post(f"{BASE}/identities", namespaces.create),
        web.get(BASE + "/identities/{id}", namespaces.get),
    ]


def _bad(detail: str) -> APIError:
    return problem(400, "UIS-4000-400", "Bad Request", detail)


class _Namespaces:
    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx

    async def list(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        return self.ctx.json(sandbox.namespaces)

    async def get(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        for namespace in sandbox.namespaces:
            if str(namespace["id"]) == request.match_info["id"]:
                return self.ctx.json(namespace)
        raise problem(404, "UIS-4004-404", "Not Found", f"identity namespace {request.match_info['id']} not found")

    async def create(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        body = await self.ctx.read_json(request)
        require(isinstance(body, Mapping), _bad("the body must be a JSON object"))
        name, code, id_type = body.get("name"), body.get("code"), body.get("idType")
        require(isinstance(name, str) and bool(name.strip()), _bad("name is required"))
        require(
            isinstance(code, str) and bool(_CODE.match(code)), _bad(f"code {code!r} must be letters and digits only")
        )
        require(
            isinstance(id_type, str) and id_type.upper() in ID_TYPES,
            _bad(f"idType {id_type!r} must be one of Cookie, Cross_device, Device, Email, Mobile, Non_people, Phone"),
        )
        for existing in sandbox.namespaces:
            require(
                str(existing["code"]).lower() != str(code).lower(),
                _bad(f"an identity namespace with code {existing['code']!r} already exists"),
            )
        created = now_ms()
        custom_ids = [int(ns["id"]) for ns in sandbox.namespaces if ns["custom"]]
        namespace: dict[str, Any] = {
            "id": max(custom_ids, default=_FIRST_CUSTOM_ID - 1) + 1,
            "code": code,
            "name": name,
            "idType": id_type,
            "description": body.get("description", ""),
            "custom": True,
            "status": "ACTIVE",
            "createTime": created,
            "updateTime": created,
        }
        sandbox.namespaces.append(namespace)
        return self.ctx.json(namespace)
