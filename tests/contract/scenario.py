"""A realistic set-up through ``AEPHook``, shared by the contract tests: schema, dataset, streaming inlet, flow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_capillary.hooks.aep import AEPHook

PROFILE_CLASS = "https://ns.adobe.com/xdm/context/profile"
STANDARD_GROUPS = (
    "https://ns.adobe.com/xdm/context/profile-person-details",
    "https://ns.adobe.com/xdm/context/profile-personal-details",
    "https://ns.adobe.com/xdm/context/identitymap",
    "https://ns.adobe.com/xdm/mixins/profile/profile-loyalty-details",
)
TITLE = "Capillary Loyalty Profiles"
FIELD_GROUP_TITLE = "Capillary Profile Extension"
CONNECTION_NAME = "Capillary Loyalty Streaming"
NAMESPACE = "CAPLOYALTY"


@dataclass(frozen=True)
class StreamingSetup:
    """The ids a streaming run needs.

    :param tenant: the Schema Registry tenant id.
    :param schema_id: the profile schema ``$id``.
    :param dataset_id: the Profile-enabled dataset.
    :param connection_id: the HTTP API base connection.
    :param inlet_id: the DCS inlet id.
    :param inlet_url: the inlet URL (re-based on the connection's ``dcs_url``).
    :param source_id: the source connection.
    :param target_id: the target connection.
    :param flow_id: the dataflow.
    """

    tenant: str
    schema_id: str
    dataset_id: str
    connection_id: str
    inlet_id: str
    inlet_url: str
    source_id: str
    target_id: str
    flow_id: str


def field_group_definitions(tenant: str) -> dict[str, Any]:
    """The tenant field group: ``_{tenant}.capillary.customerId`` and ``pointsBalance`` (aep-api.md 2.6).

    :param tenant: the tenant id.
    """
    fields = {
        "customerId": {"title": "Customer ID", "type": "string"},
        "pointsBalance": {"title": "Points", "type": "number"},
    }
    return {
        "capillary": {
            "properties": {
                f"_{tenant}": {
                    "type": "object",
                    "properties": {"capillary": {"type": "object", "properties": fields}},
                }
            }
        }
    }


def profile_record(tenant: str, customer_id: str, points: float) -> dict[str, Any]:
    """A profile record of the set-up's schema (compatibility-mode names).

    :param tenant: the tenant id.
    :param customer_id: the primary identity.
    :param points: the loyalty points.
    """
    return {
        "_id": f"cap-profile-{customer_id}",
        "identityMap": {NAMESPACE: [{"id": customer_id, "authenticatedState": "authenticated", "primary": True}]},
        "person": {"name": {"firstName": "Jane", "lastName": "Doe"}},
        "loyalty": {"points": points, "tier": "gold"},
        f"_{tenant}": {"capillary": {"customerId": customer_id, "pointsBalance": points}},
    }


def set_up_streaming(hook: AEPHook) -> StreamingSetup:
    """Find-or-create everything a streaming run needs, as the set-up operators do (look up, then create).

    :param hook: the hook, connected to an emulator.
    """
    tenant = hook.get_tenant_id()
    if NAMESPACE not in {namespace["code"] for namespace in hook.list_identity_namespaces()}:
        hook.create_identity_namespace(NAMESPACE, "Capillary Loyalty ID")

    group = hook.find_field_group(FIELD_GROUP_TITLE) or hook.create_field_group(
        FIELD_GROUP_TITLE, [PROFILE_CLASS], field_group_definitions(tenant)
    )
    schema = hook.find_schema(TITLE) or hook.create_schema(TITLE, PROFILE_CLASS, STANDARD_GROUPS[:2])
    schema_id = str(schema["$id"])
    hook.add_field_groups(schema_id, [*STANDARD_GROUPS, group["$id"]])
    if not hook.list_descriptors(schema_id):
        hook.create_identity_descriptor(schema_id, f"/_{tenant}/capillary/customerId", NAMESPACE)
    hook.enable_schema_for_profile(schema_id)
    hook.get_schema(schema_id, full=True)

    found = hook.find_dataset(TITLE)
    dataset_id = found[0] if found else None
    if dataset_id is None:
        dataset_id = hook.create_dataset(TITLE, schema_id, profile_enabled=True, identity_enabled=True)
    hook.get_dataset(dataset_id)

    connection = hook.find_base_connection(CONNECTION_NAME)
    connection_id = str(connection["id"]) if connection else hook.create_streaming_connection(CONNECTION_NAME)
    inlet_id, inlet_url = hook.get_inlet(connection_id)
    source = hook.find_source_connection(connection_id)
    source_id = str(source["id"]) if source else hook.create_source_connection("Capillary source", connection_id)
    target = hook.find_target_connection(dataset_id)
    target_id = (
        str(target["id"]) if target else hook.create_target_connection("Capillary target", dataset_id, schema_id)
    )
    flow = hook.find_dataflow(source_id, target_id)
    flow_id = str(flow["id"]) if flow else hook.create_dataflow("Capillary flow", source_id, target_id)
    return StreamingSetup(
        tenant, schema_id, dataset_id, connection_id, inlet_id, inlet_url, source_id, target_id, flow_id
    )


def envelope(hook: AEPHook, setup: StreamingSetup, entity: dict[str, Any]) -> dict[str, Any]:
    """A DCS envelope of ``entity`` for the set-up's schema, dataset and flow.

    :param hook: the hook (its connection's org id goes in the header).
    :param setup: the set-up.
    :param entity: the XDM record.
    """
    return hook.streaming_message(
        entity,
        schema_id=setup.schema_id,
        dataset_id=setup.dataset_id,
        flow_id=setup.flow_id,
        org_id=hook.settings.org_id,
    )
