"""One record type's run: source rows → XDM mapping and validation → AEP (streaming or batch), with dead letters,
checkpoints and counts that always add up.

:class:`RecordTypePipeline` is the loop under :class:`~airflow_provider_capillary.operators.capillary_to_aep.
CapillaryToAEPOperator`, kept free of Airflow task code so it can be driven and tested on its own.

Counting: every row read ends in exactly one bucket, so for each record type

    read == accepted + dead_lettered + duplicates + superseded        (in a dry run: validated for accepted)

``read`` counts records, including the ones an extract reader could not parse (they are dead letters);
file-level extract errors (an empty file, a truncated gzip) concern no single record: they are dead-lettered
and counted in ``file_errors``.

Checkpoints: for time-series record types (events, transactions), after every chunk AEP fully answered, the
pipeline writes its dead letters and then saves ``{position, next chunk, counts}``; a retried task resumes
after the last saved chunk, so at most the chunks in flight are sent again (harmless: ``_id``s are
deterministic). To resume, the source is read again from its start and the chunks up to the saved position are
*replayed*: mapped, so that the mapper knows every ``_id`` (and content) the earlier tries accepted — a row
repeated across the checkpoint is still a duplicate, a conflicting one still ``duplicate_id_conflict`` — but
neither sent, counted nor dead-lettered again. Profiles are held until the end of the extract so that the latest
version wins; their run restarts from the beginning on a retry (re-sending a profile is an idempotent upsert).

Garbage collection: mapping allocates millions of short-lived, acyclic containers, and in a worker (Airflow
imported) every collection the allocation counts trigger walks a large heap: measured, about 30 % of the engine's
CPU. While a pipeline runs, the collector is therefore run on a schedule instead (:class:`ScheduledCollector`).
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_capillary.extracts.records import SourceRow
from airflow_provider_capillary.ingestion.dead_letters import (
    DeadLetterLine,
    DeadLetterWriter,
    line_from_extract_error,
    line_from_mapping,
    line_from_rejection,
)
from airflow_provider_capillary.ingestion.sender import (
    ChunkResult,
    OutgoingRecord,
    StreamingIngestionError,
    StreamingSender,
)
from airflow_provider_capillary.xdm.record_types.base import Behavior

if TYPE_CHECKING:
    from airflow_provider_capillary.extracts.records import ExtractChunk
    from airflow_provider_capillary.ingestion.batch import BatchIngestor
    from airflow_provider_capillary.xdm.mapping import MappedRecord, Mapper

Mode = Literal["stream", "batch", "dry_run"]


@dataclass
class RecordTypeCounts:
    """What happened to one record type's rows (a JSON-friendly part of the run summary)."""

    read: int = 0
    mapped: int = 0
    sent: int = 0
    accepted: int = 0
    validated: int = 0
    duplicates: int = 0
    superseded: int = 0
    retried: int = 0
    file_errors: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        """Rows dead-lettered, for any reason."""
        return sum(self.dead_lettered.values())

    @property
    def balanced(self) -> bool:
        """Whether every row read is accounted for exactly once."""
        landed = self.accepted + self.validated
        return self.read == landed + self.rejected + self.duplicates + self.superseded

    def add_dead(self, reasons: Iterable[str]) -> None:
        counter = Counter(self.dead_lettered)
        counter.update(reasons)
        self.dead_lettered = dict(counter)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rejected": self.rejected, "balanced": self.balanced}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordTypeCounts:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class CheckpointStore:
    """Where a run keeps its per-record-type progress across task retries (Airflow's task state store, or a file).

    :param read: Reads a JSON value by key (``None`` when absent).
    :param write: Writes a JSON value by key.
    """

    def __init__(self, read: Callable[[str], Any], write: Callable[[str, Any], None]) -> None:
        self._get = read
        self._set = write

    def load(self, record_type: str) -> dict[str, Any] | None:
        value = self._get(f"capillary_to_aep:{record_type}")
        return dict(value) if isinstance(value, Mapping) else None

    def save(self, record_type: str, value: dict[str, Any]) -> None:
        self._set(f"capillary_to_aep:{record_type}", value)


@dataclass
class _Pending:
    """What a chunk adds to the counts, applied only once the chunk is settled (so checkpoints stay exact)."""

    position: tuple[str, int] | None
    dead: list[DeadLetterLine]
    dead_reasons: list[str]
    read: int = 0
    mapped: int = 0
    duplicates: int = 0
    superseded: int = 0
    file_errors: int = 0


class ScheduledCollector:
    """Run Python's cyclic garbage collector every ``interval`` seconds instead of on allocation counts.

    On entry the objects that exist (Airflow, the providers, their modules) are frozen, so the scheduled
    collections only walk what the run itself allocated, and automatic collection is disabled; reference counting
    still frees every acyclic object at once. On exit both are undone. Process-wide: meant for the one pipeline a
    task runs at a time.

    :param interval: Seconds between collections. Default 30.
    """

    def __init__(self, interval: float = 30.0) -> None:
        self.interval = interval
        self._enabled = False
        self._last = 0.0

    def __enter__(self) -> ScheduledCollector:
        self._enabled = gc.isenabled()
        gc.disable()
        gc.freeze()
        self._last = time.monotonic()
        return self

    def tick(self) -> None:
        """Collect if ``interval`` seconds have passed since the last collection."""
        now = time.monotonic()
        if now - self._last >= self.interval:
            gc.collect()
            self._last = time.monotonic()

    def __exit__(self, *exc_info: object) -> None:
        gc.unfreeze()
        if self._enabled:
            gc.enable()


class RecordTypePipeline:
    """Moves one record type's rows into one AEP dataset.

    :param record_type: The record type's name.
    :param mapper: The mapper (with the dataset's compiled validator) for this run.
    :param chunks: Source chunks: extract chunks, or API rows grouped by :func:`api_chunks`.
    :param mode: ``stream`` (DCS), ``batch`` (Batch Ingestion) or ``dry_run`` (map and validate, send nothing).
    :param dead_letters: Writer of this run's dead letters.
    :param checkpoints: Progress store; ``None`` disables checkpoints.
    :param sender_factory: Builds the :class:`StreamingSender` (``stream`` mode).
    :param batch_factory: Builds the :class:`BatchIngestor` (``batch`` mode).
    :param progress: Called with the counts every ``progress_interval`` seconds.
    :param progress_interval: Seconds between progress calls. Default 5.
    :param resume: A checkpoint loaded from ``checkpoints``; ``chunks`` must then start at the beginning of the
        source: the chunks up to the checkpoint's position are replayed (see the module docstring).
    :param collect_interval: Seconds between garbage collections while the run lasts (see
        :class:`ScheduledCollector`). Default 30.
    """

    def __init__(
        self,
        record_type: str,
        mapper: Mapper,
        chunks: Iterable[ExtractChunk],
        *,
        mode: Mode,
        dead_letters: DeadLetterWriter,
        checkpoints: CheckpointStore | None = None,
        sender_factory: Callable[[], StreamingSender] | None = None,
        batch_factory: Callable[[], BatchIngestor] | None = None,
        progress: Callable[[RecordTypeCounts], None] | None = None,
        progress_interval: float = 5.0,
        resume: Mapping[str, Any] | None = None,
        collect_interval: float = 30.0,
    ) -> None:
        self.record_type = record_type
        self.mapper = mapper
        self.chunks = chunks
        self.mode = mode
        self.dead_letters = dead_letters
        self.sender_factory = sender_factory
        self.batch_factory = batch_factory
        self.progress = progress
        self.progress_interval = progress_interval
        time_series = mapper.record_type.behavior is Behavior.TIME_SERIES
        # Profiles are held until the end of the extract: only a whole run can be checkpointed.
        self.checkpoints = checkpoints if (time_series and mode == "stream") else None
        self.counts = (
            RecordTypeCounts.from_dict((resume or {}).get("counts", {})) if self.checkpoints else (RecordTypeCounts())
        )
        self.next_chunk = int((resume or {}).get("next_chunk", 0)) if self.checkpoints else 0
        position = (resume or {}).get("position") if self.checkpoints else None
        self._replay_until: tuple[str, int] | None = (str(position[0]), int(position[1])) if position else None
        self._collector = ScheduledCollector(collect_interval)
        self._pending: dict[int, _Pending] = {}
        self._last_progress = time.monotonic()
        #: The source file being read (for progress reports).
        self.current_file: str | None = None

    # ------------------------------------------------------------------ the loop

    def run(self) -> RecordTypeCounts:
        """Process every chunk; returns the counts. Raises (after settling what was in flight) when AEP could not
        take records, so the task is retried from the last checkpoint."""
        with self._collector:
            return self._run()

    def _run(self) -> RecordTypeCounts:
        if self.mode == "stream":
            assert self.sender_factory is not None
            with self.sender_factory() as sender:
                try:
                    for number, records in self._mapped_chunks():
                        sender.submit(number, [_outgoing(m) for m in records])
                        for result in sender.completed():
                            self._acknowledge(result)
                        self._maybe_progress()
                    for result in sender.close():
                        self._acknowledge(result)
                except StreamingIngestionError as exc:
                    for result in exc.completed:
                        self._acknowledge(result)
                    raise
        elif self.mode == "batch":
            assert self.batch_factory is not None
            with self.batch_factory() as batch:
                for number, records in self._mapped_chunks():
                    batch.add(_outgoing(m) for m in records)
                    self.counts.sent += len(records)
                    self._settle(number, ChunkResult(number, len(records)))
                    self._maybe_progress()
                outcome = batch.finish()
            failed = int(outcome.batch.get("failedRecordCount") or 0)
            self.counts.accepted += outcome.records - failed
            if failed:
                self.counts.add_dead(["aep_batch_rejected"] * failed)
                self.dead_letters.write(
                    self.record_type,
                    self.next_chunk,
                    [_batch_failure_line(outcome.batch_id, failed, outcome.batch.get("errors"))],
                )
        else:
            for number, records in self._mapped_chunks():
                self.counts.validated += len(records)
                self._settle(number, ChunkResult(number, 0))
                self._maybe_progress()
        if self.checkpoints is not None:
            self.checkpoints.save(self.record_type, {"done": True, "counts": self.counts.as_dict()})
        return self.counts

    def _mapped_chunks(self) -> Iterator[tuple[int, list[MappedRecord]]]:
        """Map every source chunk (then what the mapper held back); remember each chunk's dead letters."""
        replay_until = self._replay_until
        for chunk in self.chunks:
            self.current_file = chunk.file
            self._collector.tick()
            if replay_until is not None:
                self.mapper.map_chunk(chunk.rows)
                if chunk.position == replay_until:
                    replay_until = None
                continue
            row_errors = [e for e in chunk.errors if not e.file_level]
            mapped = self.mapper.map_chunk(chunk.rows)
            number = self.next_chunk
            self.next_chunk += 1
            self._pending[number] = _Pending(
                chunk.position,
                [line_from_extract_error(e) for e in chunk.errors]
                + [line_from_mapping(d) for d in mapped.dead_letters],
                [e.code for e in row_errors] + [d.reason for d in mapped.dead_letters],
                read=len(chunk.rows) + len(row_errors),
                mapped=len(mapped.records),
                duplicates=mapped.duplicates,
                superseded=mapped.superseded,
                file_errors=len(chunk.errors) - len(row_errors),
            )
            yield number, mapped.records
        if replay_until is not None:
            raise ValueError(
                f"cannot resume {self.record_type}: the checkpoint's position {replay_until} is not in the source "
                "any more (the extract changed since the earlier try)"
            )
        for records in self.mapper.finish():
            number = self.next_chunk
            self.next_chunk += 1
            self._pending[number] = _Pending(None, [], [], mapped=len(records))
            yield number, records

    def _acknowledge(self, result: ChunkResult) -> None:
        self.counts.sent += result.submitted
        self.counts.accepted += result.accepted
        self.counts.retried += result.retried
        self.counts.add_dead(r.reason for r in result.rejected)
        self._settle(result.chunk, result)

    def _settle(self, number: int, result: ChunkResult) -> None:
        """A chunk is final: write its dead letters, count it, then checkpoint after it."""
        pending = self._pending.pop(number)
        lines = pending.dead + [line_from_rejection(r) for r in result.rejected]
        self.dead_letters.write(self.record_type, number, lines)
        self.counts.add_dead(pending.dead_reasons)
        self.counts.read += pending.read
        self.counts.mapped += pending.mapped
        self.counts.duplicates += pending.duplicates
        self.counts.superseded += pending.superseded
        self.counts.file_errors += pending.file_errors
        if self.checkpoints is not None and pending.position is not None:
            self.checkpoints.save(
                self.record_type,
                {"position": list(pending.position), "next_chunk": number + 1, "counts": self.counts.as_dict()},
            )

    def _maybe_progress(self) -> None:
        now = time.monotonic()
        if self.progress is not None and now - self._last_progress >= self.progress_interval:
            self._last_progress = now
            self.progress(self.counts)


def _outgoing(record: MappedRecord) -> OutgoingRecord:
    return OutgoingRecord(record.id, record.body, record.row)


def _batch_failure_line(batch_id: str | None, failed: int, errors: Any) -> DeadLetterLine:
    return {
        "reason": "aep_batch_rejected",
        "field": None,
        "value": None,
        "detail": f"{failed} records of batch {batch_id} failed in AEP; see the batch's errors",
        "row": {"file": None, "line": None, "values": None, "raw": None},
        "record_id": None,
        "payload": errors,
        "aep_error": None,
    }


def api_chunks(source: str, records: Iterable[Mapping[str, Any]], *, chunk_size: int) -> Iterator[ExtractChunk]:
    """Group API records into chunks shaped like extract chunks; record ``n`` (1-based) is "line" ``n`` of
    ``source``, so a chunk's position says how many records it ends after."""
    from airflow_provider_capillary.extracts.records import ExtractChunk

    rows: list[SourceRow] = []
    index = 0
    line = 0
    for line, values in enumerate(records, start=1):
        rows.append(SourceRow(dict(values), source, line))
        if len(rows) >= chunk_size:
            yield ExtractChunk(source, index, rows, [], line)
            index += 1
            rows = []
    if rows or index == 0:
        yield ExtractChunk(source, index, rows, [], line, final=True)
