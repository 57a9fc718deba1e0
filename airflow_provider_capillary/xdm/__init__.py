"""Capillary → XDM: record types, the mapping engine, schema specifications and validation.

Typical use (one record type, one run)::

    options = MappingOptions(tenant_id="acmecorp", org_id="50001", default_currency="GBP")
    mapper = Mapper("loyalty_event", options, validator=compile_validator(resolved_schema))
    for rows in reader_chunks:
        chunk = mapper.map_chunk(rows)  # chunk.records, chunk.dead_letters, chunk.duplicates
    for records in mapper.finish():  # profiles: the latest version of each customer
        ...
"""

from __future__ import annotations

from airflow_provider_capillary.xdm.identity import IdentityNamespaces
from airflow_provider_capillary.xdm.mapping import (
    DeadLetter,
    MappedChunk,
    MappedRecord,
    Mapper,
    MappingCounts,
    MappingOptions,
    RowLike,
)
from airflow_provider_capillary.xdm.record_types import RecordType, get_record_type, record_type_names
from airflow_provider_capillary.xdm.schemas import SchemaSpec, schema_spec, tenant_field_group
from airflow_provider_capillary.xdm.validation import (
    MAX_STREAMING_RECORD_BYTES,
    SchemaIssue,
    Validator,
    check_record_size,
    compile_validator,
)

__all__ = [
    "MAX_STREAMING_RECORD_BYTES",
    "DeadLetter",
    "IdentityNamespaces",
    "MappedChunk",
    "MappedRecord",
    "Mapper",
    "MappingCounts",
    "MappingOptions",
    "RecordType",
    "RowLike",
    "SchemaIssue",
    "SchemaSpec",
    "Validator",
    "check_record_size",
    "compile_validator",
    "get_record_type",
    "record_type_names",
    "schema_spec",
    "tenant_field_group",
]
