"""Pack serialised messages into multi-message request bodies no larger than DCS's request limit.

DCS refuses a request body over "1 MB" with 413, on both the single and the multi-message endpoint
(``reference/aep-api.md`` §6.6, §10). Adobe does not say whether that is 10^6 or 2^20 bytes, so the default limit
is the smaller reading, 1,000,000 bytes: a request that fits it fits either reading, and the 4.6 % of capacity
it gives up costs one extra request in about twenty. No maximum message count per request is documented.

Packing keeps the submitted order and every message goes into exactly one request; a message that cannot fit
in a request even alone is reported instead (the caller rejects it as ``record_too_large``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from airflow_provider_capillary.ingestion.envelopes import REQUEST_OVERHEAD

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Default largest request body in bytes: the smaller reading of DCS's documented "1 MB" (see module docstring).
DEFAULT_MAX_REQUEST_BYTES = 1_000_000
#: Reason code of a record whose message does not fit in one request.
RECORD_TOO_LARGE = "record_too_large"


class PackPlan(NamedTuple):
    """How a sequence of messages is split into requests.

    :param requests: Indices of the messages of each request, in order; consecutive requests continue the order.
    :param too_large: Indices of messages that exceed the limit on their own (in no request).
    """

    requests: list[list[int]]
    too_large: list[int]


def pack(
    entity_sizes: Sequence[int],
    *,
    message_overhead: int,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_messages: int | None = None,
) -> PackPlan:
    """Split messages, in order, into the fewest consecutive requests whose bodies stay within the limit.

    A body is ``{"messages":[`` + the messages joined by commas + ``]}``; a message is its entity plus
    ``message_overhead`` envelope bytes (:attr:`EnvelopeTemplate.overhead`).

    :param entity_sizes: Serialised size of each entity, in submission order.
    :param message_overhead: Envelope bytes around each entity.
    :param max_request_bytes: Largest request body in bytes. Default 1,000,000.
    :param max_messages: Most messages per request; ``None`` (default) for no bound but the size.
    """
    if max_request_bytes <= REQUEST_OVERHEAD + message_overhead:
        raise ValueError(f"max_request_bytes={max_request_bytes} cannot hold even an empty message")
    if max_messages is not None and max_messages < 1:
        raise ValueError("max_messages must be at least 1")
    room = max_request_bytes - REQUEST_OVERHEAD + 1  # the first message has no comma before it
    requests: list[list[int]] = []
    too_large: list[int] = []
    current: list[int] = []
    used = 0
    for index, size in enumerate(entity_sizes):
        cost = size + message_overhead + 1  # the message and the comma before it
        if cost > room:
            too_large.append(index)
            continue
        if current and (used + cost > room or (max_messages is not None and len(current) >= max_messages)):
            requests.append(current)
            current, used = [], 0
        current.append(index)
        used += cost
    if current:
        requests.append(current)
    return PackPlan(requests, too_large)
