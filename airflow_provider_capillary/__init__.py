"""Airflow provider that streams Capillary loyalty data into Adobe Experience Platform."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

AEP_CONN_TYPE = "adobe_experience_platform"
CAPILLARY_CONN_TYPE = "capillary"


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata Airflow reads through the ``apache_airflow_provider`` entry point."""
    return {
        "package-name": "airflow-provider-capillary",
        "name": "Capillary to Adobe Experience Platform",
        "description": "Stream Capillary loyalty data (profiles, points, tiers, rewards, transactions) "
        "into Adobe Experience Platform as XDM records.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Adobe Experience Platform",
                "external-doc-url": "https://experienceleague.adobe.com/docs/experience-platform.html",
                "tags": ["service"],
            },
            {
                "integration-name": "Capillary",
                "external-doc-url": "https://docs.capillarytech.com/",
                "tags": ["service"],
            },
        ],
        "operators": [
            {
                "integration-name": "Adobe Experience Platform",
                "python-modules": [
                    "airflow_provider_capillary.operators.schema",
                    "airflow_provider_capillary.operators.dataset",
                    "airflow_provider_capillary.operators.streaming_connection",
                    "airflow_provider_capillary.operators.capillary_to_aep",
                ],
            },
        ],
        "sensors": [
            {
                "integration-name": "Adobe Experience Platform",
                "python-modules": ["airflow_provider_capillary.sensors.aep"],
            },
            {
                "integration-name": "Capillary",
                "python-modules": ["airflow_provider_capillary.sensors.extracts"],
            },
        ],
        "triggers": [
            {
                "integration-name": "Adobe Experience Platform",
                "python-modules": ["airflow_provider_capillary.triggers.aep"],
            },
            {
                "integration-name": "Capillary",
                "python-modules": ["airflow_provider_capillary.triggers.extracts"],
            },
        ],
        "hooks": [
            {
                "integration-name": "Adobe Experience Platform",
                "python-modules": ["airflow_provider_capillary.hooks.aep"],
            },
            {
                "integration-name": "Capillary",
                "python-modules": ["airflow_provider_capillary.hooks.capillary"],
            },
        ],
        "connection-types": [
            {
                "connection-type": AEP_CONN_TYPE,
                "hook-class-name": "airflow_provider_capillary.hooks.aep.AEPHook",
                "hook-name": "Adobe Experience Platform",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "schema"],
                    "relabeling": {"login": "Client ID", "password": "Client Secret"},
                    "placeholders": {
                        "login": "OAuth Server-to-Server client id (also the x-api-key)",
                        "password": "OAuth Server-to-Server client secret",
                    },
                },
                "conn-fields": {
                    "org_id": {
                        "label": "Org ID",
                        "description": "IMS organisation id, e.g. 5C1328435BF324E90A49402A@AdobeOrg.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "sandbox": {
                        "label": "Sandbox",
                        "description": "Sandbox name (all lower-case).",
                        "schema": {"type": ["string", "null"], "default": "prod"},
                    },
                    "scopes": {
                        "label": "Scopes",
                        "description": "Comma-separated IMS scopes of the Developer Console project.",
                        "schema": {
                            "type": ["string", "null"],
                            "default": "openid,session,AdobeID,read_organizations,"
                            "additional_info.projectedProductContext",
                        },
                    },
                    "ims_url": {
                        "label": "IMS base URL",
                        "description": "Override of https://ims-na1.adobelogin.com (proxies, the local emulator).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "platform_url": {
                        "label": "Platform base URL",
                        "description": "Override of https://platform.adobe.io (regions, proxies, the local emulator).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "dcs_url": {
                        "label": "Streaming (DCS) base URL",
                        "description": "Override of the host of streaming inlet URLs (https://dcs.adobedc.net).",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            },
            {
                "connection-type": CAPILLARY_CONN_TYPE,
                "hook-class-name": "airflow_provider_capillary.hooks.capillary.CapillaryHook",
                "hook-name": "Capillary",
                "ui-field-behaviour": {
                    "hidden-fields": ["port", "schema"],
                    "relabeling": {
                        "host": "API base URL",
                        "login": "Client key / till username",
                        "password": "Client secret / till password",
                    },
                    "placeholders": {
                        "host": "https://eu.api.capillarytech.com",
                        "login": "OAuth client key (auth type oauth) or till username (basic)",
                        "password": "OAuth client secret (oauth) or the till's plain password (basic)",
                    },
                },
                "conn-fields": {
                    "auth_type": {
                        "label": "Auth type",
                        "description": "oauth: client key/secret exchanged for a token (recommended for "
                        "backend integrations); basic: till username and password (sent as its MD5).",
                        "schema": {"type": "string", "enum": ["oauth", "basic"], "default": "oauth"},
                    },
                    "org_id": {
                        "label": "Org ID",
                        "description": "Capillary org id; the connection test checks the credentials belong to it.",
                        "schema": {"type": ["integer", "null"], "minimum": 1},
                    },
                    "token_header": {
                        "label": "OAuth token header",
                        "description": "Header that carries the OAuth token (docs disagree; Authorization sends "
                        "'Bearer <token>').",
                        "schema": {"type": ["string", "null"], "default": "X-CAP-API-OAUTH-TOKEN"},
                    },
                    "password_is_md5": {
                        "label": "Password is MD5",
                        "description": "Basic auth: the password field holds the MD5 hex digest, not the password.",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "default_source": {
                        "label": "Source",
                        "description": "Profile source of customer reads (INSTORE, ALL, MOBILE_APP, ...).",
                        "schema": {"type": ["string", "null"], "default": "INSTORE"},
                    },
                    "account_id": {
                        "label": "Account ID",
                        "description": "Source account id, for multi-account sources.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "program_id": {
                        "label": "Loyalty program ID",
                        "description": "Program whose points and tier are reported; empty for the default one.",
                        "schema": {"type": ["integer", "null"], "minimum": 1},
                    },
                    "currency": {
                        "label": "Currency",
                        "description": "The org's ISO 4217 currency, used where Capillary gives none.",
                        "schema": {"type": ["string", "null"], "pattern": "^[A-Za-z]{3}$"},
                    },
                    "timezone": {
                        "label": "Timezone",
                        "description": "IANA zone of Capillary times without an offset and of date parameters.",
                        "schema": {"type": ["string", "null"], "default": "UTC"},
                    },
                    "page_size": {
                        "label": "Page size",
                        "description": "Items per page (capped by each endpoint's maximum, 10 for the ledger).",
                        "schema": {"type": ["integer", "null"], "minimum": 1, "default": 100},
                    },
                    "requests_per_minute": {
                        "label": "Requests per minute",
                        "description": "Client-side budget matching the org's rate limit; 0 disables it.",
                        "schema": {"type": ["number", "null"], "minimum": 0, "default": 200},
                    },
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Seconds to wait for a connection or a response.",
                        "schema": {"type": ["number", "null"], "minimum": 0, "default": 30},
                    },
                    "v2_offset_mode": {
                        "label": "v2 offset counts",
                        "description": "Whether v2 list 'offset' counts records or pages on this cluster.",
                        "schema": {"type": "string", "enum": ["record", "page"], "default": "record"},
                    },
                },
            },
        ],
    }
