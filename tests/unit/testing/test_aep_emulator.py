"""The AEP emulator over real sockets: gateway, IMS, Schema Registry, identities, Catalog, Flow Service."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from airflow_provider_capillary.testing.aep_emulator import AEPEmulator
from airflow_provider_capillary.testing.aep_emulator.client import (
    DATA_LAKE_SPEC,
    HTTP_API_SPEC,
    XDM_FLOW_SPEC,
    EmulatorClient,
)

PROFILE = "https://ns.adobe.com/xdm/context/profile"
EVENT = "https://ns.adobe.com/xdm/context/experienceevent"
LOYALTY = "https://ns.adobe.com/xdm/mixins/profile/profile-loyalty-details"
PERSONAL = "https://ns.adobe.com/xdm/context/profile-personal-details"
IDENTITY_MAP = "https://ns.adobe.com/xdm/context/identitymap"
COMMERCE = "https://ns.adobe.com/xdm/context/experienceevent-commerce"
REGISTRY = "/data/foundation/schemaregistry"
CATALOG = "/data/foundation/catalog"
FLOWS = "/data/foundation/flowservice"
XED_ID = "application/vnd.adobe.xed-id+json"
XED = "application/vnd.adobe.xed+json; version=1"
XED_FULL = "application/vnd.adobe.xed-full+json; version=1"


def tenant_group(title: str, fields: dict[str, Any], extends: str = PROFILE) -> dict[str, Any]:
    return {
        "title": title,
        "type": "object",
        "meta:intendedToExtend": [extends],
        "definitions": {"custom": {"properties": {"_acmecorp": {"type": "object", "properties": fields}}}},
        "allOf": [{"$ref": "#/definitions/custom"}],
    }


CAPILLARY_FIELDS = {
    "capillary": {
        "type": "object",
        "properties": {
            "customerId": {"type": "string"},
            "tierExpiry": {"type": "string", "format": "date-time"},
            "pointsBalance": {"type": "number"},
        },
    }
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[AEPEmulator]:
    with AEPEmulator() as running:
        yield running


@pytest.fixture
def aep(emulator: AEPEmulator) -> EmulatorClient:
    emulator.reset()
    return EmulatorClient(emulator.url)


# -- gateway -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"Authorization": None}, 403, "403010"),
        ({"Authorization": "Bearer not-a-token"}, 401, "401013"),
        ({"x_api_key": None}, 403, "403000"),
        ({"x_api_key": "someone-else"}, 403, "403003"),
        ({"x_gw_ims_org_id": None}, 400, "400003"),
        ({"x_gw_ims_org_id": "OTHER@AdobeOrg"}, 403, "403025"),
    ],
)
def test_gateway_header_errors(aep: EmulatorClient, overrides: dict[str, str | None], status: int, code: str) -> None:
    response = aep.call("GET", f"{REGISTRY}/stats", headers=aep.headers(**overrides))
    assert response.status_code == status
    assert response.json()["error_code"] == code
    assert response.json()["message"]


@pytest.mark.parametrize("sandbox", [None, "nosuchbox"])
def test_gateway_sandbox_errors(aep: EmulatorClient, sandbox: str | None) -> None:
    response = aep.call("GET", f"{CATALOG}/dataSets", headers=aep.headers(x_sandbox_name=sandbox))
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == 400
    assert body["type"].endswith("2105-400")


def test_gateway_requires_json_content_type(aep: EmulatorClient) -> None:
    response = aep.call(
        "POST", f"{CATALOG}/dataSets", data=b'{"name": "x"}', headers={**aep.headers(), "Content-Type": "text/plain"}
    )
    assert response.status_code == 400
    assert response.json()["title"] == "BadRequestError"
    assert response.json()["detail"] == "A valid content-type must be specified"


def test_unknown_path_is_404_json(aep: EmulatorClient) -> None:
    response = aep.call("GET", "/data/foundation/nothing")
    assert response.status_code == 404
    assert response.json()["status"] == 404


def test_sandboxes_are_isolated(aep: EmulatorClient) -> None:
    aep.create_fieldgroup("Only In Prod", CAPILLARY_FIELDS, PROFILE)
    listing = aep.ok(
        "GET", f"{REGISTRY}/tenant/fieldgroups", headers={**aep.headers(x_sandbox_name="dev"), "Accept": XED_ID}
    )
    assert listing["results"] == []


# -- IMS -----------------------------------------------------------------------------------------------


def test_ims_token(aep: EmulatorClient) -> None:
    response = aep.session.post(
        f"{aep.url}/ims/token/v3",
        data={
            "grant_type": "client_credentials",
            "client_id": "emulator-client-id",
            "client_secret": "emulator-client-secret",
            "scope": "openid",
        },
    )
    body = response.json()
    assert response.status_code == 200
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 86399
    assert aep.ok("GET", f"{REGISTRY}/stats", headers=aep.headers(Authorization=f"Bearer {body['access_token']}"))


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"client_id": "wrong"}, 400, "invalid_client"),
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"scope": None}, 400, "invalid_request"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ],
)
def test_ims_errors(aep: EmulatorClient, form: dict[str, str | None], status: int, error: str) -> None:
    data = {
        "grant_type": "client_credentials",
        "client_id": "emulator-client-id",
        "client_secret": "emulator-client-secret",
        "scope": "openid",
        **form,
    }
    response = aep.session.post(f"{aep.url}/ims/token/v3", data={k: v for k, v in data.items() if v is not None})
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["error_description"]
    assert "emulator-client-secret" not in response.text


def test_tokens_expire() -> None:
    with AEPEmulator(token_lifetime=2) as emulator:
        aep = EmulatorClient(emulator.url)
        assert aep.call("GET", f"{REGISTRY}/stats").status_code == 200
        time.sleep(2.1)
        response = aep.call("GET", f"{REGISTRY}/stats")
        assert response.status_code == 401
        assert response.json()["error_code"] == "401013"


def test_revoke_tokens(emulator: AEPEmulator, aep: EmulatorClient) -> None:
    emulator.revoke_tokens()
    assert aep.call("GET", f"{REGISTRY}/stats").status_code == 401
    aep.token = aep.fetch_token()
    assert aep.call("GET", f"{REGISTRY}/stats").status_code == 200


# -- Schema Registry -------------------------------------------------------------------------------


def test_stats_tenant(aep: EmulatorClient) -> None:
    body = aep.ok("GET", f"{REGISTRY}/stats")
    assert body["tenantId"] == "acmecorp"
    assert body["imsOrg"] == "EMULATORORG@AdobeOrg"


def test_schema_create_list_filter_get(aep: EmulatorClient) -> None:
    group_id = aep.create_fieldgroup("Capillary Extension", CAPILLARY_FIELDS, PROFILE)
    assert group_id.startswith("https://ns.adobe.com/acmecorp/mixins/")
    created = aep.create_schema("Capillary Loyalty Profiles", [PROFILE, LOYALTY, PERSONAL, group_id])
    schema_id = created["$id"]
    assert schema_id.startswith("https://ns.adobe.com/acmecorp/schemas/")
    assert created["meta:altId"] == "_acmecorp.schemas." + schema_id.rsplit("/", 1)[-1]
    assert created["meta:class"] == PROFILE
    assert created["version"] == "1.0"
    aep.create_schema("Other Schema", [EVENT])

    found = aep.ok(
        "GET",
        f"{REGISTRY}/tenant/schemas",
        params={"property": "title==Capillary Loyalty Profiles"},
        headers={**aep.headers(), "Accept": XED_ID},
    )
    assert [item["$id"] for item in found["results"]] == [schema_id]
    assert set(found["results"][0]) == {"$id", "meta:altId", "version", "title"}
    assert found["_page"]["next"] is None
    assert found["_links"]["next"] is None

    by_class = aep.ok(
        "GET",
        f"{REGISTRY}/tenant/schemas",
        params={"property": f"meta:class=={EVENT}"},
        headers={**aep.headers(), "Accept": "application/vnd.adobe.xed+json"},
    )
    assert [item["title"] for item in by_class["results"]] == ["Other Schema"]
    assert "allOf" in by_class["results"][0]

    raw = aep.ok(
        "GET", f"{REGISTRY}/tenant/schemas/{quote(schema_id, safe='')}", headers={**aep.headers(), "Accept": XED}
    )
    assert [part["$ref"] for part in raw["allOf"]] == [PROFILE, LOYALTY, PERSONAL, group_id]
    by_alt = aep.ok(
        "GET", f"{REGISTRY}/tenant/schemas/{created['meta:altId']}", headers={**aep.headers(), "Accept": XED}
    )
    assert by_alt["$id"] == schema_id

    full = aep.ok(
        "GET", f"{REGISTRY}/tenant/schemas/{quote(schema_id, safe='')}", headers={**aep.headers(), "Accept": XED_FULL}
    )
    assert "allOf" not in full
    properties = full["properties"]
    assert properties["loyalty"]["properties"]["points"]["type"] == "number"
    assert properties["personalEmail"]["properties"]["address"]["format"] == "email"
    assert properties["_acmecorp"]["properties"]["capillary"]["properties"]["customerId"]["type"] == "string"


def test_schema_list_paging(aep: EmulatorClient) -> None:
    for number in range(5):
        aep.create_schema(f"Paged {number}", [PROFILE])
    seen: list[str] = []
    params: dict[str, Any] = {"orderby": "title", "limit": 2}
    while True:
        page = aep.ok("GET", f"{REGISTRY}/tenant/schemas", params=params, headers={**aep.headers(), "Accept": XED_ID})
        seen += [item["title"] for item in page["results"]]
        if page["_page"]["next"] is None:
            assert page["_links"]["next"] is None
            break
        assert page["_links"]["next"]["href"].startswith(f"{aep.url}{REGISTRY}/tenant/schemas?")
        params["start"] = page["_page"]["next"]
    assert seen == [f"Paged {number}" for number in range(5)]


@pytest.mark.parametrize(
    ("path", "accept", "code"),
    [
        ("/tenant/schemas", "application/json", "XDM-1006-400"),
        ("/tenant/schemas/x", "application/vnd.adobe.xed+json", "XDM-1007-400"),
        ("/tenant/descriptors", "application/vnd.adobe.xed+json", "XDM-1008-400"),
    ],
)
def test_registry_accept_errors(aep: EmulatorClient, path: str, accept: str, code: str) -> None:
    response = aep.call("GET", REGISTRY + path, headers={**aep.headers(), "Accept": accept})
    assert response.status_code == 400
    assert response.json()["type"].endswith(code)


def test_schema_errors(aep: EmulatorClient) -> None:
    aep.create_schema("Taken", [PROFILE])
    duplicate = aep.call("POST", f"{REGISTRY}/tenant/schemas", json={"title": "Taken", "allOf": [{"$ref": PROFILE}]})
    assert duplicate.status_code == 400
    assert "unique" in duplicate.json()["detail"]
    no_class = aep.call("POST", f"{REGISTRY}/tenant/schemas", json={"title": "X", "allOf": [{"$ref": LOYALTY}]})
    assert no_class.status_code == 400
    assert "exactly one class" in no_class.json()["detail"]
    wrong_class = aep.call(
        "POST", f"{REGISTRY}/tenant/schemas", json={"title": "Y", "allOf": [{"$ref": EVENT}, {"$ref": LOYALTY}]}
    )
    assert wrong_class.status_code == 400
    assert "intended to extend" in wrong_class.json()["detail"]
    missing = aep.call(
        "GET",
        f"{REGISTRY}/tenant/schemas/{quote('https://ns.adobe.com/acmecorp/schemas/nope', safe='')}",
        headers={**aep.headers(), "Accept": XED},
    )
    assert missing.status_code == 404
    assert missing.json()["type"].endswith("XDM-1012-404")


def test_schema_patch_adds_field_groups(aep: EmulatorClient) -> None:
    schema_id = aep.create_schema("Patched", [PROFILE])["$id"]
    patched = aep.ok(
        "PATCH",
        f"{REGISTRY}/tenant/schemas/{quote(schema_id, safe='')}",
        json=[
            {"op": "add", "path": "/allOf/-", "value": {"$ref": LOYALTY}},
            {"op": "add", "path": "/allOf/-", "value": {"$ref": PERSONAL}},
        ],
    )
    assert patched["version"] == "1.1"
    assert patched["meta:extends"] == [PROFILE, LOYALTY, PERSONAL]
    full = aep.ok(
        "GET", f"{REGISTRY}/tenant/schemas/{quote(schema_id, safe='')}", headers={**aep.headers(), "Accept": XED_FULL}
    )
    assert "loyalty" in full["properties"]
    bad = aep.call(
        "PATCH", f"{REGISTRY}/tenant/schemas/{quote(schema_id, safe='')}", json=[{"op": "move", "path": "/x"}]
    )
    assert bad.status_code == 400


def test_union_needs_primary_identity_first(aep: EmulatorClient) -> None:
    group_id = aep.create_fieldgroup("Ids", CAPILLARY_FIELDS, PROFILE)
    schema_id = aep.create_schema("Union Order", [PROFILE, LOYALTY, group_id])["$id"]
    path = f"{REGISTRY}/tenant/schemas/{quote(schema_id, safe='')}"
    union = [{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}]
    refused = aep.call("PATCH", path, json=union)
    assert refused.status_code == 400
    assert "primary identity" in refused.json()["detail"]

    aep.ok(
        "POST",
        "/data/core/idnamespace/identities",
        json={"name": "Capillary", "code": "CAPLOYALTY", "idType": "Cross_device"},
    )
    descriptor = aep.primary_identity(schema_id, "/_acmecorp/capillary/customerId", "CAPLOYALTY")
    assert descriptor["@id"]
    assert descriptor["xdm:isPrimary"] is True
    assert aep.ok("PATCH", path, json=union)["meta:immutableTags"] == ["union"]

    listed = aep.ok(
        "GET", f"{REGISTRY}/tenant/descriptors", headers={**aep.headers(), "Accept": "application/vnd.adobe.xdm+json"}
    )
    assert [item["@id"] for item in listed["xdm:descriptorIdentity"]] == [descriptor["@id"]]
    ids = aep.ok(
        "GET",
        f"{REGISTRY}/tenant/descriptors",
        headers={**aep.headers(), "Accept": "application/vnd.adobe.xdm-id+json"},
    )
    assert ids == {"xdm:descriptorIdentity": [descriptor["@id"]]}
    second = aep.call(
        "POST",
        f"{REGISTRY}/tenant/descriptors",
        json={**{k: v for k, v in descriptor.items() if k.startswith(("xdm:", "@type"))}, "xdm:namespace": "Email"},
    )
    assert second.status_code == 400
    removal = aep.call("PATCH", path, json=[{"op": "remove", "path": "/allOf/1"}])
    assert removal.status_code == 400


def test_union_allowed_with_identity_map(aep: EmulatorClient) -> None:
    schema_id = aep.create_schema("With Identity Map", [PROFILE, IDENTITY_MAP])["$id"]
    patched = aep.ok(
        "PATCH",
        f"{REGISTRY}/tenant/schemas/{quote(schema_id, safe='')}",
        json=[{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}],
    )
    assert patched["meta:immutableTags"] == ["union"]


def test_descriptor_errors(aep: EmulatorClient) -> None:
    group_id = aep.create_fieldgroup("Desc", CAPILLARY_FIELDS, PROFILE)
    schema_id = aep.create_schema("Desc Schema", [PROFILE, group_id])["$id"]
    base = {
        "@type": "xdm:descriptorIdentity",
        "xdm:sourceSchema": schema_id,
        "xdm:sourceVersion": 1,
        "xdm:sourceProperty": "/_acmecorp/capillary/customerId",
        "xdm:namespace": "Email",
        "xdm:property": "xdm:code",
        "xdm:isPrimary": True,
    }
    for change, reason in (
        ({"xdm:sourceProperty": "/_acmecorp/capillary/nothing"}, "does not exist"),
        ({"xdm:sourceProperty": "/_acmecorp/capillary/pointsBalance"}, "must be a string"),
        ({"xdm:namespace": "NOPE"}, "not an identity namespace"),
        ({"xdm:sourceSchema": "_acmecorp.schemas.x"}, "tenant schema"),
    ):
        response = aep.call("POST", f"{REGISTRY}/tenant/descriptors", json={**base, **change})
        assert response.status_code == 400, change
        assert reason in response.json()["detail"], response.text


def test_fieldgroup_must_use_tenant_namespace(aep: EmulatorClient) -> None:
    body = {
        "title": "Bad Group",
        "meta:intendedToExtend": [PROFILE],
        "definitions": {"bad": {"properties": {"customerId": {"type": "string"}}}},
        "allOf": [{"$ref": "#/definitions/bad"}],
    }
    response = aep.call("POST", f"{REGISTRY}/tenant/fieldgroups", json=body)
    assert response.status_code == 400
    assert "_acmecorp" in response.json()["detail"]
    underscore = tenant_group("Underscore", {"_hidden": {"type": "string"}})
    response = aep.call("POST", f"{REGISTRY}/tenant/fieldgroups", json=underscore)
    assert response.status_code == 400


def test_fieldgroup_get_list_patch(aep: EmulatorClient) -> None:
    group_id = aep.create_fieldgroup("Grows", CAPILLARY_FIELDS, PROFILE)
    listed = aep.ok(
        "GET",
        f"{REGISTRY}/tenant/fieldgroups",
        params={"property": f"meta:intendedToExtend=={PROFILE}"},
        headers={**aep.headers(), "Accept": XED_ID},
    )
    assert [item["$id"] for item in listed["results"]] == [group_id]
    path = f"{REGISTRY}/tenant/fieldgroups/{quote(group_id, safe='')}"
    pointer = "/definitions/custom/properties/_acmecorp/properties/capillary/properties/tier"
    patched = aep.ok("PATCH", path, json=[{"op": "add", "path": pointer, "value": {"type": "string"}}])
    assert patched["version"] == "1.1"
    full = aep.ok("GET", path, headers={**aep.headers(), "Accept": XED_FULL})
    assert "tier" in full["properties"]["_acmecorp"]["properties"]["capillary"]["properties"]


def test_global_lookups(aep: EmulatorClient) -> None:
    found = aep.ok(
        "GET",
        f"{REGISTRY}/global/fieldgroups",
        params={"property": "title==Loyalty Details"},
        headers={**aep.headers(), "Accept": XED_ID},
    )
    assert [item["$id"] for item in found["results"]] == [LOYALTY]
    classes = aep.ok("GET", f"{REGISTRY}/global/classes", headers={**aep.headers(), "Accept": XED_ID})
    assert {PROFILE, EVENT} <= {item["$id"] for item in classes["results"]}
    profile = aep.ok(
        "GET", f"{REGISTRY}/global/classes/_xdm.context.profile", headers={**aep.headers(), "Accept": XED_FULL}
    )
    assert profile["$id"] == PROFILE
    assert profile["properties"]["_id"]["type"] == "string"


def test_official_definitions(shared_dir: Any) -> None:
    with AEPEmulator(xdm_root=shared_dir / "reference" / "xdm") as emulator:
        aep = EmulatorClient(emulator.url)
        schema_id = aep.create_schema(
            "Official", [EVENT, "https://ns.adobe.com/xdm/context/experienceevent-loyalty-details"]
        )["$id"]
        full = aep.ok(
            "GET",
            f"{REGISTRY}/tenant/schemas/{quote(schema_id, safe='')}",
            headers={**aep.headers(), "Accept": XED_FULL},
        )
        assert full["required"] == ["_id", "timestamp"]
        assert "pointsGained" in full["properties"]["loyalty"]["properties"]


# -- identity namespaces --------------------------------------------------------------------------


def test_identity_namespaces(aep: EmulatorClient) -> None:
    codes = {item["code"] for item in aep.ok("GET", "/data/core/idnamespace/identities")}
    assert {"Email", "Phone", "ECID"} <= codes
    created = aep.ok(
        "POST",
        "/data/core/idnamespace/identities",
        json={"name": "Capillary", "code": "CAPLOYALTY", "idType": "Cross_device"},
    )
    assert created["custom"] is True
    assert aep.ok("GET", f"/data/core/idnamespace/identities/{created['id']}")["code"] == "CAPLOYALTY"
    again = aep.call(
        "POST",
        "/data/core/idnamespace/identities",
        json={"name": "Again", "code": "caployalty", "idType": "Cross_device"},
    )
    assert again.status_code == 400
    bad = aep.call(
        "POST", "/data/core/idnamespace/identities", json={"name": "Bad", "code": "CAP-1", "idType": "Cross_device"}
    )
    assert bad.status_code == 400


# -- Catalog --------------------------------------------------------------------------------------------


def test_dataset_create_get_filter_page(aep: EmulatorClient) -> None:
    schema_id = aep.create_schema("Dataset Schema", [PROFILE, IDENTITY_MAP])["$id"]
    ids = [aep.create_dataset(f"ds_{number}", schema_id) for number in range(5)]
    one = aep.ok("GET", f"{CATALOG}/dataSets/{ids[0]}")
    assert list(one) == [ids[0]]
    assert one[ids[0]]["schemaRef"]["id"] == schema_id
    assert aep.ok("GET", f"{CATALOG}/dataSets", params={"name": "ds_3"}).keys() == {ids[3]}
    assert aep.ok("GET", f"{CATALOG}/dataSets", params={"property": "name==ds_4"}).keys() == {ids[4]}
    assert aep.ok("GET", f"{CATALOG}/dataSets", params={"property": "name==nothing"}) == {}
    pages = [aep.ok("GET", f"{CATALOG}/dataSets", params={"limit": 2, "start": start}) for start in (0, 2, 4)]
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [key for page in pages for key in page] == ids
    trimmed = aep.ok("GET", f"{CATALOG}/dataSets", params={"properties": "name", "limit": 1})
    assert list(next(iter(trimmed.values()))) == ["name"]
    for limit in (0, 101):
        assert aep.call("GET", f"{CATALOG}/dataSets", params={"limit": limit}).status_code == 400
    assert aep.call("GET", f"{CATALOG}/dataSets/nope").status_code == 404


def test_dataset_profile_tags(aep: EmulatorClient) -> None:
    schema_id = aep.create_schema("Tags Schema", [PROFILE, IDENTITY_MAP])["$id"]
    dataset_id = aep.create_dataset("tagged", schema_id)
    profile_tags = {"tags": {"unifiedProfile": ["enabled:true"], "unifiedIdentity": ["enabled:true"]}}
    refused = aep.call("PATCH", f"{CATALOG}/dataSets/{dataset_id}", json=profile_tags)
    assert refused.status_code == 400
    assert "union" in refused.json()["detail"]
    aep.ok(
        "PATCH",
        f"{REGISTRY}/tenant/schemas/{quote(schema_id, safe='')}",
        json=[{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}],
    )
    assert aep.ok("PATCH", f"{CATALOG}/dataSets/{dataset_id}", json=profile_tags) == [f"@/dataSets/{dataset_id}"]
    assert aep.ok("GET", f"{CATALOG}/dataSets/{dataset_id}")[dataset_id]["tags"]["unifiedProfile"] == ["enabled:true"]
    spaced = aep.create_dataset("spaced", schema_id, tags={"unifiedProfile": ["enabled: true"]})
    assert aep.ok("GET", f"{CATALOG}/dataSets/{spaced}")[spaced]["tags"]["unifiedProfile"] == ["enabled: true"]


def test_dataset_needs_known_schema(aep: EmulatorClient) -> None:
    response = aep.call(
        "POST",
        f"{CATALOG}/dataSets",
        json={
            "name": "x",
            "schemaRef": {
                "id": "https://ns.adobe.com/acmecorp/schemas/nope",
                "contentType": "application/vnd.adobe.xed-full+json;version=1",
            },
        },
    )
    assert response.status_code == 400
    assert "nope" in response.json()["detail"]


# -- Flow Service -----------------------------------------------------------------------------------


def test_connection_inlet_and_filters(aep: EmulatorClient) -> None:
    connection_id, inlet_url = aep.create_connection("capillary-loyalty-http")
    item = aep.ok("GET", f"{FLOWS}/connections/{connection_id}")["items"][0]
    inlet_id = item["auth"]["params"]["inletId"]
    assert len(inlet_id) == 64
    assert int(inlet_id, 16) >= 0
    assert inlet_url == f"{aep.url}/collection/{inlet_id}"
    assert item["etag"].startswith('"')
    assert item["auth"]["params"]["authenticationRequired"] is False
    found = aep.ok(
        "GET",
        f"{FLOWS}/connections",
        params=[
            ("property", "name==capillary-loyalty-http"),
            ("property", f"connectionSpec.id=={HTTP_API_SPEC['id']}"),
        ],
    )
    assert [each["id"] for each in found["items"]] == [connection_id]
    assert aep.ok("GET", f"{FLOWS}/connections", params={"property": "name==other"})["items"] == []


def test_flows_paging_and_filters(aep: EmulatorClient) -> None:
    schema_id = aep.create_schema("Flow Schema", [PROFILE, IDENTITY_MAP])["$id"]
    dataset_id = aep.create_dataset("flow_ds", schema_id)
    connection_id, _ = aep.create_connection("paged")
    flow_ids = [aep.create_flow(connection_id, dataset_id) for _ in range(3)]
    seen: list[str] = []
    url = f"{FLOWS}/flows?limit=2"
    while True:
        page = aep.ok("GET", url)
        seen += [item["id"] for item in page["items"]]
        if "next" not in page["_links"]:
            break
        url = FLOWS + page["_links"]["next"]["href"]
    assert seen == flow_ids
    source = aep.ok("GET", f"{FLOWS}/flows/{flow_ids[0]}")["items"][0]["sourceConnectionIds"][0]
    by_source = aep.ok("GET", f"{FLOWS}/flows", params={"property": f"sourceConnectionIds[]=={source}"})
    assert [item["id"] for item in by_source["items"]] == [flow_ids[0]]
    assert aep.ok("GET", f"{FLOWS}/flows", params={"property": "state==enabled", "count": "true"}) == {"count": 3}
    targets = aep.ok("GET", f"{FLOWS}/targetConnections", params={"property": f"params.dataSetId=={dataset_id}"})
    assert len(targets["items"]) == 3


def test_flow_service_patch_etag_and_errors(aep: EmulatorClient) -> None:
    connection_id, _ = aep.create_connection("etagged")
    etag = aep.ok("GET", f"{FLOWS}/connections/{connection_id}")["items"][0]["etag"]
    patch = [{"op": "replace", "path": "/description", "value": "new"}]
    missing = aep.call("PATCH", f"{FLOWS}/connections/{connection_id}", json=patch)
    assert missing.status_code == 400
    stale = aep.call(
        "PATCH", f"{FLOWS}/connections/{connection_id}", json=patch, headers={**aep.headers(), "If-Match": '"old"'}
    )
    assert stale.status_code == 412
    updated = aep.ok(
        "PATCH",
        f"{FLOWS}/connections/{connection_id}",
        json=[{"op": "add", "path": "/description", "value": "new"}],
        headers={**aep.headers(), "If-Match": etag},
    )
    assert updated["etag"] != etag
    bad_flow = aep.call(
        "POST",
        f"{FLOWS}/flows",
        json={"name": "x", "flowSpec": XDM_FLOW_SPEC, "sourceConnectionIds": ["nope"], "targetConnectionIds": ["nope"]},
    )
    assert bad_flow.status_code == 400
    bad_target = aep.call(
        "POST",
        f"{FLOWS}/targetConnections",
        json={"name": "t", "connectionSpec": DATA_LAKE_SPEC, "params": {"dataSetId": "nope"}},
    )
    assert bad_target.status_code == 400
    assert aep.call("GET", f"{FLOWS}/flows/nope").status_code == 404


def test_connection_json(emulator: AEPEmulator) -> None:
    import json

    connection = json.loads(emulator.connection_json(scopes="openid"))
    assert connection["conn_type"] == "adobe_experience_platform"
    assert connection["login"] == "emulator-client-id"
    assert connection["password"] == "emulator-client-secret"
    assert connection["extra"]["platform_url"] == emulator.url
    assert connection["extra"]["ims_url"] == emulator.url
    assert connection["extra"]["dcs_url"] == emulator.url
    assert connection["extra"]["org_id"] == "EMULATORORG@AdobeOrg"
    assert connection["extra"]["scopes"] == "openid"
