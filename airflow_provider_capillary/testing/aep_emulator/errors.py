"""Error responses of the emulated AEP services, in the body shapes Adobe documents for each service."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping


class APIError(Exception):
    """
    An error response: raised by a handler, turned into a JSON response by the application.

    :param status: the HTTP status code.
    :param body: the JSON body.
    :param headers: extra response headers (e.g. ``Retry-After``).
    """

    def __init__(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = dict(body)
        self.headers = dict(headers or {})


def gateway_error(status: int, code: str, message: str) -> APIError:
    """
    The API gateway's header errors (Platform troubleshooting guide): ``{"error_code", "message"}``.

    :param status: HTTP status (400, 401 or 403).
    :param code: the documented ``error_code`` (e.g. ``403010``).
    :param message: the documented message.
    """
    return APIError(status, {"error_code": code, "message": message})


def content_type_error() -> APIError:
    """The gateway's answer to a POST/PUT/PATCH without a valid content type."""
    return APIError(
        400,
        {
            "type": "https://ns.adobe.com/aep/errors/GW-400",
            "status": 400,
            "title": "BadRequestError",
            "detail": "A valid content-type must be specified",
        },
    )


def problem(status: int, code: str, title: str, detail: str, *, report: Mapping[str, Any] | None = None) -> APIError:
    """
    An RFC 7807 style problem body as most Platform services return (``type``/``title``/``status``/``detail``).

    :param status: HTTP status.
    :param code: the service error code used in ``type`` (e.g. ``XDM-1012-404``).
    :param title: short title.
    :param detail: what is wrong, specifically.
    :param report: optional ``report`` object.
    """
    body: dict[str, Any] = {
        "type": f"http://ns.adobe.com/aep/errors/{code}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if report is not None:
        body["report"] = dict(report)
    return APIError(status, body)


def registry_error(status: int, code: str, title: str, detail: str) -> APIError:
    """
    A Schema Registry error (``schema-registry.yaml`` examples): problem body with a registry ``report``.

    :param status: HTTP status.
    :param code: the ``XDM-nnnn-sss`` code.
    :param title: short title.
    :param detail: the ``detail``/``detailed-message`` text.
    """
    report = {
        "registryRequestId": str(uuid.uuid4()),
        "timestamp": time.strftime("%m-%d-%Y %H:%M:%S", time.gmtime()),
        "detailed-message": detail,
        "sub-errors": [],
    }
    return problem(status, code, title, detail, report=report)


def flow_service_error(status: int, code: str, title: str, detail: str) -> APIError:
    """
    A Flow Service error: problem body whose ``type`` carries the ``CONNECTOR-nnnn-sss`` style code.

    :param status: HTTP status.
    :param code: the numeric part of the code, e.g. ``2105-400``.
    :param title: short title.
    :param detail: what is wrong.
    """
    return problem(status, f"CONNECTOR-{code}", title, detail, report={"detailed-message": detail})


def catalog_error(status: int, message: str) -> APIError:
    """
    A Catalog error (``catalog.yaml``: ``{"type", "title", "status", "detail"}`` with a Catalog code).

    :param status: HTTP status.
    :param message: what is wrong.
    """
    return problem(status, f"CAT-{status}", "Catalog request failed", message)


def dcs_error(status: int, title: str, message: str) -> APIError:
    """
    A DCS (streaming ingestion) error body.

    :param status: HTTP status.
    :param title: short title (e.g. ``Invalid XDM Message Format``).
    :param message: the ``report.message`` text.
    """
    return APIError(
        status,
        {
            "type": "http://ns.adobe.com/adobecloud/problem/data-collection-service/inlet",
            "status": status,
            "title": title,
            "report": {"message": message},
        },
    )


def dcs_authorization_error(message: str) -> APIError:
    """
    The documented 401 of an authenticated inlet (note: ``status`` is a string there).

    :param message: the ``report.message`` text.
    """
    return APIError(
        401,
        {
            "type": "https://ns.adobe.com/adobecloud/problem/data-collection-service-authorization",
            "status": "401",
            "title": "Authorization",
            "report": {"message": message},
        },
    )
