from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_capillary.xdm.dedupe import DigestIndex


def _key(number: int) -> bytes:
    return hashlib.blake2b(str(number).encode(), digest_size=16).digest()


def test_keys_merged_to_disk_are_found_with_their_values(tmp_path):
    index = DigestIndex(8, spill_dir=str(tmp_path), memory_keys=100)
    for number in range(2_000):
        assert index.get(_key(number)) is None
        index.add(_key(number), number.to_bytes(8, "little"))
    assert len(index) == 2_000
    assert index._on_disk >= 1_900 and len(index._runs) <= 6  # most keys are on disk, in few runs
    for number in range(2_000):
        assert index.get(_key(number)) == number.to_bytes(8, "little")
    assert all(index.get(_key(number)) is None for number in range(2_000, 4_000))
    assert sorted(int.from_bytes(value, "little") for value in index.values()) == list(range(2_000))


def test_replace_changes_values_in_memory_and_on_disk(tmp_path):
    index = DigestIndex(24, spill_dir=str(tmp_path), memory_keys=64)
    for number in range(500):
        index.add(_key(number), bytes(24))
    for number in (0, 250, 499):
        index.replace(_key(number), number.to_bytes(24, "little"))
    assert index.get(_key(0)) == (0).to_bytes(24, "little")
    assert index.get(_key(250)) == (250).to_bytes(24, "little")
    assert index.get(_key(499)) == (499).to_bytes(24, "little")
    assert index.get(_key(1)) == bytes(24)
    with pytest.raises(KeyError):
        index.replace(_key(10_000), bytes(24))


def test_keys_sharing_their_first_eight_bytes_stay_distinct(tmp_path):
    index = DigestIndex(8, spill_dir=str(tmp_path), memory_keys=10)
    prefix = b"\x01" * 8
    keys = [prefix + number.to_bytes(8, "big") for number in range(600)]
    rng = random.Random(5)
    rng.shuffle(keys)
    for number, key in enumerate(keys):
        index.add(key, number.to_bytes(8, "little"))
    for number, key in enumerate(keys):
        assert index.get(key) == number.to_bytes(8, "little")
    assert index.get(prefix + (600).to_bytes(8, "big")) is None


def test_close_forgets_everything(tmp_path):
    index = DigestIndex(8, spill_dir=str(tmp_path), memory_keys=4)
    for number in range(10):
        index.add(_key(number), bytes(8))
    index.close()
    assert len(index) == 0
    assert index.get(_key(1)) is None
    assert list(tmp_path.iterdir()) == []


def test_rejects_non_positive_sizes():
    with pytest.raises(ValueError, match="positive"):
        DigestIndex(0)


#: (key number, value) operations on an index, its recent tier's size and the mapper's batch size.
_OPERATIONS = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 2**64 - 1)), max_size=400)
_MEMORY_KEYS = st.integers(1, 50)
_BATCH = st.integers(1, 40)


@settings(max_examples=40, deadline=None)
@given(
    operations=_OPERATIONS,
    memory_keys=_MEMORY_KEYS,
)
def test_behaves_like_a_dict(tmp_path_factory, operations, memory_keys):
    index = DigestIndex(8, spill_dir=str(tmp_path_factory.mktemp("index")), memory_keys=memory_keys)
    reference: dict[bytes, bytes] = {}
    for number, value in operations:
        key, packed = _key(number), value.to_bytes(8, "little")
        assert index.get(key) == reference.get(key)
        if key in reference:
            index.replace(key, packed)
        else:
            index.add(key, packed)
        reference[key] = packed
    assert len(index) == len(reference)
    assert all(index.get(key) == value for key, value in reference.items())
    assert sorted(index.values()) == sorted(reference.values())
    index.close()


@settings(max_examples=40, deadline=None)
@given(
    operations=_OPERATIONS,
    memory_keys=_MEMORY_KEYS,
    batch=_BATCH,
)
def test_prefetched_lookups_find_what_plain_lookups_find(tmp_path_factory, operations, memory_keys, batch):
    # Keys are prefetched a batch ahead, as the mapper does; spills in the middle of a batch (keys of the batch
    # added, then written to disk) must not make a prefetched key look absent.
    index = DigestIndex(8, spill_dir=str(tmp_path_factory.mktemp("index")), memory_keys=memory_keys)
    reference: dict[bytes, bytes] = {}
    for start in range(0, len(operations), batch):
        part = operations[start : start + batch]
        index.prefetch([_key(number) for number, _ in part])
        for number, value in part:
            key = _key(number)
            assert index.get(key) == reference.get(key)
            if key not in reference:
                index.add(key, value.to_bytes(8, "little"))
                reference[key] = value.to_bytes(8, "little")
    assert all(index.get(key) == value for key, value in reference.items())
    index.close()


@settings(max_examples=40, deadline=None)
@given(
    operations=_OPERATIONS,
    memory_keys=_MEMORY_KEYS,
    batch=_BATCH,
)
def test_batch_lookups_and_additions_behave_like_a_dict(tmp_path_factory, operations, memory_keys, batch):
    # As the mapper uses them: a batch is prefetched and looked up at once, then its new keys (each once) are
    # added at once; a batch may cross the point where the recent tier is written to disk.
    index = DigestIndex(8, spill_dir=str(tmp_path_factory.mktemp("index")), memory_keys=memory_keys)
    reference: dict[bytes, bytes] = {}
    for start in range(0, len(operations), batch):
        part = {_key(number): value.to_bytes(8, "little") for number, value in operations[start : start + batch]}
        keys = list(part)
        index.prefetch(keys)
        assert index.get_many(keys) == [reference.get(key) for key in keys]
        new = [key for key in keys if key not in reference]
        index.add_many(new, [part[key] for key in new])
        reference.update((key, part[key]) for key in new)
        assert len(index) == len(reference)
    assert index.get_many(list(reference)) == list(reference.values())
    index.close()


def test_prefetch_rules_out_absent_keys_without_probing(tmp_path, monkeypatch):
    index = DigestIndex(8, spill_dir=str(tmp_path), memory_keys=8)
    for number in range(64):
        index.add(_key(number), bytes(8))
    absent = [_key(number) for number in range(1000, 1100)]
    index.prefetch(absent)
    probes: list[bytes] = []
    original = index._find_on_disk
    monkeypatch.setattr(index, "_find_on_disk", lambda key: probes.append(key) or original(key))
    assert [index.get(key) for key in absent] == [None] * len(absent)
    assert len(probes) < 5  # Bloom false positives only
    index.prefetch([_key(3), _key(2000)])
    assert index.get(_key(3)) == bytes(8)  # a prefetched key on disk is still found


def test_a_key_prefetched_as_absent_then_added_and_written_to_disk_is_found(tmp_path):
    index = DigestIndex(8, spill_dir=str(tmp_path), memory_keys=2)
    for number in range(4):
        index.add(_key(number), bytes(8))  # a disk tier (and its Bloom filter) exists
    key = _key(99)
    index.prefetch([key, key])  # a key repeated in one batch
    assert index.get(key) is None
    index.add(key, b"12345678")
    index.add(_key(100), bytes(8))  # the recent tier is full: both go to disk
    assert index.get(key) == b"12345678"
