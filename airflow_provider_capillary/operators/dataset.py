"""Find or create an AEP dataset for a schema."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_capillary.exceptions import AEPConflictError
from airflow_provider_capillary.hooks.aep import AEPHook

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context


class AEPCreateDatasetOperator(BaseOperator):
    """Find a dataset by name, or create it for a schema, optionally enabled for Profile and Identity.

    Safe to run any number of times, also by runs racing each other (Catalog names are not unique: see
    :meth:`AEPHook.find_or_create`). A dataset of that name for another schema is an error; an existing dataset
    that lacks the requested Profile/Identity tags gets them.

    :param name: Dataset name. (templated)
    :param schema_id: ``$id`` of the dataset's XDM schema, e.g. from :class:`AEPCreateSchemaOperator`'s XCom.
        (templated)
    :param profile_enabled: Tag the dataset for Real-Time Customer Profile (the schema must be Profile-enabled).
        Default False.
    :param identity_enabled: Tag the dataset for Identity Service. Default: same as ``profile_enabled``.
    :param description: Dataset description. Default: the name. (templated)
    :param aep_conn_id: Connection of type ``adobe_experience_platform``. Default ``aep_default``. (templated)
    :return: ``dataset_id``, ``name``, ``schema_id`` and ``created``.
    """

    template_fields: Sequence[str] = ("name", "schema_id", "description", "aep_conn_id")
    ui_color = "#fa0f00"

    def __init__(
        self,
        *,
        name: str,
        schema_id: str,
        profile_enabled: bool = False,
        identity_enabled: bool | None = None,
        description: str | None = None,
        aep_conn_id: str = AEPHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.schema_id = schema_id
        self.profile_enabled = profile_enabled
        self.identity_enabled = identity_enabled
        self.description = description
        self.aep_conn_id = aep_conn_id

    @cached_property
    def hook(self) -> AEPHook:
        return AEPHook(self.aep_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        identity = self.profile_enabled if self.identity_enabled is None else self.identity_enabled
        hook = self.hook
        dataset: dict[str, Any] = {}

        def find() -> str | None:
            nonlocal dataset
            match = hook.find_dataset(self.name)
            dataset = match[1] if match else {}
            return match[0] if match else None

        dataset_id, created = hook.find_or_create(
            f"dataset {self.name!r}",
            find=find,
            create=lambda: hook.create_dataset(
                self.name,
                self.schema_id,
                profile_enabled=self.profile_enabled,
                identity_enabled=identity,
                description=self.description,
            ),
            delete=hook.delete_dataset,
        )
        if created:
            self.log.info("Created dataset %r (%s)", self.name, dataset_id)
            return {"dataset_id": dataset_id, "name": self.name, "schema_id": self.schema_id, "created": True}
        existing_schema = (dataset.get("schemaRef") or {}).get("id")
        if existing_schema != self.schema_id:
            raise AEPConflictError(
                f"Dataset {self.name!r} ({dataset_id}) exists for schema {existing_schema}, not {self.schema_id}"
            )
        tags = dataset.get("tags") or {}
        enabled = {name for name in ("unifiedProfile", "unifiedIdentity") if _tag_enabled(tags.get(name))}
        if (self.profile_enabled and "unifiedProfile" not in enabled) or (
            identity and "unifiedIdentity" not in enabled
        ):
            self.hook.enable_dataset_for_profile(dataset_id, identity=identity)
            self.log.info("Enabled dataset %r (%s) for Profile", self.name, dataset_id)
        self.log.info("Found dataset %r (%s)", self.name, dataset_id)
        return {"dataset_id": dataset_id, "name": self.name, "schema_id": self.schema_id, "created": False}


def _tag_enabled(values: Any) -> bool:
    """Catalog writes ``["enabled:true"]``; its own spec example has ``["enabled: true"]``: accept both."""
    return any(str(v).replace(" ", "").lower() == "enabled:true" for v in values or [])
