"""Trigger that waits, in the triggerer, for a data interval's Capillary extract partitions in object storage.

Readiness is :func:`~airflow_provider_capillary.extracts.layout.partition_ready` (the completion marker, or with
``marker=None`` at least one part file), the same rule
:class:`~airflow_provider_capillary.sensors.extracts.CapillaryExtractSensor` applies when it pokes. Object
storage calls are blocking (fsspec), so the trigger runs them in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from airflow.sdk import ObjectStoragePath
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_capillary.extracts.layout import (
    DEFAULT_MARKER,
    DEFAULT_PATH_TEMPLATE,
    partition_files,
    partition_ready,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence


def display_url(url: str) -> str:
    """The URL without any ``user:password@`` part, safe for logs, messages and events."""
    parts = urlsplit(url)
    if not parts.netloc or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def extract_root(extract_uri: str, conn_id: str | None = None) -> ObjectStoragePath:
    """The extract root as an ``ObjectStoragePath``, authenticated through ``conn_id`` when given."""
    return ObjectStoragePath(extract_uri, conn_id=conn_id)


def missing_partitions(
    root: ObjectStoragePath,
    record_types: Sequence[str],
    interval_start: datetime,
    *,
    path_template: str = DEFAULT_PATH_TEMPLATE,
    marker: str | None = DEFAULT_MARKER,
) -> list[str]:
    """The record types whose partition for ``interval_start`` is not ready yet (blocking I/O).

    :param root: The extract root.
    :param record_types: Record types to check, e.g. ``["customer", "transaction"]``.
    :param interval_start: The data interval start the partitions belong to.
    :param path_template: Partition path template relative to the root.
    :param marker: Completion marker file name, or ``None`` to accept any part file.
    """
    return [
        record_type
        for record_type in record_types
        if not partition_ready(root, record_type, interval_start, path_template=path_template, marker=marker)
    ]


def part_file_urls(
    root: ObjectStoragePath,
    record_types: Sequence[str],
    interval_start: datetime,
    *,
    path_template: str = DEFAULT_PATH_TEMPLATE,
) -> dict[str, list[str]]:
    """The part file URLs of each record type's partition, in reading order (blocking I/O)."""
    return {
        record_type: [
            str(path) for path in partition_files(root, record_type, interval_start, path_template=path_template)
        ]
        for record_type in record_types
    }


class CapillaryExtractTrigger(BaseTrigger):
    """Poll object storage until every record type's extract partition for a data interval is ready.

    Yields one event: ``{"status": "success", "message", "record_types", "interval_start", "files"}`` where
    ``files`` counts the part files per record type (the sensor lists their URLs again in the worker),
    ``{"status": "timeout", ..., "missing": [...]}`` past ``end_time``, or ``{"status": "error", ...}`` when
    the store could not be read or the path template is invalid.

    :param extract_uri: Root URL of the extract files (any scheme Airflow's object storage knows).
    :param record_types: Record types to wait for.
    :param interval_start: The data interval start, ISO 8601 (timezone-aware).
    :param end_time: Wall-clock deadline (``time.time()`` seconds) after which a ``timeout`` event is sent.
    :param path_template: Partition path template relative to the root. Default ``{record_type}/dt={ds}/part-*``.
    :param marker: Completion marker file name; ``None`` waits for part files instead. Default ``_SUCCESS``.
    :param conn_id: Airflow connection for the object store. Default: none (the scheme's default).
    :param poll_interval: Seconds between polls. Default 300.
    """

    def __init__(
        self,
        *,
        extract_uri: str,
        record_types: Sequence[str],
        interval_start: str,
        end_time: float,
        path_template: str = DEFAULT_PATH_TEMPLATE,
        marker: str | None = DEFAULT_MARKER,
        conn_id: str | None = None,
        poll_interval: float = 300.0,
    ) -> None:
        super().__init__()
        self.extract_uri = extract_uri
        self.record_types = list(record_types)
        self.interval_start = interval_start
        self.end_time = end_time
        self.path_template = path_template
        self.marker = marker
        self.conn_id = conn_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "extract_uri": self.extract_uri,
                "record_types": self.record_types,
                "interval_start": self.interval_start,
                "end_time": self.end_time,
                "path_template": self.path_template,
                "marker": self.marker,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
            },
        )

    def _event(self, status: str, message: str, **extra: Any) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "message": message,
                "record_types": self.record_types,
                "interval_start": self.interval_start,
                **extra,
            }
        )

    def _file_counts(self, root: ObjectStoragePath, start: datetime) -> dict[str, int]:
        urls = part_file_urls(root, self.record_types, start, path_template=self.path_template)
        return {record_type: len(found) for record_type, found in urls.items()}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        where = display_url(self.extract_uri)
        try:
            start = datetime.fromisoformat(self.interval_start)
            root = await asyncio.to_thread(extract_root, self.extract_uri, self.conn_id)
            waiting = self.record_types
            while True:
                waiting = await asyncio.to_thread(
                    missing_partitions,
                    root,
                    waiting,
                    start,
                    path_template=self.path_template,
                    marker=self.marker,
                )
                if not waiting:
                    files = await asyncio.to_thread(self._file_counts, root, start)
                    message = f"Extract partitions of {start:%Y-%m-%d %H:%M} ready under {where}: " + ", ".join(
                        f"{record_type} ({count} files)" for record_type, count in files.items()
                    )
                    yield self._event("success", message, files=files)
                    return
                if time.time() >= self.end_time:
                    yield self._event(
                        "timeout",
                        f"Timed out waiting for extract partitions of {start:%Y-%m-%d %H:%M} under {where}: "
                        f"{', '.join(waiting)} not ready ({self._readiness()})",
                        missing=waiting,
                    )
                    return
                self.log.info(
                    "Waiting for %s under %s; next check in %s s", ", ".join(waiting), where, self.poll_interval
                )
                await asyncio.sleep(self.poll_interval)
        except Exception as error:
            yield self._event(
                "error", f"Checking extract partitions under {where} failed: {type(error).__name__}: {error}"
            )

    def _readiness(self) -> str:
        if self.marker is None:
            return f"no part file matching {self.path_template}"
        return f"no {self.marker} marker beside {self.path_template}"
