"""Dead letters: every row that did not reach AEP, with why, as JSON Lines under an object-storage URL.

Files are deterministic: one part file per record type and acknowledged chunk,
``{base}/{record_type}/part-{chunk:06d}.jsonl``, written whole in one go. A retried task that re-processes a chunk
overwrites its file instead of adding a second copy (and removes it when the chunk no longer has dead letters).

Each line is one :class:`DeadLetterLine`::

    {"reason": "aep_rejected", "field": null, "value": null, "detail": "...",
     "row": {"file": "s3://.../part-0000.csv", "line": 17, "values": {...}, "raw": null},
     "record_id": "...", "payload": {...} | null, "aep_error": {"status": 400, "message": "..."} | null}

Builders turn the three sources of dead letters into lines: :func:`line_from_mapping` (the XDM mapper's
``DeadLetter``), :func:`line_from_rejection` (a :class:`~.sender.Rejection` whose ``origin`` is the source row)
and :func:`line_from_extract_error` (a reader's ``ExtractError``). Lines hold data and AEP's messages only, never
connection settings, headers or tokens.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypedDict

import orjson
from airflow.sdk import ObjectStoragePath

from airflow_provider_capillary.ingestion.sender import AEP_REJECTED
from airflow_provider_capillary.xdm.values import orjson_safe

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow_provider_capillary.extracts.records import ExtractError
    from airflow_provider_capillary.ingestion.sender import Rejection
    from airflow_provider_capillary.xdm.mapping import DeadLetter

_LOCAL_PROTOCOLS = frozenset({"", "file", "local"})


class SourceRowRef(TypedDict):
    """Where a dead letter came from.

    :param file: The extract file's URL, if known.
    :param line: The 1-based line (or Parquet row) in that file, if known.
    :param values: The original column values, if the row was read.
    :param raw: The offending text when the row could not be read (extract errors), else ``None``.
    """

    file: str | None
    line: int | None
    values: Any
    raw: str | None


class AEPErrorRef(TypedDict):
    """AEP's per-message error.

    :param status: The ``statusCode`` of the message in the 207 response.
    :param message: AEP's message.
    """

    status: int | None
    message: str


class DeadLetterLine(TypedDict):
    """One line of a dead-letter file.

    :param reason: Stable reason code (the mapper's codes, an extract error code, ``record_too_large`` or
        ``aep_rejected``).
    :param field: The column or JSON Pointer to blame, if any.
    :param value: The offending value, if one is to blame.
    :param detail: Human-readable explanation.
    :param row: The source row.
    :param record_id: The mapped entity's ``_id``, when there is one.
    :param payload: The mapped entity, when there is one.
    :param aep_error: AEP's error when AEP refused the record, else ``None``.
    """

    reason: str
    field: str | None
    value: Any
    detail: str
    row: SourceRowRef
    record_id: str | None
    payload: Any
    aep_error: AEPErrorRef | None


def _row_ref(origin: Any) -> SourceRowRef:
    """The source row of an origin with ``values``/``file``/``line`` attributes (a ``SourceRow``) or keys."""
    if isinstance(origin, Mapping) and "values" in origin:
        return {"file": origin.get("file"), "line": origin.get("line"), "values": origin.get("values"), "raw": None}
    values = getattr(origin, "values", None)
    if values is not None and not callable(values):
        file, line = getattr(origin, "file", None), getattr(origin, "line", None)
        return {"file": file, "line": line, "values": values, "raw": None}
    return {"file": None, "line": None, "values": origin, "raw": None}


def line_from_mapping(dead_letter: DeadLetter) -> DeadLetterLine:
    """A dead-letter line for a row the XDM mapper could not map or validate."""
    payload = dead_letter.payload
    record_id = payload.get("_id") if isinstance(payload, Mapping) else None
    return {
        "reason": dead_letter.reason,
        "field": dead_letter.field,
        "value": dead_letter.value,
        "detail": dead_letter.detail,
        "row": {"file": dead_letter.file, "line": dead_letter.line, "values": dict(dead_letter.row), "raw": None},
        "record_id": str(record_id) if record_id is not None else None,
        "payload": payload,
        "aep_error": None,
    }


def line_from_rejection(rejection: Rejection) -> DeadLetterLine:
    """A dead-letter line for a record the sender rejected; its ``origin`` should be the source row.

    The payload is embedded as the already serialised entity (not parsed again).
    """
    record = rejection.record
    from_aep = rejection.status is not None or rejection.reason == AEP_REJECTED
    aep_error: AEPErrorRef | None = {"status": rejection.status, "message": rejection.message} if from_aep else None
    return {
        "reason": rejection.reason,
        "field": None,
        "value": None,
        "detail": rejection.message,
        "row": _row_ref(record.origin),
        "record_id": record.record_id,
        "payload": orjson.Fragment(record.entity_json),
        "aep_error": aep_error,
    }


def line_from_extract_error(error: ExtractError) -> DeadLetterLine:
    """A dead-letter line for a record (or file) an extract reader could not read."""
    return {
        "reason": str(error.code),
        "field": None,
        "value": None,
        "detail": error.detail,
        "row": {"file": error.file, "line": error.line, "values": None, "raw": error.raw},
        "record_id": None,
        "payload": None,
        "aep_error": None,
    }


def _default(value: Any) -> Any:
    """JSON for what orjson does not serialise itself (Decimals from Parquet, bytes, sets, others as text)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def serialise_line(line: DeadLetterLine) -> bytes:
    """One dead-letter line as compact JSON plus a newline.

    Values orjson cannot write (a row nested deeper than 255 levels, an integer beyond 64 bits) are kept as
    :func:`~airflow_provider_capillary.xdm.values.orjson_safe` renders them, so bad input never stops the writer.
    """
    option = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
    try:
        return orjson.dumps(line, default=_default, option=option)
    except orjson.JSONEncodeError:
        return orjson.dumps(orjson_safe(line), default=_default, option=option)


class DeadLetterWriter:
    """Writes dead letters as deterministic JSON Lines part files under a base URL (any object store).

    :param base: Base URL or path (``s3://bucket/prefix``, ``file:///...``, ``memory://...``), or an
        :class:`ObjectStoragePath`; typically run-scoped (``.../dag/run/task``).
    :param conn_id: Airflow connection for the object store, when ``base`` is a URL that needs one.
    """

    def __init__(self, base: str | ObjectStoragePath, *, conn_id: str | None = None) -> None:
        self.base = base if isinstance(base, ObjectStoragePath) else ObjectStoragePath(base, conn_id=conn_id)
        #: Lines written by this writer (a rewritten chunk counts again).
        self.written = 0

    def path_for(self, record_type: str, chunk: int) -> ObjectStoragePath:
        """The part file of one chunk: ``{base}/{record_type}/part-{chunk:06d}.jsonl``."""
        if not record_type or "/" in record_type or record_type in (".", ".."):
            raise ValueError(f"record_type must be a plain name, got {record_type!r}")
        if chunk < 0:
            raise ValueError(f"chunk must be 0 or more, got {chunk}")
        return self.base / record_type / f"part-{chunk:06d}.jsonl"

    def write(self, record_type: str, chunk: int, lines: Iterable[DeadLetterLine]) -> ObjectStoragePath | None:
        """Write (or replace) a chunk's part file; return it, or ``None`` when the chunk has no dead letters.

        With no lines, a part file left by an earlier attempt is removed, so the store always matches the last
        attempt.
        """
        path = self.path_for(record_type, chunk)
        iterator = iter(lines)
        first = next(iterator, None)
        if first is None:
            if path.exists():
                path.unlink()
            return None
        if path.protocol in _LOCAL_PROTOCOLS:
            path.parent.mkdir(parents=True, exist_ok=True)
        count = 0
        with path.open("wb") as handle:
            for line in itertools.chain((first,), iterator):
                handle.write(serialise_line(line))
                count += 1
        self.written += count
        return path
