"""Emulated Real-Time Customer Profile access (``/data/core/ups/access/entities``)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from airflow_provider_capillary.testing.aep_emulator.catalog import ENABLED_TAG_VALUES
from airflow_provider_capillary.testing.aep_emulator.errors import problem
from airflow_provider_capillary.testing.aep_emulator.queries import int_param
from airflow_provider_capillary.testing.xdm_registry import EXPERIENCE_EVENT_CLASS_ID, PROFILE_CLASS_ID

if TYPE_CHECKING:
    from airflow_provider_capillary.testing.aep_emulator.context import EmulatorContext
    from airflow_provider_capillary.testing.aep_emulator.state import SandboxState

BASE = "/data/core/ups"
_SCHEMA_CLASSES = {"_xdm.context.profile": PROFILE_CLASS_ID, "_xdm.context.experienceevent": EXPERIENCE_EVENT_CLASS_ID}


def routes(ctx: EmulatorContext) -> list[web.RouteDef]:
    """
    The Profile access routes.

    :param ctx: the emulator context.
    """
    profile = _ProfileAccess(ctx)
    return [web.get(f"{BASE}/access/entities", profile.entities)]


def _merge(base: dict[str, Any], fragment: Mapping[str, Any]) -> dict[str, Any]:
    """Merge a profile fragment over ``base``: objects merge, other values (arrays too) are replaced."""
    for key, value in fragment.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _value_at(record: Mapping[str, Any], pointer: str) -> Any:
    value: Any = record
    for name in filter(None, pointer.split("/")):
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value


class _ProfileAccess:
    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx

    def _identities(
        self, sandbox: SandboxState, schema_id: str, record: Mapping[str, Any]
    ) -> Iterator[tuple[str, str]]:
        """Every ``(namespace code lower-cased, id)`` of a record: identityMap plus identity descriptors."""
        identity_map = record.get("identityMap")
        if isinstance(identity_map, Mapping):
            for code, items in identity_map.items():
                for item in items if isinstance(items, list) else ():
                    if isinstance(item, Mapping) and "id" in item:
                        yield code.lower(), str(item["id"])
        for descriptor in sandbox.descriptors.values():
            if descriptor.get("@type") == "xdm:descriptorIdentity" and descriptor.get("xdm:sourceSchema") == schema_id:
                value = _value_at(record, str(descriptor.get("xdm:sourceProperty", "")))
                if value is not None:
                    yield str(descriptor.get("xdm:namespace", "")).lower(), str(value)

    def _fragments(
        self, sandbox: SandboxState, class_id: str, namespace: str, entity_id: str
    ) -> Iterator[tuple[str, dict[str, Any], list[tuple[str, str]]]]:
        """Records of Profile-enabled datasets of ``class_id`` carrying the identity, in arrival order."""
        wanted = (namespace.lower(), entity_id)
        for dataset_id, dataset in sandbox.datasets.items():
            if not any(value in ENABLED_TAG_VALUES for value in dataset.get("tags", {}).get("unifiedProfile", [])):
                continue
            schema = sandbox.schemas.get(dataset["schemaRef"]["id"])
            if schema is None or schema.get("meta:class") != class_id:
                continue
            for record in sandbox.records(dataset_id).entities():
                identities = list(self._identities(sandbox, schema["$id"], record))
                if wanted in identities:
                    yield dataset_id, record, identities

    async def entities(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        query = request.query
        schema_name = query.get("schema.name", "")
        if schema_name not in _SCHEMA_CLASSES:
            raise problem(400, "UPS-1000-400", "Bad Request", f"schema.name {schema_name!r} is not supported")
        if schema_name == "_xdm.context.experienceevent":
            return self._events(request, sandbox)
        entity_id, namespace = query.get("entityId"), query.get("entityIdNS")
        if not entity_id or not namespace:
            raise problem(400, "UPS-1000-400", "Bad Request", "entityId and entityIdNS are required")
        with self.ctx.state.lock:
            found = list(self._fragments(sandbox, PROFILE_CLASS_ID, namespace, entity_id))
        if not found:
            raise problem(404, "UPS-1004-404", "Not Found", f"no profile for {namespace}:{entity_id}")
        merged: dict[str, Any] = {}
        identities: dict[tuple[str, str], None] = {}
        for _, record, record_identities in found:
            _merge(merged, record)
            identities.update(dict.fromkeys(record_identities))
        merged.pop("_id", None)
        fields = [name for name in query.get("fields", "").split(",") if name]
        if fields:
            merged = {key: value for key, value in merged.items() if key in {name.split(".")[0] for name in fields}}
        merged["identities"] = [
            {"id": identity, "namespace": {"code": code}, "primary": (code, identity) == (namespace.lower(), entity_id)}
            for code, identity in identities
        ]
        key = hashlib.sha1(f"{namespace.lower()}:{entity_id}".encode()).hexdigest()[:30]
        return self.ctx.json(
            {
                key: {
                    "entityId": key,
                    "mergePolicy": {"id": query.get("mergePolicyId", "default-timebased")},
                    "sources": list(dict.fromkeys(dataset_id for dataset_id, _, _ in found)),
                    "tags": [key],
                    "identityGraph": [key],
                    "entity": merged,
                    "lastModifiedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            }
        )

    def _events(self, request: web.Request, sandbox: SandboxState) -> web.Response:
        query = request.query
        entity_id, namespace = query.get("relatedEntityId"), query.get("relatedEntityIdNS")
        if query.get("relatedSchema.name") != "_xdm.context.profile" or not entity_id or not namespace:
            raise problem(
                400,
                "UPS-1000-400",
                "Bad Request",
                "relatedSchema.name=_xdm.context.profile, relatedEntityId and relatedEntityIdNS are required",
            )
        limit = int_param(query, "limit", 1000, low=1, high=1000)
        with self.ctx.state.lock:
            events = [
                record for _, record, _ in self._fragments(sandbox, EXPERIENCE_EVENT_CLASS_ID, namespace, entity_id)
            ]
        events.sort(key=lambda event: str(event.get("timestamp", "")), reverse=query.get("orderby") == "-timestamp")
        children = [
            {
                "relatedEntityId": entity_id,
                "entityId": event.get("_id"),
                "timestamp": event.get("timestamp"),
                "entity": event,
            }
            for event in events[:limit]
        ]
        return self.ctx.json(
            {
                "_page": {"orderby": "timestamp", "count": len(children), "next": ""},
                "children": children,
                "_links": {"next": {"href": ""}},
            }
        )
