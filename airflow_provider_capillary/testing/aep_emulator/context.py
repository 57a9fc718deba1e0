"""Shared context of the emulator's request handlers: configuration, state, definitions and helpers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from airflow_provider_capillary.testing.aep_emulator.errors import (
    APIError,
    content_type_error,
    flow_service_error,
    gateway_error,
    problem,
)
from airflow_provider_capillary.testing.aep_emulator.validation import (
    Validator,
    ValidatorCache,
    closed_schema,
)
from airflow_provider_capillary.testing.xdm_registry import XDMDefinitionError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_capillary.testing.aep_emulator.faults import FaultPlan
    from airflow_provider_capillary.testing.aep_emulator.state import EmulatorState, SandboxState
    from airflow_provider_capillary.testing.xdm_registry import XDMDefinitions

JSON_TYPES = ("application/json", "application/json-patch+json", "application/x-jackson-smile")
PRIMARY_IDENTITY = "xdm:descriptorIdentity"


@dataclass(frozen=True)
class EmulatorConfig:
    """
    Fixed settings of one emulator instance (see :class:`AEPEmulator` for their meaning).

    :param client_id: the only OAuth client id IMS accepts (also the valid ``x-api-key``).
    :param client_secret: its secret.
    :param org_id: the IMS org id.
    :param sandboxes: names of the existing sandboxes.
    :param tenant_id: the Schema Registry tenant id (without the leading underscore).
    :param token_lifetime: lifetime of issued tokens, in seconds.
    :param landing_delay: seconds before accepted records appear in Catalog batches.
    :param reject_unknown_fields: records with fields their schema does not define are invalid.
    :param async_validation: the multi-message endpoint accepts schema-invalid records and fails them later.
    """

    client_id: str
    client_secret: str
    org_id: str
    sandboxes: tuple[str, ...]
    tenant_id: str
    token_lifetime: int
    landing_delay: float
    reject_unknown_fields: bool = True
    async_validation: bool = False


class EmulatorContext:
    """
    What every handler needs; one per emulator.

    :param config: fixed settings.
    :param state: the in-memory store.
    :param definitions: the standard XDM classes and field groups.
    :param faults: the fault plan (replaceable at runtime through :attr:`faults`).
    :param journal: list receiving journal entries, or ``None`` for no journal.
    """

    def __init__(
        self,
        config: EmulatorConfig,
        state: EmulatorState,
        definitions: XDMDefinitions,
        faults: FaultPlan,
        journal: list[dict[str, Any]] | None,
    ) -> None:
        self.config = config
        self.state = state
        self.definitions = definitions
        self.faults = faults
        self.journal = journal
        self.validators = ValidatorCache()
        self.url = ""
        self._resolved: dict[tuple[str, str], dict[str, Any]] = {}

    def reset(self) -> None:
        """Forget every resource, record, token and cached schema (the fault plan is kept)."""
        self.state.reset()
        self._resolved.clear()
        self.validators.clear()

    def revoke_tokens(self) -> None:
        """Invalidate every issued token: later calls get 401 ``401013``."""
        with self.state.lock:
            self.state.tokens.clear()

    # -- responses -------------------------------------------------------------------------------

    @staticmethod
    def json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
        """
        A JSON response serialised with orjson.

        :param body: the JSON value.
        :param status: HTTP status.
        :param headers: extra headers.
        """
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)

    @staticmethod
    async def read_json(request: web.Request) -> Any:
        """
        Decode the request body as JSON; 400 with the parser's reason when it is not.

        :param request: the request.
        """
        raw = await request.read()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise problem(400, "GW-400", "BadRequestError", f"request body is not valid JSON: {err}") from None

    # -- gateway ---------------------------------------------------------------------------------

    def token_valid(self, authorization: str | None) -> bool:
        """
        Whether an ``Authorization`` header carries a live token issued by this emulator.

        :param authorization: the header value.
        """
        if not authorization or not authorization.startswith("Bearer "):
            return False
        expiry = self.state.tokens.get(authorization[7:].strip())
        return expiry is not None and expiry > time.monotonic()

    def check_gateway(self, request: web.Request) -> SandboxState:
        """
        Apply the Platform API gateway's header checks, in the documented order; return the sandbox.

        :param request: a request to a ``/data/...`` path.
        """
        headers = request.headers
        authorization = headers.get("Authorization")
        if not authorization:
            raise gateway_error(403, "403010", "Oauth token is missing.")
        if not self.token_valid(authorization):
            raise gateway_error(401, "401013", "Oauth token is not valid")
        api_key = headers.get("x-api-key")
        if not api_key:
            raise gateway_error(403, "403000", "Api Key is required")
        if api_key != self.config.client_id:
            raise gateway_error(403, "403003", "Api Key is invalid")
        org = headers.get("x-gw-ims-org-id")
        if not org:
            raise gateway_error(400, "400003", "Missing header")
        if org != self.config.org_id:
            raise gateway_error(403, "403025", "Profile is not valid")
        name = headers.get("x-sandbox-name")
        if not name or name not in self.state.sandboxes:
            detail = (
                "The x-sandbox-name header is missing."
                if not name
                else f"Sandbox {name!r} does not exist in org {self.config.org_id} (names are all lower-case)."
            )
            raise flow_service_error(400, "2105-400", "Invalid sandbox", detail)
        if request.method in ("POST", "PUT", "PATCH") and request.body_exists:
            content_type = request.content_type
            upload = "/files/" in request.path and request.path.startswith("/data/foundation/import/")
            if upload:
                if content_type != "application/octet-stream":
                    raise content_type_error()
            elif content_type not in JSON_TYPES:
                raise content_type_error()
        return self.state.sandboxes[name]

    def sandbox(self, request: web.Request) -> SandboxState:
        """
        The sandbox of a platform request (the gateway has already checked ``x-sandbox-name``).

        :param request: a request to a ``/data/...`` path.
        """
        return self.state.sandboxes[request.headers["x-sandbox-name"]]

    # -- schemas ---------------------------------------------------------------------------------

    def tenant_namespace(self) -> str:
        """The tenant object name, ``_{tenantId}``."""
        return "_" + self.config.tenant_id

    def find_schema(self, sandbox: SandboxState, ref: str) -> dict[str, Any] | None:
        """
        Find a tenant schema by ``$id``, URL-encoded ``$id`` or ``meta:altId``.

        :param sandbox: where to look.
        :param ref: the path parameter or ``schemaRef.id``.
        """
        return find_resource(sandbox.schemas, ref)

    def resolved(self, sandbox: SandboxState, schema: Mapping[str, Any]) -> dict[str, Any]:
        """
        The resolved (``xed-full``) schema, cached per schema version.

        :param sandbox: the schema's sandbox.
        :param schema: the stored tenant schema.
        """
        key = (str(schema["$id"]), str(schema["meta:registryMetadata"]["eTag"]))
        cached = self._resolved.get(key)
        if cached is None:
            refs = [part["$ref"] for part in schema.get("allOf", []) if "$ref" in part]
            class_id = str(schema["meta:class"])
            groups = [ref for ref in refs if ref != class_id]
            tenant = [sandbox.fieldgroups[ref] for ref in groups if ref in sandbox.fieldgroups]
            try:
                cached = self.definitions.resolve(class_id, groups, tenant)
            except XDMDefinitionError as err:
                raise problem(500, "XDM-1000-500", "Schema resolution failed", str(err)) from None
            self._resolved[key] = cached
        return cached

    def primary_identity(self, sandbox: SandboxState, schema_id: str) -> dict[str, Any] | None:
        """
        The primary identity descriptor of a schema, if one exists.

        :param sandbox: the schema's sandbox.
        :param schema_id: the schema ``$id``.
        """
        for descriptor in sandbox.descriptors.values():
            if (
                descriptor.get("@type") == PRIMARY_IDENTITY
                and descriptor.get("xdm:sourceSchema") == schema_id
                and descriptor.get("xdm:isPrimary") is True
            ):
                return descriptor
        return None

    def validator(self, sandbox: SandboxState, schema: Mapping[str, Any]) -> Validator:
        """
        The compiled record validator of a schema (primary identity field required).

        :param sandbox: the schema's sandbox.
        :param schema: the stored tenant schema.
        """
        primary = self.primary_identity(sandbox, str(schema["$id"]))
        path = tuple(filter(None, str(primary["xdm:sourceProperty"]).split("/"))) if primary else ()
        key = (str(schema["$id"]), f"{schema['meta:registryMetadata']['eTag']}|{'/'.join(path)}")
        return self.validators.get(
            key,
            lambda: closed_schema(
                self.resolved(sandbox, schema),
                [path] if path else [],
                reject_unknown_fields=self.config.reject_unknown_fields,
            ),
        )


def find_resource(resources: Mapping[str, dict[str, Any]], ref: str) -> dict[str, Any] | None:
    """
    Look a Schema Registry resource up by ``$id``, URL-encoded ``$id`` or ``meta:altId``.

    :param resources: resources keyed by ``$id``.
    :param ref: the path parameter.
    """
    decoded = unquote(ref)
    found = resources.get(decoded)
    if found is not None:
        return found
    for resource in resources.values():
        if resource.get("meta:altId") == decoded:
            return resource
    return None


def require(condition: bool, error: APIError) -> None:
    """
    Raise ``error`` unless ``condition`` holds.

    :param condition: what must be true.
    :param error: the error to raise otherwise.
    """
    if not condition:
        raise error
