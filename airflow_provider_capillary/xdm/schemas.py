"""Ready-made XDM schema specifications, one per record type, for the set-up operators.

A :class:`SchemaSpec` says everything needed to find-or-create the schema a record type's entities conform
to (``reference/aep-api.md`` §2.4-2.8): the class, the standard field groups, the body of the tenant field
group (``POST /tenant/fieldgroups``) holding the fields with no standard home, and the identity descriptor
of the primary identity (``POST /tenant/descriptors``), if the record type uses one.

Primary identity: ``customer`` schemas get a descriptor on ``/_{tenantId}/capillary/customerId`` in the
``CAPLOYALTY`` namespace (and the entity marks the same identity primary in ``identityMap``). Event schemas
get no descriptor: their primary identity is marked in ``identityMap`` only, because a descriptor would
make ``customerId`` required and rule out the configurable fallback primary identity (``Phone``/``Email``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_capillary.xdm.identity import IdentityNamespaces
from airflow_provider_capillary.xdm.record_types import get_record_type
from airflow_provider_capillary.xdm.record_types.base import PROFILE_CLASS, TENANT, RecordType


@dataclass(frozen=True)
class IdentityDescriptorSpec:
    """An identity descriptor to create on the schema.

    :param source_property: JSON-pointer-like path of the identity field (``xdm:sourceProperty``).
    :param namespace: Identity namespace code (``xdm:namespace``).
    :param is_primary: Whether it is the primary identity (``xdm:isPrimary``).
    """

    source_property: str
    namespace: str
    is_primary: bool = True


@dataclass(frozen=True)
class SchemaSpec:
    """What a record type's XDM schema consists of.

    :param record_type: Record type name.
    :param title: Schema title (also the default dataset title).
    :param class_id: ``$id`` of the XDM class.
    :param field_group_ids: ``$id`` of each standard field group, in ``allOf`` order.
    :param tenant_field_group: ``POST /tenant/fieldgroups`` body of the custom field group.
    :param identity_descriptor: The primary identity descriptor, or ``None``.
    """

    record_type: str
    title: str
    class_id: str
    field_group_ids: tuple[str, ...]
    tenant_field_group: dict[str, Any]
    identity_descriptor: IdentityDescriptorSpec | None


def _substitute_tenant(value: Any, tenant_key: str) -> Any:
    if isinstance(value, dict):
        return {
            (tenant_key if key == TENANT else key): _substitute_tenant(child, tenant_key)
            for key, child in value.items()
        }
    if isinstance(value, list):
        return [_substitute_tenant(child, tenant_key) for child in value]
    if isinstance(value, str) and value.startswith("/" + TENANT + "/"):
        return "/" + tenant_key + value[len(TENANT) + 1 :]
    return value


def tenant_field_group(record_type: RecordType | str, tenant_id: str) -> dict[str, Any]:
    """The custom field group of a record type, as a ``POST /tenant/fieldgroups`` body.

    :param record_type: Record type or its name.
    :param tenant_id: AEP tenant id (with or without the leading underscore).
    """
    spec = get_record_type(record_type) if isinstance(record_type, str) else record_type
    tenant_key = "_" + tenant_id.lstrip("_")
    kind = "Profile" if spec.schema.class_id == PROFILE_CLASS else spec.name.replace("_", " ").title()
    return {
        "type": "object",
        "title": f"Capillary Loyalty {kind} Fields",
        "description": f"Capillary fields of the {spec.name} record type with no standard XDM field.",
        "meta:intendedToExtend": [spec.schema.class_id],
        "definitions": {
            "capillary": {
                "properties": {
                    tenant_key: {
                        "type": "object",
                        "properties": _substitute_tenant(spec.schema.tenant_properties, tenant_key),
                    }
                }
            }
        },
        "allOf": [{"$ref": "#/definitions/capillary"}],
    }


def schema_spec(
    record_type: RecordType | str,
    tenant_id: str,
    *,
    identity_namespaces: IdentityNamespaces | None = None,
    title: str | None = None,
) -> SchemaSpec:
    """The schema specification of a record type.

    :param record_type: Record type or its name.
    :param tenant_id: AEP tenant id (with or without the leading underscore).
    :param identity_namespaces: Namespace codes; the customer namespace names the descriptor's namespace.
        Default :class:`~airflow_provider_capillary.xdm.identity.IdentityNamespaces` ().
    :param title: Schema title. Default: the record type's (e.g. ``Capillary Loyalty Profiles``).
    """
    spec = get_record_type(record_type) if isinstance(record_type, str) else record_type
    namespaces = identity_namespaces or IdentityNamespaces()
    tenant_key = "_" + tenant_id.lstrip("_")
    descriptor = None
    if spec.schema.primary_identity_path is not None:
        descriptor = IdentityDescriptorSpec(
            source_property=_substitute_tenant(spec.schema.primary_identity_path, tenant_key),
            namespace=namespaces.customer,
        )
    return SchemaSpec(
        record_type=spec.name,
        title=title or spec.schema.title,
        class_id=spec.schema.class_id,
        field_group_ids=spec.schema.field_group_ids,
        tenant_field_group=tenant_field_group(spec, tenant_id),
        identity_descriptor=descriptor,
    )
