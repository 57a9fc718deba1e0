"""Exceptions raised by the provider's hooks and operators.

Messages carry what a user needs to act on (HTTP status, the service's error code, title and detail, the request
id) and never headers, tokens, secrets or payloads.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import AirflowException


class AEPError(AirflowException):
    """An Adobe Experience Platform (or Adobe IMS) call failed.

    :param message: What was being done and why it failed.
    :param status: HTTP status code, if a response was received.
    :param error_code: AEP's machine-readable error code (``error_code``, ``errorCode`` or the OAuth ``error``).
    :param title: AEP's short error title.
    :param detail: AEP's error detail or message.
    :param request_id: The ``x-request-id`` of the failed call, for Adobe support.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        title: str | None = None,
        detail: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.title = title
        self.detail = detail
        self.request_id = request_id
        parts = [message]
        if status is not None:
            parts.append(f"HTTP {status}")
        if error_code:
            parts.append(f"code {error_code}")
        if title:
            parts.append(title)
        if detail:
            parts.append(detail)
        if request_id:
            parts.append(f"request id {request_id}")
        super().__init__(": ".join(parts[:1]) + (" (" + "; ".join(parts[1:]) + ")" if parts[1:] else ""))


class AEPAuthError(AEPError):
    """Adobe IMS refused the credentials, or AEP refused the token, API key, org or sandbox."""


class AEPNotFoundError(AEPError):
    """The AEP resource does not exist (HTTP 404)."""


class AEPRateLimitError(AEPError):
    """AEP kept answering HTTP 429 after every allowed retry."""


class AEPConflictError(AEPError):
    """An AEP resource exists but conflicts with what was asked for (e.g. a schema of another class)."""


class AEPValidationError(AEPError):
    """AEP rejected a request body as invalid (HTTP 400, 413, 422)."""


class AEPServerError(AEPError):
    """AEP kept failing with a server error or the connection kept failing after every allowed retry."""


class CapillaryError(AirflowException):
    """A Capillary API call failed.

    :param message: What was being done and why it failed.
    :param status: HTTP status code, if a response was received.
    :param code: Capillary's error code from the response envelope.
    """

    def __init__(self, message: str, *, status: int | None = None, code: int | str | None = None) -> None:
        self.status = status
        self.code = code
        details = [f"HTTP {status}" if status is not None else "", f"code {code}" if code is not None else ""]
        suffix = "; ".join(d for d in details if d)
        super().__init__(f"{message} ({suffix})" if suffix else message)


class CapillaryAuthError(CapillaryError):
    """Capillary refused the credentials or the token."""


class CapillaryRateLimitError(CapillaryError):
    """Capillary kept throttling (HTTP 429) after every allowed retry."""


class CapillaryAPIError(CapillaryError):
    """Any other failed Capillary call."""
