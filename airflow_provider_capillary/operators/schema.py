"""Find or create the XDM schema a record type's records conform to."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_capillary.exceptions import AEPConflictError, AEPValidationError
from airflow_provider_capillary.hooks.aep import AEPHook

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from airflow.sdk import Context

    from airflow_provider_capillary.xdm.schemas import SchemaSpec

#: Short names accepted for ``class_id``.
XDM_CLASSES = {
    "profile": "https://ns.adobe.com/xdm/context/profile",
    "experienceevent": "https://ns.adobe.com/xdm/context/experienceevent",
}


class AEPCreateSchemaOperator(BaseOperator):
    """Find an XDM schema by title, or create it: class, standard field groups, a tenant field group, the primary
    identity descriptor and, when asked, Profile enablement (descriptor first, then the ``union`` tag).

    Safe to run any number of times: a second run changes nothing. An existing schema of another class, or one
    whose primary identity is on another field, is a clear error rather than a silent reuse; standard field groups
    it lacks are added.

    Give either ``record_type`` (one of the ready-made specs: ``customer``, ``transaction``, ``loyalty_event``) or
    ``class_id`` with ``field_group_ids``.

    :param title: Schema title, unique in the sandbox. Default: the record type's (e.g. ``Capillary Loyalty
        Profiles``); required with ``class_id``. (templated)
    :param record_type: Ready-made schema spec to use. (templated)
    :param class_id: XDM class ``$id``, or ``profile`` / ``experienceevent``. (templated)
    :param field_group_ids: Standard field group ``$id``s (added to the record type's, if both are given).
        (templated)
    :param tenant_fields: With ``class_id``: JSON Schema ``properties`` to place under ``_{tenant id}`` in a tenant
        field group named ``tenant_field_group_title``. (templated)
    :param tenant_field_group_title: Title of that tenant field group. Default ``"{title} Fields"``. (templated)
    :param primary_identity_path: With ``class_id``: path of the primary identity field, ``{tenant}`` standing
        for ``_{tenant id}`` (e.g. ``/{tenant}/capillary/customerId``). (templated)
    :param identity_namespace: Namespace code of the primary identity; created as a ``Cross_device`` namespace
        when missing. Default ``CAPLOYALTY``. (templated)
    :param enable_profile: Enable the schema for Real-Time Customer Profile (irreversible in AEP). Default False.
    :param aep_conn_id: Connection of type ``adobe_experience_platform``. Default ``aep_default``. (templated)
    :return: ``schema_id``, ``schema_alt_id``, ``title``, ``tenant_id``, ``field_group_id`` (or None),
        ``profile_enabled`` and ``created``.
    """

    template_fields: Sequence[str] = (
        "title",
        "record_type",
        "class_id",
        "field_group_ids",
        "tenant_fields",
        "tenant_field_group_title",
        "primary_identity_path",
        "identity_namespace",
        "aep_conn_id",
    )
    template_fields_renderers = {"field_group_ids": "json", "tenant_fields": "json"}
    ui_color = "#fa0f00"

    def __init__(
        self,
        *,
        title: str | None = None,
        record_type: str | None = None,
        class_id: str | None = None,
        field_group_ids: Sequence[str] = (),
        tenant_fields: dict[str, Any] | None = None,
        tenant_field_group_title: str | None = None,
        primary_identity_path: str | None = None,
        identity_namespace: str = "CAPLOYALTY",
        enable_profile: bool = False,
        aep_conn_id: str = AEPHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.record_type = record_type
        self.class_id = class_id
        self.field_group_ids = field_group_ids
        self.tenant_fields = tenant_fields
        self.tenant_field_group_title = tenant_field_group_title
        self.primary_identity_path = primary_identity_path
        self.identity_namespace = identity_namespace
        self.enable_profile = enable_profile
        self.aep_conn_id = aep_conn_id

    @cached_property
    def hook(self) -> AEPHook:
        return AEPHook(self.aep_conn_id)

    def _spec(self, tenant_id: str) -> SchemaSpec:
        from airflow_provider_capillary.xdm.identity import IdentityNamespaces
        from airflow_provider_capillary.xdm.schemas import IdentityDescriptorSpec, SchemaSpec, schema_spec

        if bool(self.record_type) == bool(self.class_id):
            raise ValueError("Give exactly one of record_type (a ready-made spec) or class_id")
        if self.record_type:
            spec = schema_spec(
                self.record_type,
                tenant_id,
                identity_namespaces=IdentityNamespaces(customer=self.identity_namespace),
                title=self.title,
            )
            extra = tuple(ref for ref in self.field_group_ids if ref not in spec.field_group_ids)
            return SchemaSpec(
                record_type=spec.record_type,
                title=spec.title,
                class_id=spec.class_id,
                field_group_ids=spec.field_group_ids + extra,
                tenant_field_group=spec.tenant_field_group,
                identity_descriptor=spec.identity_descriptor,
            )
        if not self.title:
            raise ValueError("title is required with class_id")
        tenant_key = f"_{tenant_id}"
        class_id = XDM_CLASSES.get(str(self.class_id).lower(), str(self.class_id))
        field_group: dict[str, Any] = {}
        if self.tenant_fields:
            field_group = {
                "title": self.tenant_field_group_title or f"{self.title} Fields",
                "description": f"Fields of {self.title} with no standard XDM home",
                "meta:intendedToExtend": [class_id],
                "definitions": {
                    "tenant": {"properties": {tenant_key: {"type": "object", "properties": self.tenant_fields}}}
                },
            }
        descriptor = None
        if self.primary_identity_path:
            descriptor = IdentityDescriptorSpec(
                source_property=self.primary_identity_path.replace("{tenant}", tenant_key),
                namespace=self.identity_namespace,
            )
        return SchemaSpec(
            record_type="custom",
            title=self.title,
            class_id=class_id,
            field_group_ids=tuple(self.field_group_ids),
            tenant_field_group=field_group,
            identity_descriptor=descriptor,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        hook = self.hook
        tenant_id = hook.get_tenant_id()
        spec = self._spec(tenant_id)

        field_group_id = self._ensure_field_group(spec)
        field_groups = [*spec.field_group_ids, *([field_group_id] if field_group_id else [])]
        existing = hook.find_schema(spec.title)
        created = None
        if existing is None:
            # Another run may create it at the same moment: then the title is taken and we use theirs.
            created, existing = _create_or_find(
                lambda: hook.create_schema(spec.title, spec.class_id, field_groups),
                lambda: hook.find_schema(spec.title),
            )
        if created is not None:
            schema = created
            self.log.info("Created schema %r (%s)", spec.title, schema["$id"])
        else:
            assert existing is not None
            schema = hook.get_schema(existing["$id"])
            if schema.get("meta:class") != spec.class_id:
                raise AEPConflictError(
                    f"Schema {spec.title!r} exists with class {schema.get('meta:class')}, not {spec.class_id}"
                )
            schema = hook.add_field_groups(schema["$id"], field_groups)
            self.log.info("Found schema %r (%s)", spec.title, schema["$id"])
        schema_id = schema["$id"]

        if spec.identity_descriptor is not None:
            self._ensure_namespace(spec.identity_descriptor.namespace)
            self._ensure_primary_descriptor(
                schema_id, spec.identity_descriptor.source_property, spec.identity_descriptor.namespace
            )
        if self.enable_profile:
            schema = hook.enable_schema_for_profile(schema_id)
        return {
            "schema_id": schema_id,
            "schema_alt_id": schema.get("meta:altId"),
            "title": spec.title,
            "tenant_id": tenant_id,
            "field_group_id": field_group_id,
            "profile_enabled": "union" in schema.get("meta:immutableTags", []),
            "created": created is not None,
        }

    def _ensure_field_group(self, spec: SchemaSpec) -> str | None:
        body = spec.tenant_field_group
        if not body:
            return None
        found = self.hook.find_field_group(body["title"])
        if found is not None:
            return str(found["$id"])
        created, found = _create_or_find(
            lambda: self.hook.create_field_group(
                body["title"], body["meta:intendedToExtend"], body["definitions"], body.get("description")
            ),
            lambda: self.hook.find_field_group(body["title"]),
        )
        if created is None:
            assert found is not None
            return str(found["$id"])
        self.log.info("Created field group %r (%s)", body["title"], created["$id"])
        return str(created["$id"])

    def _ensure_namespace(self, code: str) -> None:
        codes = {str(ns.get("code", "")).lower() for ns in self.hook.list_identity_namespaces()}
        if code.lower() not in codes:
            self.hook.create_identity_namespace(code, f"{code} identity (Capillary loyalty id)")
            self.log.info("Created identity namespace %s", code)

    def _ensure_primary_descriptor(self, schema_id: str, source_property: str, namespace: str) -> None:
        primaries = [
            d
            for d in self.hook.list_descriptors(schema_id)
            if d.get("@type") == "xdm:descriptorIdentity" and d.get("xdm:isPrimary")
        ]
        for descriptor in primaries:
            if descriptor.get("xdm:sourceProperty") == source_property:
                if descriptor.get("xdm:namespace") != namespace:
                    raise AEPConflictError(
                        f"The primary identity {source_property} of {schema_id} is in namespace "
                        f"{descriptor.get('xdm:namespace')}, not {namespace}"
                    )
                return
        if primaries:
            raise AEPConflictError(
                f"Schema {schema_id} already has its primary identity on {primaries[0].get('xdm:sourceProperty')}, "
                f"not {source_property}"
            )
        self.hook.create_identity_descriptor(schema_id, source_property, namespace)


def _create_or_find(
    create: Callable[[], dict[str, Any]], find: Callable[[], dict[str, Any] | None]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(created, None)``, or ``(None, found)`` when the create lost a race to another run for the same title."""
    try:
        return create(), None
    except (AEPValidationError, AEPConflictError):
        found = find()
        if found is None:
            raise
        return None, found
