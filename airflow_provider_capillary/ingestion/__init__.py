"""The ingestion engine under the streaming operator: records in, AEP (streaming or batch) and dead letters out.

Pure library code over :class:`~airflow_provider_capillary.hooks.aep.AEPHook`; no Airflow operator logic.

- :mod:`.envelopes` — :class:`EnvelopeTemplate`: the DCS envelope of one dataset serialised once, so a request
  body is one ``bytes.join`` over the entities' JSON.
- :mod:`.packing` — :func:`pack`: records, in order, into request bodies of at most ``max_request_bytes``
  (default 1,000,000: the smaller reading of AEP's "1 MB"); a record that cannot fit is ``record_too_large``.
- :mod:`.rate_limit` — :class:`RateLimiter`: records/s and requests/s token buckets (defaults: DCS's 10,000
  messages/s and 1000 requests/s guidance; ``None`` = unlimited), halving on 429 and recovering over time.
- :mod:`.sender` — :class:`StreamingSender`: concurrent multi-message streaming with per-message retries of
  transient failures, rejections carrying AEP's status and message, and chunk acknowledgements in order. A
  mapped record becomes ``OutgoingRecord(mapped.id, mapped.body, mapped.row)``::

      with StreamingSender(hook, inlet=..., dataset_id=..., schema_id=..., flow_id=..., org_id=...) as sender:
          for number, records in enumerate(chunks):       # records: Sequence[OutgoingRecord]
              sender.submit(number, records)              # blocks while too much is in flight
              for result in sender.completed():           # ChunkResult, in chunk order, never blocks
                  checkpoint(result)
          for result in sender.close():                   # waits; raises StreamingIngestionError on
              checkpoint(result)                          # undeliverable records (nothing is dropped)

- :mod:`.batch` — :class:`BatchIngestor`: the records of a run as bounded JSON Lines files in one Batch
  Ingestion batch per dataset, completed and polled to ``success`` or a :class:`BatchIngestionError`.
- :mod:`.dead_letters` — :class:`DeadLetterWriter`: one deterministic JSON Lines part file per chunk under an
  object-storage URL, so a retried task overwrites instead of duplicating; :func:`line_from_mapping`,
  :func:`line_from_rejection` and :func:`line_from_extract_error` build its lines.
"""

from __future__ import annotations

from airflow_provider_capillary.ingestion.batch import BatchIngestionError, BatchIngestor, BatchResult
from airflow_provider_capillary.ingestion.dead_letters import (
    DeadLetterLine,
    DeadLetterWriter,
    line_from_extract_error,
    line_from_mapping,
    line_from_rejection,
)
from airflow_provider_capillary.ingestion.envelopes import EnvelopeTemplate
from airflow_provider_capillary.ingestion.packing import DEFAULT_MAX_REQUEST_BYTES, RECORD_TOO_LARGE, PackPlan, pack
from airflow_provider_capillary.ingestion.rate_limit import RateLimiter, TokenBucket
from airflow_provider_capillary.ingestion.sender import (
    AEP_REJECTED,
    ChunkResult,
    OutgoingRecord,
    Rejection,
    SenderStats,
    StreamingIngestionError,
    StreamingSender,
)

__all__ = [
    "AEP_REJECTED",
    "DEFAULT_MAX_REQUEST_BYTES",
    "RECORD_TOO_LARGE",
    "BatchIngestionError",
    "BatchIngestor",
    "BatchResult",
    "ChunkResult",
    "DeadLetterLine",
    "DeadLetterWriter",
    "EnvelopeTemplate",
    "OutgoingRecord",
    "PackPlan",
    "RateLimiter",
    "Rejection",
    "SenderStats",
    "StreamingIngestionError",
    "StreamingSender",
    "TokenBucket",
    "line_from_extract_error",
    "line_from_mapping",
    "line_from_rejection",
    "pack",
]
