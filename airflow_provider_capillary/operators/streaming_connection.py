"""Find or create the HTTP API streaming connection and the dataflow into a dataset."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_capillary.hooks.aep import AEPHook

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context


class AEPCreateStreamingConnectionOperator(BaseOperator):
    """Find or create an HTTP API streaming base connection (authenticated by default), its source connection, a
    Data Lake target connection to the dataset and the dataflow between them.

    Safe to run any number of times, also by runs racing each other (Flow Service names are not unique: see
    :meth:`AEPHook.find_or_create`); run it once per dataset with the same ``name`` and every dataset's dataflow
    shares one connection and inlet. AEP advises waiting about five minutes after a dataflow is created before
    streaming to it.

    :param name: Name of the streaming connection (and prefix of the other objects' names). (templated)
    :param dataset_id: Target dataset, e.g. from :class:`AEPCreateDatasetOperator`'s XCom. (templated)
    :param schema_id: The dataset's schema ``$id``. (templated)
    :param authenticated: Require a bearer token on the inlet (Adobe recommends it for PII). Default True.
    :param aep_conn_id: Connection of type ``adobe_experience_platform``. Default ``aep_default``. (templated)
    :return: ``connection_id``, ``inlet_id``, ``inlet_url``, ``source_connection_id``, ``target_connection_id``
        and ``flow_id``.
    """

    template_fields: Sequence[str] = ("name", "dataset_id", "schema_id", "aep_conn_id")
    ui_color = "#fa0f00"

    def __init__(
        self,
        *,
        name: str,
        dataset_id: str,
        schema_id: str,
        authenticated: bool = True,
        aep_conn_id: str = AEPHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.dataset_id = dataset_id
        self.schema_id = schema_id
        self.authenticated = authenticated
        self.aep_conn_id = aep_conn_id

    @cached_property
    def hook(self) -> AEPHook:
        return AEPHook(self.aep_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        hook = self.hook
        connection_id, created = hook.find_or_create(
            f"streaming connection {self.name!r}",
            find=lambda: _id_of(hook.find_base_connection(self.name)),
            create=lambda: hook.create_streaming_connection(self.name, authenticated=self.authenticated),
            delete=lambda item_id: hook.delete_flow_item("connections", item_id),
        )
        if created:
            self.log.info("Created streaming connection %r (%s)", self.name, connection_id)
        inlet_id, inlet_url = hook.get_inlet(connection_id)
        source_id, _ = hook.find_or_create(
            f"the source connection of {connection_id}",
            find=lambda: _id_of(hook.find_source_connection(connection_id)),
            create=lambda: hook.create_source_connection(f"{self.name} source", connection_id),
            delete=lambda item_id: hook.delete_flow_item("sourceConnections", item_id),
        )
        target_id, _ = hook.find_or_create(
            f"the target connection to {self.dataset_id}",
            find=lambda: _id_of(hook.find_target_connection(self.dataset_id)),
            create=lambda: hook.create_target_connection(
                f"{self.name} to {self.dataset_id}", self.dataset_id, self.schema_id
            ),
            delete=lambda item_id: hook.delete_flow_item("targetConnections", item_id),
        )
        flow_id, created = hook.find_or_create(
            f"the dataflow into {self.dataset_id}",
            find=lambda: _id_of(hook.find_dataflow(source_id, target_id)),
            create=lambda: hook.create_dataflow(f"{self.name} to {self.dataset_id}", source_id, target_id),
            delete=lambda item_id: hook.delete_flow_item("flows", item_id),
        )
        if created:
            self.log.info("Created dataflow %s into dataset %s", flow_id, self.dataset_id)
        return {
            "connection_id": connection_id,
            "inlet_id": inlet_id,
            "inlet_url": inlet_url,
            "source_connection_id": source_id,
            "target_connection_id": target_id,
            "flow_id": flow_id,
        }


def _id_of(item: dict[str, Any] | None) -> str | None:
    return str(item["id"]) if item is not None else None
