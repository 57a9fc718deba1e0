"""Sensor that waits for a data interval's Capillary extract files in any object store."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_capillary.extracts.layout import DEFAULT_MARKER, DEFAULT_PATH_TEMPLATE
from airflow_provider_capillary.triggers.extracts import (
    CapillaryExtractTrigger,
    display_url,
    extract_root,
    missing_partitions,
    part_file_urls,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.sdk import Context


def to_interval_start(value: str | datetime | date) -> datetime:
    """A data interval start given as ISO 8601 text (``2025-06-01``, ``2025-06-01T00:00:00+00:00``), a date or a
    datetime, as a timezone-aware datetime (naive values are UTC).

    :raises ValueError: when the text is not ISO 8601.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"interval_start={text!r} is not an ISO 8601 date or datetime (e.g. 2025-06-01)") from None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise ValueError(f"interval_start must be ISO 8601 text, a date or a datetime, not {type(value).__name__}")


class CapillaryExtractSensor(BaseSensorOperator):
    """Wait until the data interval's extract of each record type has arrived in object storage.

    A partition is ready when its completion marker (``_SUCCESS`` by default) exists; with ``marker=None``,
    as soon as one part file matches the path template (see :mod:`airflow_provider_capillary.extracts.layout`
    for the template syntax and the rules for globbed directories).

    :param extract_uri: Root URL of the extract files, any URL Airflow's object storage understands
        (``file://``, ``s3://``, ``gs://``, ...), e.g. ``{{ var.value.capillary_extract_uri }}``. (templated)
    :param record_types: Record type, or list of them, to wait for. Default: every registered record type
        (``customer``, ``loyalty_event``, ``transaction``). (templated)
    :param path_template: Partition path template relative to the root, ending in a file-name glob. Default
        ``{record_type}/dt={ds}/part-*``. (templated)
    :param marker: Completion marker file name in the partition directory; ``None`` waits for part files
        instead. Default ``_SUCCESS``. (templated)
    :param interval_start: Data interval start whose partition to wait for: ISO 8601 text, a date or a datetime
        (naive = UTC), e.g. ``{{ params.start_date }}`` in a manually triggered DAG. Default: the run's data
        interval start; runs without a data interval (manual or asset-triggered) must pass it. (templated)
    :param conn_id: Airflow connection for the object store (e.g. an ``aws`` connection for ``s3://``). Default:
        none, the scheme's default credentials. (templated)
    :param deferrable: Wait in the triggerer instead of a worker slot. Default: the ``[operators]
        default_deferrable`` setting (False).
    :param poke_interval: Seconds between checks (also the trigger's poll interval). Default 300.
    :param timeout: Seconds to wait before failing with ``AirflowSensorTimeout``. Default 12 hours.
    :return: The part file URLs found, per record type, in reading order: ``{"customer": ["s3://...", ...]}``.
    """

    template_fields: Sequence[str] = (
        "extract_uri",
        "record_types",
        "path_template",
        "marker",
        "interval_start",
        "conn_id",
    )
    ui_color = "#ff7f2a"

    def __init__(
        self,
        *,
        extract_uri: str,
        record_types: str | Sequence[str] | None = None,
        path_template: str = DEFAULT_PATH_TEMPLATE,
        marker: str | None = DEFAULT_MARKER,
        interval_start: str | datetime | date | None = None,
        conn_id: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 300,
        timeout: float = 12 * 60 * 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.extract_uri = extract_uri
        self.record_types = record_types
        self.path_template = path_template
        self.marker = marker
        self.interval_start = interval_start
        self.conn_id = conn_id
        self.deferrable = deferrable

    # ------------------------------------------------------------------ rendered arguments

    def _record_types(self) -> list[str]:
        if self.record_types is None:
            from airflow_provider_capillary.xdm.record_types import record_type_names

            return record_type_names()
        names = [self.record_types] if isinstance(self.record_types, str) else list(self.record_types)
        names = [str(name).strip() for name in names]
        if not names or not all(names):
            raise ValueError(f"record_types must name at least one record type, got {self.record_types!r}")
        return names

    def _interval_start(self, context: Context) -> datetime:
        if self.interval_start not in (None, ""):
            return to_interval_start(self.interval_start)
        start = context.get("data_interval_start")
        if start is None:
            raise AirflowException(
                f"{self.task_id}: this DAG run has no data interval (a manual or asset-triggered run), so there "
                "is no partition to wait for; pass interval_start, e.g. interval_start='{{ params.start_date }}'"
            )
        return to_interval_start(start)

    def _marker(self) -> str | None:
        return self.marker or None

    def _extract_uri(self) -> str:
        uri = str(self.extract_uri or "").strip()
        if not uri:
            raise ValueError("extract_uri is empty: set it (or the capillary_extract_uri Variable) to the extract root")
        return uri

    # ------------------------------------------------------------------ checking

    def _files(self, start: datetime, record_types: list[str]) -> dict[str, list[str]]:
        root = extract_root(self._extract_uri(), self.conn_id)
        files = part_file_urls(root, record_types, start, path_template=self.path_template)
        for record_type, urls in files.items():
            self.log.info("%s: %d part files for %s", record_type, len(urls), f"{start:%Y-%m-%d %H:%M}")
        return files

    def _check(self, context: Context) -> PokeReturnValue:
        start = self._interval_start(context)
        record_types = self._record_types()
        root = extract_root(self._extract_uri(), self.conn_id)
        missing = missing_partitions(root, record_types, start, path_template=self.path_template, marker=self._marker())
        if missing:
            self.log.info(
                "Not ready under %s for %s: %s",
                display_url(self._extract_uri()),
                f"{start:%Y-%m-%d %H:%M}",
                ", ".join(missing),
            )
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._files(start, record_types))

    def poke(self, context: Context) -> PokeReturnValue:
        return self._check(context)

    def execute(self, context: Context) -> dict[str, list[str]] | None:
        if not self.deferrable:
            return super().execute(context)
        first = self._check(context)
        if first.is_done:
            return first.xcom_value
        trigger = CapillaryExtractTrigger(
            extract_uri=self._extract_uri(),
            record_types=self._record_types(),
            interval_start=self._interval_start(context).isoformat(),
            end_time=time.time() + self.timeout,
            path_template=self.path_template,
            marker=self._marker(),
            conn_id=self.conn_id,
            poll_interval=self.poke_interval,
        )
        # The trigger reports its own timeout (with what is still missing); the deferral timeout is a backstop.
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + self.poke_interval + 60),
        )
        return None

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> dict[str, list[str]]:
        """Resume after the trigger fired: list the part files found, or raise what its status means."""
        status = event.get("status")
        message = str(event.get("message") or "no message")
        if status == "success":
            self.log.info("%s", message)
            start = to_interval_start(str(event["interval_start"]))
            return self._files(start, [str(name) for name in event["record_types"]])
        if status == "timeout":
            raise AirflowSensorTimeout(message)
        raise AirflowException(f"Waiting for the Capillary extract failed ({status}): {message}")
