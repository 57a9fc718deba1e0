"""Batch mode: the records of a run as JSON Lines files in one Batch Ingestion batch per dataset.

Files hold only the ``xdmEntity`` objects, one per line, no envelope (``reference/aep-api.md`` §8, §11). Records
are streamed into a temporary file on disk, never held in memory; when the next line would take the file over
``max_file_bytes`` the file is uploaded (``PUT``, or the hook's chunked upload above 256 MB) and a new one is
started. :meth:`BatchIngestor.finish` uploads the last file, completes the batch and polls Catalog until the
batch is ``success`` (or ``active``) or fails; a failed batch raises :class:`BatchIngestionError` with AEP's
errors.

The batch is created when the first file is uploaded, so a run with no records creates no batch.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_capillary.exceptions import AEPError
from airflow_provider_capillary.hooks.aep import SINGLE_PUT_LIMIT

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType

    from airflow_provider_capillary.hooks.aep import AEPHook
    from airflow_provider_capillary.ingestion.sender import OutgoingRecord

log = logging.getLogger(__name__)

#: Default size bound of one file: the largest file AEP takes in a single PUT (bigger ones need chunked uploads).
DEFAULT_MAX_FILE_BYTES = SINGLE_PUT_LIMIT
#: Catalog batch statuses meaning the data landed.
SUCCESS_STATUSES = frozenset({"success", "active"})
#: Catalog batch statuses meaning it never will.
FAILED_STATUSES = frozenset({"failed", "aborted", "inactive", "deleted", "failure"})
_REPORTED_ERRORS = 5


class BatchIngestionError(AEPError):
    """A Batch Ingestion batch failed (or did not finish in time); carries the batch id and AEP's errors.

    :param message: What failed.
    :param batch_id: The batch.
    :param errors: The batch's ``errors`` entries (``code``, ``description``, ``rows``) as Catalog gave them.
    """

    def __init__(self, message: str, *, batch_id: str, errors: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.batch_id = batch_id
        self.errors = errors


@dataclass
class BatchResult:
    """The outcome of :meth:`BatchIngestor.finish`.

    :param batch_id: The batch, or ``None`` when there were no records (no batch was created).
    :param status: Catalog's final status (``success``/``active``), or ``empty``.
    :param files: Names of the uploaded files, in order.
    :param records: Records written.
    :param bytes: Bytes uploaded.
    :param batch: Catalog's batch record at the end.
    """

    batch_id: str | None
    status: str
    files: list[str] = field(default_factory=list)
    records: int = 0
    bytes: int = 0
    batch: dict[str, Any] = field(default_factory=dict)


class BatchIngestor:
    """Writes one dataset's records into one Batch Ingestion batch; use it as a context manager.

    :param hook: The AEP hook.
    :param dataset_id: The target dataset.
    :param max_file_bytes: Size bound of each JSON Lines file (a single record larger than this gets a file of
        its own). Default 256 MB, the single-PUT limit.
    :param file_prefix: File names are ``{file_prefix}-{n:05d}.json``. Default ``part``.
    :param poll_interval: Seconds between Catalog polls after completing the batch. Default 5.
    :param timeout: Seconds to wait for the batch to succeed or fail after completing it. Default 3600.
    :param temp_dir: Folder for the temporary file. Default: the system's temporary folder.
    :param sleep: Sleep function used while polling. Default :func:`time.sleep`.
    """

    def __init__(
        self,
        hook: AEPHook,
        *,
        dataset_id: str,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        file_prefix: str = "part",
        poll_interval: float = 5.0,
        timeout: float = 3600.0,
        temp_dir: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_file_bytes < 1:
            raise ValueError("max_file_bytes must be positive")
        self.hook = hook
        self.dataset_id = dataset_id
        self.max_file_bytes = max_file_bytes
        self.file_prefix = file_prefix
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.temp_dir = temp_dir
        self._sleep = sleep
        self.batch_id: str | None = None
        self.files: list[str] = []
        self.records = 0
        self.bytes = 0
        self._file: IO[bytes] | None = None
        self._file_bytes = 0
        self._finished = False

    def __enter__(self) -> BatchIngestor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._discard()

    def add(self, records: Iterable[OutgoingRecord]) -> None:
        """Append records (their ``entity_json``, one per line); uploads each file as it fills up."""
        if self._finished:
            raise RuntimeError("the batch is already finished")
        for record in records:
            line = record.entity_json
            size = len(line) + 1
            if self._file_bytes and self._file_bytes + size > self.max_file_bytes:
                self._upload()
            if self._file is None:
                self._file = tempfile.TemporaryFile(dir=self.temp_dir)  # noqa: SIM115 (closed in _upload)
            self._file.write(line)
            self._file.write(b"\n")
            self._file_bytes += size
            self.records += 1

    def finish(self) -> BatchResult:
        """Upload the last file, complete the batch and wait for it to succeed.

        :raises BatchIngestionError: if the batch fails or does not finish within ``timeout``.
        """
        if self._finished:
            raise RuntimeError("the batch is already finished")
        self._finished = True
        if self._file_bytes:
            self._upload()
        if self.batch_id is None:
            return BatchResult(None, "empty")
        self.hook.complete_batch(self.batch_id)
        batch = self._wait(self.batch_id)
        return BatchResult(self.batch_id, str(batch.get("status")), list(self.files), self.records, self.bytes, batch)

    def _upload(self) -> None:
        assert self._file is not None
        if self.batch_id is None:
            self.batch_id = self.hook.create_batch(self.dataset_id)
            log.info("Opened batch %s for dataset %s", self.batch_id, self.dataset_id)
        name = f"{self.file_prefix}-{len(self.files):05d}.json"
        self._file.seek(0)
        self.hook.upload_file(self.batch_id, self.dataset_id, name, self._file, size=self._file_bytes)
        log.info("Uploaded %s (%d bytes) to batch %s", name, self._file_bytes, self.batch_id)
        self.files.append(name)
        self.bytes += self._file_bytes
        self._discard()

    def _discard(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._file_bytes = 0

    def _wait(self, batch_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            batch = self.hook.get_batch(batch_id)
            status = str(batch.get("status", "")).lower()
            if status in SUCCESS_STATUSES:
                return batch
            if status in FAILED_STATUSES:
                errors = [dict(error) for error in batch.get("errors") or [] if isinstance(error, dict)]
                shown = "; ".join(
                    f"{error.get('code', '?')}: {error.get('description', '')}" for error in errors[:_REPORTED_ERRORS]
                )
                more = f" (and {len(errors) - _REPORTED_ERRORS} more)" if len(errors) > _REPORTED_ERRORS else ""
                raise BatchIngestionError(
                    f"Batch {batch_id} of dataset {self.dataset_id} is {status}: {shown or 'no errors reported'}{more}",
                    batch_id=batch_id,
                    errors=errors,
                )
            if time.monotonic() >= deadline:
                raise BatchIngestionError(
                    f"Batch {batch_id} of dataset {self.dataset_id} is still {status or 'unknown'} after "
                    f"{self.timeout:.0f} s",
                    batch_id=batch_id,
                    errors=[],
                )
            self._sleep(self.poll_interval)
