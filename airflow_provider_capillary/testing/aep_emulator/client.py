"""A minimal raw-HTTP driver of the emulator for tests, benchmarks and demos.

It speaks the documented AEP requests directly with ``requests`` (it is deliberately not the
provider's hook), so emulator tests do not depend on the code they are meant to check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

HTTP_API_SPEC = {"id": "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb", "version": "1.0"}
DATA_LAKE_SPEC = {"id": "c604ff05-7f1a-43c0-8e18-33bf874cb11c", "version": "1.0"}
XDM_FLOW_SPEC = {"id": "d8a6f005-7eaf-4153-983e-e8574508b877", "version": "1.0"}
REGISTRY = "/data/foundation/schemaregistry"
CATALOG = "/data/foundation/catalog"
FLOWS = "/data/foundation/flowservice"
FULL_CONTENT_TYPE = "application/vnd.adobe.xed-full+json;version=1"


@dataclass(frozen=True)
class StreamingTarget:
    """
    Everything needed to stream into one dataset.

    :param schema_id: the schema ``$id``.
    :param dataset_id: the Catalog dataset id.
    :param connection_id: the HTTP API base connection id.
    :param inlet_url: the connection's ``inletUrl``.
    :param flow_id: the dataflow id.
    :param org_id: the IMS org id for message headers.
    """

    schema_id: str
    dataset_id: str
    connection_id: str
    inlet_url: str
    flow_id: str
    org_id: str

    @property
    def batch_url(self) -> str:
        """The multi-message endpoint of the inlet."""
        return self.inlet_url.replace("/collection/", "/collection/batch/", 1)

    def envelope(self, entity: dict[str, Any], **header: Any) -> dict[str, Any]:
        """
        A DCS message envelope carrying ``entity``.

        :param entity: the ``xdmEntity``.
        :param header: header fields to override (a value of ``None`` removes the field).
        """
        schema_ref = {"id": self.schema_id, "contentType": FULL_CONTENT_TYPE}
        fields: dict[str, Any] = {
            "schemaRef": schema_ref,
            "imsOrgId": self.org_id,
            "datasetId": self.dataset_id,
            "flowId": self.flow_id,
            "source": {"name": "Capillary"},
        }
        fields.update(header)
        return {
            "header": {key: value for key, value in fields.items() if value is not None},
            "body": {"xdmMeta": {"schemaRef": schema_ref}, "xdmEntity": entity},
        }


class EmulatorClient:
    """
    Authenticated raw calls to an emulator (or any AEP-compatible endpoint on one base URL).

    :param url: base URL of the emulator.
    :param client_id: OAuth client id (also sent as ``x-api-key``).
    :param client_secret: OAuth client secret.
    :param org_id: IMS org id.
    :param sandbox: sandbox name sent in ``x-sandbox-name``.
    """

    def __init__(
        self,
        url: str,
        *,
        client_id: str = "emulator-client-id",
        client_secret: str = "emulator-client-secret",
        org_id: str = "EMULATORORG@AdobeOrg",
        sandbox: str = "prod",
    ) -> None:
        self.url = url
        self.client_id = client_id
        self._client_secret = client_secret
        self.org_id = org_id
        self.sandbox = sandbox
        self.session = requests.Session()
        self.token = self.fetch_token()

    def fetch_token(self) -> str:
        """Request a token from IMS (``client_credentials``) and return it."""
        response = self.session.post(
            f"{self.url}/ims/token/v3",
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self._client_secret,
                "scope": "openid,AdobeID,read_organizations",
            },
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def headers(self, **overrides: str | None) -> dict[str, str]:
        """
        The platform headers; ``overrides`` replace or (with ``None``) remove some.

        Keyword names use ``_`` for ``-`` (``x_sandbox_name="dev"``).
        """
        headers: dict[str, str | None] = {
            "Authorization": f"Bearer {self.token}",
            "x-api-key": self.client_id,
            "x-gw-ims-org-id": self.org_id,
            "x-sandbox-name": self.sandbox,
        }
        headers.update({key.replace("_", "-"): value for key, value in overrides.items()})
        return {key: value for key, value in headers.items() if value is not None}

    def call(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        """
        Send one request to ``url + path`` (platform headers unless ``headers`` is given).

        :param method: HTTP method.
        :param path: path (and query) below the base URL, or an absolute URL.
        :param headers: headers to send instead of :meth:`headers`.
        :param kwargs: passed to ``requests`` (``json``, ``params``, ``data``...).
        """
        url = path if path.startswith("http") else self.url + path
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, url, headers=self.headers() if headers is None else headers, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        """
        Like :meth:`call`, but require ``status`` and return the decoded JSON body (``None`` if empty).

        :param method: HTTP method.
        :param path: path below the base URL.
        :param status: the expected status.
        :param kwargs: passed to :meth:`call`.
        """
        response = self.call(method, path, **kwargs)
        if response.status_code != status:
            raise AssertionError(f"{method} {path}: expected {status}, got {response.status_code} {response.text}")
        return response.json() if response.content else None

    def create_fieldgroup(self, title: str, fields: dict[str, Any], extends: str) -> str:
        """
        Create a tenant field group whose ``fields`` live under the tenant object; return its ``$id``.

        :param title: field group title.
        :param fields: JSON Schema properties placed under ``_{tenantId}``.
        :param extends: the class ``$id`` it is intended to extend.
        """
        tenant = "_" + str(self.ok("GET", f"{REGISTRY}/stats")["tenantId"])
        body = {
            "title": title,
            "type": "object",
            "meta:intendedToExtend": [extends],
            "definitions": {"custom": {"properties": {tenant: {"type": "object", "properties": fields}}}},
            "allOf": [{"$ref": "#/definitions/custom"}],
        }
        return str(self.ok("POST", f"{REGISTRY}/tenant/fieldgroups", 201, json=body)["$id"])

    def create_schema(self, title: str, refs: list[str]) -> dict[str, Any]:
        """
        Create a schema from a class and field group ``$ref``s; return the created resource.

        :param title: schema title.
        :param refs: the class ``$id`` followed by field group ``$id``s.
        """
        body = {"title": title, "type": "object", "allOf": [{"$ref": ref} for ref in refs]}
        return dict(self.ok("POST", f"{REGISTRY}/tenant/schemas", 201, json=body))

    def create_dataset(self, name: str, schema_id: str, tags: dict[str, Any] | None = None) -> str:
        """
        Create a dataset of a schema; return its id.

        :param name: dataset name.
        :param schema_id: the schema ``$id``.
        :param tags: optional Catalog tags.
        """
        body: dict[str, Any] = {"name": name, "schemaRef": {"id": schema_id, "contentType": FULL_CONTENT_TYPE}}
        if tags:
            body["tags"] = tags
        return str(self.ok("POST", f"{CATALOG}/dataSets", 201, json=body)[0].rsplit("/", 1)[-1])

    def create_connection(self, name: str, *, authenticated: bool = False) -> tuple[str, str]:
        """
        Create an HTTP API streaming base connection; return its id and ``inletUrl``.

        :param name: connection name.
        :param authenticated: create an authenticated inlet.
        """
        body = {
            "name": name,
            "connectionSpec": HTTP_API_SPEC,
            "auth": {
                "specName": "Streaming Connection",
                "params": {"dataType": "xdm", "name": name, "authenticationRequired": authenticated},
            },
        }
        connection_id = str(self.ok("POST", f"{FLOWS}/connections", 201, json=body)["id"])
        item = self.ok("GET", f"{FLOWS}/connections/{connection_id}")["items"][0]
        return connection_id, str(item["auth"]["params"]["inletUrl"])

    def create_flow(self, connection_id: str, dataset_id: str) -> str:
        """
        Create source + target connections and an XDM dataflow into ``dataset_id``; return the flow id.

        :param connection_id: the base connection id.
        :param dataset_id: the target dataset.
        """
        source = self.ok(
            "POST",
            f"{FLOWS}/sourceConnections",
            201,
            json={"name": "source", "baseConnectionId": connection_id, "connectionSpec": HTTP_API_SPEC},
        )["id"]
        target = self.ok(
            "POST",
            f"{FLOWS}/targetConnections",
            201,
            json={"name": "target", "connectionSpec": DATA_LAKE_SPEC, "params": {"dataSetId": dataset_id}},
        )["id"]
        body = {
            "name": "flow",
            "flowSpec": XDM_FLOW_SPEC,
            "sourceConnectionIds": [source],
            "targetConnectionIds": [target],
        }
        return str(self.ok("POST", f"{FLOWS}/flows", 201, json=body)["id"])

    def primary_identity(self, schema_id: str, path: str, namespace: str) -> dict[str, Any]:
        """
        Create a primary identity descriptor; return it.

        :param schema_id: the schema ``$id``.
        :param path: the identity field, e.g. ``/_acmecorp/capillary/customerId``.
        :param namespace: the identity namespace code.
        """
        body = {
            "@type": "xdm:descriptorIdentity",
            "xdm:sourceSchema": schema_id,
            "xdm:sourceVersion": 1,
            "xdm:sourceProperty": path,
            "xdm:namespace": namespace,
            "xdm:property": "xdm:code",
            "xdm:isPrimary": True,
        }
        return dict(self.ok("POST", f"{REGISTRY}/tenant/descriptors", 201, json=body))

    def streaming_target(
        self, title: str, refs: list[str], *, authenticated: bool = False, tags: dict[str, Any] | None = None
    ) -> StreamingTarget:
        """
        Create schema, dataset, connection and dataflow in one go.

        :param title: schema, dataset and connection name.
        :param refs: the class ``$id`` followed by field group ``$id``s.
        :param authenticated: create an authenticated inlet.
        :param tags: Catalog tags of the dataset.
        """
        schema_id = str(self.create_schema(title, refs)["$id"])
        dataset_id = self.create_dataset(title, schema_id, tags)
        connection_id, inlet_url = self.create_connection(title, authenticated=authenticated)
        flow_id = self.create_flow(connection_id, dataset_id)
        return StreamingTarget(schema_id, dataset_id, connection_id, inlet_url, flow_id, self.org_id)
