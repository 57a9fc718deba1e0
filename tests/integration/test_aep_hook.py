"""AEPHook and AEPAsyncHook over real sockets against the local AEP emulator: the whole set-up and streaming path,
token life cycle, every fault type and error reporting."""

from __future__ import annotations

import asyncio
import io
import json
import time

import orjson
import pytest

from airflow_provider_capillary.exceptions import (
    AEPAuthError,
    AEPError,
    AEPNotFoundError,
    AEPServerError,
    AEPValidationError,
)
from airflow_provider_capillary.hooks import aep as aep_module
from airflow_provider_capillary.hooks.aep import AEPAsyncHook, AEPHook
from airflow_provider_capillary.testing.aep_emulator import AEPEmulator

pytestmark = pytest.mark.integration

PROFILE_CLASS = "https://ns.adobe.com/xdm/context/profile"
EVENT_CLASS = "https://ns.adobe.com/xdm/context/experienceevent"
PROFILE_FIELD_GROUPS = [
    "https://ns.adobe.com/xdm/context/profile-person-details",
    "https://ns.adobe.com/xdm/context/profile-personal-details",
    "https://ns.adobe.com/xdm/context/identitymap",
    "https://ns.adobe.com/xdm/mixins/profile/profile-loyalty-details",
]


def ims_calls(emulator: AEPEmulator) -> int:
    return sum(1 for entry in emulator.journal if _path(entry) == "/ims/token/v3")


def _path(entry: object) -> str:
    return entry["path"] if isinstance(entry, dict) else entry.path  # type: ignore[attr-defined]


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    return waits


def set_up_profile_schema(hook: AEPHook, tenant: str) -> str:
    """Create the loyalty profile schema with a tenant field group and a primary identity; return its $id."""
    if "CAPLOYALTY" not in {ns["code"] for ns in hook.list_identity_namespaces()}:
        hook.create_identity_namespace("CAPLOYALTY", "Capillary Loyalty ID")
    field_group = hook.create_field_group(
        "Capillary Profile Extension",
        [PROFILE_CLASS],
        {
            "capillary": {
                "properties": {
                    f"_{tenant}": {
                        "type": "object",
                        "properties": {
                            "capillary": {
                                "type": "object",
                                "properties": {
                                    "customerId": {"title": "Customer ID", "type": "string"},
                                    "pointsBalance": {"title": "Points", "type": "number"},
                                },
                            }
                        },
                    }
                }
            }
        },
    )
    schema = hook.create_schema("Capillary Loyalty Profiles", PROFILE_CLASS, PROFILE_FIELD_GROUPS[:2])
    schema_id = schema["$id"]
    hook.add_field_groups(schema_id, [*PROFILE_FIELD_GROUPS, field_group["$id"]])
    hook.create_identity_descriptor(schema_id, f"/_{tenant}/capillary/customerId", "CAPLOYALTY")
    hook.enable_schema_for_profile(schema_id)
    return schema_id


def set_up_streaming(hook: AEPHook, *, profile_enabled: bool = False) -> tuple[str, str, str, str]:
    """Schema, dataset, streaming connection and dataflow; returns (schema id, dataset id, inlet id, flow id)."""
    schema_id = set_up_profile_schema(hook, hook.get_tenant_id())
    dataset_id = hook.create_dataset("Profiles", schema_id, profile_enabled=profile_enabled)
    connection_id = hook.create_streaming_connection("Streaming")
    inlet_id, _ = hook.get_inlet(connection_id)
    source_id = hook.create_source_connection("source", connection_id)
    target_id = hook.create_target_connection("target", dataset_id, schema_id)
    return schema_id, dataset_id, inlet_id, hook.create_dataflow("flow", source_id, target_id)


def profile(tenant: str, customer_id: str, email: str, points: float) -> dict:
    return {
        "_id": f"cap-profile-{customer_id}",
        "identityMap": {
            "CAPLOYALTY": [{"id": customer_id, "authenticatedState": "authenticated", "primary": True}],
            "Email": [{"id": email, "primary": False}],
        },
        "personalEmail": {"address": email},
        "loyalty": {"points": points, "tier": "gold"},
        f"_{tenant}": {"capillary": {"customerId": customer_id, "pointsBalance": points}},
    }


def test_end_to_end_set_up_stream_and_verify(aep_emulator: AEPEmulator) -> None:
    hook = AEPHook()
    assert hook.test_connection()[0]
    tenant = hook.get_tenant_id()
    assert tenant == "acmecorp"
    schema_id = set_up_profile_schema(hook, tenant)
    assert "CAPLOYALTY" in {ns["code"] for ns in hook.list_identity_namespaces()}
    assert hook.find_schema("Capillary Loyalty Profiles")["$id"] == schema_id
    assert hook.find_schema("No Such Schema") is None
    raw = hook.get_schema(schema_id)
    assert "union" in raw["meta:immutableTags"]
    refs = [item["$ref"] for item in raw["allOf"]]
    assert len(refs) == len(set(refs)), "add_field_groups must not add a group twice"
    assert hook.add_field_groups(schema_id, PROFILE_FIELD_GROUPS)["version"] == raw["version"]  # no-op
    full = hook.get_schema(schema_id, full=True)
    assert full["properties"]["loyalty"]["properties"]["points"]["type"] == "number"
    descriptors = hook.list_descriptors(schema_id)
    assert [d["xdm:sourceProperty"] for d in descriptors] == [f"/_{tenant}/capillary/customerId"]

    dataset_id = hook.create_dataset(
        "Capillary Loyalty Profiles", schema_id, profile_enabled=True, identity_enabled=True
    )
    found_id, dataset = hook.find_dataset("Capillary Loyalty Profiles")
    assert found_id == dataset_id
    assert dataset["tags"]["unifiedProfile"] == ["enabled:true"]
    assert hook.get_dataset(dataset_id)["schemaRef"]["id"] == schema_id

    connection_id = hook.create_streaming_connection("Capillary Loyalty Streaming")
    assert hook.find_base_connection("Capillary Loyalty Streaming")["id"] == connection_id
    inlet_id, inlet_url = hook.get_inlet(connection_id)
    assert len(inlet_id) == 64
    assert inlet_url == f"{aep_emulator.url}/collection/{inlet_id}"
    source_id = hook.create_source_connection("Capillary source", connection_id)
    assert hook.find_source_connection(connection_id)["id"] == source_id
    target_id = hook.create_target_connection("Capillary target", dataset_id, schema_id)
    assert hook.find_target_connection(dataset_id)["id"] == target_id
    flow_id = hook.create_dataflow("Capillary flow", source_id, target_id)
    assert hook.find_dataflow(source_id, target_id)["id"] == flow_id

    settings = hook.settings
    messages = [
        hook.streaming_message(
            profile(tenant, f"5641000{i:02d}", f"member{i}@example.com", 100.5 + i),
            schema_id=schema_id,
            dataset_id=dataset_id,
            flow_id=flow_id,
            org_id=settings.org_id,
        )
        for i in range(5)
    ]
    bad = json.loads(json.dumps(messages[0]))
    bad["body"]["xdmEntity"]["loyalty"]["points"] = "lots"  # wrong type
    bad["body"]["xdmEntity"]["_id"] = "cap-profile-bad"
    results = hook.send_messages(inlet_url, [messages[0], bad, *messages[1:]])
    assert ["xactionId" in r for r in results] == [True, False, True, True, True, True]
    assert results[1]["statusCode"] == 400
    assert sorted(aep_emulator.state.accepted_ids(dataset_id)) == [f"cap-profile-5641000{i:02d}" for i in range(5)]

    single = hook.send_message(inlet_id, messages[0], sync_validation=True)
    assert single["inletId"] == inlet_id
    with pytest.raises(AEPValidationError) as info:
        hook.send_message(inlet_id, bad, sync_validation=True)
    assert info.value.status == 400
    assert "points" in str(info.value)

    landed = hook.lookup_profile("564100003", "CAPLOYALTY")
    assert landed is not None
    assert landed["entity"]["personalEmail"]["address"] == "member3@example.com"
    assert hook.lookup_profile("999", "CAPLOYALTY") is None

    batches = list(hook.iter_batches(dataset_id, page_size=1))
    assert sum(b.get("recordCount", 0) for b in batches if b["status"] == "success") >= 5
    assert hook.get_batch(batches[0]["id"])["status"] in {"success", "failed"}


def test_batch_ingestion_single_put_and_chunked(aep_emulator: AEPEmulator) -> None:
    hook = AEPHook()
    tenant = hook.get_tenant_id()
    schema_id = set_up_profile_schema(hook, tenant)
    dataset_id = hook.create_dataset("Profiles batch", schema_id)
    lines = b"\n".join(orjson.dumps(profile(tenant, f"77{i:04d}", f"b{i}@example.com", i)) for i in range(40))

    batch_id = hook.create_batch(dataset_id)
    hook.upload_file(batch_id, dataset_id, "part-0.json", lines[: len(lines) // 2].rsplit(b"\n", 1)[0])
    rest = lines[len(lines[: len(lines) // 2].rsplit(b"\n", 1)[0]) + 1 :]
    hook.upload_file(batch_id, dataset_id, "part-1.json", io.BytesIO(rest), chunk_size=1024, single_put_limit=2048)
    hook.complete_batch(batch_id)
    deadline = time.time() + 10
    while hook.get_batch(batch_id)["status"] not in {"success", "failed"} and time.time() < deadline:
        time.sleep(0.1)
    batch = hook.get_batch(batch_id)
    assert batch["status"] == "success", batch
    assert len(aep_emulator.state.accepted_ids(dataset_id)) == 40


def test_token_is_cached_and_refreshed_before_expiry(aep_emulator: AEPEmulator, monkeypatch) -> None:
    hook = AEPHook()
    hook.get_tenant_id()
    AEPHook().get_tenant_id()
    AEPHook().get_tenant_id()
    assert ims_calls(aep_emulator) == 1
    # 90 % of the emulator's token lifetime later the hook renews, although the old token is still valid.
    later = time.time() + 86399 * 0.95  # the emulator's default lifetime is IMS's 86399 s
    monkeypatch.setattr(aep_module.time, "time", lambda: later)
    hook.get_tenant_id()
    assert ims_calls(aep_emulator) == 2


def test_expired_token_at_the_server_is_renewed(shared_dir, monkeypatch) -> None:
    with AEPEmulator(token_lifetime=1, journal=True) as emulator:
        monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", emulator.connection_json())
        aep_module.TOKEN_CACHE.clear()
        hook = AEPHook()
        hook.get_tenant_id()
        time.sleep(1.2)  # the emulator's token really expires
        assert hook.get_tenant_id() == "acmecorp"
        assert ims_calls(emulator) == 2


def test_revoked_token_401_is_refreshed_once(aep_emulator: AEPEmulator) -> None:
    hook = AEPHook()
    first = hook.get_access_token()
    aep_emulator.revoke_tokens()
    assert hook.get_tenant_id() == "acmecorp"
    assert hook.get_access_token() != first
    assert ims_calls(aep_emulator) == 2


@pytest.mark.parametrize(
    ("status", "retry_after", "drop"),
    [(429, 2, False), (500, None, False), (503, 1, False), (None, None, True)],
    ids=["429-retry-after", "500", "503", "dropped-connection"],
)
def test_each_fault_type_is_retried(
    aep_emulator: AEPEmulator, no_sleep: list[float], status: int | None, retry_after: int | None, drop: bool
) -> None:
    hook = AEPHook()
    hook.get_access_token()
    aep_emulator.faults.script(r"/schemaregistry/stats", status, times=2, retry_after=retry_after, drop=drop)
    assert hook.get_tenant_id() == "acmecorp"
    assert len(no_sleep) == 2
    if retry_after:
        assert no_sleep == [float(retry_after)] * 2


def test_faults_on_streaming_are_retried(aep_emulator: AEPEmulator, no_sleep: list[float]) -> None:
    hook = AEPHook()
    tenant = hook.get_tenant_id()
    schema_id, dataset_id, inlet_id, flow_id = set_up_streaming(hook)
    message = hook.streaming_message(
        profile(tenant, "1", "a@example.com", 1),
        schema_id=schema_id,
        dataset_id=dataset_id,
        flow_id=flow_id,
        org_id=hook.settings.org_id,
    )
    aep_emulator.faults.script(r"/collection/batch/", 429, retry_after=1)
    aep_emulator.faults.script(r"/collection/batch/", 503)
    aep_emulator.faults.script(r"/collection/batch/", drop=True)
    results = hook.send_messages(inlet_id, [message])
    assert "xactionId" in results[0]
    assert aep_emulator.state.accepted_ids(dataset_id) == ["cap-profile-1"]


def test_timeouts_are_retried(aep_emulator: AEPEmulator, no_sleep: list[float]) -> None:
    hook = AEPHook(timeout=0.3, max_attempts=3)
    hook.get_access_token()
    aep_emulator.faults.latency_ms = 1000
    try:
        with pytest.raises(AEPServerError, match="could not reach AEP"):
            hook.get_tenant_id()
    finally:
        aep_emulator.faults.latency_ms = 0
    assert len(no_sleep) == 2
    assert hook.get_tenant_id() == "acmecorp"


def test_non_retryable_errors_carry_aeps_details(aep_emulator: AEPEmulator) -> None:
    hook = AEPHook()
    with pytest.raises(AEPNotFoundError) as info:
        hook.get_schema("https://ns.adobe.com/acmecorp/schemas/doesnotexist")
    assert info.value.status == 404
    assert info.value.title or info.value.detail
    with pytest.raises(AEPError) as info2:
        hook.create_dataset("broken", "https://ns.adobe.com/acmecorp/schemas/doesnotexist")
    assert info2.value.status in (400, 404)


def test_wrong_credentials_org_and_sandbox_have_their_own_messages(
    aep_emulator: AEPEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = json.loads(aep_emulator.connection_json())

    def check(conn: dict, expected: str) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_AEP_CASE", json.dumps(conn))
        aep_module.TOKEN_CACHE.clear()
        ok, message = AEPHook("aep_case").test_connection()
        assert not ok
        assert expected in message
        assert good["password"] not in message

    check({**good, "password": "not-the-secret"}, "Adobe IMS rejected the Client ID / Client Secret")
    check({**good, "extra": {**good["extra"], "org_id": "OTHER@AdobeOrg"}}, "Org ID 'OTHER@AdobeOrg'")
    check({**good, "extra": {**good["extra"], "sandbox": "nosuch"}}, "Sandbox 'nosuch'")
    check({**good, "extra": {**good["extra"], "ims_url": "http://127.0.0.1:9"}}, "Could not reach Adobe IMS")


def test_secrets_never_reach_logs_or_exceptions(
    aep_emulator: AEPEmulator, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, no_sleep
) -> None:
    hook = AEPHook(max_attempts=2)
    token = hook.get_access_token()
    secret = hook.settings.client_secret
    aep_emulator.faults.script(r"/stats", 503, times=5)
    texts = []
    with pytest.raises(AEPError) as info:
        hook.get_tenant_id()
    texts += [str(info.value), repr(info.value)]
    aep_emulator.faults.clear_scripts()
    aep_emulator.revoke_tokens()
    aep_emulator.faults.script(r"/stats", 401, times=5)
    with pytest.raises(AEPAuthError) as info2:
        hook.get_tenant_id()
    texts += [str(info2.value), repr(info2.value)]
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    texts += [json.dumps(e if isinstance(e, dict) else vars(e), default=str) for e in aep_emulator.journal]
    for text in texts:
        assert secret not in text
        assert token not in text


def test_async_hook_reads_batches_and_profiles_with_retries(aep_emulator: AEPEmulator) -> None:
    hook = AEPHook()
    tenant = hook.get_tenant_id()
    schema_id, dataset_id, inlet_id, flow_id = set_up_streaming(hook, profile_enabled=True)
    messages = [
        hook.streaming_message(
            profile(tenant, f"88{i}", f"a{i}@example.com", i),
            schema_id=schema_id,
            dataset_id=dataset_id,
            flow_id=flow_id,
            org_id=hook.settings.org_id,
        )
        for i in range(3)
    ]
    for message in messages:  # three requests -> at least one landed batch each
        hook.send_messages(inlet_id, [message])
    aep_emulator.faults.script(r"/catalog/batches", 429, retry_after=0)
    aep_emulator.faults.script(r"/catalog/batches", drop=True)

    async def run() -> tuple[list, dict, dict | None, dict | None]:
        async with AEPAsyncHook(max_retry_wait=0.1) as async_hook:
            batches = await async_hook.list_batches(dataset_id, page_size=1)
            one = await async_hook.get_batch(batches[0]["id"])
            found = await async_hook.lookup_profile("881", "CAPLOYALTY")
            missing = await async_hook.lookup_profile("nobody", "CAPLOYALTY")
            return batches, one, found, missing

    batches, one, found, missing = asyncio.run(run())
    assert sum(b.get("recordCount", 0) for b in batches) == 3
    assert one["id"] == batches[0]["id"]
    assert found is not None
    assert found["entity"]["personalEmail"]["address"] == "a1@example.com"
    assert missing is None
