"""Registered Capillary record types (importing this package registers ``customer``, ``transaction`` and
``loyalty_event``; a new type is one more module here plus its import below)."""

from __future__ import annotations

from airflow_provider_capillary.xdm.record_types import customer, loyalty_event, transaction
from airflow_provider_capillary.xdm.record_types.base import (
    Behavior,
    BuildContext,
    Column,
    ColumnType,
    RecordType,
    SchemaDefinition,
    get_record_type,
    record_type_names,
    register,
)

__all__ = [
    "Behavior",
    "BuildContext",
    "Column",
    "ColumnType",
    "RecordType",
    "SchemaDefinition",
    "customer",
    "get_record_type",
    "loyalty_event",
    "record_type_names",
    "register",
    "transaction",
]
