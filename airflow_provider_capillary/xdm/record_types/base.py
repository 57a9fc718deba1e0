"""Declarative description of a record type: its columns, their types, XDM targets, rules and schema.

A record type is a :class:`RecordType` value registered by name with :func:`register`. Adding a fourth type
is one new module in this package that builds a ``RecordType`` and registers it, plus one import line in
``record_types/__init__.py``.

The mapping engine (:mod:`airflow_provider_capillary.xdm.mapping`) does the generic work for every type:
it parses each :class:`Column` with the rule of its :class:`ColumnType` (see
:mod:`airflow_provider_capillary.xdm.values`), dead-letters the row on the first invalid or missing
required value, writes every simple column to its XDM ``targets``, builds ``identityMap``, ``_id`` and
``timestamp``, then calls the type's ``build`` hook for what is not a plain column copy (``eventType``,
arrays, sign rules).

XDM targets are dotted compatibility-mode paths (no ``xdm:`` prefix). A path starting with ``_tenant.`` is
written under the run's tenant object ``_{tenantId}``; the tenant id is a run-time option and never appears
in a record type.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_capillary.xdm.values import FieldError

#: Placeholder for the tenant object in target paths and tenant schema definitions.
TENANT = "_tenant"

PROFILE_CLASS = "https://ns.adobe.com/xdm/context/profile"
EXPERIENCE_EVENT_CLASS = "https://ns.adobe.com/xdm/context/experienceevent"


class ColumnType(enum.Enum):
    """How a column's raw value is parsed (rules in :mod:`airflow_provider_capillary.xdm.values`)."""

    STRING = "string"
    """Text, kept as is (JSON numbers become their text)."""
    ID = "id"
    """An identifier of digits (Capillary ids); JSON integers become strings. Reason ``invalid_id``."""
    DATETIME = "datetime"
    """ISO-8601 timestamp with offset, normalised to UTC."""
    DATE = "date"
    """``YYYY-MM-DD``."""
    DECIMAL = "decimal"
    """Money or points (``Decimal``), sent as a JSON number."""
    INTEGER = "integer"
    """A whole number."""
    BOOLEAN = "boolean"
    """A flag."""
    CURRENCY = "currency"
    """An ISO 4217 code (three letters, upper-cased). Reason ``invalid_currency``."""
    EMAIL = "email"
    """An e-mail address, trimmed and lower-cased (identity)."""
    PHONE = "phone"
    """A phone number, normalised to E.164 (identity)."""
    ARRAY = "array"
    """A JSON array (in CSV: the array's JSON text); its items are mapped by the type's ``build`` hook."""
    OBJECT = "object"
    """A JSON object (in CSV: the object's JSON text)."""


class Behavior(enum.Enum):
    """XDM behaviour of the records of a type."""

    RECORD = "record"
    """Profile attributes; a later version of the same natural key supersedes an earlier one."""
    TIME_SERIES = "time-series"
    """ExperienceEvents; ``_id`` and ``timestamp`` are required and every event is kept."""


@dataclass(frozen=True)
class Column:
    """One column of an extract.

    :param name: Column name in the extract (CSV header / JSON key).
    :param type: How the raw value is parsed.
    :param required: Whether a missing value dead-letters the row (``missing_required_field``). Default False.
    :param targets: Dotted XDM paths the parsed value is written to (empty: the ``build`` hook uses it).
    :param enum: For ``STRING`` columns, the accepted values (upper-cased compare) mapped to what is written;
        any other value is the dead letter ``invalid_enum``. Default: no restriction.
    """

    name: str
    type: ColumnType
    required: bool = False
    targets: tuple[str, ...] = ()
    enum: Mapping[str, str] | None = None


@dataclass(frozen=True)
class BuildContext:
    """What a ``build`` hook may read besides the row.

    :param tenant_key: The tenant object's key, ``_{tenantId}``.
    :param default_currency: ISO 4217 code used when a row has no currency.
    :param hashed_identities: Whether e-mail and phone are sent hashed only.
    :param extra_event_types: Event names a record type accepts beyond its own table, with their ``eventType``.
    """

    tenant_key: str
    default_currency: str
    hashed_identities: bool
    extra_event_types: Mapping[str, str]


#: A build hook: ``(parsed values by column, raw row values, entity being built, context) -> None``.
#: It writes into the entity and raises :class:`FieldError` to dead-letter the row.
BuildHook = Callable[[Mapping[str, Any], Mapping[str, Any], dict[str, Any], BuildContext], None]


#: Column-wise natural keys: ``(parsed values by column, one list per column) -> natural key of each row``.
ChunkKeys = Callable[[Mapping[str, list[Any]]], list[str]]

#: Column-wise ``build``: ``(parsed values by column, bad-row flags, context) -> the value of each member the
#: row's ``build`` adds to the entity, by member, per row`` (``None`` where a row's ``build`` does not add it); it
#: flags (``bad[i] = 1``) each row it cannot settle (its values are not used).
ChunkBuildHook = Callable[[Mapping[str, list[Any]], bytearray, BuildContext], Mapping[str, list[Any]]]


@dataclass(frozen=True)
class ChunkRules:
    """The column-wise twin of a record type's ``natural_key`` and ``build``, for the mapping's fast path.

    Optional: a record type without it is mapped row by row. With it, the engine builds a chunk's entities
    column by column and asks these functions for what is specific to the type. They must agree with the
    row-wise rules on every row they do not flag (the engine's tests check the three types): the same natural
    key, and exactly the top-level members ``build`` would add, in the order of ``members``. A row flagged bad
    is mapped by the row-wise rules, which then name its failure.

    :param natural_keys: Natural keys of all rows (any string for a flagged row; it is not used).
    :param build: The members added by ``build``: one list of per-row values for each of ``members``.
    :param members: The top-level members ``build`` may add, in the order it adds them.
    """

    natural_keys: ChunkKeys
    build: ChunkBuildHook
    members: tuple[str, ...]


@dataclass(frozen=True)
class SchemaDefinition:
    """The XDM schema a record type needs (consumed by :mod:`airflow_provider_capillary.xdm.schemas`).

    :param title: Default schema (and dataset) title.
    :param class_id: ``$id`` of the XDM class.
    :param field_group_ids: ``$id`` of each standard field group.
    :param tenant_properties: JSON Schema properties of the tenant object ``_{tenantId}`` (compatibility
        mode field names), i.e. the custom field group's content.
    :param primary_identity_path: Path of the field that carries the primary identity for an identity
        descriptor (``_tenant`` stands for the tenant object; the namespace is the customer namespace of
        the run's ``IdentityNamespaces``), or ``None`` when the primary identity is marked in ``identityMap``
        only.
    """

    title: str
    class_id: str
    field_group_ids: tuple[str, ...]
    tenant_properties: Mapping[str, Any]
    primary_identity_path: str | None = None


@dataclass(frozen=True)
class RecordType:
    """A canonical extract record type and its XDM mapping.

    :param name: Registered name (``customer``, ``transaction``, ``loyalty_event``).
    :param behavior: XDM behaviour (record or time-series).
    :param columns: The columns, in the order their values are checked (the first failure is reported).
    :param natural_key: Builds the natural key of ``_id`` from the parsed values.
    :param build: Hook that writes the non-trivial parts of the entity.
    :param schema: The XDM schema the entities conform to.
    :param timestamp_column: Time-series: the ``DATETIME`` column written to ``timestamp``.
    :param version_column: Record: the ``DATETIME`` column that orders versions of one natural key.
    :param identity_fallback: Whether a missing ``customer_id`` may fall back to another primary identity
        (``MappingOptions.fallback_primary``). False when ``customer_id`` is the record's natural key.
    :param chunk_rules: Column-wise twins of ``natural_key`` and ``build`` that let the engine build a chunk's
        entities column by column (time-series types whose ``build`` only adds top-level members). Default
        ``None``: rows are built one by one.
    """

    name: str
    behavior: Behavior
    columns: tuple[Column, ...]
    natural_key: Callable[[Mapping[str, Any]], str]
    build: BuildHook
    schema: SchemaDefinition
    timestamp_column: str | None = None
    version_column: str | None = None
    identity_fallback: bool = True
    chunk_rules: ChunkRules | None = None
    column_names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        names = frozenset(column.name for column in self.columns)
        if len(names) != len(self.columns):
            raise ValueError(f"record type {self.name!r} declares a column twice")
        for required in ("customer_id", "email", "mobile"):
            if required not in names:
                raise ValueError(f"record type {self.name!r} lacks identity column {required!r}")
        if self.behavior is Behavior.TIME_SERIES and self.timestamp_column not in names:
            raise ValueError(f"time-series record type {self.name!r} needs a timestamp column")
        if self.behavior is Behavior.RECORD and self.version_column not in names:
            raise ValueError(f"record type {self.name!r} needs a version column")
        object.__setattr__(self, "column_names", names)


_REGISTRY: dict[str, RecordType] = {}
"""Registered record types by name (filled once at import of ``record_types``; read-only afterwards)."""


def register(record_type: RecordType) -> RecordType:
    """Register a record type under its name.

    :param record_type: The record type.
    :return: The same record type (so a module can write ``CUSTOMER = register(RecordType(...))``).
    :raises ValueError: If another record type already has that name.
    """
    if record_type.name in _REGISTRY and _REGISTRY[record_type.name] is not record_type:
        raise ValueError(f"record type {record_type.name!r} is already registered")
    _REGISTRY[record_type.name] = record_type
    return record_type


def get_record_type(name: str) -> RecordType:
    """Return a registered record type.

    :param name: ``customer``, ``transaction``, ``loyalty_event`` or any other registered name.
    :raises KeyError: With the known names, if ``name`` is not registered.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown record type {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def record_type_names() -> list[str]:
    """Names of all registered record types, sorted."""
    return sorted(_REGISTRY)


def require(parsed: Mapping[str, Any], column: str) -> Any:
    """Return a parsed value a rule needs, or dead-letter the row with ``missing_required_field``.

    :param parsed: Parsed values by column.
    :param column: Column name.
    """
    value = parsed.get(column)
    if value is None:
        raise FieldError("missing_required_field", column, None, "required for this kind of record")
    return value
