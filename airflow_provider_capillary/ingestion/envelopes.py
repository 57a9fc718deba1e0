"""Pre-serialised DCS envelopes: wrap an already serialised ``xdmEntity`` without building or dumping a dict.

Every message of one dataset carries the same envelope (``reference/aep-api.md`` §6.2): only ``xdmEntity``
differs. :class:`EnvelopeTemplate` serialises the envelope once around a placeholder and keeps the bytes before
and after it, so a multi-message request body is a single ``bytes.join`` over the entities' JSON
(:meth:`EnvelopeTemplate.request_body`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from airflow_provider_capillary.hooks.aep import AEPHook

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Opening and closing bytes of a multi-message request body ``{"messages": [...]}``.
REQUEST_OPEN = b'{"messages":['
REQUEST_CLOSE = b"]}"
#: Bytes a request body adds around its messages (excluding the commas between them).
REQUEST_OVERHEAD = len(REQUEST_OPEN) + len(REQUEST_CLOSE)

_PLACEHOLDER = "__capillary_xdm_entity_placeholder__"


class EnvelopeTemplate:
    """The serialised envelope of one dataset, schema and dataflow, split around its ``xdmEntity``.

    The shape is :meth:`AEPHook.streaming_message` (header ``schemaRef``, ``imsOrgId``, ``datasetId``,
    ``flowId``, ``source.name``; body ``xdmMeta.schemaRef`` and ``xdmEntity``). ``createdAt`` is omitted: it is
    optional and a per-message value would defeat pre-serialisation.

    :param schema_id: The dataset's schema ``$id`` (``schemaRef.id`` in the header and in ``xdmMeta``).
    :param dataset_id: The target dataset id.
    :param flow_id: The dataflow id of the streaming connection.
    :param org_id: The IMS org id (must match the inlet's org).
    :param source_name: ``header.source.name``. Default ``Capillary``.
    """

    __slots__ = ("prefix", "separator", "suffix")

    def __init__(
        self, *, schema_id: str, dataset_id: str, flow_id: str, org_id: str, source_name: str = "Capillary"
    ) -> None:
        envelope = AEPHook.streaming_message(
            {},
            schema_id=schema_id,
            dataset_id=dataset_id,
            flow_id=flow_id,
            org_id=org_id,
            source_name=source_name,
        )
        envelope["body"]["xdmEntity"] = _PLACEHOLDER
        serialised = orjson.dumps(envelope)
        marker = orjson.dumps(_PLACEHOLDER)
        if serialised.count(marker) != 1:
            raise ValueError("an envelope id contains the entity placeholder text")
        prefix, suffix = serialised.split(marker)
        #: Envelope bytes before the entity.
        self.prefix: bytes = prefix
        #: Envelope bytes after the entity.
        self.suffix: bytes = suffix
        #: What separates two consecutive entities in a request body: end of one envelope, comma, next start.
        self.separator: bytes = suffix + b"," + prefix

    @property
    def overhead(self) -> int:
        """Bytes one message adds to its entity's JSON (the envelope around it)."""
        return len(self.prefix) + len(self.suffix)

    def message(self, entity_json: bytes) -> bytes:
        """One complete envelope around a serialised entity (for the single-message endpoint or a test)."""
        return self.prefix + entity_json + self.suffix

    def message_size(self, entity_json: bytes) -> int:
        """Size in bytes of the envelope around ``entity_json``, without building it."""
        return len(self.prefix) + len(entity_json) + len(self.suffix)

    def request_body(self, entities: Sequence[bytes]) -> bytes:
        """The ``{"messages": [...]}`` body of a multi-message request carrying ``entities`` in order."""
        if not entities:
            return REQUEST_OPEN + REQUEST_CLOSE
        return b"".join((REQUEST_OPEN, self.prefix, self.separator.join(entities), self.suffix, REQUEST_CLOSE))

    def request_size(self, entity_sizes: Sequence[int]) -> int:
        """Size in bytes of :meth:`request_body` for entities of these sizes."""
        if not entity_sizes:
            return REQUEST_OVERHEAD
        return REQUEST_OVERHEAD + sum(entity_sizes) + len(entity_sizes) * (self.overhead + 1) - 1
