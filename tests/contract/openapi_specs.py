"""Adobe's published OpenAPI specs as a contract: load, convert, relax the documented errors, validate.

The specs are read from ``../shared/reference/openapi`` (never copied into the project). Each spec is

1. parsed as YAML into JSON-compatible data (string keys; dates left as the strings the author wrote),
2. converted to OpenAPI 3 when it is Swagger 2.0 (only ``schema-registry.yaml``, see :mod:`.swagger2`),
3. normalised: ``servers`` becomes the spec's base path only, so one local host (the emulator) can serve
   every API, and an empty ``content: {}`` response map is dropped (OpenAPI: "no body described";
   openapi-core would otherwise demand a body),
4. relaxed at exactly the points where Adobe's written docs contradict the spec (:data:`RELAXATIONS`,
   each citing ``openapi/SOURCES.md`` "Known errors" or a note in ``aep-api.md``).

:class:`ContractSpecs` then matches a ``(method, path)`` to an operation by base path and validates a request
or a response with openapi-core, raising :class:`ContractViolation` with the operation and every schema error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlparse

import yaml
from openapi_core import OpenAPI
from openapi_core.configurations import Config
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from tests.contract.swagger2 import swagger2_to_openapi3

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from pathlib import Path

#: The spec files the contract covers (all of Adobe's files in ``reference/openapi``).
SPEC_FILES = (
    "streaming-ingestion.yaml",
    "schema-registry.yaml",
    "catalog.yaml",
    "flow-service.yaml",
    "batch-ingestion.yaml",
    "identity-service.yaml",
    "profile.yaml",
    "observability-insights.yaml",
    "sandbox.yaml",
    "dataset-service.yaml",
)

_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")


class _JsonCompatibleLoader(yaml.SafeLoader):
    """A YAML loader that leaves ``2022-11-09``-style scalars as strings, as a JSON reader would."""


_JsonCompatibleLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_spec_document(path: Path) -> dict[str, Any]:
    """Parse one spec file into JSON-compatible data.

    YAML turns unquoted status codes (``200:``) into integers and dates into ``date`` objects; a JSON round
    trip makes every key a string, which is what openapi-core expects.

    :param path: the ``.yaml`` file.
    """
    with path.open(encoding="utf-8") as stream:
        data = yaml.load(stream, Loader=_JsonCompatibleLoader)
    return json.loads(json.dumps(data))


def base_path_of(document: Mapping[str, Any]) -> str:
    """The path part of a spec's first server URL, without a trailing slash (``""`` for a root server).

    :param document: an OpenAPI 3 document.
    """
    return urlparse(document["servers"][0]["url"]).path.rstrip("/")


def _normalise(document: dict[str, Any]) -> None:
    """Make a converted document servable from one local host (see the module docstring, step 3).

    :param document: an OpenAPI 3 document, changed in place.
    """
    document["servers"] = [{"url": base_path_of(document) or "/"}]
    for item in document["paths"].values():
        for method in _HTTP_METHODS:
            for response in item.get(method, {}).get("responses", {}).values():
                if response.get("content") == {}:
                    del response["content"]


# --- documented relaxations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Relaxation:
    """One place where a spec is loosened because Adobe's docs show a different real-world shape.

    :param spec_file: the spec file it applies to.
    :param point: what is relaxed (also the id of its test case).
    :param source: where the documented shape is stated.
    :param apply: changes the (converted, normalised) document in place; it first checks that the spec
        still says what the relaxation expects, so a changed spec fails loudly instead of being loosened
        somewhere else.
    """

    spec_file: str
    point: str
    source: str
    apply: Callable[[dict[str, Any]], None]


def _at(document: dict[str, Any], *keys: str) -> Any:
    """Walk ``keys`` into ``document``, failing with the full pointer if the spec changed shape.

    :param document: the spec document.
    :param keys: the keys to follow.
    """
    node: Any = document
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            raise LookupError(f"spec changed: /{'/'.join(keys[: depth + 1])} not found")
        node = node[key]
    return node


def _expect(condition: bool, what: str) -> None:
    """Fail when a relaxation no longer matches what the spec says.

    :param condition: the check.
    :param what: a description of the expected spec content.
    """
    if not condition:
        raise LookupError(f"spec changed: expected {what}")


def _nullable_next_links(document: dict[str, Any]) -> None:
    """Spec: ``_page.next`` / ``_links.next`` are non-nullable strings. Docs: ``null`` on the last page."""
    schemas = _at(document, "components", "schemas")
    for next_schema in (
        _at(schemas, "linksBasic", "properties", "next"),
        _at(schemas, "listResponseBasic", "properties", "_page", "properties", "next"),
    ):
        _expect(next_schema.get("type") == "string", "a string 'next'")
        next_schema["nullable"] = True


def _numeric_source_version(document: dict[str, Any]) -> None:
    """Spec: ``xdm:sourceVersion`` is a string. Docs (descriptor examples): the number ``1``."""
    properties = _at(document, "components", "schemas", "createDescriptor", "properties")
    _expect(properties["xdm:sourceVersion"].get("type") == "string", "a string xdm:sourceVersion")
    description = properties["xdm:sourceVersion"].get("description", "")
    properties["xdm:sourceVersion"] = {
        "description": description,
        "anyOf": [{"type": "string"}, {"type": "integer"}],
    }


def _any_json_patch_value(document: dict[str, Any]) -> None:
    """Spec: a JSON Patch ``value`` is a string. Docs: objects and arrays (``["union"]``) are added."""
    item = _at(document, "components", "schemas", "patchSchema", "items", "properties")
    _expect(item["value"].get("type") == "string", "a string JSON Patch value")
    # An empty schema accepts any JSON value (string, number, object, array, boolean, null).
    item["value"] = {"description": item["value"].get("description", "")}


def _optional_schema_description(document: dict[str, Any]) -> None:
    """Spec: ``description`` is required to create a schema. Docs: the examples omit it."""
    required = _at(document, "components", "schemas", "createSchema", "required")
    _expect("description" in required, "'description' required in createSchema")
    required.remove("description")


def _descriptor_put_created(document: dict[str, Any]) -> None:
    """Spec: descriptor PUT answers 200. Descriptors guide: 201 with ``{"@id"}``."""
    responses = _at(document, "paths", "/tenant/descriptors/{DESCRIPTOR_ID}", "put", "responses")
    _expect("201" not in responses, "no 201 on descriptor PUT")
    responses["201"] = {
        "description": "Descriptor updated (descriptors guide): the body carries the descriptor's @id.",
        "content": {
            "application/json": {
                "schema": {"type": "object", "required": ["@id"], "properties": {"@id": {"type": "string"}}}
            }
        },
    }


def _epoch_millis_received_time(document: dict[str, Any]) -> None:
    """Spec: ``receivedTimeMs`` is int32. Docs: epoch milliseconds, which need int64."""
    received = _at(document, "components", "schemas", "StreamingIngestionResponse", "properties", "receivedTimeMs")
    _expect(received.get("format") == "int32", "int32 receivedTimeMs")
    received["format"] = "int64"


def _inlet_id_spelling(document: dict[str, Any]) -> None:
    """Spec: property ``inletID``. Every example: ``inletId`` (``inletID`` stays allowed)."""
    properties = _at(document, "components", "schemas", "StreamingIngestionResponse", "properties")
    _expect("inletID" in properties and "inletId" not in properties, "property inletID only")
    properties["inletId"] = {"type": "string"}


def _dcs_json_error_bodies(document: dict[str, Any]) -> None:
    """Spec: DCS error responses have no body. Docs: JSON problem bodies are returned."""
    for path in ("/collection/{CONNECTION_ID}", "/collection/batch/{CONNECTION_ID}"):
        responses = _at(document, "paths", path, "post", "responses")
        for status, response in responses.items():
            if int(status) >= 400:
                _expect("content" not in response, f"no body on DCS {status}")
                response["content"] = {"application/json": {"schema": {"type": "object"}}}


def _any_xdm_entity(document: dict[str, Any]) -> None:
    """Spec: ``xdmEntity`` has sample properties (``productListItems`` an object). Docs: any record of the schema."""
    schemas = _at(document, "components", "schemas")
    for name in ("messageBody", "BatchMessageBody"):
        entity = _at(schemas, name, "properties", "xdmEntity")
        _expect(entity.get("type") == "object" and "properties" in entity, f"sample properties in {name}.xdmEntity")
        schemas[name]["properties"]["xdmEntity"] = {"type": "object"}


def _loading_batch_status(document: dict[str, Any]) -> None:
    """Spec: ``Batch.status`` has no ``loading``. Docs: a new batch reports ``loading``."""
    status = _at(document, "components", "schemas", "Batch", "properties", "status")
    _expect("loading" not in status.get("enum", ["loading"]), "a Batch.status enum without 'loading'")
    status["enum"].append("loading")


def _file_action_created(document: dict[str, Any]) -> None:
    """Spec: the file INITIALIZE/COMPLETE action answers 200. Docs: 201."""
    responses = _at(document, "paths", "/batches/{batchId}/datasets/{datasetId}/files/{filePath}", "post", "responses")
    _expect("201" not in responses, "no 201 on the file INITIALIZE/COMPLETE action")
    # The docs show the status only, no body: a 201 describes none.
    responses["201"] = {"description": "Created (batch ingestion guide)."}


def _lowercase_input_format(document: dict[str, Any]) -> None:
    """Spec: ``inputFormat.format`` is ``JSON|Parquet|CSV``. aep-api.md 8: ``json``/``parquet``/``csv``."""
    body = _at(document, "paths", "/batches", "post", "requestBody", "content", "application/json", "schema")
    _expect(body.get("$ref") == "#/components/schemas/IngestBatch", "POST /batches body IngestBatch")
    format_schema = _at(document, "components", "schemas", "IngestBatch", "properties", "inputFormat")
    format_schema = _at(format_schema, "properties", "format")
    _expect(format_schema.get("enum") == ["JSON", "Parquet", "CSV"], "inputFormat.format enum JSON/Parquet/CSV")
    format_schema["enum"] = [*format_schema["enum"], "json", "parquet", "csv"]


def _octet_stream_chunks(document: dict[str, Any]) -> None:
    """Spec: chunk body is multipart/form-data (yet its own Content-Type allows only octet-stream). Docs: raw bytes."""
    operation = _at(document, "paths", "/batches/{batchId}/datasets/{datasetId}/files/{filePath}", "patch")
    content = _at(operation, "requestBody", "content")
    _expect(list(content) == ["multipart/form-data"], "a multipart/form-data chunk body")
    operation["requestBody"]["content"] = {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
    }


def _both_id_type_casings(document: dict[str, Any]) -> None:
    """Spec: ``idType`` is ``Cross_device`` in some schemas, ``CROSS_DEVICE`` in others; accept both casings."""
    schemas = _at(document, "components", "schemas")
    enums: list[list[str]] = []
    for name in ("updateNamespace", "namespaceUpdate", "Namespace", "namespaceCreate"):
        enums.append(_at(schemas, name, "properties", "idType", "enum"))
    enums.append(_at(schemas, "listNamespaces", "items", "properties", "idType", "enum"))
    union = sorted({value for values in enums for value in values})
    _expect("Cross_device" in union and "CROSS_DEVICE" in union, "idType enums with different casings")
    for values in enums:
        values[:] = union


def _experience_event_lookup(document: dict[str, Any]) -> None:
    """Spec: ``schema.name`` drops ``_xdm.context.experienceevent``. Docs: still documented and served."""
    parameters = _at(document, "paths", "/ups/access/entities", "get", "parameters")
    (schema_name,) = (p for p in parameters if p.get("name") == "schema.name")
    enum = schema_name["schema"]["enum"]
    _expect("_xdm.context.experienceevent" not in enum, "schema.name enum without experienceevent")
    enum.append("_xdm.context.experienceevent")


def _flow_service_client_errors(document: dict[str, Any]) -> None:
    """Spec: only 403/503 listed. aep-api.md 5.6: expect 400 (bad payload) and 404 (unknown id) too."""
    error_body = {"application/json": {"schema": {"type": "object"}}}
    for path, method in (
        ("/connections/{BASE_CONNECTION_ID}", "get"),
        ("/connections", "post"),
        ("/sourceConnections", "post"),
        ("/targetConnections", "post"),
        ("/flows", "post"),
    ):
        responses = _at(document, "paths", path, method, "responses")
        for status in ("400", "404"):
            if status not in responses:
                responses[status] = {"description": "aep-api.md 5.6", "content": error_body}


def _connection_paths_without_trailing_slash(document: dict[str, Any]) -> None:
    """Spec: ``PATCH`` and ``DELETE /connections/{id}/`` (a path of their own, with a slash). aep-api.md 5.6:
    ``PATCH /connections/{id}``, ``DELETE /connections/{id}``, the path ``GET`` uses."""
    paths = _at(document, "paths")
    slashed = _at(paths, "/connections/{BASE_CONNECTION_ID}/")
    _expect(set(slashed) - {"parameters"} == {"delete", "patch"}, "PATCH, DELETE under /connections/{id}/")
    item = _at(paths, "/connections/{BASE_CONNECTION_ID}")
    _expect(not {"delete", "patch"} & set(item), "no PATCH or DELETE under /connections/{BASE_CONNECTION_ID}")
    item["delete"], item["patch"] = slashed.pop("delete"), slashed.pop("patch")
    del paths["/connections/{BASE_CONNECTION_ID}/"]


def _source_connection_without_data(document: dict[str, Any]) -> None:
    """Spec: ``data`` required on source connection create. aep-api.md 5.3 (HTTP API tutorial): omitted."""
    body = _at(document, "paths", "/sourceConnections", "post", "requestBody", "content", "application/json")
    name = "CreateSourceConnectionRequest"
    _expect(body["schema"] == {"$ref": f"#/components/schemas/{name}"}, f"a {name} body (used only here)")
    required = _at(document, "components", "schemas", name, "required")
    _expect("data" in required, "'data' required on source connection create")
    required.remove("data")


_SOURCES_TABLE = "openapi/SOURCES.md 'Known errors'"

#: Every relaxation applied to the specs, in the order they are applied.
RELAXATIONS: tuple[Relaxation, ...] = (
    Relaxation(
        "schema-registry.yaml",
        "_page.next / _links.next may be null",
        f"{_SOURCES_TABLE}; aep-api.md 2.3 ('null = last page')",
        _nullable_next_links,
    ),
    Relaxation(
        "schema-registry.yaml",
        "descriptor xdm:sourceVersion may be a number",
        f"{_SOURCES_TABLE}; aep-api.md 2.7 ('xdm:sourceVersion': 1)",
        _numeric_source_version,
    ),
    Relaxation(
        "schema-registry.yaml",
        "JSON Patch value may be any JSON value",
        f"{_SOURCES_TABLE}; aep-api.md 2.5/2.8 (objects and ['union'])",
        _any_json_patch_value,
    ),
    Relaxation(
        "schema-registry.yaml",
        "schema create without description",
        f"{_SOURCES_TABLE} (examples omit it)",
        _optional_schema_description,
    ),
    Relaxation(
        "schema-registry.yaml",
        "descriptor PUT may answer 201 {'@id'}",
        f"{_SOURCES_TABLE} (descriptors guide)",
        _descriptor_put_created,
    ),
    Relaxation(
        "streaming-ingestion.yaml",
        "receivedTimeMs is int64 epoch millis",
        f"{_SOURCES_TABLE}; aep-api.md 6.3",
        _epoch_millis_received_time,
    ),
    Relaxation(
        "streaming-ingestion.yaml",
        "response property spelled inletId",
        f"{_SOURCES_TABLE}; aep-api.md 6.3",
        _inlet_id_spelling,
    ),
    Relaxation(
        "streaming-ingestion.yaml",
        "error responses carry a JSON body",
        f"{_SOURCES_TABLE}; aep-api.md 6.3/6.5 (problem bodies)",
        _dcs_json_error_bodies,
    ),
    Relaxation(
        "streaming-ingestion.yaml",
        "xdmEntity is any record of the dataset's schema",
        "aep-api.md 6.2 ('xdmEntity': the XDM record) and 11 (ExperienceEvent with a productListItems array; "
        "the spec's sample properties type it as an object)",
        _any_xdm_entity,
    ),
    Relaxation(
        "batch-ingestion.yaml",
        "Batch.status may be 'loading'",
        f"{_SOURCES_TABLE}; aep-api.md 8 step 1",
        _loading_batch_status,
    ),
    Relaxation(
        "batch-ingestion.yaml",
        "file INITIALIZE/COMPLETE action answers 201",
        f"{_SOURCES_TABLE}; aep-api.md 8 step 3",
        _file_action_created,
    ),
    Relaxation(
        "batch-ingestion.yaml",
        "inputFormat.format in lower case ('json')",
        "aep-api.md 8 step 1 (documented request body uses 'json' | 'parquet' | 'csv')",
        _lowercase_input_format,
    ),
    Relaxation(
        "batch-ingestion.yaml",
        "file chunks are raw application/octet-stream",
        "aep-api.md 8 step 3; the operation's own Content-Type parameter allows only application/octet-stream",
        _octet_stream_chunks,
    ),
    Relaxation(
        "identity-service.yaml",
        "idType accepted in either casing",
        f"{_SOURCES_TABLE}",
        _both_id_type_casings,
    ),
    Relaxation(
        "profile.yaml",
        "schema.name may be _xdm.context.experienceevent",
        f"{_SOURCES_TABLE}; aep-api.md 7",
        _experience_event_lookup,
    ),
    Relaxation(
        "flow-service.yaml",
        "400 / 404 answers on create and look-up",
        "aep-api.md 5.6 ('only 403 and 503 are listed; expect 400 (bad payload), 404 (unknown id) too')",
        _flow_service_client_errors,
    ),
    Relaxation(
        "flow-service.yaml",
        "PATCH/DELETE /connections/{id} without a trailing slash",
        "aep-api.md 5.6 ('PATCH /connections/{id}', 'DELETE /connections/{id}')",
        _connection_paths_without_trailing_slash,
    ),
    Relaxation(
        "flow-service.yaml",
        "HTTP API source connection without data",
        "aep-api.md 5.3 (current HTTP API tutorial body has name, baseConnectionId, connectionSpec only)",
        _source_connection_without_data,
    ),
)


def build_document(spec_dir: Path, spec_file: str, relaxations: Iterable[Relaxation] = RELAXATIONS) -> dict[str, Any]:
    """Load, convert, normalise and relax one spec file.

    :param spec_dir: the folder holding Adobe's spec files.
    :param spec_file: the file name, e.g. ``catalog.yaml``.
    :param relaxations: the relaxations to apply (those for other files are ignored); default: all.
    """
    document = load_spec_document(spec_dir / spec_file)
    if document.get("swagger") == "2.0":
        document = swagger2_to_openapi3(document)
    _normalise(document)
    for relaxation in relaxations:
        if relaxation.spec_file == spec_file:
            relaxation.apply(document)
    return document


# --- gateway errors --------------------------------------------------------------------------------------

#: Errors the Adobe I/O gateway answers before any platform service sees the call (aep-api.md 0):
#: (status, error_code) -> message. They apply to every ``platform.adobe.io`` operation, so they are
#: checked here rather than against each service's spec, which does not describe the gateway.
GATEWAY_ERRORS: Mapping[tuple[int, str], str] = MappingProxyType(
    {
        (403, "403010"): "Oauth token is missing.",
        (401, "401013"): "Oauth token is not valid",
        (403, "403000"): "Api Key is required",
        (403, "403003"): "Api Key is invalid",
        (400, "400003"): "Missing header",
        (403, "403025"): "Profile is not valid",
    }
)


#: The gateway's answer to a body without a valid ``Content-Type`` (aep-api.md 0): HTTP 400, a problem body.
GATEWAY_CONTENT_TYPE_ERROR: Mapping[str, Any] = MappingProxyType(
    {
        "status": 400,
        "title": "BadRequestError",
        "detail": "A valid content-type must be specified",
    }
)


#: The ``error_code`` of the answer to a missing or unknown ``x-sandbox-name`` (SOURCES.md: "no
#: ``x-sandbox-name`` -> 400 (Flow Service error ``2105-400``)"), carried in a problem body's ``type``.
SANDBOX_ERROR_CODE = "2105-400"


def _is_sandbox_error(status: int, body: Any) -> bool:
    return status == 400 and isinstance(body, dict) and str(body.get("type", "")).endswith(SANDBOX_ERROR_CODE)


def gateway_error_problems(status: int, body: Any) -> list[str]:
    """Check a gateway error body against aep-api.md section 0 (and SOURCES.md for the sandbox error).

    :param status: the HTTP status.
    :param body: the decoded JSON body: ``{"error_code", "message"}``, the content-type problem body or the
        sandbox problem body.
    :return: the problems found (empty when the body is a documented gateway error for ``status``).
    """
    if _is_sandbox_error(status, body):
        return [] if body.get("status") == status else [f"sandbox error: 'status' {body.get('status')!r} != 400"]
    if isinstance(body, dict) and body.get("title") == GATEWAY_CONTENT_TYPE_ERROR["title"]:
        wrong = {key: body.get(key) for key, value in GATEWAY_CONTENT_TYPE_ERROR.items() if body.get(key) != value}
        return [f"content-type error: {wrong} differ from {dict(GATEWAY_CONTENT_TYPE_ERROR)}"] if wrong else []
    if not isinstance(body, dict) or not isinstance(body.get("error_code"), str):
        return [f"{status} body is not a gateway error {{'error_code', 'message'}}: {body!r}"]
    key = (status, body["error_code"])
    if key not in GATEWAY_ERRORS:
        return [f"error_code {body['error_code']!r} is not a documented gateway error for HTTP {status}"]
    if body.get("message") != GATEWAY_ERRORS[key]:
        return [f"error_code {body['error_code']}: message {body.get('message')!r} != {GATEWAY_ERRORS[key]!r}"]
    return []


def is_gateway_error(status: int, body: Any) -> bool:
    """Whether a response claims to be one of the gateway's documented errors.

    :param status: the HTTP status.
    :param body: the decoded JSON body.
    """
    if not isinstance(body, dict):
        return False
    if _is_sandbox_error(status, body):
        return True
    if status == GATEWAY_CONTENT_TYPE_ERROR["status"] and body.get("title") == GATEWAY_CONTENT_TYPE_ERROR["title"]:
        return True
    return (status, body.get("error_code")) in GATEWAY_ERRORS


# --- matching and validation -----------------------------------------------------------------------------


class ContractViolation(AssertionError):
    """A request or response does not follow the (relaxed) spec of its operation."""


@dataclass(frozen=True)
class OperationMatch:
    """The spec operation a call was matched to.

    :param spec_file: the spec file name.
    :param method: the lower-case HTTP method.
    :param path_template: the spec path, e.g. ``/dataSets/{DATASET_ID}``.
    :param operation_id: the operation's ``operationId``.
    """

    spec_file: str
    method: str
    path_template: str
    operation_id: str

    def __str__(self) -> str:
        return f"{self.spec_file} {self.method.upper()} {self.path_template} ({self.operation_id})"


@dataclass(frozen=True)
class HttpCall:
    """One HTTP request and (optionally) its response, as seen on the wire.

    :param method: the HTTP method.
    :param path: the URL path as sent, still percent-encoded (``/data/foundation/catalog/dataSets``).
    :param query: the query string pairs, in order; repeated names allowed.
    :param headers: the request headers.
    :param body: the raw request body.
    :param status: the response status (``None`` when only the request is validated).
    :param response_headers: the response headers.
    :param response_body: the raw response body.
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    status: int | None = None
    response_headers: Mapping[str, str] = field(default_factory=dict)
    response_body: bytes = b""

    @classmethod
    def from_url(cls, method: str, url: str, **kwargs: Any) -> HttpCall:
        """Build a call from a full or path-only URL, splitting off the query string.

        :param method: the HTTP method.
        :param url: e.g. ``http://127.0.0.1:8080/data/foundation/catalog/dataSets?limit=10``.
        :param kwargs: the other :class:`HttpCall` fields.
        """
        parts = urlparse(url)
        return cls(method, parts.path, tuple(parse_qsl(parts.query, keep_blank_values=True)), **kwargs)


class _OpenApiRequest:
    """An openapi-core ``Request`` built from an :class:`HttpCall`, pinned to the operation already matched.

    :param call: the call.
    :param path_pattern: the matched spec path including the base path, so openapi-core picks the same
        operation.
    :param path_values: the path parameters' values, as matched.
    """

    def __init__(self, call: HttpCall, path_pattern: str, path_values: dict[str, str]) -> None:
        self.host_url = "http://127.0.0.1"
        self.path = call.path
        self.path_pattern = path_pattern
        self.method = call.method.lower()
        self.body = call.body or None
        headers = Headers(list(call.headers.items()))
        self.content_type = headers.get("Content-Type", "")
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(call.query)), header=headers, path=path_values
        )


class _OpenApiResponse:
    """An openapi-core ``Response`` built from an :class:`HttpCall`."""

    def __init__(self, call: HttpCall) -> None:
        assert call.status is not None
        self.status_code = call.status
        self.headers = Headers(list(call.response_headers.items()))
        self.content_type = self.headers.get("Content-Type", "")
        self.data = call.response_body or None


def _describe(error: BaseException) -> str:
    """Flatten an openapi-core error and its causes into one readable message.

    :param error: the exception raised by openapi-core.
    """
    lines = [f"{type(error).__name__}: {error}"]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for schema_error in getattr(current, "schema_errors", ()) or ():
            pointer = "/".join(str(part) for part in schema_error.absolute_path)
            lines.append(f"  at /{pointer}: {schema_error.message}")
        current = current.__cause__ or current.__context__
    return "\n".join(lines)


def _template_regex(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """A regex matching a concrete path against a spec path template, and the template's variable names.

    The n-th variable is captured by group ``v{n}`` (variable names need not be valid group names).

    :param template: e.g. ``/{CONTAINER_ID}/schemas/{SCHEMA_ID}``.
    """
    names: list[str] = []
    pattern = ""
    for part in re.split(r"(\{[^}]+\})", template):
        if part.startswith("{"):
            pattern += f"(?P<v{len(names)}>[^/]+)"
            names.append(part[1:-1])
        else:
            pattern += re.escape(part)
    return re.compile(pattern + "/?"), tuple(names)


@dataclass
class _LoadedSpec:
    spec_file: str
    base_path: str
    document: dict[str, Any]
    openapi: OpenAPI
    templates: list[tuple[str, re.Pattern[str], tuple[str, ...]]]


class ContractSpecs:
    """Adobe's specs, ready to match and validate calls.

    :param spec_dir: the folder with Adobe's spec files (``../shared/reference/openapi``).
    :param spec_files: which files to load; default: all of :data:`SPEC_FILES`.
    :param relaxations: the relaxations to apply; default: :data:`RELAXATIONS`.
    """

    def __init__(
        self,
        spec_dir: Path,
        spec_files: Iterable[str] = SPEC_FILES,
        relaxations: Iterable[Relaxation] = RELAXATIONS,
    ) -> None:
        relaxations = tuple(relaxations)
        self._specs: list[_LoadedSpec] = []
        for spec_file in spec_files:
            document = build_document(spec_dir, spec_file, relaxations)
            self._specs.append(
                _LoadedSpec(
                    spec_file=spec_file,
                    base_path=base_path_of(document),
                    document=document,
                    # The specs themselves are not re-validated: catalog.yaml, for one, has a structural
                    # error unrelated to any operation we call; the contract is about the calls.
                    openapi=OpenAPI.from_dict(document, config=Config(spec_validator_cls=None)),
                    templates=[(template, *_template_regex(template)) for template in document["paths"]],
                )
            )

    def document(self, spec_file: str) -> dict[str, Any]:
        """The converted, normalised and relaxed document of one spec.

        :param spec_file: the file name, e.g. ``catalog.yaml``.
        """
        return self._spec(spec_file).document

    def operations(self, spec_file: str) -> list[OperationMatch]:
        """Every operation a spec defines.

        :param spec_file: the file name.
        """
        spec = self._spec(spec_file)
        return [
            OperationMatch(spec_file, method, template, operation.get("operationId", ""))
            for template, item in spec.document["paths"].items()
            for method, operation in item.items()
            if method in _HTTP_METHODS
        ]

    def _spec(self, spec_file: str) -> _LoadedSpec:
        for spec in self._specs:
            if spec.spec_file == spec_file:
                return spec
        raise KeyError(f"{spec_file} is not loaded")

    def _find(self, method: str, path: str) -> tuple[_LoadedSpec, OperationMatch, dict[str, str]]:
        """Match a call to the most concrete operation of the spec whose base path prefixes it.

        :param method: the HTTP method.
        :param path: the URL path.
        :return: the spec, the operation and the path parameters' values.
        :raises ContractViolation: if no spec defines that method on that path.
        """
        method = method.lower()
        candidates: list[tuple[int, int, _LoadedSpec, OperationMatch, dict[str, str]]] = []
        for spec in self._specs:
            if not path.startswith(spec.base_path + "/"):
                continue
            relative = path[len(spec.base_path) :]
            for template, regex, names in spec.templates:
                operation = spec.document["paths"][template].get(method)
                found = regex.fullmatch(relative)
                if operation is not None and found:
                    match = OperationMatch(spec.spec_file, method, template, operation.get("operationId", ""))
                    values = {name: found[f"v{index}"] for index, name in enumerate(names)}
                    # Longer base path first, then fewer path variables (a literal segment wins).
                    candidates.append((-len(spec.base_path), len(names), spec, match, values))
        if not candidates:
            raise ContractViolation(f"{method.upper()} {path}: no operation in Adobe's specs")
        candidates.sort(key=lambda candidate: candidate[:2])
        return candidates[0][2:]

    def match(self, method: str, path: str) -> OperationMatch:
        """The spec operation for a call.

        :param method: the HTTP method.
        :param path: the URL path (percent-encoded as sent).
        :raises ContractViolation: if no spec defines it.
        """
        return self._find(method, path)[1]

    def validate_request(self, call: HttpCall) -> OperationMatch:
        """Validate path, method, parameters (required headers included) and body of a request.

        :param call: the request.
        :return: the operation it was matched to.
        :raises ContractViolation: listing every problem openapi-core reports.
        """
        spec, match, path_values = self._find(call.method, call.path)
        try:
            spec.openapi.validate_request(_OpenApiRequest(call, spec.base_path + match.path_template, path_values))
        except Exception as error:
            raise ContractViolation(
                f"request {call.method.upper()} {call.path} vs {match}:\n{_describe(error)}"
            ) from error
        return match

    def validate_response(self, call: HttpCall) -> OperationMatch:
        """Validate a response (status, headers, body) against its operation's declared responses.

        A documented gateway error (:data:`GATEWAY_ERRORS`) is checked against aep-api.md section 0
        instead, because it comes from the gateway in front of the service.

        :param call: the request and its response (``status`` must be set).
        :return: the operation it was matched to.
        :raises ContractViolation: listing every problem found.
        """
        if call.status is None:
            raise ValueError("validate_response needs the response status")
        spec, match, path_values = self._find(call.method, call.path)
        if spec.base_path and is_gateway_error(call.status, _json_or_none(call.response_body)):
            problems = gateway_error_problems(call.status, _json_or_none(call.response_body))
            if problems:
                raise ContractViolation(f"response {call.status} vs gateway errors: {problems}")
            return match
        try:
            spec.openapi.validate_response(
                _OpenApiRequest(call, spec.base_path + match.path_template, path_values), _OpenApiResponse(call)
            )
        except Exception as error:
            raise ContractViolation(
                f"response {call.status} to {call.method.upper()} {call.path} vs {match}:\n{_describe(error)}"
            ) from error
        return match


def _json_or_none(body: bytes) -> Any:
    """Decode a JSON body, or ``None`` if it is empty or not JSON.

    :param body: the raw body.
    """
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None
