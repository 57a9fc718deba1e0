"""CapillaryExtractSensor over extract partitions written to tmp_path: pokes, deferral, resumption, arguments."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowSensorTimeout, TaskDeferred

from airflow_provider_capillary.sensors.extracts import CapillaryExtractSensor, to_interval_start
from airflow_provider_capillary.triggers.extracts import CapillaryExtractTrigger

DAY = pendulum.datetime(2025, 6, 1, tz="UTC")


def write_partition(root: Path, record_type: str, *parts: str, marker: bool = True, day: str = "2025-06-01") -> Path:
    partition = root / record_type / f"dt={day}"
    partition.mkdir(parents=True, exist_ok=True)
    for name in parts:
        (partition / name).write_text("id\n1\n")
    if marker:
        (partition / "_SUCCESS").write_text("")
    return partition


def context(start: datetime | None = DAY) -> Any:
    return {"data_interval_start": start}


def sensor(root: Path, record_types: Any = ("customer",), **kwargs: Any) -> CapillaryExtractSensor:
    return CapillaryExtractSensor(task_id="extract", extract_uri=root.as_uri(), record_types=record_types, **kwargs)


# -- poke ------------------------------------------------------------------------------------------------------


def test_poke_true_returns_part_file_urls_in_reading_order(tmp_path: Path) -> None:
    write_partition(tmp_path, "customer", "part-10.csv", "part-2.csv", ".part-2.csv.crc")
    write_partition(tmp_path, "transaction", "part-0.jsonl.gz")
    done = sensor(tmp_path, ["customer", "transaction"]).poke(context())
    assert done.is_done
    base = tmp_path.as_uri()
    assert done.xcom_value == {
        "customer": [f"{base}/customer/dt=2025-06-01/part-2.csv", f"{base}/customer/dt=2025-06-01/part-10.csv"],
        "transaction": [f"{base}/transaction/dt=2025-06-01/part-0.jsonl.gz"],
    }


def test_poke_false_until_every_record_type_is_marked(tmp_path: Path) -> None:
    write_partition(tmp_path, "customer", "part-0.csv")
    transaction = write_partition(tmp_path, "transaction", "part-0.csv", marker=False)
    watch = sensor(tmp_path, ["customer", "transaction"])
    assert not watch.poke(context())
    (transaction / "_SUCCESS").write_text("")
    assert watch.poke(context())


def test_poke_only_looks_at_the_interval_partition(tmp_path: Path) -> None:
    write_partition(tmp_path, "customer", "part-0.csv", day="2025-05-31")
    assert not sensor(tmp_path).poke(context())
    assert sensor(tmp_path).poke(context(pendulum.datetime(2025, 5, 31, tz="UTC")))


def test_poke_without_marker_waits_for_part_files(tmp_path: Path) -> None:
    partition = write_partition(tmp_path, "customer", marker=False)
    watch = sensor(tmp_path, marker=None)
    assert not watch.poke(context())
    (partition / "part-0.parquet").write_bytes(b"PAR1")
    assert watch.poke(context()).xcom_value == {
        "customer": [f"{tmp_path.as_uri()}/customer/dt=2025-06-01/part-0.parquet"]
    }


def test_custom_path_template(tmp_path: Path) -> None:
    hourly = tmp_path / "customer" / "2025" / "06" / "01" / "03"
    hourly.mkdir(parents=True)
    (hourly / "data-1.csv").write_text("id\n")
    (hourly / "_DONE").write_text("")
    watch = sensor(tmp_path, path_template="{record_type}/{start:%Y/%m/%d/%H}/data-*", marker="_DONE")
    assert watch.poke(context(pendulum.datetime(2025, 6, 1, 3, tz="UTC"))).xcom_value == {
        "customer": [f"{tmp_path.as_uri()}/customer/2025/06/01/03/data-1.csv"]
    }


def test_poke_raises_on_a_bad_path_template(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder \{region\}"):
        sensor(tmp_path, path_template="{record_type}/{region}/part-*").poke(context())


def test_run_without_data_interval_needs_interval_start(tmp_path: Path) -> None:
    with pytest.raises(AirflowException, match=r"no data interval .* pass interval_start"):
        sensor(tmp_path).poke(context(None))
    write_partition(tmp_path, "customer", "part-0.csv")
    assert sensor(tmp_path, interval_start="2025-06-01").poke(context(None))


def test_poke_mode_times_out(tmp_path: Path) -> None:
    with pytest.raises(AirflowSensorTimeout):
        sensor(tmp_path, poke_interval=0.05, timeout=0.2).execute(context())


def test_default_record_types_are_all_registered(tmp_path: Path) -> None:
    for record_type in ("customer", "transaction", "loyalty_event"):
        write_partition(tmp_path, record_type, "part-0.csv")
    done = CapillaryExtractSensor(task_id="extract", extract_uri=str(tmp_path)).poke(context())
    assert done.is_done
    assert sorted(done.xcom_value or {}) == ["customer", "loyalty_event", "transaction"]


def test_empty_extract_uri_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="extract_uri is empty"):
        CapillaryExtractSensor(task_id="extract", extract_uri=" ").poke(context())


# -- deferral --------------------------------------------------------------------------------------------------


def test_deferrable_defers_with_the_trigger(tmp_path: Path) -> None:
    watch = sensor(tmp_path, ["customer", "transaction"], deferrable=True, poke_interval=7, timeout=900, marker=None)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        watch.execute(context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, CapillaryExtractTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout is not None and deferred.value.timeout > timedelta(seconds=900)
    _, kwargs = trigger.serialize()
    assert before + 900 <= kwargs.pop("end_time") <= time.time() + 900
    assert kwargs == {
        "extract_uri": tmp_path.as_uri(),
        "record_types": ["customer", "transaction"],
        "interval_start": "2025-06-01T00:00:00+00:00",
        "path_template": "{record_type}/dt={ds}/part-*",
        "marker": None,
        "conn_id": None,
        "poll_interval": 7,
    }


def test_deferrable_returns_at_once_when_ready(tmp_path: Path) -> None:
    write_partition(tmp_path, "customer", "part-0.csv")
    assert sensor(tmp_path, deferrable=True).execute(context()) == {
        "customer": [f"{tmp_path.as_uri()}/customer/dt=2025-06-01/part-0.csv"]
    }


def test_execute_complete_lists_the_files(tmp_path: Path) -> None:
    write_partition(tmp_path, "customer", "part-1.csv", "part-0.csv")
    event = {
        "status": "success",
        "message": "ready",
        "record_types": ["customer"],
        "interval_start": "2025-06-01T00:00:00+00:00",
        "files": {"customer": 2},
    }
    assert sensor(tmp_path).execute_complete(context(), event) == {
        "customer": [
            f"{tmp_path.as_uri()}/customer/dt=2025-06-01/part-0.csv",
            f"{tmp_path.as_uri()}/customer/dt=2025-06-01/part-1.csv",
        ]
    }


@pytest.mark.parametrize(
    ("status", "error", "match"),
    [
        ("timeout", AirflowSensorTimeout, "^transaction not ready$"),
        ("error", AirflowException, r"Waiting for the Capillary extract failed \(error\): transaction not ready"),
    ],
)
def test_execute_complete_raises(tmp_path: Path, status: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        sensor(tmp_path).execute_complete(context(), {"status": status, "message": "transaction not ready"})


# -- arguments -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-06-01", datetime(2025, 6, 1, tzinfo=UTC)),
        ("2025-06-01T05:00:00Z", datetime(2025, 6, 1, 5, tzinfo=UTC)),
        ("2025-06-01T07:00:00+02:00", datetime(2025, 6, 1, 5, tzinfo=UTC)),
        (date(2025, 6, 1), datetime(2025, 6, 1, tzinfo=UTC)),
        (datetime(2025, 6, 1, 5), datetime(2025, 6, 1, 5, tzinfo=UTC)),
        (DAY, datetime(2025, 6, 1, tzinfo=UTC)),
    ],
)
def test_interval_start_formats(value: Any, expected: datetime) -> None:
    assert to_interval_start(value) == expected


def test_interval_start_error() -> None:
    with pytest.raises(ValueError, match="is not an ISO 8601 date or datetime"):
        to_interval_start("June 1st")


def test_templated_fields_render(tmp_path: Path) -> None:
    write_partition(tmp_path, "customer", "part-0.csv", day="2025-06-03")
    watch = CapillaryExtractSensor(
        task_id="extract",
        extract_uri="{{ params.root }}",
        record_types="{{ params.kind }}",
        interval_start="{{ params.start_date }}",
        params={"root": tmp_path.as_uri(), "kind": "customer", "start_date": "2025-06-03"},
    )
    watch.render_template_fields(context() | {"params": watch.params})
    assert watch.poke(context(None)).xcom_value == {
        "customer": [f"{tmp_path.as_uri()}/customer/dt=2025-06-03/part-0.csv"]
    }
