"""EnvelopeTemplate: pre-serialised envelopes are exactly the hook's envelope shape around the entity."""

from __future__ import annotations

import orjson
import pytest

from airflow_provider_capillary.hooks.aep import AEPHook
from airflow_provider_capillary.ingestion.envelopes import REQUEST_OVERHEAD, EnvelopeTemplate

IDS = {
    "schema_id": "https://ns.adobe.com/acmecorp/schemas/abc",
    "dataset_id": "65a0c0ffee0000000000bbbb",
    "flow_id": "f2ae0194-8bd8-4a40-a4d9-f07bdc3e6ce2",
    "org_id": "5C1328435BF324E90A49402A@AdobeOrg",
}
ENTITIES = [{"_id": "a", "n": 1}, {"_id": "b", "text": 'quote " and ü'}, {}]


def test_message_is_the_hook_envelope() -> None:
    template = EnvelopeTemplate(**IDS, source_name="Capillary")
    for entity in ENTITIES:
        message = template.message(orjson.dumps(entity))
        assert orjson.loads(message) == AEPHook.streaming_message(entity, **IDS)
        assert template.message_size(orjson.dumps(entity)) == len(message)


def test_request_body_parses_to_the_messages_in_order() -> None:
    template = EnvelopeTemplate(**IDS)
    entities = [orjson.dumps(entity) for entity in ENTITIES]
    body = template.request_body(entities)
    assert orjson.loads(body) == {"messages": [AEPHook.streaming_message(e, **IDS) for e in ENTITIES]}
    assert template.request_size([len(e) for e in entities]) == len(body)
    assert template.request_size([len(entities[0])]) == len(template.request_body(entities[:1]))
    assert template.request_body([]) == b'{"messages":[]}'
    assert template.request_size([]) == REQUEST_OVERHEAD


def test_source_name_is_carried() -> None:
    template = EnvelopeTemplate(**IDS, source_name="Loyalty")
    assert orjson.loads(template.message(b"{}"))["header"]["source"] == {"name": "Loyalty"}


def test_an_id_containing_the_placeholder_is_refused() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        EnvelopeTemplate(**{**IDS, "flow_id": "__capillary_xdm_entity_placeholder__"})
