"""The run's de-duplication index: 16-byte key digest → fixed-size value, in bounded memory.

A :class:`~airflow_provider_capillary.xdm.mapping.Mapper` remembers every ``_id`` (time-series) or natural
key (records) it accepted in a run, so that a repeated row is recognised however far apart the two rows are.
Kept in a Python ``dict`` that costs about 145 bytes per key (≈ 725 MB for 5 million events), so the index
has two tiers:

- **recent** — a ``dict`` of the last ``memory_keys`` new keys (default 65,536: about 9.5 MB);
- **disk** — when ``recent`` is full it is sorted and merged, streaming, into one sorted file of fixed-size
  records (16-byte key + value: 24 bytes per key for an 8-byte value) in a temporary file. Memory keeps only
  a fence (the first key of every 256-record block: 8 bytes per 256 keys) and a Bloom filter of fixed size
  (2^26 bits = 8 MB, three probes: ~0.8 % false positives at 5 million keys), which answers "certainly not
  on disk" for almost every new key without touching the file.

So memory stays at about 18 MB whatever the number of keys (≈ 24 bytes per key go to disk, read back
through the operating system's page cache, which is not process memory). Lookups are exact: a Bloom hit is
confirmed by reading the one block the fence points to and comparing the whole 16-byte key. Merging
rewrites the file once per ``memory_keys`` new keys (about 1.6 MB per million keys on disk, written
``keys / memory_keys`` times).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import IO

import numpy as np

#: Length in bytes of an index key (a 128-bit digest).
KEY_SIZE = 16
#: Records per block of the disk tier (the granularity of the fence).
_BLOCK_RECORDS = 256
#: Records merged per step when the recent tier is written to disk.
_MERGE_RECORDS = 65_536
_BLOOM_BITS = 26
_BLOOM_MASK = (1 << _BLOOM_BITS) - 1


class DigestIndex:
    """A set of 16-byte keys, each with a value of ``value_size`` bytes, held mostly on disk.

    :param value_size: Size in bytes of every value.
    :param spill_dir: Directory of the temporary file of the disk tier. Default: the system temporary
        directory.
    :param memory_keys: Number of new keys held in memory before they are merged into the disk tier.
        Default 65,536.
    """

    def __init__(self, value_size: int, *, spill_dir: str | None = None, memory_keys: int = 65_536) -> None:
        if value_size <= 0 or memory_keys <= 0:
            raise ValueError("value_size and memory_keys must be positive")
        self.value_size = value_size
        self.memory_keys = memory_keys
        self._spill_dir = spill_dir
        self._record_size = KEY_SIZE + value_size
        self._dtype = np.dtype([("hi", ">u8"), ("lo", ">u8"), ("value", f"V{value_size}")])
        self._recent: dict[bytes, bytes] = {}
        self._file: IO[bytes] | None = None
        self._on_disk = 0
        self._fence = np.empty(0, dtype=np.uint64)
        self._bloom: np.ndarray | None = None
        self._bloom_view: memoryview | None = None

    def __len__(self) -> int:
        return len(self._recent) + self._on_disk

    def get(self, key: bytes) -> bytes | None:
        """Return the value of a key, or ``None`` if it is not in the index.

        :param key: A 16-byte key.
        """
        value = self._recent.get(key)
        if value is None and self._on_disk:
            found = self._find_on_disk(key)
            if found is not None:
                return found[1]
        return value

    def add(self, key: bytes, value: bytes) -> None:
        """Add a key known not to be in the index (the caller has just looked it up).

        :param key: A 16-byte key.
        :param value: Its value (``value_size`` bytes).
        """
        recent = self._recent
        recent[key] = value
        if len(recent) >= self.memory_keys:
            self._merge_recent()

    def replace(self, key: bytes, value: bytes) -> None:
        """Change the value of a key that is in the index.

        :param key: A 16-byte key already in the index.
        :param value: Its new value (``value_size`` bytes).
        :raises KeyError: If the key is not in the index.
        """
        if key in self._recent:
            self._recent[key] = value
            return
        found = self._find_on_disk(key) if self._on_disk else None
        if found is None or self._file is None:
            raise KeyError(key)
        os.pwrite(self._file.fileno(), value, found[0] + KEY_SIZE)

    def values(self) -> Iterator[bytes]:
        """Yield every value (disk tier in key order, then the recent tier)."""
        if self._file is not None:
            for block in self._blocks(self._file, _MERGE_RECORDS):
                raw = block.tobytes()
                size = self._record_size
                for offset in range(KEY_SIZE, len(raw), size):
                    yield raw[offset : offset + self.value_size]
        yield from self._recent.values()

    def close(self) -> None:
        """Delete the disk tier's file and forget every key."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._recent = {}
        self._on_disk = 0
        self._fence = np.empty(0, dtype=np.uint64)
        self._bloom = self._bloom_view = None

    # ------------------------------------------------------------------ disk tier

    def _bloom_positions(self, key: bytes) -> tuple[int, int, int]:
        number = int.from_bytes(key, "big")
        return number & _BLOOM_MASK, (number >> 32) & _BLOOM_MASK, (number >> 64) & _BLOOM_MASK

    def _find_on_disk(self, key: bytes) -> tuple[int, bytes] | None:
        """Return ``(file offset of the record, value)`` for a key on disk, or ``None``."""
        bloom = self._bloom_view
        if bloom is None or self._file is None:
            return None
        for position in self._bloom_positions(key):
            if not bloom[position >> 3] & (1 << (position & 7)):
                return None
        hi = int.from_bytes(key[:8], "big")
        fence = self._fence
        block = max(int(np.searchsorted(fence, np.uint64(hi), side="left")) - 1, 0)
        size = self._record_size
        fd = self._file.fileno()
        while block < len(fence) and (block == 0 or int(fence[block]) <= hi):
            first = block * _BLOCK_RECORDS
            count = min(_BLOCK_RECORDS, self._on_disk - first)
            raw = os.pread(fd, count * size, first * size)
            start = 0
            while (at := raw.find(key, start)) >= 0:
                if at % size == 0:
                    offset = first * size + at
                    return offset, raw[at + KEY_SIZE : at + size]
                start = at + 1
            if int.from_bytes(raw[-size : -size + 8], "big") > hi:
                return None
            block += 1
        return None

    def _blocks(self, handle: IO[bytes], records: int) -> Iterator[np.ndarray]:
        size = self._record_size
        fd = handle.fileno()
        for first in range(0, self._on_disk, records):
            count = min(records, self._on_disk - first)
            yield np.frombuffer(os.pread(fd, count * size, first * size), dtype=self._dtype)

    def _merge_recent(self) -> None:
        """Sort the recent tier and merge it into the disk tier (streaming, in bounded memory)."""
        recent = self._recent
        if not recent:
            return
        new = np.frombuffer(b"".join([key + value for key, value in recent.items()]), dtype=self._dtype)
        new = new[np.argsort(new["hi"], kind="stable")]
        if self._bloom is None:
            self._bloom = np.zeros(1 << (_BLOOM_BITS - 3), dtype=np.uint8)
            self._bloom_view = memoryview(self._bloom)
        hi = new["hi"].astype(np.uint64)
        lo = new["lo"].astype(np.uint64)
        mask = np.uint64(_BLOOM_MASK)
        for positions in (lo & mask, (lo >> np.uint64(32)) & mask, hi & mask):
            np.bitwise_or.at(self._bloom, positions >> np.uint64(3), (1 << (positions & np.uint64(7))).astype(np.uint8))
        # The merged file outlives this call: close() (or the next merge) closes and so deletes it.
        target = tempfile.TemporaryFile(dir=self._spill_dir)  # noqa: SIM115
        fences: list[np.ndarray] = []
        written = 0
        taken = 0
        old = self._file
        blocks = list(range(0, self._on_disk, _MERGE_RECORDS))
        for number, block in enumerate(self._blocks(old, _MERGE_RECORDS) if old is not None else ()):
            last = number == len(blocks) - 1
            until = len(new) if last else int(np.searchsorted(hi, np.uint64(block["hi"][-1]), side="right"))
            part = new[taken:until]
            merged = np.insert(block, np.searchsorted(block["hi"], part["hi"], side="right"), part)
            taken = until
            fences.append(merged["hi"][(-written) % _BLOCK_RECORDS :: _BLOCK_RECORDS].astype(np.uint64))
            target.write(merged.tobytes())
            written += len(merged)
        if taken < len(new):
            rest = new[taken:]
            fences.append(rest["hi"][(-written) % _BLOCK_RECORDS :: _BLOCK_RECORDS].astype(np.uint64))
            target.write(rest.tobytes())
            written += len(rest)
        target.flush()
        if old is not None:
            old.close()
        self._file = target
        self._on_disk = written
        self._fence = np.concatenate(fences)
        self._recent = {}
