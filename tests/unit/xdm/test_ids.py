from __future__ import annotations

import hashlib

from airflow_provider_capillary.xdm.ids import (
    content_digest,
    content_digests,
    id_prefix,
    key_digest,
    prefixed_digest,
    prefixed_digests,
    record_digest,
    record_id,
)


def test_record_id_follows_the_documented_formula() -> None:
    expected = hashlib.sha256(b"capillary|50001|loyalty_event|41a8a2a8-0739-5168-a93d-4e5aa7ab4db9").hexdigest()
    assert record_id("50001", "loyalty_event", "41a8a2a8-0739-5168-a93d-4e5aa7ab4db9") == expected


def test_record_id_is_deterministic_and_distinguishes_every_part() -> None:
    first = record_id("50001", "transaction", "901200001-REGULAR")
    assert first == record_id("50001", "transaction", "901200001-REGULAR")
    others = {
        record_id("50002", "transaction", "901200001-REGULAR"),
        record_id("50001", "loyalty_event", "901200001-REGULAR"),
        record_id("50001", "transaction", "901200001-RETURN"),
    }
    assert first not in others
    assert len(others) == 3


def test_compact_digests() -> None:
    assert len(key_digest("x")) == 16
    assert key_digest("x") == key_digest("x") != key_digest("y")
    assert len(content_digest(b"{}")) == 8


def test_batch_content_digests_are_the_single_ones() -> None:
    payloads = [b"{}", b'{"a":1}', b'{"a":2}', bytes(range(256)) * 4]
    assert content_digests(payloads) == [content_digest(payload) for payload in payloads]
    assert len(set(content_digests(payloads))) == len(payloads)


def test_batch_prefixed_digests_are_the_single_ones() -> None:
    prefix = id_prefix("50001", "loyalty_event")
    keys = ["e1", "e2", "é3", ""]
    assert prefixed_digests(prefix, keys, [0, 1, 0, 0]) == [
        prefixed_digest(prefix, "e1"),
        None,
        prefixed_digest(prefix, "é3"),
        record_digest("50001", "loyalty_event", ""),
    ]
