"""Stream Capillary records (extract files or the Capillary API) into AEP datasets as validated XDM records."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, BaseOperator
from airflow.sdk import Asset, ObjectStoragePath

from airflow_provider_capillary.hooks.aep import AEPHook

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from airflow.sdk import Context

    from airflow_provider_capillary.extracts.records import ExtractChunk
    from airflow_provider_capillary.ingestion.pipeline import CheckpointStore, RecordTypeCounts

#: ``mode="auto"`` switches to Batch Ingestion when one record type's partition holds more bytes than this:
#: about 2-5 million loyalty rows, or several minutes of streaming at DCS's 10,000 records/s guidance.
AUTO_BATCH_BYTES = 512 * 1024 * 1024
MODES = ("auto", "stream", "batch")
SOURCES = ("extracts", "api")


class CapillaryToAEPOperator(BaseOperator):
    """Read one data interval of Capillary records, map them to XDM, validate them against each target dataset's
    schema and send them to AEP, with nothing lost: every row is accepted by AEP or dead-lettered with a reason.

    Source: the extract files of the interval's partition in any object store (``source="extracts"``), or the
    Capillary API for the interval (``source="api"``). Mode: ``stream`` (DCS multi-message requests of at most
    1 MB, concurrent, rate-limited), ``batch`` (Batch Ingestion files) or ``auto`` (``batch`` when a partition
    holds more than ``auto_batch_bytes``, else ``stream``). With ``validate_only`` (a dry run) it reads, maps and
    validates and sends nothing.

    Dead letters go as JSON Lines to ``{dead_letter_uri}/{dag}/{run}/{task}/{record type}/part-NNNNNN.jsonl``:
    the original row (file and line), the mapped payload where there is one, the reason and AEP's error. The task
    fails when more than ``max_reject_ratio`` of a record type's rows were dead-lettered, after everything valid
    was sent. A retried task resumes after the last chunk AEP acknowledged (time-series record types).

    :param record_types: Record types to move (``customer``, ``transaction``, ``loyalty_event``); one or a
        list. (templated)
    :param targets: Per record type, the AEP ``dataset_id``, ``schema_id`` and ``flow_id`` (literal ids or
        XCom of the set-up operators). (templated)
    :param inlet: Inlet URL (or id) of the HTTP API streaming connection; needed in stream mode. (templated)
    :param source: ``extracts`` (default) or ``api``. (templated)
    :param extract_uri: Root of the extract files, any URL Airflow's object storage understands. (templated)
    :param path_template: Partition path template under ``extract_uri``. Default
        ``{record_type}/dt={ds}/part-*``. (templated)
    :param interval_start: Start of the data interval (ISO date or datetime). Default: the run's data interval
        start; manual runs without one must pass it. (templated)
    :param interval_end: End of the interval, exclusive (API source). Default: the run's data interval end, or
        one day after the start. (templated)
    :param mode: ``auto`` (default), ``stream`` or ``batch``. (templated)
    :param validate_only: A dry run: read, map and validate; send nothing. Default False. (templated)
    :param max_records_per_second: Client-side streaming limit; ``None`` or 0 for none. Default 10,000 (DCS
        guidance). (templated)
    :param max_requests_per_second: Client-side request limit; ``None`` or 0 for none. Default 1,000. (templated)
    :param concurrency: Parallel streaming requests. Default 4.
    :param chunk_size: Rows per chunk (the checkpoint unit). Default 5,000.
    :param auto_batch_bytes: Partition size above which ``auto`` uses Batch Ingestion. Default 512 MiB.
    :param dead_letter_uri: Base URL for dead letters. Default ``{extract_uri}/_dead_letters``. (templated)
    :param max_reject_ratio: Largest tolerated share of dead-lettered rows per record type, 0 to 1. Default 0.
        (templated)
    :param mapping_options: Mapping settings: ``org_id``, ``default_currency``, ``timezone_for_naive``,
        ``hash_identities``, ``fallback_primary``, ``identity_namespace``. (templated)
    :param progress_interval: Seconds between progress lines in the task log. Default 5.
    :param request_timeout: Seconds to wait for each AEP response before the request counts as failed (and is
        retried). Default 30.
    :param aep_conn_id: Connection of type ``adobe_experience_platform``. Default ``aep_default``. (templated)
    :param capillary_conn_id: Connection of type ``capillary`` (API source). Default ``capillary_default``.
        (templated)
    :param extract_conn_id: Connection for the object store of ``extract_uri`` and ``dead_letter_uri``, if it
        needs one. (templated)
    :return: The run summary: per record type ``read``, ``mapped``, ``sent``, ``accepted``, ``dead_lettered`` by
        reason, ``duplicates``, ``superseded``, ``retried``, ``mode``, the dataset; and ``duration_seconds``,
        ``records_per_second``, ``dead_letter_uri``.
    """

    template_fields: Sequence[str] = (
        "record_types",
        "targets",
        "inlet",
        "source",
        "extract_uri",
        "path_template",
        "interval_start",
        "interval_end",
        "mode",
        "validate_only",
        "max_records_per_second",
        "max_requests_per_second",
        "dead_letter_uri",
        "max_reject_ratio",
        "mapping_options",
        "aep_conn_id",
        "capillary_conn_id",
        "extract_conn_id",
    )
    template_fields_renderers = {"targets": "json", "mapping_options": "json"}
    ui_color = "#fa0f00"

    def __init__(
        self,
        *,
        record_types: str | Sequence[str],
        targets: Mapping[str, Mapping[str, str]] | str,
        inlet: str | None = None,
        source: str = "extracts",
        extract_uri: str | None = None,
        path_template: str | None = None,
        interval_start: str | datetime | None = None,
        interval_end: str | datetime | None = None,
        mode: str = "auto",
        validate_only: bool | str = False,
        max_records_per_second: float | str | None = 10_000,
        max_requests_per_second: float | str | None = 1_000,
        concurrency: int = 4,
        chunk_size: int = 5_000,
        auto_batch_bytes: int = AUTO_BATCH_BYTES,
        dead_letter_uri: str | None = None,
        max_reject_ratio: float | str = 0.0,
        mapping_options: Mapping[str, Any] | None = None,
        progress_interval: float = 5.0,
        request_timeout: float = 30.0,
        aep_conn_id: str = AEPHook.default_conn_name,
        capillary_conn_id: str = "capillary_default",
        extract_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [Asset(f"aep://{aep_conn_id}/capillary")])
        super().__init__(**kwargs)
        self.record_types = record_types
        self.targets = targets
        self.inlet = inlet
        self.source = source
        self.extract_uri = extract_uri
        self.path_template = path_template
        self.interval_start = interval_start
        self.interval_end = interval_end
        self.mode = mode
        self.validate_only = validate_only
        self.max_records_per_second = max_records_per_second
        self.max_requests_per_second = max_requests_per_second
        self.concurrency = concurrency
        self.chunk_size = chunk_size
        self.auto_batch_bytes = auto_batch_bytes
        self.dead_letter_uri = dead_letter_uri
        self.max_reject_ratio = max_reject_ratio
        self.mapping_options = mapping_options
        self.progress_interval = progress_interval
        self.request_timeout = request_timeout
        self.aep_conn_id = aep_conn_id
        self.capillary_conn_id = capillary_conn_id
        self.extract_conn_id = extract_conn_id

    @cached_property
    def hook(self) -> AEPHook:
        return AEPHook(self.aep_conn_id, timeout=self.request_timeout, pool_size=max(16, 2 * self.concurrency))

    # ------------------------------------------------------------------ execute

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_capillary.ingestion.dead_letters import DeadLetterWriter

        started = time.time()
        record_types = _as_list(self.record_types)
        targets = _as_mapping(self.targets, "targets")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        missing = [rt for rt in record_types if rt not in targets]
        if missing:
            raise ValueError(f"targets has no dataset for record type(s) {', '.join(missing)}")
        if self.source == "extracts" and not self.extract_uri:
            raise ValueError("extract_uri is required with source='extracts'")
        start, end = self._interval(context)
        dry_run = _as_bool(self.validate_only)
        dead_letter_base = self._dead_letter_base(context)
        dead_letters = DeadLetterWriter(dead_letter_base, conn_id=self.extract_conn_id)
        checkpoints = self._checkpoints(context, dead_letter_base)

        summary: dict[str, Any] = {
            "interval_start": start.isoformat(),
            "dry_run": dry_run,
            "dead_letter_uri": str(dead_letter_base),
            "record_types": {},
        }
        for record_type in record_types:
            counts, mode = self._run_record_type(
                record_type, targets[record_type], start, end, dry_run, dead_letters, checkpoints
            )
            summary["record_types"][record_type] = {
                **counts.as_dict(),
                "mode": mode,
                "dataset_id": targets[record_type].get("dataset_id"),
            }
        duration = time.time() - started
        totals = [summary["record_types"][rt] for rt in record_types]
        read = sum(t["read"] for t in totals)
        summary.update(
            read=read,
            accepted=sum(t["accepted"] for t in totals),
            dead_lettered=sum(t["rejected"] for t in totals),
            duration_seconds=round(duration, 3),
            records_per_second=round(read / duration, 1) if duration > 0 else None,
        )
        self._emit_asset_event(context, summary)
        self._check_rejects(context, summary)
        return summary

    def _run_record_type(
        self,
        record_type: str,
        target: Mapping[str, str],
        start: datetime,
        end: datetime,
        dry_run: bool,
        dead_letters: Any,
        checkpoints: CheckpointStore,
    ) -> tuple[RecordTypeCounts, str]:
        from airflow_provider_capillary.ingestion.pipeline import RecordTypeCounts, RecordTypePipeline
        from airflow_provider_capillary.xdm.mapping import Mapper

        resume = checkpoints.load(record_type)
        if resume and resume.get("done"):
            self.log.info("%s: already completed by an earlier try; nothing to do", record_type)
            return RecordTypeCounts.from_dict(resume["counts"]), str(resume.get("mode", "stream"))
        dataset_id, schema_id = target["dataset_id"], target["schema_id"]
        sizes = self._file_sizes(record_type, start)
        mode = "dry_run" if dry_run else self._mode(record_type, sizes)
        validator = self._validator(schema_id)
        mapper = Mapper(record_type, self._mapping_options(), validator=validator)
        position = tuple(resume["position"]) if resume and resume.get("position") else None
        if position and mode == "stream":
            self.log.info(
                "%s: resuming after %s line %s (checkpoint); re-reading the rows before it without sending them",
                record_type,
                *position,
            )
        chunks = self._chunks(record_type, start, end)

        def progress(counts: RecordTypeCounts) -> None:
            elapsed = max(time.time() - begun, 1e-9)
            self.log.info(
                "%s: %d read, %d accepted, %d dead-lettered, %d retried, %.0f records/s%s",
                record_type,
                counts.read,
                counts.accepted,
                counts.rejected,
                counts.retried,
                counts.read / elapsed,
                _eta(sizes, pipeline.current_file, elapsed),
            )

        begun = time.time()
        pipeline = RecordTypePipeline(
            record_type,
            mapper,
            chunks,
            mode=mode,  # type: ignore[arg-type]
            dead_letters=dead_letters,
            checkpoints=checkpoints,
            sender_factory=lambda: self._sender(target),
            batch_factory=lambda: self._batch(dataset_id),
            progress=progress,
            progress_interval=self.progress_interval,
            resume=resume if mode == "stream" else None,
        )
        try:
            counts = pipeline.run()
        finally:
            mapper.close()
        progress(counts)
        if not counts.balanced:
            raise AirflowException(f"{record_type}: the counts do not add up: {counts.as_dict()}")
        return counts, mode

    # ------------------------------------------------------------------ pieces

    def _interval(self, context: Context) -> tuple[datetime, datetime]:
        start = _as_datetime(self.interval_start) or context.get("data_interval_start")
        if start is None:
            raise AirflowFailException(
                "This run has no data interval (a manual or asset-triggered run): pass interval_start"
            )
        end = _as_datetime(self.interval_end) or context.get("data_interval_end")
        if end is None or end <= start:
            end = start + timedelta(days=1)
        return start, end

    def _mode(self, record_type: str, sizes: Mapping[str, int]) -> str:
        """The mode to use: ``mode`` unless ``auto``, which picks by the partition's size (its files' ``sizes``)."""
        if self.mode != "auto":
            return self.mode
        if self.source != "extracts":
            return "stream"
        size = sum(sizes.values())
        mode = "batch" if size > self.auto_batch_bytes else "stream"
        self.log.info("%s: %d files, %d bytes: %s mode", record_type, len(sizes), size, mode)
        return mode

    def _file_sizes(self, record_type: str, start: datetime) -> dict[str, int]:
        """Size of each part file of the partition, in reading order (empty for the API source)."""
        if self.source != "extracts":
            return {}
        from airflow_provider_capillary.extracts.layout import DEFAULT_PATH_TEMPLATE, partition_files

        files = partition_files(
            self._extract_root(), record_type, start, path_template=self.path_template or DEFAULT_PATH_TEMPLATE
        )
        return {str(path): path.stat().st_size for path in files}

    def _extract_root(self) -> ObjectStoragePath:
        return ObjectStoragePath(str(self.extract_uri), conn_id=self.extract_conn_id)

    def _chunks(self, record_type: str, start: datetime, end: datetime) -> Iterable[ExtractChunk]:
        if self.source == "extracts":
            from airflow_provider_capillary.extracts.layout import DEFAULT_PATH_TEMPLATE
            from airflow_provider_capillary.extracts.readers import read_partition

            return read_partition(
                self._extract_root(),
                record_type,
                start,
                path_template=self.path_template or DEFAULT_PATH_TEMPLATE,
                chunk_size=self.chunk_size,
            )
        from airflow_provider_capillary.hooks.capillary import CapillaryHook
        from airflow_provider_capillary.ingestion.pipeline import api_chunks

        records = CapillaryHook(self.capillary_conn_id).iter_records(record_type, start, end)
        return api_chunks(f"capillary-api:{record_type}", records, chunk_size=self.chunk_size)

    def _validator(self, schema_id: str) -> Any:
        from airflow_provider_capillary.xdm.validation import compile_validator

        return compile_validator(self.hook.get_schema(schema_id, full=True))

    def _mapping_options(self) -> Any:
        from airflow_provider_capillary.xdm.identity import IdentityNamespaces
        from airflow_provider_capillary.xdm.mapping import MappingOptions

        options = dict(_as_mapping(self.mapping_options or {}, "mapping_options"))
        namespace = options.pop("identity_namespace", None)
        if namespace:
            options["identity_namespaces"] = IdentityNamespaces(customer=namespace)
        if "hash_identities" in options:
            options["hash_identities"] = _as_bool(options["hash_identities"])
        return MappingOptions(tenant_id=self.hook.get_tenant_id(), **options)

    def _sender(self, target: Mapping[str, str]) -> Any:
        from airflow_provider_capillary.ingestion.sender import StreamingSender

        if not self.inlet:
            raise ValueError("inlet (the streaming connection's inlet URL) is required in stream mode")
        return StreamingSender(
            self.hook,
            inlet=self.inlet,
            dataset_id=target["dataset_id"],
            schema_id=target["schema_id"],
            flow_id=target["flow_id"],
            org_id=self.hook.settings.org_id,
            concurrency=self.concurrency,
            max_records_per_second=_as_rate(self.max_records_per_second),
            max_requests_per_second=_as_rate(self.max_requests_per_second),
        )

    def _batch(self, dataset_id: str) -> Any:
        from airflow_provider_capillary.ingestion.batch import BatchIngestor

        return BatchIngestor(self.hook, dataset_id=dataset_id)

    def _dead_letter_base(self, context: Context) -> ObjectStoragePath:
        base = self.dead_letter_uri or (
            f"{str(self.extract_uri).rstrip('/')}/_dead_letters" if self.extract_uri else None
        )
        if not base:
            raise ValueError("dead_letter_uri is required when there is no extract_uri")
        ti = context["ti"]
        map_index = ti.map_index if ti.map_index is not None else -1
        parts = [ti.dag_id, ti.run_id, ti.task_id] + ([str(map_index)] if map_index >= 0 else [])
        path = ObjectStoragePath(base, conn_id=self.extract_conn_id)
        for part in parts:
            path = path / _safe(part)
        return path

    def _checkpoints(self, context: Context, dead_letter_base: ObjectStoragePath) -> CheckpointStore:
        """Airflow's task state store (3.3+) when the run has one, else a JSON file beside the dead letters."""
        from airflow_provider_capillary.ingestion.pipeline import CheckpointStore

        store = context.get("task_state_store")
        if store is not None:
            return CheckpointStore(store.get, store.set)
        folder = dead_letter_base / "_checkpoints"

        def read(key: str) -> Any:
            path = folder / f"{_safe(key)}.json"
            return json.loads(path.read_text()) if path.exists() else None

        def write(key: str, value: Any) -> None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{_safe(key)}.json").write_text(json.dumps(value))

        return CheckpointStore(read, write)

    def _emit_asset_event(self, context: Context, summary: Mapping[str, Any]) -> None:
        extra = {
            "interval_start": summary["interval_start"],
            "dry_run": summary["dry_run"],
            "datasets": {
                counts["dataset_id"]: {"record_type": rt, "accepted": counts["accepted"]}
                for rt, counts in summary["record_types"].items()
            },
        }
        events = context.get("outlet_events")
        if events is None:
            return
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                events[outlet].extra = extra

    def _check_rejects(self, context: Context, summary: Mapping[str, Any]) -> None:
        limit = float(self.max_reject_ratio)
        over = {
            rt: counts
            for rt, counts in summary["record_types"].items()
            if (counts["read"] and (counts["rejected"] + counts["file_errors"]) / counts["read"] > limit)
            or (counts["file_errors"] and not counts["read"])
        }
        if not over:
            return
        context["ti"].xcom_push(key="summary", value=dict(summary))
        reasons = "; ".join(
            f"{rt}: {c['rejected']} of {c['read']} rows dead-lettered ({c['dead_lettered']}), "
            f"{c['file_errors']} file errors"
            for rt, c in over.items()
        )
        raise AirflowFailException(
            f"More than {limit:.1%} of the rows were rejected ({reasons}); everything valid was sent. "
            f"Dead letters: {summary['dead_letter_uri']}"
        )

    def on_kill(self) -> None:
        self.log.info("Killed: the next try resumes after the last acknowledged chunk")


def _eta(sizes: Mapping[str, int], current_file: str | None, elapsed: float) -> str:
    """``, file i/n, ETA m:ss`` from the bytes of the files already read (files are read in order)."""
    if current_file is None or current_file not in sizes:
        return ""
    files = list(sizes)
    index = files.index(current_file)
    done = sum(sizes[f] for f in files[:index])
    if not done:
        return f", file {index + 1}/{len(files)}"
    seconds = int(elapsed * (sum(sizes.values()) - done) / done)
    return f", file {index + 1}/{len(files)}, ETA {seconds // 60}:{seconds % 60:02d}"


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]", "_", part)


def _as_list(value: str | Sequence[str]) -> list[str]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return [str(v) for v in json.loads(text.replace("'", '"'))]
        return [v.strip() for v in text.split(",") if v.strip()]
    return [str(v) for v in value]


def _as_mapping(value: Any, name: str) -> Mapping[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a mapping, got {type(value).__name__}")
    return value


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "y")
    return bool(value)


def _as_rate(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    rate = float(value)
    return rate if rate > 0 else None


def _as_datetime(value: Any) -> datetime | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value
    parsed = pendulum.parse(str(value), tz="UTC")
    if not isinstance(parsed, datetime):
        raise ValueError(f"not a date or datetime: {value!r}")
    return parsed
