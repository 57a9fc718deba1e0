"""Concurrent streaming of XDM records to a DCS inlet, with per-message retries and chunk acknowledgements.

Flow of one chunk: :meth:`StreamingSender.submit` packs its records, in order, into multi-message requests of at
most ``max_request_bytes`` (:mod:`~airflow_provider_capillary.ingestion.packing`); a record too large for any
request is rejected at once (``record_too_large``). Requests never mix chunks, so chunks of at least a request's
worth of records (about a thousand typical loyalty events) give full requests. ``concurrency`` worker threads
send the requests over the hook's pooled session, each first taking its share of the :class:`RateLimiter`. DCS
answers 207 with one result per message in request order (``reference/aep-api.md`` §6.4):

- ``xactionId`` → accepted;
- ``statusCode`` 429, 500, 502, 503 or 504 → transient: once every request of the chunk has answered, the
  chunk's transient failures are re-packed and re-sent after a jittered exponential backoff, for at most
  ``max_message_retries`` rounds (a 429 also slows the limiter down);
- any other ``statusCode`` → a :class:`Rejection` with reason ``aep_rejected``, AEP's status and message.

A chunk is *complete* once every record is accepted or rejected; :meth:`StreamingSender.completed` hands out
complete chunks strictly in submission (= chunk number) order, so a caller may checkpoint after each.

A request DCS refuses as too large (413: the platform's "1 MB" is smaller than ``max_request_bytes``) is split
in two and each half sent again; a single message refused so is rejected as ``record_too_large`` (status 413).

Whole-request failures (the hook retried 429/5xx/timeouts and gave up, or AEP refused the request itself) and
records still failing transiently after the last round never become rejections: nothing is dropped. The chunk
is marked failed and never reported complete; the other chunks settle, then :meth:`StreamingSender.close` (or
the next :meth:`StreamingSender.submit`) raises :class:`StreamingIngestionError`, which carries the chunks that
completed before the failure so the caller can still checkpoint them. Airflow then retries the task from the
last checkpoint; deterministic ``_id``s make the replay harmless.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_provider_capillary.exceptions import AEPError
from airflow_provider_capillary.hooks._retry import RETRYABLE_STATUSES
from airflow_provider_capillary.ingestion.envelopes import EnvelopeTemplate
from airflow_provider_capillary.ingestion.packing import DEFAULT_MAX_REQUEST_BYTES, RECORD_TOO_LARGE, pack
from airflow_provider_capillary.ingestion.rate_limit import RateLimiter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from types import TracebackType

    from airflow_provider_capillary.hooks.aep import AEPHook

log = logging.getLogger(__name__)

#: Reason code of a message AEP refused with a permanent ``statusCode`` in a 207 response.
AEP_REJECTED = "aep_rejected"
#: Per-message ``statusCode``s of a 207 that are worth re-sending.
TRANSIENT_STATUSES = RETRYABLE_STATUSES


class OutgoingRecord(NamedTuple):
    """One validated record ready to stream.

    :param record_id: The entity's ``_id`` (for logs and dead letters).
    :param entity_json: The ``xdmEntity`` serialised as compact UTF-8 JSON (e.g. ``orjson.dumps``).
    :param origin: Anything the caller wants back with a rejection (e.g. the source row); never inspected.
    """

    record_id: str
    entity_json: bytes
    origin: Any = None


class Rejection(NamedTuple):
    """A record that will not be ingested, and why.

    :param record: The record.
    :param reason: ``record_too_large`` (never sent) or ``aep_rejected`` (AEP refused the message).
    :param status: AEP's per-message ``statusCode``, or ``None`` when it was never sent.
    :param message: AEP's message, or what was wrong.
    """

    record: OutgoingRecord
    reason: str
    status: int | None
    message: str


@dataclass
class ChunkResult:
    """What became of one submitted chunk; ``accepted + len(rejected) == submitted``.

    :param chunk: The chunk number given to :meth:`StreamingSender.submit`.
    :param submitted: Records submitted.
    :param accepted: Records AEP accepted.
    :param rejected: Records AEP (or the size limit) refused.
    :param retried: Messages of this chunk re-sent after a transient per-message failure.
    """

    chunk: int
    submitted: int
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    retried: int = 0


@dataclass
class SenderStats:
    """Running totals of a :class:`StreamingSender` (read them any time; updated under the sender's lock).

    :param requests: Multi-message requests made (the hook's internal retries of one request not counted).
    :param records_sent: Messages posted, re-sends included.
    :param accepted: Messages accepted.
    :param rejected: Records rejected (``aep_rejected`` and ``record_too_large``).
    :param retried: Messages re-sent after a transient per-message failure.
    :param throttled: 429s seen: whole requests the hook retried and per-message statuses.
    :param failed_requests: Requests that failed as a whole after the hook's retries.
    :param chunks_completed: Chunks complete (accepted + rejected == submitted).

    The records/s the limiter allows now is :attr:`StreamingSender.current_rate`.
    """

    requests: int = 0
    records_sent: int = 0
    accepted: int = 0
    rejected: int = 0
    retried: int = 0
    throttled: int = 0
    failed_requests: int = 0
    chunks_completed: int = 0


class StreamingIngestionError(AEPError):
    """Records could not be delivered (nothing was dropped): retry the task from the last checkpoint.

    :param message: What failed.
    :param failed_chunks: Numbers of the chunks that did not complete because of the failure.
    :param completed: Chunks that completed before the failure and were not yet handed out, in chunk order.
    """

    def __init__(
        self, message: str, *, failed_chunks: Sequence[int], completed: Sequence[ChunkResult], **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.failed_chunks = list(failed_chunks)
        self.completed = list(completed)


class _Chunk:
    __slots__ = ("error", "outstanding", "pending_retry", "result", "round", "size")

    def __init__(self, number: int, submitted: int, size: int) -> None:
        self.result = ChunkResult(number, submitted)
        self.size = size
        self.outstanding = 0
        self.round = 0
        self.pending_retry: list[tuple[OutgoingRecord, int, str]] = []
        self.error: str | None = None

    @property
    def settled(self) -> bool:
        return self.outstanding == 0


class _Request(NamedTuple):
    chunk: _Chunk
    records: list[OutgoingRecord]


class StreamingSender:
    """Streams XDM records to one dataset through a DCS inlet; use it as a context manager.

    :param hook: The AEP hook; its pooled session carries every request (give it ``pool_size >= concurrency``).
        While the sender is open, the hook's ``on_retry`` also feeds the rate limiter (the original callback is
        still called, and restored on close).
    :param inlet: Inlet id or inlet URL of the HTTP API streaming connection.
    :param dataset_id: Target dataset.
    :param schema_id: The dataset's schema ``$id``.
    :param flow_id: The dataflow id.
    :param org_id: The IMS org id (``header.imsOrgId``).
    :param concurrency: Worker threads sending requests in parallel. Default 4.
    :param max_request_bytes: Largest request body. Default 1,000,000 (see :mod:`.packing`).
    :param max_records_per_second: Client-side records/s limit; ``None`` for none. Default 10,000 (DCS guidance).
    :param max_requests_per_second: Client-side requests/s limit; ``None`` for none. Default 1,000 (DCS guidance).
    :param max_message_retries: Rounds of re-sending transient per-message failures of a chunk. Default 5.
    :param source_name: ``header.source.name``. Default ``Capillary``.
    :param max_messages_per_request: Most messages per request; ``None`` (default) bounds by size only. Under a
        records limit a request never carries more than :attr:`RateLimiter.max_records_per_request` (2 % of the
        limit), so that requests fill the limiter's windows evenly.
    :param max_in_flight_bytes: :meth:`submit` blocks while submitted-but-unsettled entities hold this many
        bytes or more. Default ``4 * concurrency * max_request_bytes``.
    :param retry_backoff: Base delay in seconds before the first re-send round; doubles each round, with
        jitter. Default 0.5.
    :param retry_max_wait: Cap on the delay before a re-send round, in seconds. Default 30.
    :param rate_limiter: A ready-made limiter (overrides the two rate parameters); e.g. to share one between
        senders of the same inlet.
    """

    def __init__(
        self,
        hook: AEPHook,
        *,
        inlet: str,
        dataset_id: str,
        schema_id: str,
        flow_id: str,
        org_id: str,
        concurrency: int = 4,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_records_per_second: float | None = 10_000,
        max_requests_per_second: float | None = 1_000,
        max_message_retries: int = 5,
        source_name: str = "Capillary",
        max_messages_per_request: int | None = None,
        max_in_flight_bytes: int | None = None,
        retry_backoff: float = 0.5,
        retry_max_wait: float = 30.0,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if max_message_retries < 0:
            raise ValueError("max_message_retries must be 0 or more")
        self.hook = hook
        self.inlet = inlet
        self.dataset_id = dataset_id
        self.concurrency = concurrency
        self.max_request_bytes = max_request_bytes
        self.max_messages_per_request = max_messages_per_request
        self.max_message_retries = max_message_retries
        self.max_in_flight_bytes = max_in_flight_bytes or 4 * concurrency * max_request_bytes
        self.retry_backoff = retry_backoff
        self.retry_max_wait = retry_max_wait
        self.template = EnvelopeTemplate(
            schema_id=schema_id, dataset_id=dataset_id, flow_id=flow_id, org_id=org_id, source_name=source_name
        )
        # Fail fast on a request limit that cannot hold a message (before any thread starts).
        pack([], message_overhead=self.template.overhead, max_request_bytes=max_request_bytes)
        self.limiter = rate_limiter or RateLimiter(max_records_per_second, max_requests_per_second)
        cap = self.limiter.max_records_per_request
        if cap is not None:
            self.max_messages_per_request = min(max_messages_per_request or cap, cap)
        self.stats = SenderStats()
        self._cv = threading.Condition()
        self._queue: list[tuple[float, int, _Request]] = []
        self._sequence = itertools.count()
        self._chunks: deque[_Chunk] = deque()
        self._last_chunk: int | None = None
        self._in_flight_bytes = 0
        self._errors: list[AEPError] = []
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._closed = False
        self._random = random.Random()
        self._hook_on_retry: Callable[[int | None], None] | None = None

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> StreamingSender:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _start(self) -> None:
        if self._threads:
            return
        if self.concurrency > self.hook.pool_size:
            log.warning(
                "concurrency %d exceeds the hook's pool_size %d: extra connections are not kept alive",
                self.concurrency,
                self.hook.pool_size,
            )
        # Resolve the connection, session and token once, on the caller's thread, before the workers share them.
        self.hook.get_access_token()
        _ = self.hook.session
        self._hook_on_retry = self.hook.on_retry
        self.hook.on_retry = self._on_hook_retry
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._work, name=f"aep-sender-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _stop_workers(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        if self.hook.on_retry == self._on_hook_retry:
            self.hook.on_retry = self._hook_on_retry

    def abort(self) -> None:
        """Stop at once (e.g. from ``on_kill``): drop queued requests, wait only for those being sent.

        Chunks not complete by then are never reported; a :meth:`close` waiting in another thread raises.
        """
        with self._cv:
            self._queue.clear()
            self._closed = True
            self._stopping = True
            self._cv.notify_all()
        self._stop_workers()

    def close(self) -> list[ChunkResult]:
        """Wait until every chunk has settled; return the complete chunks not yet handed out, in order.

        :raises StreamingIngestionError: if records could not be delivered (after everything else settled).
        """
        with self._cv:
            self._closed = True
            while not self._stopping and not all(chunk.settled for chunk in self._chunks):
                self._cv.wait()
        self._stop_workers()
        results = self._drain()
        self._raise_if_failed(results)
        return results

    # ------------------------------------------------------------------ caller API

    def submit(self, chunk: int, records: Sequence[OutgoingRecord]) -> None:
        """Queue one chunk of records; block while too much is in flight.

        :param chunk: The chunk's number; each must be greater than the previous one.
        :param records: The chunk's records, in order.
        :raises StreamingIngestionError: if an earlier chunk failed (raised once in-flight work has settled).
        """
        with self._cv:
            if self._closed:
                raise RuntimeError("the sender is closed")
            if self._last_chunk is not None and chunk <= self._last_chunk:
                raise ValueError(f"chunk numbers must increase: got {chunk} after {self._last_chunk}")
            while self._in_flight_bytes >= self.max_in_flight_bytes and not self._errors and not self._stopping:
                self._cv.wait()
            if self._stopping:
                raise RuntimeError("the sender was aborted")
            failed = bool(self._errors)
        if failed:
            self.close()  # raises StreamingIngestionError
        self._start()
        sizes = [len(record.entity_json) for record in records]
        plan = pack(
            sizes,
            message_overhead=self.template.overhead,
            max_request_bytes=self.max_request_bytes,
            max_messages=self.max_messages_per_request,
        )
        state = _Chunk(chunk, len(records), sum(sizes))
        for index in plan.too_large:
            size = self.template.request_size([sizes[index]])
            state.result.rejected.append(
                Rejection(
                    records[index],
                    RECORD_TOO_LARGE,
                    None,
                    f"record {records[index].record_id!r} makes a {size} byte request, over the "
                    f"{self.max_request_bytes} byte limit",
                )
            )
        with self._cv:
            self._last_chunk = chunk
            self._chunks.append(state)
            self._in_flight_bytes += state.size
            self.stats.rejected += len(plan.too_large)
            self._enqueue(state, [[records[i] for i in request] for request in plan.requests], 0.0)
            self._settle_if_done(state)

    def completed(self) -> Iterator[ChunkResult]:
        """The chunks completed since the last call, in chunk order; never blocks.

        A chunk is handed out once, only after every earlier chunk was; nothing after a failed chunk is.
        """
        return iter(self._drain())

    # ------------------------------------------------------------------ internals

    def _drain(self) -> list[ChunkResult]:
        results: list[ChunkResult] = []
        with self._cv:
            while self._chunks and self._chunks[0].settled and self._chunks[0].error is None:
                results.append(self._chunks.popleft().result)
        return results

    def _raise_if_failed(self, completed: list[ChunkResult]) -> None:
        with self._cv:
            failed = [chunk for chunk in self._chunks if chunk.error is not None]
            errors = list(self._errors)
            unsettled = [chunk.result.chunk for chunk in self._chunks if not chunk.settled]
        if unsettled and not failed:
            raise StreamingIngestionError(
                f"Streaming to dataset {self.dataset_id} was aborted before chunk(s) {unsettled} were acknowledged",
                failed_chunks=unsettled,
                completed=completed,
            )
        if not failed and not errors:
            return
        first = errors[0] if errors else None
        numbers = [chunk.result.chunk for chunk in failed]
        unacknowledged = sum(chunk.result.submitted for chunk in self._chunks)
        reason = failed[0].error if failed else str(first)
        raise StreamingIngestionError(
            f"Streaming to dataset {self.dataset_id} failed for chunk(s) {numbers}; {unacknowledged} record(s) "
            f"of {len(self._chunks)} chunk(s) not acknowledged, nothing dropped (retry the task): {reason}",
            failed_chunks=numbers,
            completed=completed,
            status=first.status if first else None,
            request_id=first.request_id if first else None,
        )

    def _enqueue(self, chunk: _Chunk, requests: list[list[OutgoingRecord]], delay: float) -> None:
        """Queue requests of a chunk (caller holds the lock)."""
        ready_at = time.monotonic() + delay
        for records in requests:
            chunk.outstanding += 1
            heapq.heappush(self._queue, (ready_at, next(self._sequence), _Request(chunk, records)))
        self._cv.notify_all()

    def _settle_if_done(self, chunk: _Chunk) -> None:
        """Count a chunk that has nothing outstanding as done (caller holds the lock)."""
        if chunk.outstanding:
            return
        self._in_flight_bytes -= chunk.size
        if chunk.error is None:
            self.stats.chunks_completed += 1
        self._cv.notify_all()

    def _next_request(self) -> _Request | None:
        with self._cv:
            while not self._stopping:
                if not self._queue:
                    self._cv.wait()
                    continue
                delay = self._queue[0][0] - time.monotonic()
                if delay <= 0:
                    return heapq.heappop(self._queue)[2]
                self._cv.wait(delay)
            return None

    def _work(self) -> None:
        while (request := self._next_request()) is not None:
            try:
                self._send(request)
            except AEPError as exc:
                if exc.status == 413:
                    self._split_too_large(request, exc)
                else:
                    self._request_failed(request, exc)
            except Exception as exc:  # a failed request must settle its chunk, whatever went wrong
                self._request_failed(request, AEPError(f"Streaming a request failed: {exc!r}"))

    def _send(self, request: _Request) -> None:
        records = request.records
        self.limiter.acquire(len(records))
        body = self.template.request_body([record.entity_json for record in records])
        with self._cv:
            self.stats.requests += 1
            self.stats.records_sent += len(records)
        results = self.hook.send_messages(self.inlet, body)
        if len(results) != len(records):
            raise AEPError(f"DCS answered {len(results)} results for a request of {len(records)} messages")
        accepted = 0
        rejected: list[Rejection] = []
        transient: list[tuple[OutgoingRecord, int, str]] = []
        for record, result in zip(records, results, strict=True):
            if not isinstance(result, dict):
                raise AEPError(f"DCS answered a result that is not an object: {str(result)[:200]}")
            if "xactionId" in result:
                accepted += 1
                continue
            status = result.get("statusCode")
            status = int(status) if isinstance(status, int | str) and str(status).isdigit() else None
            message = str(result.get("message") or "no message")
            if status in TRANSIENT_STATUSES:
                transient.append((record, status, message))
                if status == 429:
                    self.limiter.on_throttled(429)
            else:
                rejected.append(Rejection(record, AEP_REJECTED, status, message))
        self._record_results(request.chunk, accepted, rejected, transient)

    def _record_results(
        self,
        chunk: _Chunk,
        accepted: int,
        rejected: list[Rejection],
        transient: list[tuple[OutgoingRecord, int, str]],
    ) -> None:
        with self._cv:
            result = chunk.result
            result.accepted += accepted
            result.rejected.extend(rejected)
            self.stats.accepted += accepted
            self.stats.rejected += len(rejected)
            self.stats.throttled += sum(1 for _, status, _ in transient if status == 429)
            chunk.pending_retry.extend(transient)
            chunk.outstanding -= 1
            if chunk.outstanding == 0 and chunk.pending_retry and chunk.error is None:
                self._retry_round(chunk)
            self._settle_if_done(chunk)

    def _retry_round(self, chunk: _Chunk) -> None:
        """Re-pack and re-queue a chunk's transient failures, or fail the chunk (caller holds the lock)."""
        pending, chunk.pending_retry = chunk.pending_retry, []
        if chunk.round >= self.max_message_retries:
            _, status, message = pending[-1]
            chunk.error = (
                f"{len(pending)} message(s) still failed transiently after {chunk.round} re-send round(s); "
                f"last: {status} {message}"
            )
            return
        chunk.round += 1
        records = [record for record, _, _ in pending]
        chunk.result.retried += len(records)
        self.stats.retried += len(records)
        plan = pack(
            [len(record.entity_json) for record in records],
            message_overhead=self.template.overhead,
            max_request_bytes=self.max_request_bytes,
            max_messages=self.max_messages_per_request,
        )
        ceiling = min(self.retry_max_wait, self.retry_backoff * 2 ** (chunk.round - 1))
        delay = self._random.uniform(ceiling / 2, ceiling)
        log.info(
            "Chunk %d: re-sending %d message(s) that failed transiently (round %d of %d) in %.2f s",
            chunk.result.chunk,
            len(records),
            chunk.round,
            self.max_message_retries,
            delay,
        )
        self._enqueue(chunk, [[records[i] for i in request] for request in plan.requests], delay)

    def _split_too_large(self, request: _Request, error: AEPError) -> None:
        """DCS answered 413 (its "1 MB" is less than ``max_request_bytes``): send each half on its own.

        A single message that is still too large is rejected as ``record_too_large`` with AEP's status and detail.
        """
        chunk, records = request.chunk, request.records
        with self._cv:
            if len(records) > 1:
                half = len(records) // 2
                log.warning("Chunk %d: DCS refused %d messages as too large; split", chunk.result.chunk, len(records))
                self._enqueue(chunk, [records[:half], records[half:]], 0.0)
            else:
                detail = error.detail or str(error)
                chunk.result.rejected.append(Rejection(records[0], RECORD_TOO_LARGE, 413, detail))
                self.stats.rejected += 1
            chunk.outstanding -= 1
            self._settle_if_done(chunk)

    def _request_failed(self, request: _Request, error: AEPError) -> None:
        chunk = request.chunk
        log.error("Chunk %d: a request of %d message(s) failed: %s", chunk.result.chunk, len(request.records), error)
        with self._cv:
            self.stats.failed_requests += 1
            self._errors.append(error)
            if chunk.error is None:
                chunk.error = str(error)
            chunk.outstanding -= 1
            self._settle_if_done(chunk)

    def _on_hook_retry(self, status: int | None) -> None:
        if status == 429:
            with self._cv:
                self.stats.throttled += 1
        self.limiter.on_throttled(status)
        if self._hook_on_retry is not None:
            self._hook_on_retry(status)

    @property
    def current_rate(self) -> float | None:
        """Records per second the limiter allows now (``None`` when records are not limited)."""
        return self.limiter.records_per_second
