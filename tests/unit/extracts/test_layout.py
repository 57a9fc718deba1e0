from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import fsspec
import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io import attach

from airflow_provider_capillary.extracts.layout import (
    DEFAULT_PATH_TEMPLATE,
    detect_format,
    partition_files,
    partition_ready,
    render_path_template,
)

START = datetime(2025, 6, 1, 7, 30, tzinfo=UTC)


@pytest.fixture(params=["file", "memory"])
def root(request: pytest.FixtureRequest, tmp_path) -> ObjectStoragePath:
    """An empty extract root on the local disk or in fsspec's in-memory filesystem."""
    if request.param == "file":
        return ObjectStoragePath(f"file://{tmp_path}")
    attach("memory", fs=fsspec.filesystem("memory"))
    return ObjectStoragePath(f"memory://extracts-{uuid.uuid4().hex}")


def _touch(root: ObjectStoragePath, relative: str, data: bytes = b"a\n1\n") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class TestRenderPathTemplate:
    @pytest.mark.parametrize(
        ("template", "expected"),
        [
            (DEFAULT_PATH_TEMPLATE, "customer/dt=2025-06-01/part-*"),
            ("{record_type}/dt={date}/hr={hour}/part-*", "customer/dt=2025-06-01/hr=07/part-*"),
            ("{record_type}/{year}/{month}/{day}/{ds_nodash}-{minute}-*.csv", "customer/2025/06/01/20250601-30-*.csv"),
            ("/{record_type}/{start:%Y/%m/%d/%H}/part-*", "customer/2025/06/01/07/part-*"),
            ("{{literal}}/{record_type}/*", "{literal}/customer/*"),
        ],
    )
    def test_placeholders(self, template: str, expected: str) -> None:
        assert render_path_template(template, "customer", START) == expected

    def test_date_means_midnight(self) -> None:
        assert render_path_template("x/{ds}T{hour}/*", "t", date(2025, 6, 1)) == "x/2025-06-01T00/*"

    @pytest.mark.parametrize(
        ("template", "message"),
        [
            ("{record_type}/dt={execution_date}/part-*", "unknown placeholder {execution_date}"),
            ("{record_type}/{start.year}/part-*", "unknown placeholder {start.year}"),
            ("{record_type}/{ds!r}/part-*", "takes no conversion"),
            ("{record_type}/{ds:%Y}/part-*", "takes no conversion or format spec"),
            ("{start}/part-*", "unknown placeholder {start}"),
            ("{record_type}/dt={ds}/", "must end with a file-name glob"),
        ],
    )
    def test_rejects_bad_templates(self, template: str, message: str) -> None:
        with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
            render_path_template(template, "customer", START)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("part-0000.csv", ("csv", False)),
        ("part-0000.CSV.GZ", ("csv", True)),
        ("part-1.jsonl.gz", ("jsonl", True)),
        ("part-1.ndjson", ("jsonl", False)),
        ("part-1.parquet", ("parquet", False)),
        ("part-1.json", (None, False)),
        ("part-1", (None, False)),
        ("part-1.gz", (None, True)),
    ],
)
def test_detect_format(name: str, expected: tuple[str | None, bool]) -> None:
    assert detect_format(f"s3://bucket/customer/dt=2025-06-01/{name}") == expected


class TestPartitionFiles:
    def test_natural_order_and_hidden_files(self, root: ObjectStoragePath) -> None:
        for name in ["part-10.csv", "part-2.csv.gz", "part-1.jsonl", "_SUCCESS", ".part-3.csv.crc", "other.csv"]:
            _touch(root, f"customer/dt=2025-06-01/{name}")
        _touch(root, "customer/dt=2025-06-02/part-0.csv")
        files = partition_files(root, "customer", START)
        assert [path.name for path in files] == ["part-1.jsonl", "part-2.csv.gz", "part-10.csv"]
        assert all(str(path).startswith(f"{root.protocol}://") for path in files)

    def test_accepts_a_url_string_root(self, root: ObjectStoragePath) -> None:
        _touch(root, "customer/dt=2025-06-01/part-0.csv")
        assert [path.name for path in partition_files(str(root), "customer", START)] == ["part-0.csv"]

    def test_missing_partition_is_empty(self, root: ObjectStoragePath) -> None:
        assert partition_files(root, "customer", START) == []

    def test_hourly_and_whole_day_templates(self, root: ObjectStoragePath) -> None:
        for hour in ("07", "08"):
            _touch(root, f"loyalty_event/dt=2025-06-01/hr={hour}/part-0.csv")
        hourly = partition_files(root, "loyalty_event", START, path_template="{record_type}/dt={ds}/hr={hour}/part-*")
        assert [str(path).rsplit("/", 2)[-2] for path in hourly] == ["hr=07"]
        day = partition_files(root, "loyalty_event", START, path_template="{record_type}/dt={ds}/hr=*/part-*")
        assert [str(path).rsplit("/", 2)[-2] for path in day] == ["hr=07", "hr=08"]


class TestPartitionReady:
    def test_marker(self, root: ObjectStoragePath) -> None:
        _touch(root, "customer/dt=2025-06-01/part-0.csv")
        assert not partition_ready(root, "customer", START)
        _touch(root, "customer/dt=2025-06-01/_SUCCESS", b"")
        assert partition_ready(root, "customer", START)
        assert not partition_ready(root, "transaction", START)

    def test_marker_without_data_files_is_an_empty_complete_partition(self, root: ObjectStoragePath) -> None:
        _touch(root, "customer/dt=2025-06-01/_DONE", b"")
        assert partition_ready(root, "customer", START, marker="_DONE")
        assert not partition_ready(root, "customer", START)

    def test_without_marker_needs_a_data_file(self, root: ObjectStoragePath) -> None:
        assert not partition_ready(root, "customer", START, marker=None)
        _touch(root, "customer/dt=2025-06-01/_SUCCESS", b"")
        assert not partition_ready(root, "customer", START, marker=None)
        _touch(root, "customer/dt=2025-06-01/part-0.csv.gz")
        assert partition_ready(root, "customer", START, marker=None)

    def test_globbed_directories_need_a_marker_each(self, root: ObjectStoragePath) -> None:
        template = "{record_type}/dt={ds}/hr=*/part-*"
        _touch(root, "loyalty_event/dt=2025-06-01/hr=00/part-0.csv")
        _touch(root, "loyalty_event/dt=2025-06-01/hr=01/part-0.csv")
        assert not partition_ready(root, "loyalty_event", START, path_template=template)
        _touch(root, "loyalty_event/dt=2025-06-01/hr=00/_SUCCESS", b"")
        assert not partition_ready(root, "loyalty_event", START, path_template=template)
        _touch(root, "loyalty_event/dt=2025-06-01/hr=01/_SUCCESS", b"")
        assert partition_ready(root, "loyalty_event", START, path_template=template)

    def test_template_without_directory(self, root: ObjectStoragePath) -> None:
        _touch(root, "customer-20250601.csv")
        assert not partition_ready(root, "customer", START, path_template="{record_type}-{ds_nodash}.csv")
        _touch(root, "_SUCCESS", b"")
        assert partition_ready(root, "customer", START, path_template="{record_type}-{ds_nodash}.csv")
