"""Edge cases of AEPHook with mocked HTTP (``responses``); the main paths run against the emulator in
``tests/integration/test_aep_hook.py``."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from airflow_provider_capillary.exceptions import (
    AEPAuthError,
    AEPError,
    AEPNotFoundError,
    AEPRateLimitError,
    AEPServerError,
    AEPValidationError,
)
from airflow_provider_capillary.hooks import aep as aep_module
from airflow_provider_capillary.hooks._retry import BackoffWait, TransientHTTPError, parse_retry_after
from airflow_provider_capillary.hooks.aep import TOKEN_CACHE, AEPHook, batch_url_for_inlet

IMS = "https://ims.test"
PLATFORM = "https://platform.test"
DCS = "https://dcs.test"
SECRET = "s3cr3t-client-secret-value"
TOKEN = "tok-abcdefghijklmnopqrstuvwxyz-0001"
TOKEN_URL = f"{IMS}/ims/token/v3"
STATS_URL = f"{PLATFORM}/data/foundation/schemaregistry/stats"


@pytest.fixture(autouse=True)
def aep_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {
        "conn_type": "adobe_experience_platform",
        "login": "client-id-1",
        "password": SECRET,
        "extra": {
            "org_id": "ORG1@AdobeOrg",
            "sandbox": "dev",
            "ims_url": IMS,
            "platform_url": PLATFORM,
            "dcs_url": DCS,
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", json.dumps(conn))
    TOKEN_CACHE.clear()


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record backoff waits instead of sleeping."""
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    return waits


def add_token(rsps: responses.RequestsMock, token: str = TOKEN, expires_in: int = 86399) -> None:
    rsps.post(TOKEN_URL, json={"access_token": token, "token_type": "bearer", "expires_in": expires_in})


@responses.activate
def test_token_request_is_the_documented_form_and_is_cached_per_process() -> None:
    add_token(responses)
    responses.get(STATS_URL, json={"tenantId": "acme"})

    assert AEPHook().get_tenant_id() == "acme"
    assert AEPHook().get_tenant_id() == "acme"  # a second hook in the same process reuses the token

    token_calls = [c for c in responses.calls if c.request.url == TOKEN_URL]
    assert len(token_calls) == 1
    form = parse_qs(token_calls[0].request.body)
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": ["client-id-1"],
        "client_secret": [SECRET],
        "scope": ["openid,session,AdobeID,read_organizations,additional_info.projectedProductContext"],
    }
    assert token_calls[0].request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    platform_call = responses.calls[1].request
    assert platform_call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert platform_call.headers["x-api-key"] == "client-id-1"
    assert platform_call.headers["x-gw-ims-org-id"] == "ORG1@AdobeOrg"
    assert platform_call.headers["x-sandbox-name"] == "dev"
    assert platform_call.headers["Accept"] == "application/json"
    assert platform_call.headers["User-Agent"].startswith("airflow-provider-capillary/")


@responses.activate
def test_token_is_refreshed_before_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    responses.post(TOKEN_URL, json={"access_token": "tok-first-000000", "expires_in": 1000})
    responses.post(TOKEN_URL, json={"access_token": "tok-second-00000", "expires_in": 1000})
    hook = AEPHook()
    now = time.time()
    monkeypatch.setattr(aep_module.time, "time", lambda: now)
    assert hook.get_access_token() == "tok-first-000000"
    monkeypatch.setattr(aep_module.time, "time", lambda: now + 899)  # 90 % of 1000 s not reached
    assert hook.get_access_token() == "tok-first-000000"
    monkeypatch.setattr(aep_module.time, "time", lambda: now + 901)  # still valid, but inside the refresh margin
    assert hook.get_access_token() == "tok-second-00000"


def test_expires_in_in_milliseconds_is_recognised(monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    monkeypatch.setattr(aep_module.time, "time", lambda: now)
    TOKEN_CACHE.put("k", "tok-ms-0000000", 86_399_999)  # the retired JWT exchange's milliseconds
    monkeypatch.setattr(aep_module.time, "time", lambda: now + 3600)
    assert TOKEN_CACHE.get("k") == "tok-ms-0000000"  # 86,399,999 read as ms = 24 h, not 1,000 days... still valid
    monkeypatch.setattr(aep_module.time, "time", lambda: now + 86_399)
    assert TOKEN_CACHE.get("k") is None


@responses.activate
def test_a_401_refreshes_the_token_once_and_retries() -> None:
    add_token(responses, "tok-old-00000000")
    add_token(responses, "tok-new-00000000")
    responses.get(STATS_URL, status=401, json={"error_code": "401013", "message": "Oauth token is not valid"})
    responses.get(STATS_URL, json={"tenantId": "acme"})

    assert AEPHook().get_tenant_id() == "acme"
    auths = [c.request.headers.get("Authorization") for c in responses.calls if c.request.url == STATS_URL]
    assert auths == ["Bearer tok-old-00000000", "Bearer tok-new-00000000"]


@responses.activate
def test_a_second_401_is_an_auth_error_with_aep_details() -> None:
    add_token(responses)
    responses.get(
        STATS_URL,
        status=401,
        json={"error_code": "401013", "message": "Oauth token is not valid"},
        headers={"x-request-id": "req-42"},
    )
    with pytest.raises(AEPAuthError) as info:
        AEPHook().get_tenant_id()
    assert info.value.status == 401
    assert info.value.error_code == "401013"
    assert info.value.detail == "Oauth token is not valid"
    assert info.value.request_id == "req-42"
    assert len([c for c in responses.calls if c.request.url == STATS_URL]) == 2


@responses.activate
def test_429_waits_retry_after_then_succeeds(no_sleep: list[float]) -> None:
    add_token(responses)
    responses.get(STATS_URL, status=429, headers={"Retry-After": "7"}, json={"message": "slow down"})
    responses.get(STATS_URL, status=429, headers={"Retry-After": "2"})
    responses.get(STATS_URL, json={"tenantId": "acme"})
    assert AEPHook().get_tenant_id() == "acme"
    assert no_sleep == [7.0, 2.0]


@responses.activate
def test_retry_after_is_capped_by_max_retry_wait(no_sleep: list[float]) -> None:
    add_token(responses)
    responses.get(STATS_URL, status=503, headers={"Retry-After": "3600"})
    responses.get(STATS_URL, json={"tenantId": "acme"})
    AEPHook(max_retry_wait=5).get_tenant_id()
    assert no_sleep == [5.0]


@responses.activate
def test_5xx_retried_with_growing_jittered_backoff_then_raised(no_sleep: list[float]) -> None:
    add_token(responses)
    responses.get(STATS_URL, status=503, json={"title": "Service Unavailable", "detail": "maintenance"})
    with pytest.raises(AEPServerError) as info:
        AEPHook(max_attempts=4, max_retry_wait=100).get_tenant_id()
    assert len([c for c in responses.calls if c.request.url == STATS_URL]) == 4
    assert len(no_sleep) == 3
    for attempt, wait in enumerate(no_sleep, start=1):
        assert 0 <= wait <= 0.5 * 2 ** (attempt - 1)
    assert info.value.status == 503
    assert info.value.title == "Service Unavailable"
    assert "maintenance" in str(info.value)


@responses.activate
def test_429_exhausted_is_a_rate_limit_error(no_sleep: list[float]) -> None:
    add_token(responses)
    responses.get(STATS_URL, status=429, headers={"Retry-After": "1"})
    with pytest.raises(AEPRateLimitError):
        AEPHook(max_attempts=3).get_tenant_id()
    assert no_sleep == [1.0, 1.0]


@responses.activate
def test_connection_errors_are_retried_then_reported_without_secrets(no_sleep: list[float]) -> None:
    add_token(responses)
    responses.get(STATS_URL, body=requests.ConnectionError("connection reset"))
    responses.get(STATS_URL, json={"tenantId": "acme"})
    assert AEPHook().get_tenant_id() == "acme"

    responses.get(STATS_URL, body=requests.ConnectionError("refused"))
    responses.replace(responses.GET, STATS_URL, body=requests.ConnectionError("refused"))
    with pytest.raises(AEPServerError, match="could not reach AEP"):
        AEPHook(max_attempts=2).get_tenant_id()


@responses.activate
def test_total_retry_time_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    add_token(responses)
    responses.get(STATS_URL, status=500)
    clock = [1000.0]
    monkeypatch.setattr(time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    with pytest.raises(AEPServerError):
        AEPHook(max_attempts=1000, max_retry_seconds=20, max_retry_wait=8).get_tenant_id()
    calls = len([c for c in responses.calls if c.request.url == STATS_URL])
    assert 3 <= calls < 1000
    assert clock[0] - 1000.0 <= 20 + 8


@pytest.mark.parametrize(
    ("status", "body", "exc_type"),
    [
        (400, {"title": "BadRequestError", "detail": "A valid content-type must be specified"}, AEPValidationError),
        (403, {"error_code": "403025", "message": "Profile is not valid"}, AEPAuthError),
        (404, {"type": "x", "title": "Not Found", "status": 404}, AEPNotFoundError),
        (413, None, AEPValidationError),
        (418, "teapot", AEPError),
    ],
    ids=["400", "403", "404", "413", "418"],
)
@responses.activate
def test_non_retryable_errors_raise_at_once_with_details(status: int, body: object, exc_type: type) -> None:
    add_token(responses)
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body or ""}
    responses.get(STATS_URL, status=status, **kwargs)
    with pytest.raises(exc_type) as info:
        AEPHook().get_tenant_id()
    assert info.value.status == status
    assert len([c for c in responses.calls if c.request.url == STATS_URL]) == 1
    if isinstance(body, dict):
        assert (body.get("detail") or body.get("message") or body.get("title")) in str(info.value)


@responses.activate
def test_secret_and_token_never_in_logs_or_exceptions(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], no_sleep: list
) -> None:
    caplog.set_level(logging.DEBUG)
    add_token(responses)
    responses.get(STATS_URL, status=503)
    responses.get(STATS_URL, status=400, json={"title": "Bad", "detail": "bad request"})
    with pytest.raises(AEPError) as info:
        AEPHook().get_tenant_id()
    texts = [str(info.value), repr(info.value), caplog.text]
    responses.replace(responses.POST, TOKEN_URL, status=401, json={"error": "invalid_client"})
    TOKEN_CACHE.clear()
    with pytest.raises(AEPAuthError) as info2:
        AEPHook().get_tenant_id()
    captured = capsys.readouterr()
    logs = caplog.text + captured.out + captured.err  # Airflow's structlog writes to stdout
    texts += [str(info2.value), repr(info2.value), logs]
    for text in texts:
        assert SECRET not in text
        assert TOKEN not in text
    assert "failed with HTTP 503; retrying" in logs  # the retry was logged, just without secrets


@responses.activate
def test_the_token_is_registered_with_the_secret_masker() -> None:
    from airflow.sdk.log import redact

    add_token(responses, token="tok-to-be-masked-123456")
    AEPHook().get_access_token()
    assert "tok-to-be-masked-123456" not in str(redact("value tok-to-be-masked-123456"))


@responses.activate
def test_ims_rejection_is_an_auth_error_and_not_retried() -> None:
    responses.post(
        TOKEN_URL, status=400, json={"error": "invalid_client", "error_description": "invalid client_secret parameter"}
    )
    with pytest.raises(AEPAuthError) as info:
        AEPHook().get_access_token()
    assert info.value.error_code == "invalid_client"
    assert "invalid client_secret parameter" in str(info.value)
    assert len(responses.calls) == 1


def test_missing_connection_fields_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AEP_BAD", json.dumps({"conn_type": "adobe_experience_platform"}))
    with pytest.raises(AEPAuthError) as info:
        _ = AEPHook("aep_bad").settings
    assert "Client ID (login)" in str(info.value)
    assert "Client Secret (password)" in str(info.value)
    assert "Org ID (extra org_id)" in str(info.value)


def test_connection_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_AEP_MIN",
        json.dumps({"conn_type": "adobe_experience_platform", "login": "c", "password": "p", "extra": {"org_id": "O"}}),
    )
    settings = AEPHook("aep_min").settings
    assert settings.sandbox == "prod"
    assert settings.ims_url == "https://ims-na1.adobelogin.com"
    assert settings.platform_url == "https://platform.adobe.io"
    assert settings.dcs_url is None
    assert "additional_info.projectedProductContext" in settings.scopes


@responses.activate
def test_test_connection_messages() -> None:
    hook = AEPHook()
    responses.post(TOKEN_URL, status=401, json={"error": "invalid_client"})
    ok, message = hook.test_connection()
    assert not ok
    assert "Client ID / Client Secret" in message
    assert SECRET not in message

    responses.replace(responses.POST, TOKEN_URL, json={"access_token": TOKEN, "expires_in": 86399})
    responses.get(STATS_URL, status=403, json={"error_code": "403025", "message": "Profile is not valid"})
    ok, message = hook.test_connection()
    assert not ok
    assert "Org ID 'ORG1@AdobeOrg'" in message

    responses.replace(
        responses.GET, STATS_URL, status=400, json={"title": "Bad Request", "detail": "Sandbox dev not found"}
    )
    ok, message = hook.test_connection()
    assert not ok
    assert "Sandbox 'dev'" in message

    responses.replace(responses.GET, STATS_URL, json={"tenantId": "acme"})
    ok, message = hook.test_connection()
    assert ok
    assert "tenant 'acme'" in message
    assert TOKEN not in message


def test_test_connection_unreachable_host(monkeypatch: pytest.MonkeyPatch, no_sleep: list) -> None:
    conn = {
        "conn_type": "adobe_experience_platform",
        "login": "c",
        "password": SECRET,
        "extra": {"org_id": "O", "ims_url": "http://127.0.0.1:9", "platform_url": "http://127.0.0.1:9"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DOWN", json.dumps(conn))
    ok, message = AEPHook("aep_down", max_attempts=2).test_connection()
    assert not ok
    assert "Could not reach Adobe IMS at http://127.0.0.1:9" in message


@responses.activate
def test_schema_registry_pagination_follows_page_next() -> None:
    add_token(responses)
    url = f"{PLATFORM}/data/foundation/schemaregistry/tenant/schemas"
    responses.get(url, json={"results": [{"$id": "a", "title": "Other"}], "_page": {"next": "cursor-2"}})
    responses.get(url, json={"results": [{"$id": "b", "title": "Wanted"}], "_page": {"next": None}})
    assert AEPHook().find_schema("Wanted") == {"$id": "b", "title": "Wanted"}
    queries = [parse_qs(urlsplit(c.request.url).query) for c in responses.calls if c.request.url.startswith(url)]
    assert queries[0]["property"] == ["title==Wanted"]
    assert "start" not in queries[0]
    assert queries[1]["start"] == ["cursor-2"]
    assert responses.calls[1].request.headers["Accept"] == "application/vnd.adobe.xed-id+json"


@responses.activate
def test_catalog_batches_paginate_by_offset() -> None:
    add_token(responses)
    url = f"{PLATFORM}/data/foundation/catalog/batches"
    responses.get(url, json={"b1": {"status": "success"}, "b2": {"status": "processing"}})
    responses.get(url, json={"b3": {"status": "failed"}})
    batches = list(AEPHook().iter_batches("ds1", created_after=123, page_size=2))
    assert [b["id"] for b in batches] == ["b1", "b2", "b3"]
    queries = [parse_qs(urlsplit(c.request.url).query) for c in responses.calls if c.request.url.startswith(url)]
    assert [q["start"] for q in queries] == [["0"], ["2"]]
    assert queries[0]["dataSet"] == ["ds1"]
    assert queries[0]["createdAfter"] == ["123"]


@responses.activate
def test_flow_service_pagination_follows_continuation_token() -> None:
    add_token(responses)
    url = f"{PLATFORM}/data/foundation/flowservice/connections"
    responses.get(
        url,
        json={"items": [], "_links": {"next": {"href": "/connections?continuationToken=ct-2&limit=1"}}},
    )
    responses.get(url, json={"items": [{"id": "c1", "createdAt": 5}], "_links": {}})
    assert AEPHook().find_base_connection("Capillary")["id"] == "c1"
    queries = [parse_qs(urlsplit(c.request.url).query) for c in responses.calls if c.request.url.startswith(url)]
    assert queries[1]["continuationToken"] == ["ct-2"]
    assert "name==Capillary" in queries[0]["property"]


@responses.activate
def test_send_messages_returns_results_in_order_and_checks_their_count() -> None:
    add_token(responses)
    url = f"{DCS}/collection/batch/inlet123"
    results = [{"xactionId": "x:0"}, {"statusCode": 400, "message": "bad"}]
    responses.post(url, status=207, json={"inletId": "inlet123", "responses": results})
    hook = AEPHook()
    assert hook.send_messages("https://dcs.adobedc.net/collection/inlet123", [{"a": 1}, {"b": 2}]) == results
    assert json.loads(responses.calls[-1].request.body) == {"messages": [{"a": 1}, {"b": 2}]}
    with pytest.raises(AEPError, match="2 results for 3 messages"):
        hook.send_messages("inlet123", [{}, {}, {}])


@responses.activate
def test_send_messages_413_is_a_validation_error() -> None:
    add_token(responses)
    responses.post(f"{DCS}/collection/batch/inlet123", status=413)
    with pytest.raises(AEPValidationError) as info:
        AEPHook().send_messages("inlet123", [{}])
    assert info.value.status == 413


def test_inlet_urls() -> None:
    assert batch_url_for_inlet("https://dcs.adobedc.net/collection/abc") == (
        "https://dcs.adobedc.net/collection/abc",
        "https://dcs.adobedc.net/collection/batch/abc",
    )
    assert batch_url_for_inlet("abc", "http://proxy:1") == (
        "http://proxy:1/collection/abc",
        "http://proxy:1/collection/batch/abc",
    )
    assert batch_url_for_inlet("abc")[1] == "https://dcs.adobedc.net/collection/batch/abc"


@responses.activate
def test_large_upload_is_chunked_with_content_ranges() -> None:
    add_token(responses)
    url = f"{PLATFORM}/data/foundation/import/batches/B1/datasets/D1/files/part-1.json"
    responses.post(url, status=201)
    responses.patch(url, status=200)
    data = b"0123456789" * 3  # 30 bytes
    AEPHook().upload_file("B1", "D1", "part-1.json", data, chunk_size=12, single_put_limit=16)
    calls = [c for c in responses.calls if c.request.url.startswith(url)]
    assert [c.request.method for c in calls] == ["POST", "PATCH", "PATCH", "PATCH", "POST"]
    assert "action=INITIALIZE" in calls[0].request.url
    assert "action=COMPLETE" in calls[-1].request.url
    assert [c.request.headers["Content-Range"] for c in calls[1:4]] == [
        "bytes 0-11/30",
        "bytes 12-23/30",
        "bytes 24-29/30",
    ]
    assert b"".join(c.request.body for c in calls[1:4]) == data
    assert calls[1].request.headers["Content-Type"] == "application/octet-stream"


def test_backoff_wait_and_retry_after_parsing() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a past date: no wait
    assert parse_retry_after({"Retry-After": " 7 "}) == 7.0
    soon = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S -0000")  # no zone information
    assert 20 <= (parse_retry_after({"Retry-After": soon}) or 0) <= 30

    class State:
        attempt_number = 3

        class outcome:
            @staticmethod
            def exception() -> BaseException:
                return TransientHTTPError(503, None)

    wait = BackoffWait(initial=1, maximum=100)
    assert all(0 <= wait(State()) <= 4 for _ in range(50))  # type: ignore[arg-type]
