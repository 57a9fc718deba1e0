"""CapillaryExtractTrigger against extract partitions written to tmp_path (``file://`` object storage)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.module_loading import import_string

from airflow_provider_capillary.triggers.extracts import CapillaryExtractTrigger, display_url

START = "2025-06-01T00:00:00+00:00"


def write_partition(root: Path, record_type: str, *parts: str, marker: bool = True, day: str = "2025-06-01") -> Path:
    partition = root / record_type / f"dt={day}"
    partition.mkdir(parents=True, exist_ok=True)
    for name in parts:
        (partition / name).write_text("id\n1\n")
    if marker:
        (partition / "_SUCCESS").write_text("")
    return partition


def trigger(root: Path, record_types: list[str], *, wait: float = 5.0, **kwargs: Any) -> CapillaryExtractTrigger:
    return CapillaryExtractTrigger(
        extract_uri=root.as_uri(),
        record_types=record_types,
        interval_start=START,
        end_time=time.time() + wait,
        poll_interval=0.05,
        **kwargs,
    )


async def events_of(run: CapillaryExtractTrigger) -> list[dict[str, Any]]:
    return [fired.payload async for fired in run.run()]


def test_serialize_round_trip() -> None:
    original = CapillaryExtractTrigger(
        extract_uri="s3://bucket/capillary",
        record_types=["customer", "transaction"],
        interval_start=START,
        end_time=1_900_000_000.25,
        path_template="{record_type}/dt={ds}/hr={hour}/part-*",
        marker=None,
        conn_id="aws_default",
        poll_interval=30,
    )
    path, kwargs = original.serialize()
    assert path == "airflow_provider_capillary.triggers.extracts.CapillaryExtractTrigger"
    assert import_string(path)(**kwargs).serialize() == (path, kwargs)
    assert kwargs == {
        "extract_uri": "s3://bucket/capillary",
        "record_types": ["customer", "transaction"],
        "interval_start": START,
        "end_time": 1_900_000_000.25,
        "path_template": "{record_type}/dt={ds}/hr={hour}/part-*",
        "marker": None,
        "conn_id": "aws_default",
        "poll_interval": 30,
    }


async def test_ready_partitions_fire_success_with_counts(tmp_path: Path) -> None:
    write_partition(tmp_path, "customer", "part-0001.csv", "part-0002.csv.gz")
    write_partition(tmp_path, "transaction", "part-0001.jsonl")
    write_partition(tmp_path, "transaction", "part-0009.jsonl", day="2025-06-02")
    fired = await events_of(trigger(tmp_path, ["customer", "transaction"]))
    assert len(fired) == 1
    assert fired[0]["status"] == "success"
    assert fired[0]["files"] == {"customer": 2, "transaction": 1}
    assert fired[0]["record_types"] == ["customer", "transaction"]
    assert fired[0]["interval_start"] == START


async def test_waits_for_the_marker_to_arrive(tmp_path: Path) -> None:
    partition = write_partition(tmp_path, "customer", "part-0001.csv", marker=False)
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, (partition / "_SUCCESS").write_text, "")
    started = time.monotonic()
    fired = await events_of(trigger(tmp_path, ["customer"]))
    assert [payload["status"] for payload in fired] == ["success"]
    assert time.monotonic() - started >= 0.3, "the trigger must not fire before the marker exists"


async def test_without_marker_part_files_are_enough(tmp_path: Path) -> None:
    write_partition(tmp_path, "customer", "part-0001.csv", marker=False)
    fired = await events_of(trigger(tmp_path, ["customer"], marker=None))
    assert [payload["status"] for payload in fired] == ["success"]
    assert fired[0]["files"] == {"customer": 1}


async def test_empty_marked_partition_is_ready(tmp_path: Path) -> None:
    write_partition(tmp_path, "loyalty_event")
    fired = await events_of(trigger(tmp_path, ["loyalty_event"]))
    assert [payload["status"] for payload in fired] == ["success"]
    assert fired[0]["files"] == {"loyalty_event": 0}


async def test_timeout_names_the_missing_record_types(tmp_path: Path) -> None:
    write_partition(tmp_path, "customer", "part-0001.csv")
    write_partition(tmp_path, "transaction", "part-0001.csv", marker=False)
    fired = await events_of(trigger(tmp_path, ["customer", "transaction", "loyalty_event"], wait=0.2))
    assert len(fired) == 1
    assert fired[0]["status"] == "timeout"
    assert fired[0]["missing"] == ["transaction", "loyalty_event"]
    assert "transaction, loyalty_event not ready (no _SUCCESS marker beside" in fired[0]["message"]
    assert "2025-06-01 00:00" in fired[0]["message"]


async def test_bad_path_template_is_an_error_event(tmp_path: Path) -> None:
    fired = await events_of(trigger(tmp_path, ["customer"], path_template="{record_type}/{region}/part-*"))
    assert [payload["status"] for payload in fired] == ["error"]
    assert "unknown placeholder {region}" in fired[0]["message"]


async def test_unknown_scheme_is_an_error_event_without_credentials() -> None:
    run = CapillaryExtractTrigger(
        extract_uri="nosuchscheme://user:s3cr3t@bucket/root",
        record_types=["customer"],
        interval_start=START,
        end_time=time.time() + 5,
        poll_interval=0.05,
    )
    fired = await events_of(run)
    assert [payload["status"] for payload in fired] == ["error"]
    assert "nosuchscheme://bucket/root" in fired[0]["message"]
    assert "s3cr3t" not in fired[0]["message"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("s3://bucket/capillary", "s3://bucket/capillary"),
        ("sftp://user:pw@host:22/data", "sftp://host:22/data"),
        ("file:///tmp/x", "file:///tmp/x"),
    ],
)
def test_display_url_drops_user_info(url: str, shown: str) -> None:
    assert display_url(url) == shown
