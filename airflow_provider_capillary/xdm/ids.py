"""Deterministic record ids and the compact keys used to deduplicate rows.

``_id`` follows ``reference/capillary.md`` §8.1: the SHA-256 hex digest of
``capillary|{org_id}|{record_type}|{natural_key}``. The same row therefore always produces the same ``_id``,
so a replayed extract is de-duplicated by AEP instead of doubling events. Natural keys:

================  ============================================================================
Record type       Natural key
================  ============================================================================
transaction       ``{transaction_id}-{type}``
loyalty_event     ``event_id``
customer          ``{customer_id}@{updated_at in UTC}`` (one ``_id`` per profile version)
================  ============================================================================

The de-duplication state of a run keeps 16-byte digests instead of the keys themselves (time-series: the
first 16 bytes of the ``_id`` digest; records: the BLAKE2b digest of the natural key); see
:mod:`airflow_provider_capillary.xdm.mapping` for the memory cost per distinct key.
"""

from __future__ import annotations

from hashlib import blake2b, sha256
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from collections.abc import Iterable

#: Length in bytes of the in-memory de-duplication keys (128 bits: collisions are not a practical concern).
KEY_DIGEST_SIZE = 16


def record_digest(org_id: str, record_type: str, natural_key: str) -> bytes:
    """Return the 32-byte SHA-256 digest whose hex form is the record's ``_id``.

    :param org_id: Capillary org id (empty string when not configured).
    :param record_type: Registered record type name, e.g. ``transaction``.
    :param natural_key: The record's natural key.
    """
    return prefixed_digest(id_prefix(org_id, record_type), natural_key)


def prefixed_digest(prefix: bytes, natural_key: str) -> bytes:
    """Return :func:`record_digest` from its :func:`id_prefix` (computed once per run by the mapping engine).

    :param prefix: ``id_prefix(org_id, record_type)``.
    :param natural_key: The record's natural key.
    """
    return cast("bytes", prefixed_digests(prefix, (natural_key,), (False,))[0])  # never skipped: never None


def prefixed_digests(prefix: bytes, natural_keys: Iterable[str], skip: Iterable[int | bool]) -> list[bytes | None]:
    """Return :func:`prefixed_digest` of each natural key, or ``None`` where ``skip`` is true (one comprehension:
    the formula of ``_id`` lives here, and :func:`prefixed_digest` is this for one key).

    :param prefix: ``id_prefix(org_id, record_type)``.
    :param natural_keys: The records' natural keys.
    :param skip: Per key, whether to leave it out (e.g. the flags of rows that failed).
    """
    return [
        None if skipped else sha256(prefix + key.encode()).digest()
        for key, skipped in zip(natural_keys, skip, strict=True)
    ]


def id_prefix(org_id: str, record_type: str) -> bytes:
    """Return what precedes the natural key in the text whose SHA-256 is the ``_id``: ``capillary|org|type|``.

    :param org_id: Capillary org id (empty string when not configured).
    :param record_type: Registered record type name.
    """
    return f"capillary|{org_id}|{record_type}|".encode()


def record_id(org_id: str, record_type: str, natural_key: str) -> str:
    """Return the deterministic XDM ``_id`` of a record: 64 lowercase hex characters.

    :param org_id: Capillary org id (empty string when not configured).
    :param record_type: Registered record type name, e.g. ``transaction``.
    :param natural_key: The record's natural key.
    """
    return record_digest(org_id, record_type, natural_key).hex()


def key_digest(text: str) -> bytes:
    """Return the compact 16-byte digest used as a de-duplication key.

    :param text: The key (an ``_id`` or a natural key).
    """
    return blake2b(text.encode(), digest_size=KEY_DIGEST_SIZE).digest()


def content_digest(payload: bytes) -> bytes:
    """Return the 8-byte digest used to tell an exact duplicate from a conflicting row with the same key.

    It is Python's keyed 64-bit SipHash of the bytes (``hash``, five times cheaper than BLAKE2b on a
    record): equal within one process and differing between processes, which is all a run's de-duplication
    index needs (a resumed try rebuilds its index by mapping again).

    :param payload: The serialised record.
    """
    return content_digests((payload,))[0]


def content_digests(payloads: Iterable[bytes]) -> list[bytes]:
    """Return :func:`content_digest` of each payload (one list comprehension: no call per payload; the formula
    lives here, so the digests the engine keeps and the ones it compares them with cannot drift apart).

    :param payloads: Serialised records.
    """
    return [hash(payload).to_bytes(8, "little", signed=True) for payload in payloads]
