"""pack(): request bodies never exceed the limit, every message goes out once, order is kept."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_capillary.ingestion.envelopes import EnvelopeTemplate
from airflow_provider_capillary.ingestion.packing import DEFAULT_MAX_REQUEST_BYTES, pack

TEMPLATE = EnvelopeTemplate(
    schema_id="https://ns.adobe.com/t/schemas/s", dataset_id="d", flow_id="f", org_id="o@AdobeOrg"
)


def entity(size: int, tag: int) -> bytes:
    """A JSON object of exactly ``size`` bytes (size >= 20)."""
    head = orjson.dumps({"_id": str(tag), "p": ""})
    return head[:-2] + b"x" * (size - len(head)) + b'"}'


def bodies(entities: list[bytes], limit: int, **kwargs: int) -> tuple[list[bytes], list[int]]:
    plan = pack([len(e) for e in entities], message_overhead=TEMPLATE.overhead, max_request_bytes=limit, **kwargs)
    return [TEMPLATE.request_body([entities[i] for i in request]) for request in plan.requests], plan.too_large


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=20, max_value=3000), max_size=60),
    limit=st.integers(min_value=600, max_value=8000),
)
def test_bodies_fit_and_keep_every_message_once_in_order(sizes: list[int], limit: int) -> None:
    entities = [entity(size, tag) for tag, size in enumerate(sizes)]
    plan = pack(sizes, message_overhead=TEMPLATE.overhead, max_request_bytes=limit)
    sent = [index for request in plan.requests for index in request]
    assert sent == sorted(sent)
    assert sorted(sent + plan.too_large) == list(range(len(sizes)))
    for request in plan.requests:
        body = TEMPLATE.request_body([entities[i] for i in request])
        assert len(body) <= limit
        assert [m["body"]["xdmEntity"]["_id"] for m in orjson.loads(body)["messages"]] == [str(i) for i in request]
    for index in plan.too_large:
        assert len(TEMPLATE.request_body([entities[index]])) > limit
    # Greedy and tight: the next message would not have fitted in the request before it.
    for before, after in zip(plan.requests, plan.requests[1:], strict=False):
        assert len(TEMPLATE.request_body([entities[i] for i in [*before, after[0]]])) > limit


def test_a_message_exactly_at_the_limit_fits_and_one_byte_more_does_not() -> None:
    limit = DEFAULT_MAX_REQUEST_BYTES
    fixed = len(TEMPLATE.request_body([b"{}"])) - 2
    exact = entity(limit - fixed, 1)
    over = entity(limit - fixed + 1, 2)
    small = entity(100, 3)
    requests, too_large = bodies([small, exact, over, small], limit)
    assert too_large == [2]
    assert [len(body) for body in requests] == [len(TEMPLATE.request_body([small])), limit, len(requests[2])]
    assert len(requests) == 3


@pytest.mark.parametrize("over", [False, True])
def test_messages_that_exactly_fill_the_limit_share_a_request(over: bool) -> None:
    # Alone, and with a message over the limit (left out of every request) between the requests.
    limit = 5_000
    two = len(TEMPLATE.request_body([b"{}", b"{}"])) - 4  # the bytes of a two-message body around its entities
    first, second = entity(1_000, 1), entity(limit - two - 1_000, 2)
    extra = [entity(limit, 9)] if over else []
    requests, too_large = bodies([first, second, *extra, first, second, first], limit)
    assert [len(body) for body in requests] == [limit, limit, len(TEMPLATE.request_body([first]))]
    assert too_large == ([2] if over else [])


def test_max_messages_bounds_the_count() -> None:
    entities = [entity(50, i) for i in range(10)]
    plan = pack([50] * 10, message_overhead=TEMPLATE.overhead, max_messages=4)
    assert plan.requests == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(len(b) <= DEFAULT_MAX_REQUEST_BYTES for b in bodies(entities, DEFAULT_MAX_REQUEST_BYTES)[0])


def test_nothing_to_pack() -> None:
    assert pack([], message_overhead=TEMPLATE.overhead) == ([], [])


@pytest.mark.parametrize("kwargs", [{"max_request_bytes": 100}, {"max_messages": 0}])
def test_impossible_settings_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        pack([10], message_overhead=TEMPLATE.overhead, **kwargs)
