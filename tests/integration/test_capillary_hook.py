"""CapillaryHook against the local Capillary emulator over real sockets (127.0.0.1).

The emulator serves the sample extracts of ``../shared/samples/capillary`` through Capillary's documented APIs; the
hook reads them back as canonical records.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from airflow_provider_capillary import __version__
from airflow_provider_capillary.exceptions import CapillaryAPIError, CapillaryAuthError, CapillaryRateLimitError
from airflow_provider_capillary.hooks import capillary as capillary_module
from airflow_provider_capillary.hooks.capillary import (
    CUSTOMER_COLUMNS,
    LOYALTY_EVENT_COLUMNS,
    TRANSACTION_COLUMNS,
    CapillaryHook,
)
from airflow_provider_capillary.testing.capillary_emulator import CapillaryEmulator

pytestmark = pytest.mark.integration

DAY = (datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 2, tzinfo=UTC))
LONDON_DAY = (
    datetime(2025, 6, 1, tzinfo=ZoneInfo("Europe/London")),
    datetime(2025, 6, 2, tzinfo=ZoneInfo("Europe/London")),
)


class _Waits:
    """Records the hook's sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture(scope="module")
def samples_dir(shared_dir: Path) -> Path:
    return shared_dir / "samples" / "capillary"


@pytest.fixture(scope="module")
def emulator_module(samples_dir: Path) -> Iterator[CapillaryEmulator]:
    with CapillaryEmulator(samples_dir=samples_dir) as emulator:
        yield emulator


@pytest.fixture
def emulator(emulator_module: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch) -> CapillaryEmulator:
    """The module's emulator, reset, with ``capillary_default`` (OAuth) pointing at it."""
    emulator_module.reset()
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", emulator_module.connection_json())
    return emulator_module


def _hook(monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> CapillaryHook:
    hook = CapillaryHook(**{"max_attempts": 4, "retry_initial_wait": 0.01, "retry_max_wait": 5.0, **kwargs})
    monkeypatch.setattr(hook, "_sleep", _Waits())
    return hook


def _use(monkeypatch: pytest.MonkeyPatch, emulator: CapillaryEmulator, auth_type: str = "oauth", **extra: object):
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", emulator.connection_json(auth_type, **extra))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- authentication ----------------------------------------------------------------------------------------------


def test_oauth_token_request_and_header_bytes(emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook(monkeypatch)
    hook.get_organization()
    (token_request,) = emulator.requests_to("/v3/oauth/token/generate")
    assert token_request.method == "POST"
    assert token_request.headers["Content-Type"] == "application/json"
    assert json.loads(token_request.body) == {"key": emulator.client_key, "secret": emulator.client_secret}
    (org_request,) = emulator.requests_to("/v1.1/organization/get")
    token = org_request.headers["X-CAP-API-OAUTH-TOKEN"]
    assert token.startswith("emu.")
    assert token == hook._token
    assert "Authorization" not in org_request.headers
    assert org_request.headers["User-Agent"] == f"airflow-provider-capillary/{__version__}"
    assert org_request.headers["Accept"] == "application/json"
    assert org_request.query == {"format": "json"}


def test_basic_auth_sends_capillarys_documented_header(samples_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with CapillaryEmulator(till_username="store.server", till_password="server123", samples_dir=samples_dir) as emu:
        _use(monkeypatch, emu, "basic")
        organization = _hook(monkeypatch).get_organization()
        assert organization["id"] == emu.org_id
        (request,) = emu.requests_to("/v1.1/organization/get")
        # the worked example of Capillary's docs, byte for byte, over the wire
        assert request.headers["Authorization"] == "Basic c3RvcmUuc2VydmVyOjhhMTZhNmI3MDUwNWViMWYxZmY3Y2RjMGNkNTU1OWE3"
        assert "X-CAP-API-OAUTH-TOKEN" not in request.headers
        assert emu.requests_to("/v3/") == []


def test_basic_auth_with_a_stored_md5_digest(emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = hashlib.md5(emulator.till_password.encode(), usedforsecurity=False).hexdigest()
    connection = json.loads(emulator.connection_json("basic", password_is_md5=True))
    connection["password"] = digest
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", json.dumps(connection))
    _hook(monkeypatch).get_organization()
    (request,) = emulator.requests_to("/v1.1/organization/get")
    expected = base64.b64encode(f"{emulator.till_username}:{digest}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"


def test_bearer_token_header_when_configured(samples_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with CapillaryEmulator(token_header="Authorization", samples_dir=samples_dir) as emu:
        _use(monkeypatch, emu)
        hook = _hook(monkeypatch)
        hook.get_organization()
        (request,) = emu.requests_to("/v1.1/organization/get")
        assert request.headers["Authorization"] == f"Bearer {hook._token}"


def test_token_is_generated_once_and_reused(emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook(monkeypatch)
    for _ in range(3):
        hook.get_organization()
    assert len(emulator.requests_to("/v3/oauth/token/generate")) == 1
    tokens = {r.headers["X-CAP-API-OAUTH-TOKEN"] for r in emulator.requests_to("/v1.1/")}
    assert len(tokens) == 1


def test_token_is_refreshed_after_80_percent_of_ttl(
    emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [10_000.0]
    monkeypatch.setattr(capillary_module.time, "monotonic", lambda: clock[0])
    hook = _hook(monkeypatch)
    hook.get_organization()
    clock[0] += 0.8 * emulator.token_ttl_seconds - 1
    hook.get_organization()
    assert len(emulator.requests_to("/v3/oauth/token/generate")) == 1
    clock[0] += 2
    hook.get_organization()
    assert len(emulator.requests_to("/v3/oauth/token/generate")) == 2


def test_a_401_on_an_expired_token_is_retried_once_with_a_new_token(
    emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = _hook(monkeypatch)
    hook.get_organization()
    first = hook._token
    emulator.expire_tokens()
    assert hook.get_organization()["id"] == emulator.org_id
    second = hook._token
    assert second != first
    sent = [r.headers["X-CAP-API-OAUTH-TOKEN"] for r in emulator.requests_to("/v1.1/organization/get")]
    assert sent == [first, first, second]
    assert len(emulator.requests_to("/v3/oauth/token/generate")) == 2


def test_a_persistent_401_is_an_auth_error(emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook(monkeypatch)
    hook.get_organization()
    emulator.add_fault("/v1.1/organization/get", 401, times=2)
    with pytest.raises(CapillaryAuthError) as info:
        hook.get_organization()
    assert info.value.status == 401
    assert len(emulator.requests_to("/v1.1/organization/get")) == 3


# -- throttling and retries --------------------------------------------------------------------------------------


def test_429_with_retry_after_is_waited_out_and_retried(
    emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = _hook(monkeypatch)
    emulator.add_fault("/v2/customers/564100001", 429, retry_after=2, method="GET")
    profile = hook.get_customer(564100001)
    assert profile["id"] == 564100001
    assert hook._sleep.waits == [2.0]  # type: ignore[attr-defined]
    assert len(emulator.requests_to("/v2/customers/564100001")) == 2


@pytest.mark.parametrize("status", [461, 503, 521])
def test_capillary_busy_answers_are_retried_with_backoff(
    emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    hook = _hook(monkeypatch)
    emulator.add_fault("/v2/customers/564100001", status, times=2)
    assert hook.get_customer(564100001)["id"] == 564100001
    first, second = hook._sleep.waits  # type: ignore[attr-defined]
    assert 0.01 <= first <= 0.02
    assert 0.02 <= second <= 0.03


def test_throttling_that_never_ends_raises_after_max_attempts(
    emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = _hook(monkeypatch, max_attempts=3)
    emulator.add_fault("/v2/customers/564100001", 429, times=10, retry_after=1)
    with pytest.raises(CapillaryRateLimitError) as info:
        hook.get_customer(564100001)
    assert info.value.status == 429
    assert "after 3 attempt(s)" in str(info.value)
    assert "request id" in str(info.value)
    assert len(emulator.requests_to("/v2/customers/564100001")) == 3


def test_random_faults_are_absorbed_by_retries(samples_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with CapillaryEmulator(samples_dir=samples_dir, fault_rate=0.3, seed=11) as emu:
        _use(monkeypatch, emu, page_size=3)
        hook = _hook(monkeypatch, max_attempts=10)
        records = list(hook.iter_records("transaction", *DAY))
        assert len(records) == 16
        assert hook._sleep.waits  # type: ignore[attr-defined]


# -- pagination, one family at a time -----------------------------------------------------------------------------


def test_v1_1_customer_search_pages_by_record_offset(
    emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, emulator, page_size=5)
    ids = list(_hook(monkeypatch).iter_customer_ids(DAY[1]))
    assert ids == sorted(emulator.customers, key=int)
    assert len(ids) == 18
    searches = emulator.requests_to("/v1.1/customer/search")
    assert [r.query["offset"] for r in searches] == ["0", "5", "10", "15"]
    assert {r.query["limit"] for r in searches} == {"5"}
    # 00:00Z on 2 June is 01:00 in London: everyone registered before the local day 3 June
    assert {r.query["q"] for r in searches} == {"(registered_date:LESS:2025-06-03)"}


@pytest.mark.parametrize("offset_mode", ["record", "page"])
def test_v2_transactions_page_in_either_offset_style(
    samples_dir: Path, monkeypatch: pytest.MonkeyPatch, offset_mode: str
) -> None:
    with CapillaryEmulator(samples_dir=samples_dir, v2_offset_mode=offset_mode) as emu:
        for number in range(5):  # 5 more bills for 564100001 on the same day
            emu.transactions[990000000 + number] = {
                **emu.transactions[901200001],
                "transaction_id": 990000000 + number,
                "bill_number": f"EXTRA-{number}",
                "billing_time": f"2025-06-01T20:{number:02d}:00+01:00",
            }
        _use(monkeypatch, emu, page_size=2)
        items = list(_hook(monkeypatch).iter_customer_transactions("564100001", *DAY))
        assert len(items) == 7
        assert len({item["id"] for item in items}) == 7
        pages = emu.requests_to("/v2/customers/564100001/transactions")
        expected = ["0", "1", "2", "3"] if offset_mode == "page" else ["0", "2", "4", "6"]
        assert [r.query["offset"] for r in pages] == expected
        assert {(r.query["limit"], r.query["sortOrder"]) for r in pages} == {("2", "ASC")}
        assert (pages[0].query["startDate"], pages[0].query["endDate"]) == ("2025-06-01", "2025-06-03")


def test_points_ledger_pages_by_page_number_ten_at_a_time(
    emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = "564100001"
    saved = list(emulator.ledger[customer])
    template = saved[0]
    extra = [
        {**template, "eventLogId": 50000000 + n, "ledgerCreatedDate": f"2025-06-01 13:{n:02d}:00.0"} for n in range(21)
    ]
    emulator.ledger[customer] = saved + extra
    try:
        entries = list(_hook(monkeypatch).iter_points_ledger(customer, *DAY))
    finally:
        emulator.ledger[customer] = saved
    assert len(entries) == len(saved) + 21
    assert len({e["eventLogId"] for e in entries}) == len(entries)
    pages = emulator.requests_to("/v2/pointsLedger/getCustomerLedgerInfo")
    assert [r.query["offset"] for r in pages] == ["0", "1", "2"]
    assert {r.query["limit"] for r in pages} == {"10"}
    first = pages[0].query
    assert (first["identifierName"], first["identifierValue"], first["source"]) == ("id", customer, "INSTORE")
    # the emulator's org is in London: the UTC day is asked for in local time
    assert (first["startDate"], first["endDate"]) == ("2025-06-01T01:00:00", "2025-06-02T01:00:00")


def test_coupons_page_v2_style_until_total(emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    customer = "564100013"
    saved = list(emulator.coupons[customer])
    emulator.coupons[customer] = saved + [{**saved[0], "id": 800 + n, "code": f"EXTRA{n}"} for n in range(4)]
    _use(monkeypatch, emulator, page_size=2)
    try:
        coupons = list(_hook(monkeypatch).iter_customer_coupons(customer))
    finally:
        emulator.coupons[customer] = saved
    assert [c["code"] for c in coupons] == [saved[0]["code"], "EXTRA0", "EXTRA1", "EXTRA2", "EXTRA3"]
    assert [r.query["offset"] for r in emulator.requests_to("/v2/customers/coupons")] == ["0", "2", "4"]


# -- canonical records -------------------------------------------------------------------------------------------


def _sample_header(samples_dir: Path, name: str) -> list[str]:
    with (samples_dir / name).open(encoding="utf-8", newline="") as handle:
        return next(csv.reader(handle))


def _sample_jsonl_keys(samples_dir: Path) -> set[str]:
    keys: set[str] = set()
    with (samples_dir / "transactions.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            keys |= set(json.loads(line))
    return keys


def test_record_columns_are_the_extract_files_columns(samples_dir: Path) -> None:
    assert list(CUSTOMER_COLUMNS) == _sample_header(samples_dir, "customers.csv")
    assert list(LOYALTY_EVENT_COLUMNS) == _sample_header(samples_dir, "loyalty_events.csv")
    assert set(TRANSACTION_COLUMNS) == _sample_jsonl_keys(samples_dir)


@pytest.mark.parametrize(
    ("record_type", "columns", "count"),
    [
        ("customer", CUSTOMER_COLUMNS, 18),
        ("transaction", TRANSACTION_COLUMNS, 16),
        ("loyalty_event", LOYALTY_EVENT_COLUMNS, 20),
    ],
)
def test_iter_records_yields_exactly_the_canonical_columns(
    emulator: CapillaryEmulator,
    monkeypatch: pytest.MonkeyPatch,
    record_type: str,
    columns: tuple[str, ...],
    count: int,
) -> None:
    records = list(_hook(monkeypatch).iter_records(record_type, *DAY))
    assert len(records) == count
    for record in records:
        assert tuple(record) == columns


def test_customer_records_carry_the_samples_values(
    emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch, samples_dir: Path
) -> None:
    records = {r["customer_id"]: r for r in _hook(monkeypatch).iter_records("customer", *DAY)}
    with (samples_dir / "customers.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    olivia = next(row for row in rows if row["customer_id"] == "564100001")
    record = records["564100001"]
    for column in ("external_id", "mobile", "email", "first_name", "last_name", "gender", "date_of_birth"):
        assert record[column] == olivia[column], column
    for column in ("loyalty_type", "source", "registered_on", "tier", "next_tier", "tier_expiry_date", "updated_at"):
        assert record[column] == olivia[column], column
    for column in ("points_balance", "lifetime_points", "points_redeemed", "points_expired", "lifetime_purchases"):
        assert record[column] == Decimal(olivia[column]), column
    assert (record["program_id"], record["tier_number"], record["card_number"]) == (1001, 2, "AC9000000001")
    assert (record["currency"], record["email_optin"], record["sms_optin"]) == ("GBP", True, True)
    # the later of the two rows for 564100002 is what Capillary holds
    assert records["564100002"]["tier"] == "Gold"
    # Capillary stores mobiles as digits and emails trimmed
    assert (records["564100007"]["mobile"], records["564100007"]["email"]) == (
        "447700900107",
        "liam.walker@example.com",
    )
    # a non-member has no program, tier or points block
    assert (records["564100008"]["loyalty_type"], records["564100008"]["tier"]) == ("NON_LOYALTY", None)
    # values the hook does not understand are passed on for the mapper to judge, not guessed
    assert records["564100018"]["date_of_birth"] == "12/31/1990"


def test_transaction_records_carry_line_items_and_points(
    emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = {r["transaction_id"]: r for r in _hook(monkeypatch).iter_records("transaction", *DAY)}
    bill = records[901200002]
    assert (bill["bill_number"], bill["type"], bill["customer_id"]) == ("MAN004-20250601-0007", "REGULAR", "564100002")
    assert (bill["billing_time"], bill["store_code"], bill["till_code"]) == (
        "2025-06-01T11:05:44+01:00",
        "MAN-004",
        "man004.till02",
    )
    assert (bill["amount"], bill["points_earned"], bill["program_id"]) == (Decimal("174.0"), Decimal(174), 1001)
    assert [(i["item_code"], i["qty"], i["amount"]) for i in bill["line_items"]] == [
        ("SKU-200110", Decimal(1), Decimal("129.0")),
        ("SKU-200345", Decimal(2), Decimal("45.0")),
    ]
    assert bill["payment_modes"] == [{"mode": "CARD", "value": Decimal("174.0")}]
    assert bill["org_id"] == emulator.org_id
    assert records[901200011]["type"] == "RETURN"
    assert records[901200011]["points_earned"] == Decimal(-159)
    assert 901200008 not in records  # NOT_INTERESTED: no customer to read it through


def test_loyalty_event_records_from_ledger_and_coupons(
    emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = list(_hook(monkeypatch).iter_records("loyalty_event", *LONDON_DAY))
    by_name: dict[str, list[dict]] = {}
    for record in records:
        by_name.setdefault(record["event_name"], []).append(record)
    assert set(by_name) == {
        "pointsIssued",
        "pointsRedeemed",
        "pointsExpired",
        "issuedPointsReversed",
        "promisedToCurrentPointsConversion",
        "CouponIssue",
        "CouponRedeem",
    }
    assert all(r["points"] < 0 for r in by_name["pointsRedeemed"] + by_name["pointsExpired"])
    assert all(r["points"] > 0 for r in by_name["pointsIssued"])
    (conversion,) = by_name["promisedToCurrentPointsConversion"]
    assert conversion["points"] == Decimal("333.333")
    (redeem,) = by_name["CouponRedeem"]
    assert (redeem["coupon_code"], redeem["bill_number"], redeem["customer_id"]) == (
        "WELC10AB",
        "WEB-UK-778866",
        "564100013",
    )
    assert redeem["event_time"] == "2025-06-01T19:38:13+00:00"
    issued = next(r for r in by_name["pointsIssued"] if r["transaction_id"] == 901200001)
    assert issued["event_time"] == "2025-06-01T10:32:06+01:00"  # ledger's local time read in Europe/London
    assert issued["email"] == "olivia.bennett@example.com"
    assert len({r["event_id"] for r in records}) == len(records)


def test_unknown_customer_ids_are_skipped(emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    records = list(_hook(monkeypatch).iter_records("customer", *DAY, customer_ids=["999", 564100001]))
    assert [r["customer_id"] for r in records] == ["564100001"]


# -- window bounds -----------------------------------------------------------------------------------------------


def _ids(hook: CapillaryHook, record_type: str, start: datetime, end: datetime) -> list:
    key = {"customer": "customer_id", "transaction": "transaction_id", "loyalty_event": "event_id"}[record_type]
    return [r[key] for r in hook.iter_records(record_type, start, end, customer_ids=["564100001", "564100002"])]


def test_window_start_is_inclusive_and_end_exclusive(
    emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = _hook(monkeypatch)
    billed = datetime(2025, 6, 1, 10, 32, 5, tzinfo=timezone(timedelta(hours=1)))  # bill 901200001
    assert 901200001 in _ids(hook, "transaction", billed, billed + timedelta(seconds=1))
    assert 901200001 not in _ids(hook, "transaction", billed - timedelta(hours=1), billed)
    # the same instant written in another offset is the same bound
    assert 901200001 in _ids(hook, "transaction", billed.astimezone(UTC), billed + timedelta(microseconds=1))
    updated = datetime(2025, 6, 1, 9, 15, tzinfo=UTC)  # customer 564100001's updated_at
    assert _ids(hook, "customer", updated, updated + timedelta(microseconds=1)) == ["564100001"]
    assert "564100001" not in _ids(hook, "customer", updated - timedelta(days=1), updated)


def test_adjacent_windows_partition_the_records(emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook(monkeypatch)
    cut = datetime(2025, 6, 1, 11, 5, 44, tzinfo=timezone(timedelta(hours=1)))  # exactly bill 901200002
    for record_type in ("customer", "transaction", "loyalty_event"):
        whole = _ids(hook, record_type, *DAY)
        halves = _ids(hook, record_type, DAY[0], cut) + _ids(hook, record_type, cut, DAY[1])
        assert sorted(map(str, halves)) == sorted(map(str, whole)), record_type
        assert len(halves) == len(set(map(str, halves))), record_type
    assert 901200002 in _ids(hook, "transaction", cut, DAY[1])


def test_long_windows_are_split_under_the_ledgers_30_day_limit(
    emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = _hook(monkeypatch)
    event_time = datetime(2025, 6, 1, 10, 32, 6, tzinfo=timezone(timedelta(hours=1)))  # ledger entry of 901200001
    start = event_time - timedelta(days=29)  # the second ledger span starts exactly at that entry
    customers = ["564100001"]
    long_ids = [
        r["event_id"]
        for r in hook.iter_records("loyalty_event", start, start + timedelta(days=70), customer_ids=customers)
    ]
    spans = [(r.query["startDate"], r.query["endDate"]) for r in emulator.requests_to("/v2/pointsLedger/")]
    assert spans == [
        ("2025-05-03T10:32:06", "2025-06-01T10:32:06"),
        ("2025-06-01T10:32:06", "2025-06-30T10:32:06"),
        ("2025-06-30T10:32:06", "2025-07-12T10:32:06"),
    ]
    day_ids = [r["event_id"] for r in hook.iter_records("loyalty_event", *DAY, customer_ids=customers)]
    assert sorted(long_ids) == sorted(day_ids)  # the entry on the span boundary is read once
    assert len(day_ids) == len(set(day_ids)) >= 2


# -- masking -----------------------------------------------------------------------------------------------------


def test_secrets_and_tokens_are_masked_and_never_logged(
    emulator: CapillaryEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level("DEBUG")
    masked: list[str] = []
    monkeypatch.setattr(capillary_module, "mask_secret", masked.append)
    hook = _hook(monkeypatch, max_attempts=2)
    hook.get_organization()
    emulator.expire_tokens()
    emulator.add_fault("/v2/customers/564100001", 503, times=5)
    with pytest.raises(CapillaryAPIError) as info:
        hook.get_customer(564100001)
    emulator.expire_tokens()
    emulator.add_fault("/v1.1/organization/get", 401, times=2)
    with pytest.raises(CapillaryAuthError) as auth_info:
        hook.get_organization()
    tokens = {r.headers["X-CAP-API-OAUTH-TOKEN"] for r in emulator.requests if "X-CAP-API-OAUTH-TOKEN" in r.headers}
    assert len(tokens) == 2  # the first, and the one generated after the expired first met a 401
    assert tokens <= set(masked)
    captured = capsys.readouterr()
    texts = [caplog.text, captured.out, captured.err, str(info.value), repr(info.value), str(auth_info.value)]
    assert "Generated a Capillary OAuth token" in caplog.text + captured.out  # the logs were captured
    for secret in [emulator.client_secret, *tokens]:
        for text in texts:
            assert secret not in text


def test_basic_digest_and_header_are_masked_and_never_logged(
    emulator: CapillaryEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level("DEBUG")
    masked: list[str] = []
    monkeypatch.setattr(capillary_module, "mask_secret", masked.append)
    _use(monkeypatch, emulator, "basic")
    hook = _hook(monkeypatch, max_attempts=2)
    emulator.add_fault("/v1.1/organization/get", 401)
    with pytest.raises(CapillaryAuthError) as info:
        hook.get_organization()
    digest = hashlib.md5(emulator.till_password.encode(), usedforsecurity=False).hexdigest()
    header = emulator.requests_to("/v1.1/organization/get")[0].headers["Authorization"].removeprefix("Basic ")
    assert {digest, header} <= set(masked)
    captured = capsys.readouterr()
    for text in [caplog.text, captured.out, captured.err, str(info.value)]:
        for secret in (emulator.till_password, digest, header):
            assert secret not in text


# -- test_connection ---------------------------------------------------------------------------------------------


def test_connection_succeeds_with_org_and_auth(emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = _hook(monkeypatch).test_connection()
    assert ok, message
    assert message == f"Connected to Capillary org 50001 (Acme Rewards) at {emulator.url} with oauth auth"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"password": "wrong-secret-value"}, "Bad credentials: Capillary rejected the OAuth client key/secret"),
        ({"extra": {"org_id": 99999}}, "Wrong org: the credentials belong to Capillary org 50001, but the"),
        ({"host_suffix": "/nothing-here"}, "No Capillary API at"),
        ({"extra": {"auth_type": "basic"}, "password": "wrong-secret-value"}, "rejected the till username/password"),
        ({"extra": {"timezone": "Nowhere/Special"}, "password": "wrong-secret-value"}, "not an IANA zone"),
    ],
    ids=["bad-oauth-secret", "wrong-org", "wrong-path", "bad-till-password", "invalid-field"],
)
def test_connection_failures_have_specific_messages(
    emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch, change: dict, expected: str
) -> None:
    connection = json.loads(emulator.connection_json())
    connection["extra"].update(change.get("extra", {}))
    if "password" in change:
        connection["password"] = change["password"]
    connection["host"] += change.get("host_suffix", "")
    if connection["extra"]["auth_type"] == "basic":
        connection["login"] = emulator.till_username
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", json.dumps(connection))
    ok, message = _hook(monkeypatch).test_connection()
    assert not ok
    assert expected in message
    assert connection["password"] not in message


def test_connection_to_an_unreachable_host(emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    connection = json.loads(emulator.connection_json())
    connection["host"] = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_CAPILLARY_DEFAULT", json.dumps(connection))
    hook = _hook(monkeypatch)
    ok, message = hook.test_connection()
    assert not ok
    assert message.startswith(f"Cannot reach Capillary at {connection['host']}")
    assert "ConnectionError" in message
    assert hook._sleep.waits == []  # type: ignore[attr-defined]  # one attempt, no back-off in the UI
    assert hook.max_attempts == 4  # restored afterwards


# -- the emulator's command line ------------------------------------------------------------------------------


def test_emulator_command_line_serves_and_prints_the_connection() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_capillary.testing.capillary_emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        export = process.stdout.readline()
        assert first.startswith("Capillary emulator listening on http://127.0.0.1:")
        connection = json.loads(export.split("=", 1)[1].strip().strip("'"))
        assert connection["conn_type"] == "capillary"
        response = requests.post(
            f"{connection['host']}/v3/oauth/token/generate",
            json={"key": connection["login"], "secret": connection["password"]},
            timeout=10,
        )
        assert response.status_code == 200
        assert response.json()["data"]["ttlSeconds"] == 300
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_generated_demo_dataset_yields_every_record_type(monkeypatch: pytest.MonkeyPatch) -> None:
    with CapillaryEmulator(generated_customers=6, seed=3) as emu:
        _use(monkeypatch, emu, "basic")
        hook = _hook(monkeypatch)
        counts = {record_type: 0 for record_type in ("customer", "transaction", "loyalty_event")}
        for record_type in counts:
            for record in hook.iter_records(record_type, *LONDON_DAY):
                assert tuple(record) == {"customer": CUSTOMER_COLUMNS, "transaction": TRANSACTION_COLUMNS}.get(
                    record_type, LOYALTY_EVENT_COLUMNS
                )
                counts[record_type] += 1
        assert counts["customer"] == 6
        assert counts["transaction"] == len(emu.transactions) > 0
        assert counts["loyalty_event"] >= counts["transaction"]


def test_reward_issual_is_read_from_the_rewards_catalog(
    emulator: CapillaryEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = _hook(monkeypatch)
    issual = hook.get_reward_issual(564100003, 868)  # the rewardIssued sample event has ref_id 50001_868
    assert issual["rewardTransactionId"] == 868
    assert issual["customerId"] == 564100003
    assert issual["rewardTransactionDate"] == int(datetime(2025, 6, 1, 12, 0, 6, tzinfo=UTC).timestamp() * 1000)
    (request,) = emulator.requests_to("/api_gateway/")
    assert request.path == "/api_gateway/rewards/core/v1/management/customer/564100003/issuals/868"
    with pytest.raises(CapillaryAPIError) as info:
        hook.get_reward_issual(564100003, 1)
    assert info.value.status == 404
