"""The run's de-duplication index: 16-byte key digest → fixed-size value, in bounded memory.

A :class:`~airflow_provider_capillary.xdm.mapping.Mapper` remembers every ``_id`` (time-series) or natural
key (records) it accepted in a run, so that a repeated row is recognised however far apart the two rows are.
Kept in a Python ``dict`` that costs about 145 bytes per key (≈ 725 MB for 5 million events), so the index
has two tiers:

- **recent** — a ``dict`` of the last ``memory_keys`` new keys (default 65,536: about 9.5 MB);
- **disk** — when ``recent`` is full it is sorted and written as a *run*: a temporary file of fixed-size
  records (16-byte key + value: 24 bytes per key for an 8-byte value) in key order. Runs are merged,
  streaming, whenever the newest is at least half the size of the one before it (as a binary counter
  carries), so there are at most about log2(keys / memory_keys) runs and each key is rewritten as many
  times. Memory keeps per run a fence (the first key of every 256-record block: 8 bytes per 256 keys) and,
  for all runs, one Bloom filter of fixed size (2^26 bits = 8 MB, three probes: ~0.8 % false positives at
  5 million keys), which answers "certainly not on disk" for almost every new key without touching a file.

So memory stays at about 20 MB whatever the number of keys; the ≈ 24 bytes per key on disk (up to twice
that while the two largest runs merge) are read back through the operating system's page cache, which is
not process memory. Lookups are exact: a Bloom hit is
confirmed by reading, in each run, the one block its fence points to and comparing the whole 16-byte key.
"""

from __future__ import annotations

import os
import tempfile
from typing import IO, TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

#: Length in bytes of an index key (a 128-bit digest).
KEY_SIZE = 16
#: Records per block of a run (the granularity of its fence).
_BLOCK_RECORDS = 256
#: Records read per step when runs are merged or listed (bounds the memory a merge needs: ~0.4 MB per side).
_MERGE_RECORDS = 16_384
_BLOOM_BITS = 26
_BLOOM_MASK = (1 << _BLOOM_BITS) - 1


class _Run(NamedTuple):
    """A sorted file of records: its handle, number of records and fence (first ``hi`` of every block)."""

    file: IO[bytes]
    records: int
    fence: np.ndarray


class DigestIndex:
    """A set of 16-byte keys, each with a value of ``value_size`` bytes, held mostly on disk.

    :param value_size: Size in bytes of every value.
    :param spill_dir: Directory of the temporary files of the disk tier. Default: the system temporary
        directory.
    :param memory_keys: Number of new keys held in memory before they are written to the disk tier.
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
        self._runs: list[_Run] = []
        self._on_disk = 0
        self._bloom: np.ndarray | None = None
        self._bloom_view: memoryview | None = None
        self._absent: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._recent) + self._on_disk

    def get(self, key: bytes) -> bytes | None:
        """Return the value of a key, or ``None`` if it is not in the index.

        :param key: A 16-byte key.
        """
        value = self._recent.get(key)
        if value is None and self._on_disk and key not in self._absent:
            found = self._find_on_disk(key)
            if found is not None:
                return found[2]
        return value

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Return :meth:`get` of each key (one pass over the recent tier, then the disk tier for the rest).

        :param keys: 16-byte keys.
        """
        values = list(map(self._recent.get, keys))
        if self._on_disk and None in values:
            absent, find = self._absent, self._find_on_disk
            for position in [position for position, value in enumerate(values) if value is None]:
                key = keys[position]
                if key not in absent and (found := find(key)) is not None:
                    values[position] = found[2]
        return values

    def prefetch(self, keys: Sequence[bytes]) -> None:
        """Look many keys up in the disk tier's Bloom filter at once (vectorised), ahead of their :meth:`get`.

        Until the next :meth:`prefetch` or the next time the recent tier is written to disk, :meth:`get` of a
        key the filter rules out skips its own check (one set look-up instead of three probes in Python:
        measured 0.5 µs per absent key less). Results do not change.

        :param keys: 16-byte keys about to be looked up.
        """
        bloom = self._bloom
        if bloom is None or not keys:
            self._absent = set()
            return
        halves = np.frombuffer(b"".join(keys), dtype=">u8").reshape(-1, 2)
        hi, lo = halves[:, 0].astype(np.uint64), halves[:, 1].astype(np.uint64)
        mask = np.uint64(_BLOOM_MASK)
        maybe = np.ones(len(keys), dtype=bool)
        for positions in (lo & mask, (lo >> np.uint64(32)) & mask, hi & mask):
            maybe &= (bloom[positions >> np.uint64(3)] >> (positions & np.uint64(7)).astype(np.uint8)) & 1 == 1
        self._absent = {key for key, found in zip(keys, maybe.tolist(), strict=True) if not found}

    def add(self, key: bytes, value: bytes) -> None:
        """Add a key known not to be in the index (the caller has just looked it up).

        :param key: A 16-byte key.
        :param value: Its value (``value_size`` bytes).
        """
        recent = self._recent
        recent[key] = value
        if len(recent) >= self.memory_keys:
            self._write_recent()

    def add_many(self, keys: Sequence[bytes], values: Sequence[bytes]) -> None:
        """:meth:`add` each key with its value, in order (keys known not to be in the index, nor repeated).

        :param keys: 16-byte keys.
        :param values: Their values (``value_size`` bytes each).
        """
        recent = self._recent
        if len(recent) + len(keys) < self.memory_keys:
            recent.update(zip(keys, values, strict=True))
            return
        for key, value in zip(keys, values, strict=True):
            self.add(key, value)

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
        if found is None:
            raise KeyError(key)
        run, offset, _ = found
        os.pwrite(run.file.fileno(), value, offset + KEY_SIZE)

    def values(self) -> Iterator[bytes]:
        """Yield every value (the disk tier run by run, then the recent tier)."""
        size, value_size = self._record_size, self.value_size
        for run in self._runs:
            for block in self._blocks(run):
                raw = block.tobytes()
                for offset in range(KEY_SIZE, len(raw), size):
                    yield raw[offset : offset + value_size]
        yield from self._recent.values()

    def close(self) -> None:
        """Delete the disk tier's files and forget every key."""
        for run in self._runs:
            run.file.close()
        self._runs = []
        self._recent = {}
        self._on_disk = 0
        self._bloom = self._bloom_view = None
        self._absent = set()

    # ------------------------------------------------------------------ disk tier

    def _find_on_disk(self, key: bytes) -> tuple[_Run, int, bytes] | None:
        """Return ``(run, file offset of the record, value)`` for a key on disk, or ``None``."""
        bloom = self._bloom_view
        if bloom is None:
            return None
        number = int.from_bytes(key, "big")
        for position in (number & _BLOOM_MASK, (number >> 32) & _BLOOM_MASK, (number >> 64) & _BLOOM_MASK):
            if not bloom[position >> 3] & (1 << (position & 7)):
                return None
        hi = number >> 64
        for run in self._runs:
            found = self._find_in_run(run, key, hi)
            if found is not None:
                return run, found[0], found[1]
        return None

    def _find_in_run(self, run: _Run, key: bytes, hi: int) -> tuple[int, bytes] | None:
        size = self._record_size
        fence = run.fence
        fd = run.file.fileno()
        # Start at the last block whose first key is below ``hi``: equal ``hi`` may begin a block earlier.
        block = max(int(np.searchsorted(fence, np.uint64(hi), side="left")) - 1, 0)
        while block < len(fence) and (block == 0 or int(fence[block]) <= hi):
            first = block * _BLOCK_RECORDS
            raw = os.pread(fd, min(_BLOCK_RECORDS, run.records - first) * size, first * size)
            start = 0
            while (at := raw.find(key, start)) >= 0:
                if at % size == 0:
                    return first * size + at, raw[at + KEY_SIZE : at + size]
                start = at + 1
            if int.from_bytes(raw[-size : -size + 8], "big") > hi:
                return None
            block += 1
        return None

    def _blocks(self, run: _Run) -> Iterator[np.ndarray]:
        size = self._record_size
        fd = run.file.fileno()
        for first in range(0, run.records, _MERGE_RECORDS):
            count = min(_MERGE_RECORDS, run.records - first)
            yield np.frombuffer(os.pread(fd, count * size, first * size), dtype=self._dtype)

    def _write_run(self, parts: Iterable[np.ndarray]) -> _Run:
        """Write sorted record arrays, in order, as a new run."""
        # The file outlives this call: close() (or the merge that absorbs the run) closes and so deletes it.
        handle = tempfile.TemporaryFile(dir=self._spill_dir)  # noqa: SIM115
        fences: list[np.ndarray] = []
        written = 0
        for part in parts:
            if len(part):
                fences.append(part["hi"][(-written) % _BLOCK_RECORDS :: _BLOCK_RECORDS].astype(np.uint64))
                handle.write(part.tobytes())
                written += len(part)
        handle.flush()
        return _Run(handle, written, np.concatenate(fences) if fences else np.empty(0, dtype=np.uint64))

    def _write_recent(self) -> None:
        """Write the recent tier as a run, then merge runs while the newest is at least half the one before."""
        recent = self._recent
        keys = np.frombuffer(b"".join(recent), dtype=">u8").reshape(-1, 2)
        new = np.empty(len(recent), dtype=self._dtype)
        new["hi"], new["lo"] = keys[:, 0], keys[:, 1]
        new["value"] = np.frombuffer(b"".join(recent.values()), dtype=f"V{self.value_size}")
        new = new[np.argsort(new["hi"], kind="stable")]
        if self._bloom is None:
            self._bloom = np.zeros(1 << (_BLOOM_BITS - 3), dtype=np.uint8)
            self._bloom_view = self._bloom.data
        hi = new["hi"].astype(np.uint64)
        lo = new["lo"].astype(np.uint64)
        mask = np.uint64(_BLOOM_MASK)
        for positions in (lo & mask, (lo >> np.uint64(32)) & mask, hi & mask):
            bits = (np.uint64(1) << (positions & np.uint64(7))).astype(np.uint8)
            np.bitwise_or.at(self._bloom, positions >> np.uint64(3), bits)
        runs = self._runs
        runs.append(self._write_run([new]))
        self._on_disk += len(new)
        self._recent = {}
        self._absent = set()  # keys prefetched as absent may be on disk now
        while len(runs) > 1 and runs[-2].records <= 2 * runs[-1].records:
            newer, older = runs.pop(), runs.pop()
            runs.append(self._write_run(self._merged(older, newer)))
            older.file.close()
            newer.file.close()

    def _merged(self, first: _Run, second: _Run) -> Iterator[np.ndarray]:
        """Yield the records of two runs in key order, one bounded slice at a time."""
        blocks = (self._blocks(first), self._blocks(second))
        empty = np.empty(0, dtype=self._dtype)
        pending = [next(blocks[0], empty), next(blocks[1], empty)]
        while len(pending[0]) or len(pending[1]):
            if not len(pending[0]) or not len(pending[1]):
                side = 0 if len(pending[0]) else 1
                yield pending[side]
                pending[side] = next(blocks[side], empty)
                continue
            bound = min(pending[0]["hi"][-1], pending[1]["hi"][-1])
            cut = [int(np.searchsorted(part["hi"], bound, side="right")) for part in pending]
            left, right = pending[0][: cut[0]], pending[1][: cut[1]]
            yield np.insert(left, np.searchsorted(left["hi"], right["hi"], side="right"), right)
            for side in (0, 1):
                pending[side] = pending[side][cut[side] :]
                if not len(pending[side]):
                    pending[side] = next(blocks[side], empty)
