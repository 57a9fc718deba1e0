"""The emulator's in-memory store: what the emulated AEP org holds, per sandbox, readable by tests."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Standard identity namespaces every org has (Identity namespace overview); ids as AEP assigns them.
STANDARD_NAMESPACES: tuple[tuple[int, str, str, str], ...] = (
    (411, "AdCloud", "AdCloud", "Cookie"),
    (10, "AAID", "Adobe Analytics (Legacy ID)", "Cookie"),
    (20919, "IDFA", "Apple IDFA (ID for Apps)", "Device"),
    (20920, "APNS", "Apple Push Notification service", "Device"),
    (4, "ECID", "ECID", "Cookie"),
    (6, "Email", "Email", "Email"),
    (11, "Email_LC_SHA256", "Emails (SHA256, lowercased)", "Email"),
    (20914, "FCM", "Firebase Cloud Messaging", "Device"),
    (20915, "GAID", "Google Ad ID (GAID)", "Device"),
    (7, "Phone", "Phone", "Phone"),
    (16, "PHONE_E.164", "Phone (E.164)", "Phone"),
    (15, "Phone_SHA256", "Phone (SHA256)", "Phone"),
    (17, "Phone_SHA256_E.164", "Phone (SHA256_E.164)", "Phone"),
    (9, "TNTID", "TNTID", "Cookie"),
    (20916, "WAID", "Windows AID", "Device"),
)


def now_ms() -> int:
    """Current time as epoch milliseconds (the unit of every AEP timestamp)."""
    return int(time.time() * 1000)


def new_id(kind: str) -> str:
    """
    A fresh identifier in the format AEP uses for ``kind``.

    :param kind: ``dataset`` (24 hex), ``batch`` (26 upper-case chars), ``inlet`` (64 hex),
        ``hash`` (schema/field group hash) or anything else (a UUID-like string).
    """
    if kind == "dataset":
        return secrets.token_hex(12)
    if kind == "batch":
        return "01" + secrets.token_hex(12).upper()
    if kind == "inlet":
        return secrets.token_hex(32)
    if kind == "hash":
        return secrets.token_hex(24)
    raw = secrets.token_hex(16)
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


@dataclass
class PendingLanding:
    """Records accepted (or failed) in one request, waiting for ``landing_delay`` to land in a batch."""

    received: float
    accepted: int
    failed: int
    errors: list[dict[str, Any]]


@dataclass
class DatasetRecords:
    """
    The records ingested into one dataset (streaming and batch), stored as compact JSON.

    ``records`` maps each ``_id`` to the latest record sent with it (a re-sent ``_id`` counts in
    ``duplicates``, not as a new record); records without ``_id`` are kept in ``anonymous``;
    ``received`` counts every accepted message, duplicates included.
    """

    records: dict[str, bytes] = field(default_factory=dict)
    received: int = 0
    anonymous: list[bytes] = field(default_factory=list)
    duplicates: int = 0
    failed: list[tuple[bytes, str]] = field(default_factory=list)
    pending: list[PendingLanding] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        """Number of distinct records accepted."""
        return len(self.records) + len(self.anonymous)

    def ids(self) -> list[str]:
        """The ``_id`` of every accepted record, in first-accepted order."""
        return list(self.records)

    def entities(self) -> Iterator[dict[str, Any]]:
        """Every accepted record, decoded."""
        for raw in self.records.values():
            yield orjson.loads(raw)
        for raw in self.anonymous:
            yield orjson.loads(raw)

    def add(self, record_id: Any, raw: bytes) -> None:
        """
        Store one accepted record.

        :param record_id: the record's ``_id`` (``None`` when it has none).
        :param raw: the record as JSON bytes.
        """
        self.received += 1
        if record_id is None:
            self.anonymous.append(raw)
            return
        key = str(record_id)
        if key in self.records:
            self.duplicates += 1
        self.records[key] = raw


@dataclass
class SandboxState:
    """Everything one sandbox holds. Dicts are keyed by the resource's id (``$id``, ``@id`` or ``id``)."""

    name: str
    sandbox_id: str = field(default_factory=lambda: new_id("uuid"))
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    fieldgroups: dict[str, dict[str, Any]] = field(default_factory=dict)
    descriptors: dict[str, dict[str, Any]] = field(default_factory=dict)
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    source_connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    target_connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)
    ingested: dict[str, DatasetRecords] = field(default_factory=dict)
    #: Batch Ingestion uploads: batch id -> file path -> bytes (chunks kept by start offset until COMPLETE).
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    chunks: dict[str, dict[str, dict[int, bytes]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.namespaces:
            created = now_ms()
            self.namespaces = [
                {
                    "id": ns_id,
                    "code": code,
                    "name": name,
                    "idType": id_type,
                    "custom": False,
                    "status": "ACTIVE",
                    "description": name,
                    "createTime": created,
                    "updateTime": created,
                }
                for ns_id, code, name, id_type in STANDARD_NAMESPACES
            ]

    def records(self, dataset_id: str) -> DatasetRecords:
        """
        The ingestion store of one dataset (created empty on first use).

        :param dataset_id: the Catalog dataset id.
        """
        store = self.ingested.get(dataset_id)
        if store is None:
            store = self.ingested[dataset_id] = DatasetRecords()
        return store


class EmulatorState:
    """
    The whole emulated org: one :class:`SandboxState` per sandbox plus the issued tokens and inlets.

    Handlers run on the emulator's event-loop thread; tests read from theirs. Hold :attr:`lock` to
    read a consistent view while requests may be in flight.

    :param sandboxes: names of the sandboxes that exist.
    """

    def __init__(self, sandboxes: tuple[str, ...]) -> None:
        self.lock = threading.RLock()
        self.sandbox_names = sandboxes
        self.sandboxes: dict[str, SandboxState] = {name: SandboxState(name) for name in sandboxes}
        #: access token -> expiry (``time.monotonic()``); never logged or journaled.
        self.tokens: dict[str, float] = {}
        #: inlet id -> (sandbox name, base connection id).
        self.inlets: dict[str, tuple[str, str]] = {}
        #: platform, DCS and IMS requests served (control API calls excluded).
        self.request_count = 0

    def __getitem__(self, sandbox: str) -> SandboxState:
        return self.sandboxes[sandbox]

    def reset(self) -> None:
        """Forget everything: resources, records, tokens and inlets."""
        with self.lock:
            self.sandboxes = {name: SandboxState(name) for name in self.sandbox_names}
            self.tokens.clear()
            self.inlets.clear()
            self.request_count = 0

    def find_dataset(self, dataset_id: str) -> tuple[SandboxState, dict[str, Any]] | None:
        """
        Find a dataset in any sandbox.

        :param dataset_id: the Catalog dataset id.
        """
        for sandbox in self.sandboxes.values():
            if dataset_id in sandbox.datasets:
                return sandbox, sandbox.datasets[dataset_id]
        return None

    def dataset_records(self, dataset_id: str) -> DatasetRecords:
        """
        The records ingested into a dataset of any sandbox (empty when nothing arrived).

        :param dataset_id: the Catalog dataset id.
        """
        with self.lock:
            found = self.find_dataset(dataset_id)
            if found is None:
                return DatasetRecords()
            return found[0].records(dataset_id)

    def accepted_ids(self, dataset_id: str) -> list[str]:
        """
        The ``_id``s accepted into a dataset.

        :param dataset_id: the Catalog dataset id.
        """
        with self.lock:
            return self.dataset_records(dataset_id).ids()

    def stats(self) -> dict[str, Any]:
        """Counts per sandbox and dataset: accepted, duplicates, failed records and batches."""
        with self.lock:
            result: dict[str, Any] = {"requests": self.request_count, "sandboxes": {}}
            for name, sandbox in self.sandboxes.items():
                datasets = {}
                for dataset_id, dataset in sandbox.datasets.items():
                    store = sandbox.records(dataset_id)
                    datasets[dataset_id] = {
                        "name": dataset.get("name"),
                        "accepted": store.accepted,
                        "received": store.received,
                        "duplicates": store.duplicates,
                        "failed": len(store.failed),
                        "batches": sum(
                            1
                            for batch in sandbox.batches.values()
                            if any(obj.get("id") == dataset_id for obj in batch.get("relatedObjects", []))
                        ),
                    }
                result["sandboxes"][name] = {
                    "schemas": len(sandbox.schemas),
                    "fieldgroups": len(sandbox.fieldgroups),
                    "descriptors": len(sandbox.descriptors),
                    "datasets": datasets,
                    "connections": len(sandbox.connections),
                    "flows": len(sandbox.flows),
                }
            return result
