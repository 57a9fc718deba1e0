"""The contract harness itself: matching, validation, examples from the specs, and each documented relaxation.

Every relaxation is shown three ways: the documented real-world shape fails Adobe's spec as written
(``strict_specs``), passes the contract (``contract_specs``), and a real error at the same place still fails.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.contract.openapi_specs import (
    GATEWAY_ERRORS,
    RELAXATIONS,
    SPEC_FILES,
    ContractSpecs,
    ContractViolation,
    HttpCall,
    build_document,
    gateway_error_problems,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.contract

SR = "/data/foundation/schemaregistry"
CATALOG = "/data/foundation/catalog"
FLOW = "/data/foundation/flowservice"
IMPORT = "/data/foundation/import"
JSON = {"Content-Type": "application/json"}
SCHEMA_ID = "https://ns.adobe.com/acme/schemas/0a1b2c"
FILE_PATH = f"{IMPORT}/batches/b1/datasets/d1/files/part-0.json"


def headers(**extra: str) -> dict[str, str]:
    """The headers every platform call carries (aep-api.md section 0), plus ``extra``."""
    return {
        "Authorization": "Bearer token",
        "x-api-key": "client-id",
        "x-gw-ims-org-id": "ORG@AdobeOrg",
        "x-sandbox-name": "prod",
        **{name.replace("_", "-"): value for name, value in extra.items()},
    }


def request(method: str, url: str, body: Any = None, raw: bytes | None = None, **header_values: str) -> HttpCall:
    """A request with the platform headers; a JSON ``body`` adds ``Content-Type: application/json``."""
    all_headers = headers(**header_values)
    if body is not None:
        all_headers.setdefault("Content-Type", "application/json")
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    return HttpCall.from_url(method, url, headers=all_headers, body=data)


def response(call: HttpCall, status: int, body: Any = None, content_type: str = "application/json") -> HttpCall:
    """``call`` with a response."""
    raw = b"" if body is None else json.dumps(body).encode()
    return HttpCall(
        call.method,
        call.path,
        call.query,
        call.headers,
        call.body,
        status,
        {"Content-Type": content_type} if raw else {},
        raw,
    )


def dcs_message() -> dict[str, Any]:
    """A streaming envelope with every field the spec requires (aep-api.md 6.2)."""
    schema_ref = {"id": SCHEMA_ID, "contentType": "application/vnd.adobe.xed-full+json;version=1"}
    return {
        "header": {"schemaRef": schema_ref, "imsOrgId": "ORG@AdobeOrg", "datasetId": "d1", "flowId": "f1"},
        "body": {"xdmMeta": {"schemaRef": schema_ref}, "xdmEntity": {"_id": "1"}},
    }


# --- loading and matching --------------------------------------------------------------------------------


def test_every_spec_loads_with_its_base_path(contract_specs: ContractSpecs) -> None:
    bases = {name: contract_specs.document(name)["servers"][0]["url"] for name in SPEC_FILES}
    assert bases == {
        "streaming-ingestion.yaml": "/",
        "schema-registry.yaml": SR,
        "catalog.yaml": CATALOG,
        "flow-service.yaml": FLOW,
        "batch-ingestion.yaml": IMPORT,
        "identity-service.yaml": "/data/core",
        "profile.yaml": "/data/core",
        "observability-insights.yaml": "/data/infrastructure/observability/insights",
        "sandbox.yaml": "/data/foundation",
        "dataset-service.yaml": "/data/foundation/dataset",
    }


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", f"{SR}/tenant/schemas", "schema-registry.yaml GET /{CONTAINER_ID}/schemas (listSchemas)"),
        ("POST", f"{SR}/tenant/schemas", "schema-registry.yaml POST /tenant/schemas (createSchema)"),
        (
            "GET",
            f"{SR}/tenant/schemas/https%3A%2F%2Fns.adobe.com%2Facme%2Fschemas%2F0a1b2c",
            "schema-registry.yaml GET /{CONTAINER_ID}/schemas/{SCHEMA_ID} (retrieveSchema)",
        ),
        ("GET", f"{CATALOG}/batches", "catalog.yaml GET /batches (listBatches)"),
        ("POST", f"{IMPORT}/batches", "batch-ingestion.yaml POST /batches (createBatch)"),
        ("POST", "/collection/abc", "streaming-ingestion.yaml POST /collection/{CONNECTION_ID} (sendMessage)"),
        (
            "POST",
            "/collection/batch/abc",
            "streaming-ingestion.yaml POST /collection/batch/{CONNECTION_ID} (postBatchOfStreamingMessages)",
        ),
        (
            "GET",
            "/data/core/idnamespace/identities",
            "identity-service.yaml GET /idnamespace/identities (getIdNamespaces)",
        ),
        ("GET", "/data/core/ups/access/entities", "profile.yaml GET /ups/access/entities (retrieveEntity)"),
        (
            "GET",
            "/data/foundation/dataset/datasets/d1/labels",
            "dataset-service.yaml GET /datasets/{DATASET_ID}/labels (retrieveDatasetLabels)",
        ),
    ],
)
def test_calls_match_the_operation_under_the_longest_base_path(
    contract_specs: ContractSpecs, method: str, path: str, expected: str
) -> None:
    assert str(contract_specs.match(method, path)) == expected


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/ims/token/v3"), ("DELETE", f"{IMPORT}/batches"), ("GET", f"{CATALOG}/nothing/here/at/all")],
)
def test_calls_no_spec_defines_are_violations(contract_specs: ContractSpecs, method: str, path: str) -> None:
    with pytest.raises(ContractViolation, match="no operation in Adobe's specs"):
        contract_specs.match(method, path)


# --- requests: a documented request passes, a mutated one fails ------------------------------------------


def test_documented_schema_create_passes(contract_specs: ContractSpecs) -> None:
    body = {
        "type": "object",
        "title": "Capillary Loyalty Members",
        "description": "Loyalty members",
        "allOf": [{"$ref": "https://ns.adobe.com/xdm/context/profile"}],
    }
    match = contract_specs.validate_request(request("POST", f"{SR}/tenant/schemas", body))
    assert match.operation_id == "createSchema"


@pytest.mark.parametrize("missing", ["Authorization", "x-api-key", "x-gw-ims-org-id", "x-sandbox-name", "Content-Type"])
def test_a_missing_required_header_fails(contract_specs: ContractSpecs, missing: str) -> None:
    call = request("POST", f"{SR}/tenant/schemas", {"type": "object", "title": "t", "allOf": []})
    call = HttpCall(
        call.method, call.path, call.query, {k: v for k, v in call.headers.items() if k != missing}, call.body
    )
    with pytest.raises(ContractViolation, match=f"Missing required header parameter: {missing}"):
        contract_specs.validate_request(call)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"type": "object", "allOf": []}, "'title' is a required property"),
        ({"type": "object", "title": "t", "allOf": {}}, "is not of type 'array'"),
        ([{"title": "t"}], "is not of type 'object'"),
    ],
    ids=["missing-title", "allOf-not-array", "body-not-object"],
)
def test_a_wrong_body_fails(contract_specs: ContractSpecs, body: Any, error: str) -> None:
    with pytest.raises(ContractViolation, match=error):
        contract_specs.validate_request(request("POST", f"{SR}/tenant/schemas", body))


def test_a_required_query_parameter_and_an_enum_header_are_checked(contract_specs: ContractSpecs) -> None:
    complete = request("POST", f"{IMPORT}/batches/b1", raw=b"")
    with pytest.raises(ContractViolation, match="Missing required query parameter: action"):
        contract_specs.validate_request(complete)
    contract_specs.validate_request(request("POST", f"{IMPORT}/batches/b1?action=COMPLETE"))
    with pytest.raises(ContractViolation, match="'DONE' is not one of"):
        contract_specs.validate_request(request("POST", f"{IMPORT}/batches/b1?action=DONE"))
    with pytest.raises(ContractViolation, match="Invalid header parameter: Content-Type"):
        contract_specs.validate_request(
            request("POST", "/collection/abc", raw=json.dumps(dcs_message()).encode(), Content_Type="text/plain")
        )


def test_a_streaming_envelope_without_flow_id_fails(contract_specs: ContractSpecs) -> None:
    message = dcs_message()
    contract_specs.validate_request(request("POST", "/collection/abc", message))
    del message["header"]["flowId"]
    with pytest.raises(ContractViolation, match="'flowId' is a required property"):
        contract_specs.validate_request(request("POST", "/collection/abc", message))


# --- responses -------------------------------------------------------------------------------------------


def test_a_response_with_an_undeclared_status_fails(contract_specs: ContractSpecs) -> None:
    call = request("GET", f"{SR}/stats", Accept="application/json")
    with pytest.raises(ContractViolation, match="Unknown response http status: 418"):
        contract_specs.validate_response(response(call, 418, {"x": 1}))


def test_a_response_body_of_the_wrong_type_fails(contract_specs: ContractSpecs) -> None:
    call = request("GET", f"{SR}/stats", Accept="application/json")
    contract_specs.validate_response(response(call, 200, {"tenantId": "acme", "imsOrg": "ORG@AdobeOrg"}))
    with pytest.raises(ContractViolation, match="1 is not of type 'string'"):
        contract_specs.validate_response(response(call, 200, {"tenantId": 1}))


@pytest.mark.parametrize(("status", "code"), sorted(GATEWAY_ERRORS))
def test_documented_gateway_errors_pass_on_any_platform_operation(
    contract_specs: ContractSpecs, status: int, code: str
) -> None:
    call = request("GET", f"{SR}/stats", Accept="application/json")
    contract_specs.validate_response(
        response(call, status, {"error_code": code, "message": GATEWAY_ERRORS[(status, code)]})
    )


def test_a_gateway_error_with_the_wrong_message_fails(contract_specs: ContractSpecs) -> None:
    call = request("GET", f"{CATALOG}/dataSets")
    with pytest.raises(ContractViolation, match=r"message 'no token' != 'Oauth token is missing\.'"):
        contract_specs.validate_response(response(call, 403, {"error_code": "403010", "message": "no token"}))
    assert gateway_error_problems(401, {"error_code": "403010", "message": "Oauth token is missing."}) == [
        "error_code '403010' is not a documented gateway error for HTTP 401"
    ]
    assert gateway_error_problems(401, ["x"]) == ["401 body is not a gateway error {'error_code', 'message'}: ['x']"]


def test_the_missing_sandbox_error_passes_on_any_platform_operation(contract_specs: ContractSpecs) -> None:
    call = request("GET", "/data/core/idnamespace/identities")
    body = {"type": "http://ns.adobe.com/aep/errors/CONNECTOR-2105-400", "status": 400, "title": "Invalid sandbox"}
    contract_specs.validate_response(response(call, 400, body))
    with pytest.raises(ContractViolation, match="sandbox error"):
        contract_specs.validate_response(response(call, 400, {**body, "status": "400"}))
    with pytest.raises(ContractViolation, match="Unknown response http status: 400"):
        contract_specs.validate_response(response(call, 400, {**body, "type": "http://x/CONNECTOR-9999-400"}))


def test_the_gateway_content_type_error_is_checked_field_by_field(contract_specs: ContractSpecs) -> None:
    call = request("POST", f"{CATALOG}/dataSets", raw=b"{}")
    documented = {
        "type": "x",
        "status": 400,
        "title": "BadRequestError",
        "detail": "A valid content-type must be specified",
    }
    contract_specs.validate_response(response(call, 400, documented))
    with pytest.raises(ContractViolation, match="content-type error"):
        contract_specs.validate_response(response(call, 400, {**documented, "status": "400"}))


# --- examples embedded in the specs ---------------------------------------------------------------------


def _example(document: dict[str, Any], *keys: str) -> Any:
    node: Any = document
    for key in keys:
        node = node[key]
    return node


def test_catalog_create_dataset_example_passes_with_both_tag_spellings(contract_specs: ContractSpecs) -> None:
    content = _example(
        contract_specs.document("catalog.yaml"),
        "paths",
        "/dataSets",
        "post",
        "requestBody",
        "content",
        "application/json",
    )
    example = content["examples"]["Enable for Profile"]["value"]
    # Catalog's own example writes "enabled: true" (with a space); the docs write "enabled:true". SOURCES.md:
    # accept both. dataSetRequest leaves ``tags`` unconstrained, so no relaxation is needed for this.
    assert example["tags"]["unifiedProfile"][0] == "enabled: true"
    contract_specs.validate_request(request("POST", f"{CATALOG}/dataSets", example))
    documented = {**example, "tags": {"unifiedProfile": ["enabled:true"], "unifiedIdentity": ["enabled:true"]}}
    contract_specs.validate_request(request("POST", f"{CATALOG}/dataSets", documented))


@pytest.mark.parametrize(
    ("spec_file", "method", "template", "url", "status", "example_key"),
    [
        ("catalog.yaml", "get", "/dataSets", f"{CATALOG}/dataSets", "200", None),
        ("catalog.yaml", "get", "/dataSets/{DATASET_ID}", f"{CATALOG}/dataSets/5ba9452f7de80400007fc52a", "200", None),
        ("flow-service.yaml", "post", "/connections", f"{FLOW}/connections", "201", None),
        ("flow-service.yaml", "post", "/flows", f"{FLOW}/flows", "201", None),
        (
            "profile.yaml",
            "get",
            "/ups/access/entities",
            "/data/core/ups/access/entities?schema.name=_xdm.context.profile",
            "200",
            "example",
        ),
    ],
)
def test_response_examples_of_called_operations_pass(
    contract_specs: ContractSpecs,
    spec_file: str,
    method: str,
    template: str,
    url: str,
    status: str,
    example_key: str | None,
) -> None:
    media = _example(
        contract_specs.document(spec_file),
        "paths",
        template,
        method,
        "responses",
        status,
        "content",
        "application/json",
    )
    example = media["example"] if example_key is None else next(iter(media["examples"].values()))["value"]
    call = request(method.upper(), url)
    contract_specs.validate_response(response(call, int(status), example))


# --- each documented relaxation --------------------------------------------------------------------------


def _next_page(value: Any) -> dict[str, Any]:
    return {"results": [], "_page": {"orderby": "title", "next": value, "count": 0}, "_links": {"next": value}}


def _descriptor(version: Any) -> dict[str, Any]:
    return {
        "@type": "xdm:descriptorIdentity",
        "xdm:sourceSchema": SCHEMA_ID,
        "xdm:sourceVersion": version,
        "xdm:sourceProperty": "/_acme/capillary/customerId",
        "xdm:namespace": "CAPLOYALTY",
        "xdm:property": "xdm:code",
        "xdm:isPrimary": True,
    }


def _namespace(id_type: str) -> list[dict[str, Any]]:
    return [{"id": 10, "code": "CAPLOYALTY", "name": "Capillary", "idType": id_type, "custom": True}]


HTTP_API_SPEC = {"id": "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb", "version": "1.0"}


def _with_entity(entity: Any) -> dict[str, Any]:
    message = dcs_message()
    message["body"]["xdmEntity"] = entity
    return message


RELAXATION_CASES: list[tuple[str, HttpCall, HttpCall]] = [
    (
        "xdmEntity is any record of the dataset's schema",
        request(
            "POST",
            "/collection/batch/i1",
            {"messages": [_with_entity({"_id": "1", "productListItems": [{"SKU": "A", "quantity": 1}]})]},
        ),
        request("POST", "/collection/batch/i1", {"messages": [_with_entity([{"_id": "1"}])]}),
    ),
    (
        "PATCH/DELETE /connections/{id} without a trailing slash",
        request("DELETE", f"{FLOW}/connections/c1"),
        request("DELETE", f"{FLOW}/connections"),
    ),
    (
        "HTTP API source connection without data",
        request(
            "POST",
            f"{FLOW}/sourceConnections",
            {"name": "s", "baseConnectionId": "c1", "connectionSpec": HTTP_API_SPEC},
        ),
        request("POST", f"{FLOW}/sourceConnections", {"baseConnectionId": "c1", "connectionSpec": HTTP_API_SPEC}),
    ),
    (
        "_page.next / _links.next may be null",
        response(
            request("GET", f"{SR}/tenant/schemas", Accept="application/vnd.adobe.xed-id+json"), 200, _next_page(None)
        ),
        response(
            request("GET", f"{SR}/tenant/schemas", Accept="application/vnd.adobe.xed-id+json"), 200, _next_page(7)
        ),
    ),
    (
        "descriptor xdm:sourceVersion may be a number",
        request("POST", f"{SR}/tenant/descriptors", _descriptor(1)),
        request("POST", f"{SR}/tenant/descriptors", _descriptor(True)),
    ),
    (
        "JSON Patch value may be any JSON value",
        request("PATCH", f"{SR}/tenant/schemas/x", [{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}]),
        request("PATCH", f"{SR}/tenant/schemas/x", [{"path": "/meta:immutableTags", "value": ["union"]}]),
    ),
    (
        "schema create without description",
        request("POST", f"{SR}/tenant/schemas", {"type": "object", "title": "t", "allOf": []}),
        request("POST", f"{SR}/tenant/schemas", {"type": "object", "description": "d", "allOf": []}),
    ),
    (
        "descriptor PUT may answer 201 {'@id'}",
        response(request("PUT", f"{SR}/tenant/descriptors/d1", _descriptor(1)), 201, {"@id": "d1"}),
        response(request("PUT", f"{SR}/tenant/descriptors/d1", _descriptor(1)), 201, {"id": "d1"}),
    ),
    (
        "receivedTimeMs is int64 epoch millis",
        response(request("POST", "/collection/i1", dcs_message()), 200, {"receivedTimeMs": 1584479347507}),
        response(request("POST", "/collection/i1", dcs_message()), 200, {"receivedTimeMs": "1584479347507"}),
    ),
    (
        "response property spelled inletId",
        response(
            request("POST", "/collection/i1", dcs_message()), 200, {"inletId": "i1", "receivedTimeMs": 1584479347507}
        ),
        response(request("POST", "/collection/i1", dcs_message()), 200, {"inletId": 1}),
    ),
    (
        "error responses carry a JSON body",
        response(
            request("POST", "/collection/i1", dcs_message()), 400, {"type": "x", "status": 400, "title": "Invalid"}
        ),
        response(request("POST", "/collection/i1", dcs_message()), 400, ["Invalid"]),
    ),
    (
        "Batch.status may be 'loading'",
        response(
            request("POST", f"{IMPORT}/batches", {"datasetId": "d1", "inputFormat": {"format": "json"}}),
            201,
            {"id": "b1", "status": "loading"},
        ),
        response(
            request("POST", f"{IMPORT}/batches", {"datasetId": "d1", "inputFormat": {"format": "json"}}),
            201,
            {"id": "b1", "status": "uploading"},
        ),
    ),
    (
        "file INITIALIZE/COMPLETE action answers 201",
        response(request("POST", f"{FILE_PATH}?action=COMPLETE", raw=b"", Content_Type="application/json"), 201),
        response(request("POST", f"{FILE_PATH}?action=COMPLETE", raw=b"", Content_Type="application/json"), 202),
    ),
    (
        "inputFormat.format in lower case ('json')",
        request("POST", f"{IMPORT}/batches", {"datasetId": "d1", "inputFormat": {"format": "json"}}),
        request("POST", f"{IMPORT}/batches", {"datasetId": "d1", "inputFormat": {"format": "xml"}}),
    ),
    (
        "file chunks are raw application/octet-stream",
        request(
            "PATCH",
            FILE_PATH,
            raw=b'{"a": 1}\n',
            Content_Type="application/octet-stream",
            Content_Range="bytes 0-8/9",
        ),
        request("PATCH", FILE_PATH, raw=b'{"a": 1}\n', Content_Type="application/octet-stream"),
    ),
    (
        "idType accepted in either casing",
        response(request("GET", "/data/core/idnamespace/identities"), 200, _namespace("Cross_device")),
        response(request("GET", "/data/core/idnamespace/identities"), 200, _namespace("Cross-Device")),
    ),
    (
        "schema.name may be _xdm.context.experienceevent",
        request("GET", "/data/core/ups/access/entities?schema.name=_xdm.context.experienceevent&entityId=1"),
        request("GET", "/data/core/ups/access/entities?schema.name=_xdm.context.event&entityId=1"),
    ),
    (
        "400 / 404 answers on create and look-up",
        response(request("GET", f"{FLOW}/connections/c1"), 404, {"code": "404", "message": "not found"}),
        response(request("GET", f"{FLOW}/connections/c1"), 409, {"code": "409", "message": "conflict"}),
    ),
]


def _validate(specs: ContractSpecs, call: HttpCall) -> None:
    if call.status is None:
        specs.validate_request(call)
    else:
        specs.validate_response(call)


def test_every_relaxation_has_a_case() -> None:
    assert sorted(point for point, _, _ in RELAXATION_CASES) == sorted(r.point for r in RELAXATIONS)


@pytest.mark.parametrize(("point", "documented", "wrong"), RELAXATION_CASES, ids=[c[0] for c in RELAXATION_CASES])
def test_relaxation_accepts_the_documented_shape_and_still_rejects_errors(
    contract_specs: ContractSpecs, strict_specs: ContractSpecs, point: str, documented: HttpCall, wrong: HttpCall
) -> None:
    if point != "error responses carry a JSON body":
        # (A spec response without content describes no body, so the strict spec never looks at an error body.)
        with pytest.raises(ContractViolation):
            _validate(strict_specs, documented)
    _validate(contract_specs, documented)
    with pytest.raises(ContractViolation):
        _validate(contract_specs, wrong)


def test_a_relaxation_refuses_a_spec_that_no_longer_says_what_it_fixes(spec_dir: Path) -> None:
    (relaxation,) = (r for r in RELAXATIONS if r.point == "receivedTimeMs is int64 epoch millis")
    with pytest.raises(LookupError, match="spec changed: expected int32 receivedTimeMs"):
        build_document(spec_dir, "streaming-ingestion.yaml", (relaxation, relaxation))
