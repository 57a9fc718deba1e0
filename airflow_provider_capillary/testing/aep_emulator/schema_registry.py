"""Emulated Schema Registry (``/data/foundation/schemaregistry``): schemas, field groups, descriptors."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from airflow_provider_capillary.testing.aep_emulator.context import (
    PRIMARY_IDENTITY,
    EmulatorContext,
    find_resource,
    require,
)
from airflow_provider_capillary.testing.aep_emulator.errors import APIError, registry_error
from airflow_provider_capillary.testing.aep_emulator.queries import (
    apply_json_patch,
    filter_items,
    int_param,
)
from airflow_provider_capillary.testing.aep_emulator.state import now_ms
from airflow_provider_capillary.testing.xdm_registry import XDMDefinitionError, flatten_fields

if TYPE_CHECKING:
    from airflow_provider_capillary.testing.aep_emulator.state import SandboxState

BASE = "/data/foundation/schemaregistry"
_LIST_ACCEPT = re.compile(r"application/vnd\.adobe\.(xed-id|xed)\+json")
_LOOKUP_ACCEPT = re.compile(
    r"application/vnd\.adobe\.(?P<kind>xed|xed-full|xed-notext|xed-full-notext|xed-full-desc)\+json"
    r"\s*;\s*version=(?P<version>[0-9.]+)"
)
_DESCRIPTOR_ACCEPT = re.compile(r"application/vnd\.adobe\.xdm(?P<v2>-v2)?(?P<kind>-id|-link)?\+json")
_KINDS = {
    "schemas": "schemas",
    "fieldgroups": "mixins",
    "mixins": "mixins",
    "classes": "classes",
    "datatypes": "datatypes",
}
_IDENTITY_TYPES = ("string",)
_DESCRIPTOR_TYPES = (
    PRIMARY_IDENTITY,
    "xdm:alternateDisplayInfo",
    "xdm:descriptorOneToOne",
    "xdm:descriptorReferenceIdentity",
)
_TEXT_KEYS = ("title", "description")


def routes(ctx: EmulatorContext) -> list[web.RouteDef]:
    """
    The Schema Registry routes.

    :param ctx: the emulator context.
    """
    registry = _SchemaRegistry(ctx)
    return [
        web.get(f"{BASE}/stats", registry.stats),
        web.get(BASE + "/tenant/descriptors", registry.list_descriptors),
        web.post(BASE + "/tenant/descriptors", registry.create_descriptor),
        web.get(BASE + "/tenant/descriptors/{ref}", registry.get_descriptor),
        web.delete(BASE + "/tenant/descriptors/{ref}", registry.delete_descriptor),
        web.get(BASE + "/{container:tenant|global}/{kind}", registry.list_resources),
        web.post(BASE + "/tenant/{kind:schemas}", registry.create_schema),
        web.post(BASE + "/tenant/{kind:fieldgroups|mixins}", registry.create_fieldgroup),
        web.get(BASE + "/{container:tenant|global}/{kind}/{ref:.+}", registry.get_resource),
        web.patch(BASE + "/tenant/{kind:schemas|fieldgroups|mixins}/{ref:.+}", registry.patch_resource),
        web.delete(BASE + "/tenant/{kind:schemas|fieldgroups|mixins}/{ref:.+}", registry.delete_resource),
    ]


class _SchemaRegistry:
    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx

    # -- helpers ---------------------------------------------------------------------------------

    def _kind(self, request: web.Request) -> str:
        kind = request.match_info["kind"]
        if kind not in _KINDS:
            raise registry_error(404, "XDM-1012-404", "Resource Not Found", f"unknown resource type {kind!r}")
        return _KINDS[kind]

    def _tenant_resources(self, sandbox: SandboxState, kind: str) -> dict[str, dict[str, Any]]:
        if kind == "schemas":
            return sandbox.schemas
        if kind == "mixins":
            return sandbox.fieldgroups
        return {}

    def _global_resources(self, kind: str) -> dict[str, dict[str, Any]]:
        definitions = self.ctx.definitions
        found: dict[str, dict[str, Any]] = {}
        for resource_id in definitions:
            document = definitions.document(resource_id)
            if definitions.is_class(resource_id):
                resource_kind = "classes"
            elif "meta:intendedToExtend" in document:
                resource_kind = "mixins"
            else:
                resource_kind = "datatypes"
            if resource_kind == kind:
                found[resource_id] = self._global_document(resource_id, resource_kind)
        return found

    def _global_document(self, resource_id: str, kind: str) -> dict[str, Any]:
        document = dict(self.ctx.definitions.document(resource_id))
        document.pop("meta:license", None)
        document.setdefault("version", "1.0")
        document["meta:altId"] = _alt_id(resource_id)
        document["meta:resourceType"] = kind
        document["meta:containerId"] = "global"
        return document

    def _resources(self, request: web.Request, kind: str) -> dict[str, dict[str, Any]]:
        if request.match_info.get("container", "tenant") == "global":
            return self._global_resources(kind)
        return self._tenant_resources(self.ctx.sandbox(request), kind)

    def _bump(self, resource: dict[str, Any]) -> None:
        major, _, minor = str(resource.get("version", "1.0")).partition(".")
        resource["version"] = f"{major}.{int(minor or 0) + 1}"
        metadata = resource["meta:registryMetadata"]
        metadata["repo:lastModifiedDate"] = now_ms()
        metadata["eTag"] = secrets.token_hex(32)

    def _new_resource(self, request: web.Request, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        sandbox: SandboxState = self.ctx.sandbox(request)
        tenant = self.ctx.config.tenant_id
        digest = secrets.token_hex(24)
        created = now_ms()
        resource = {key: value for key, value in body.items() if not key.startswith("$")}
        resource.update(
            {
                "$id": f"https://ns.adobe.com/{tenant}/{kind}/{digest}",
                "meta:altId": f"_{tenant}.{kind}.{digest}",
                "meta:resourceType": kind,
                "version": "1.0",
                "type": "object",
                "meta:containerId": "tenant",
                "meta:sandboxId": sandbox.sandbox_id,
                "meta:sandboxType": "production" if sandbox.name == "prod" else "development",
                "meta:tenantNamespace": self.ctx.tenant_namespace(),
                "meta:registryMetadata": {
                    "repo:createdDate": created,
                    "repo:lastModifiedDate": created,
                    "xdm:createdClientId": self.ctx.config.client_id,
                    "xdm:lastModifiedClientId": self.ctx.config.client_id,
                    "eTag": secrets.token_hex(32),
                },
                "imsOrg": self.ctx.config.org_id,
            }
        )
        return resource

    def _check_title(self, resources: Mapping[str, Mapping[str, Any]], body: Any, own_id: str = "") -> str:
        require(isinstance(body, Mapping), _invalid("the body must be a JSON object"))
        title = body.get("title")
        require(isinstance(title, str) and bool(title.strip()), _invalid("title is required"))
        for resource in resources.values():
            if resource["$id"] != own_id and resource.get("title") == title:
                raise registry_error(
                    400,
                    "XDM-1521-400",
                    "Title must be unique",
                    f"Title must be unique. An object {resource['$id']} already exists with the same title",
                )
        return str(title)

    def _lookup(self, request: web.Request, kind: str) -> dict[str, Any]:
        resources = self._resources(request, kind)
        found = find_resource(resources, request.match_info["ref"])
        if found is None:
            raise _not_found(request.match_info["ref"])
        return found

    # -- handlers --------------------------------------------------------------------------------

    async def stats(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        unions = sum(1 for schema in sandbox.schemas.values() if "union" in schema.get("meta:immutableTags", []))
        return self.ctx.json(
            {
                "imsOrg": self.ctx.config.org_id,
                "tenantId": self.ctx.config.tenant_id,
                "counts": {
                    "schemas": len(sandbox.schemas),
                    "mixins": len(sandbox.fieldgroups),
                    "datatypes": 0,
                    "classes": 0,
                    "unions": unions,
                },
                "recentlyCreatedResources": [],
                "recentlyUpdatedResources": [],
                "classUsage": {},
            }
        )

    async def list_resources(self, request: web.Request) -> web.Response:
        kind = self._kind(request)
        accept = _LIST_ACCEPT.search(request.headers.get("Accept", ""))
        if accept is None:
            # 400, not 406: the Schema Registry spec documents XDM-1006-400 "Accept header invalid".
            raise registry_error(
                400,
                "XDM-1006-400",
                "Accept header invalid",
                f"The supplied Accept header is not valid: {request.headers.get('Accept', '')} - A valid "
                "Accept value should look like application/vnd.adobe.'{xed|xdm'}+json",
            )
        query = request.query
        items = filter_items(list(self._resources(request, kind).values()), query.getall("property", []))
        orderby = query.get("orderby", "")
        key = orderby.lstrip("-+") or "title"
        sort_key = "repo:lastModifiedDate" if key == "updated" else key
        items.sort(key=lambda item: _sort_value(item, sort_key), reverse=orderby.startswith("-"))
        limit = int_param(query, "limit", 300, low=0, high=500) if orderby else 300
        start = int_param(query, "start", 0, low=0, high=10**9)
        page = items[start : start + limit] if limit else []
        following = start + len(page) if start + len(page) < len(items) and limit else None
        short = accept.group(1) == "xed-id"
        results = [
            {key: item[key] for key in ("$id", "meta:altId", "version", "title") if key in item} if short else item
            for item in page
        ]
        next_link = None
        if following is not None:
            query_string = f"orderby={orderby or 'title'}&start={following}&limit={limit}"
            next_link = {"href": f"{self.ctx.url}{request.path}?{query_string}"}
        return self.ctx.json(
            {
                "results": results,
                "_page": {
                    "orderby": orderby or "title",
                    "next": str(following) if following is not None else None,
                    "count": len(results),
                },
                "_links": {
                    "next": next_link,
                    "global_schemas": {"href": f"{self.ctx.url}{BASE}/global/schemas"},
                },
            }
        )

    async def get_resource(self, request: web.Request) -> web.Response:
        kind = self._kind(request)
        accept = _LOOKUP_ACCEPT.search(request.headers.get("Accept", ""))
        if accept is None:
            # 400, not 406: the spec documents XDM-1007-400 for a lookup whose Accept lacks version=.
            raise registry_error(
                400,
                "XDM-1007-400",
                "Accept header invalid",
                f"The supplied Accept header is not valid: {request.headers.get('Accept', '')} - A valid "
                "Accept value should look like application/vnd.adobe.'{xed|xdm'}+json; version=1 "
                "(Version should be specified)",
            )
        resource = self._lookup(request, kind)
        if accept.group("version").split(".")[0] != str(resource.get("version", "1")).split(".")[0]:
            raise _not_found(f"{resource['$id']} with version {accept.group('version')}")
        view = accept.group("kind")
        body = self._full(request, resource) if "full" in view else dict(resource)
        if "notext" in view:
            body = _without_text(body)
        return self.ctx.json(body)

    def _full(self, request: web.Request, resource: Mapping[str, Any]) -> dict[str, Any]:
        sandbox: SandboxState = self.ctx.sandbox(request)
        if resource.get("meta:resourceType") == "schemas" and resource.get("meta:containerId") == "tenant":
            resolved = self.ctx.resolved(sandbox, resource)
        elif resource.get("meta:containerId") == "tenant":
            resolved = self.ctx.definitions.resolve(resource["$id"], [], tenant_field_groups=[resource])
        else:
            resolved = self.ctx.definitions.resolve(resource["$id"], [])
        full = {key: value for key, value in resource.items() if key not in ("allOf", "definitions", "refs")}
        full["properties"] = resolved.get("properties", {})
        if resolved.get("required"):
            full["required"] = resolved["required"]
        full["meta:xdmType"] = "object"
        return full

    async def create_schema(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        body = await self.ctx.read_json(request)
        self._check_title(sandbox.schemas, body)
        class_id, groups = self._composition(sandbox, body.get("allOf"))
        schema = self._new_resource(request, "schemas", body)
        schema["meta:class"] = class_id
        schema["meta:extends"] = [class_id, *groups]
        schema["refs"] = [class_id, *groups]
        schema["meta:abstract"] = False
        schema["meta:extensible"] = False
        tags = body.get("meta:immutableTags")
        if tags is not None:
            self._check_union(sandbox, schema, tags)
        sandbox.schemas[schema["$id"]] = schema
        return self.ctx.json(schema, status=201)

    def _composition(self, sandbox: SandboxState, parts: Any) -> tuple[str, list[str]]:
        """Check an ``allOf`` list: exactly one known class, and known field groups meant for it."""
        require(
            isinstance(parts, list) and all(isinstance(part, Mapping) and "$ref" in part for part in parts),
            _invalid('allOf must be a list of {"$ref": "<class or field group $id>"} objects'),
        )
        definitions = self.ctx.definitions
        refs = [str(part["$ref"]) for part in parts]
        classes = [ref for ref in refs if definitions.has(ref) and definitions.is_class(ref)]
        require(len(classes) == 1, _invalid(f"allOf must reference exactly one class, found {classes or 'none'}"))
        class_id = classes[0]
        groups: list[str] = []
        for ref in refs:
            if ref == class_id or ref in groups:
                continue
            if ref in sandbox.fieldgroups:
                extends = sandbox.fieldgroups[ref].get("meta:intendedToExtend", [])
            elif definitions.has(ref) and "meta:intendedToExtend" in definitions.document(ref):
                extends = definitions.intended_to_extend(ref)
            else:
                raise _invalid(f"$ref {ref!r} is not a known class or field group")
            if extends and class_id not in extends:
                raise _invalid(f"field group {ref} is intended to extend {extends}, not the class {class_id}")
            groups.append(ref)
        return class_id, groups

    def _check_union(self, sandbox: SandboxState, schema: Mapping[str, Any], tags: Any) -> None:
        require(
            isinstance(tags, list) and all(tag == "union" for tag in tags),
            _invalid('meta:immutableTags only accepts ["union"]'),
        )
        if not tags:
            return
        has_identity_map = "identityMap" in self.ctx.resolved(sandbox, schema).get("properties", {})
        if self.ctx.primary_identity(sandbox, str(schema["$id"])) is None and not has_identity_map:
            raise registry_error(
                400,
                "XDM-1108-400",
                "Schema cannot be enabled for Profile",
                f"Schema {schema['$id']} needs a primary identity (an xdm:descriptorIdentity with "
                "xdm:isPrimary true, or an identityMap field) before it can be enabled for Profile (union).",
            )

    async def create_fieldgroup(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        body = await self.ctx.read_json(request)
        self._check_title(sandbox.fieldgroups, body)
        group = self._new_resource(request, "mixins", body)
        self._check_fieldgroup(group)
        sandbox.fieldgroups[group["$id"]] = group
        return self.ctx.json(group, status=201)

    def _check_fieldgroup(self, group: dict[str, Any]) -> None:
        extends = group.setdefault("meta:intendedToExtend", [])
        require(isinstance(extends, list), _invalid("meta:intendedToExtend must be a list of class $ids"))
        for class_id in extends:
            require(
                self.ctx.definitions.has(class_id) and self.ctx.definitions.is_class(class_id),
                _invalid(f"meta:intendedToExtend: {class_id!r} is not a known class"),
            )
        resolved = _resolve_group(self.ctx, group)
        tenant = self.ctx.tenant_namespace()
        properties = resolved.get("properties", {})
        require(bool(properties), _invalid(f"the field group defines no fields (put them under {tenant!r})"))
        for name in properties:
            require(
                name == tenant,
                _invalid(
                    f"field {name!r} is not allowed at the root: custom fields must live under the tenant "
                    f"object {tenant!r}"
                ),
            )
        for path in flatten_fields(properties[tenant]):
            for segment in path.split("."):
                name = segment.removesuffix("[]")
                require(
                    not name.startswith("_") or name == "*",
                    _invalid(f"field {tenant}.{path}: names under the tenant object may not start with '_'"),
                )
        group["meta:extends"] = list(extends)

    async def patch_resource(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        kind = self._kind(request)
        resource = self._lookup(request, kind)
        operations = await self.ctx.read_json(request)
        patched = apply_json_patch(resource, operations)
        protected = ("$id", "meta:altId", "meta:resourceType", "meta:containerId", "meta:registryMetadata")
        for key in protected:
            require(patched.get(key) == resource.get(key), _invalid(f"{key} cannot be changed"))
        if kind == "schemas":
            self._check_title(sandbox.schemas, patched, resource["$id"])
            class_id, groups = self._composition(sandbox, patched.get("allOf"))
            require(class_id == resource["meta:class"], _invalid("the class of a schema cannot be changed"))
            was_union = "union" in resource.get("meta:immutableTags", [])
            if was_union:
                require(
                    "union" in patched.get("meta:immutableTags", []),
                    _invalid("a Profile-enabled schema cannot be disabled (meta:immutableTags is immutable)"),
                )
                removed = set(resource["meta:extends"]) - {class_id, *groups}
                require(
                    not removed,
                    _invalid(f"a Profile-enabled schema only accepts additive changes; removing {sorted(removed)}"),
                )
            patched["meta:extends"] = [class_id, *groups]
            patched["refs"] = [class_id, *groups]
            self._bump(patched)
            if "meta:immutableTags" in patched:
                self._check_union(sandbox, patched, patched["meta:immutableTags"])
            sandbox.schemas[patched["$id"]] = patched
        else:
            self._check_title(sandbox.fieldgroups, patched, resource["$id"])
            self._check_fieldgroup(patched)
            self._bump(patched)
            sandbox.fieldgroups[patched["$id"]] = patched
            for schema in sandbox.schemas.values():
                if patched["$id"] in schema.get("meta:extends", []):
                    self._bump(schema)
        return self.ctx.json(patched)

    async def delete_resource(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        kind = self._kind(request)
        resource = self._lookup(request, kind)
        if kind == "schemas":
            used = [
                dataset_id for dataset_id, dataset in sandbox.datasets.items() if _schema_of(dataset) == resource["$id"]
            ]
            require(not used, _invalid(f"schema {resource['$id']} is used by datasets {used}"))
            del sandbox.schemas[resource["$id"]]
        else:
            users = [schema["$id"] for schema in sandbox.schemas.values() if resource["$id"] in schema["meta:extends"]]
            require(not users, _invalid(f"field group {resource['$id']} is used by schemas {users}"))
            del sandbox.fieldgroups[resource["$id"]]
        return web.Response(status=204)

    # -- descriptors -----------------------------------------------------------------------------

    async def create_descriptor(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        body = await self.ctx.read_json(request)
        require(isinstance(body, Mapping), _invalid("the body must be a JSON object"))
        descriptor_type = body.get("@type")
        require(
            descriptor_type in _DESCRIPTOR_TYPES,
            _invalid(f"@type must be one of {list(_DESCRIPTOR_TYPES)}, got {descriptor_type!r}"),
        )
        schema_id = body.get("xdm:sourceSchema")
        schema = sandbox.schemas.get(str(schema_id))
        if schema is None:
            raise _invalid(
                f"xdm:sourceSchema {schema_id!r} is not the $id of a tenant schema (altIds are not accepted)"
            )
        require(
            str(body.get("xdm:sourceVersion")) in ("1", "1.0"),
            _invalid(f"xdm:sourceVersion must be 1, got {body.get('xdm:sourceVersion')!r}"),
        )
        source_property = body.get("xdm:sourceProperty")
        require(
            isinstance(source_property, str) and source_property.startswith("/"),
            _invalid("xdm:sourceProperty must be a path starting with '/', e.g. /_tenant/field"),
        )
        fields = flatten_fields(self.ctx.resolved(sandbox, schema))
        field_path = ".".join(filter(None, str(source_property).split("/")))
        require(
            field_path in fields,
            _invalid(f"xdm:sourceProperty {source_property} does not exist in schema {schema_id}"),
        )
        if descriptor_type == PRIMARY_IDENTITY:
            self._check_identity(sandbox, body, fields[field_path])
        descriptor = dict(body)
        descriptor.update(
            {
                "@id": secrets.token_hex(20),
                "meta:containerId": "tenant",
                "version": "1",
                "imsOrg": self.ctx.config.org_id,
            }
        )
        sandbox.descriptors[descriptor["@id"]] = descriptor
        return self.ctx.json(descriptor, status=201)

    def _check_identity(self, sandbox: SandboxState, body: Mapping[str, Any], field_type: str) -> None:
        require(
            field_type.split(":")[0] in _IDENTITY_TYPES,
            _invalid(f"an identity field must be a string, {body['xdm:sourceProperty']} is {field_type}"),
        )
        namespace = body.get("xdm:namespace")
        key = "id" if body.get("xdm:property") == "xdm:id" else "code"
        require(
            body.get("xdm:property") in ("xdm:code", "xdm:id"),
            _invalid('xdm:property must be "xdm:code" (namespace code) or "xdm:id" (numeric namespace id)'),
        )
        known = [ns for ns in sandbox.namespaces if str(ns[key]) == str(namespace)]
        require(bool(known), _invalid(f"xdm:namespace {namespace!r} is not an identity namespace {key}"))
        require(isinstance(body.get("xdm:isPrimary", False), bool), _invalid("xdm:isPrimary must be a boolean"))
        if body.get("xdm:isPrimary"):
            existing = self.ctx.primary_identity(sandbox, str(body["xdm:sourceSchema"]))
            require(
                existing is None,
                _invalid(
                    f"schema {body['xdm:sourceSchema']} already has a primary identity descriptor "
                    f"{existing['@id'] if existing else ''} on {existing['xdm:sourceProperty'] if existing else ''}"
                ),
            )

    async def list_descriptors(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        accept = _DESCRIPTOR_ACCEPT.search(request.headers.get("Accept", ""))
        if accept is None:
            raise registry_error(
                400,
                "XDM-1008-400",
                "Accept header invalid",
                f"The supplied Accept header is not valid: {request.headers.get('Accept', '')} - A valid "
                "Accept value should look like application/vnd.adobe.xdm-id+json",
            )
        items = filter_items(list(sandbox.descriptors.values()), request.query.getall("property", []))

        def render(descriptor: Mapping[str, Any]) -> Any:
            if accept.group("kind") == "-id":
                return descriptor["@id"]
            if accept.group("kind") == "-link":
                return f"{BASE}/tenant/descriptors/{descriptor['@id']}"
            return descriptor

        if accept.group("v2"):
            results = [render(item) for item in items]
            return self.ctx.json({"results": results, "_page": {"count": len(results), "next": None}})
        grouped: dict[str, list[Any]] = {}
        for item in items:
            grouped.setdefault(str(item["@type"]), []).append(render(item))
        return self.ctx.json(grouped)

    async def get_descriptor(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        descriptor = sandbox.descriptors.get(request.match_info["ref"])
        if descriptor is None:
            raise _not_found(request.match_info["ref"])
        return self.ctx.json(descriptor)

    async def delete_descriptor(self, request: web.Request) -> web.Response:
        sandbox: SandboxState = self.ctx.sandbox(request)
        if sandbox.descriptors.pop(request.match_info["ref"], None) is None:
            raise _not_found(request.match_info["ref"])
        return web.Response(status=204)


def _resolve_group(ctx: EmulatorContext, group: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return ctx.definitions.resolve(str(group["$id"]), [], tenant_field_groups=[group])
    except XDMDefinitionError as err:
        raise _invalid(str(err)) from None


def _schema_of(dataset: Mapping[str, Any]) -> str:
    return str(dataset.get("schemaRef", {}).get("id", ""))


def _alt_id(resource_id: str) -> str:
    path = resource_id.split("://", 1)[-1].split("/", 1)[-1]
    return "_" + path.replace("/", ".")


def _sort_value(item: Mapping[str, Any], key: str) -> str:
    if key in item:
        return str(item[key])
    return str(item.get("meta:registryMetadata", {}).get(key, ""))


def _without_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_text(sub) for key, sub in value.items() if key not in _TEXT_KEYS}
    if isinstance(value, list):
        return [_without_text(sub) for sub in value]
    return value


def _invalid(detail: str) -> APIError:
    return registry_error(400, "XDM-1000-400", "Invalid request", detail)


def _not_found(ref: str) -> APIError:
    return registry_error(
        404, "XDM-1012-404", "Resource Not Found", f"Requested resource {ref} with version 1 is not found"
    )
