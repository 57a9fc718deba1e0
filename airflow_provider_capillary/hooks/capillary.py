"""Hook for Capillary's REST APIs: authentication, throttling, retries, paginated reads and canonical records.

One :class:`CapillaryHook` holds one pooled ``requests.Session``, one cached OAuth token (or the Basic header) and a
client-side request budget. Reads are generators: every API family is paged in its own documented style (v2
``limit``/``offset`` with a ``pagination`` block, the points ledger's page numbers with ``ledgerDetails``, v1.1
record offsets with ``count``) and items are yielded one at a time.

:meth:`CapillaryHook.iter_records` turns those reads into the canonical extract records of this project
(``customer``, ``transaction``, ``loyalty_event``; the columns of the extract files), so the same XDM mapper handles
API reads and extract files.

Time windows are half-open and compared as instants: a record belongs to ``[start, end)`` when
``start <= record_time < end`` (``start`` inclusive, ``end`` exclusive). Both bounds must be timezone-aware; Capillary
timestamps without an offset are read in the connection's ``timezone`` (default UTC).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import random
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from airflow.providers.common.compat.sdk import BaseHook, mask_secret
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception

from airflow_provider_capillary import __version__
from airflow_provider_capillary.exceptions import (
    CapillaryAPIError,
    CapillaryAuthError,
    CapillaryError,
    CapillaryRateLimitError,
)
from airflow_provider_capillary.hooks._retry import parse_retry_after, retry_stop

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from airflow.sdk import Connection

RECORD_TYPES = ("customer", "transaction", "loyalty_event")
"""The canonical record types :meth:`CapillaryHook.iter_records` produces."""

CUSTOMER_COLUMNS = (
    "customer_id",
    "external_id",
    "mobile",
    "email",
    "first_name",
    "last_name",
    "gender",
    "date_of_birth",
    "loyalty_type",
    "source",
    "registered_on",
    "registered_store_code",
    "program_id",
    "program_name",
    "tier",
    "tier_number",
    "next_tier",
    "tier_expiry_date",
    "points_balance",
    "lifetime_points",
    "points_redeemed",
    "points_expired",
    "lifetime_purchases",
    "currency",
    "card_number",
    "email_optin",
    "sms_optin",
    "updated_at",
)
TRANSACTION_COLUMNS = (
    "record_type",
    "org_id",
    "transaction_id",
    "bill_number",
    "type",
    "customer_id",
    "external_id",
    "mobile",
    "email",
    "billing_time",
    "store_code",
    "store_name",
    "till_code",
    "currency",
    "gross_amount",
    "discount",
    "amount",
    "points_earned",
    "points_redeemed",
    "program_id",
    "delivery_status",
    "line_items",
    "payment_modes",
    "coupons",
    "original_bill_number",
    "custom_fields",
    "updated_at",
)
LOYALTY_EVENT_COLUMNS = (
    "event_id",
    "event_name",
    "event_time",
    "customer_id",
    "external_id",
    "mobile",
    "email",
    "program_id",
    "points",
    "points_balance_after",
    "points_expiry_date",
    "transaction_id",
    "bill_number",
    "redemption_id",
    "from_tier",
    "to_tier",
    "tier_expiry_date",
    "coupon_code",
    "coupon_series_id",
    "discount_type",
    "discount_value",
    "store_code",
    "ref_id",
)
RECORD_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "customer": CUSTOMER_COLUMNS,
    "transaction": TRANSACTION_COLUMNS,
    "loyalty_event": LOYALTY_EVENT_COLUMNS,
}
"""Column names of each record type, in extract-file order."""

DEFAULT_TOKEN_HEADER = "X-CAP-API-OAUTH-TOKEN"
AUTH_TYPES = ("oauth", "basic")
V2_OFFSET_MODES = ("record", "page")
TOKEN_REFRESH_FRACTION = 0.8
DEFAULT_TOKEN_TTL_SECONDS = 300
TOKEN_PATH = "/v3/oauth/token/generate"
ORGANIZATION_PATH = "/v1.1/organization/get"
CUSTOMER_SEARCH_PATH = "/v1.1/customer/search"
LEDGER_PATH = "/v2/pointsLedger/getCustomerLedgerInfo"
COUPONS_PATH = "/v2/customers/coupons"
REWARD_ISSUALS_PATH = "/api_gateway/rewards/core/v1/management/customer/{customer_id}/issuals/{reward_transaction_id}"
LEDGER_MAX_PAGE_SIZE = 10
LEDGER_WINDOW = timedelta(days=29)
TRANSACTIONS_MAX_PAGE_SIZE = 1000
TRANSACTION_EMBEDS = "BILL_CF,BILL_EF,ATTRIBUTION,PAYMENT_MODES,BILL_STORE_DETAILS,BILL_POINTS"
CUSTOMER_EMBEDS = ("points", "subscriptions", "mlp")
RETRYABLE_STATUSES = frozenset({429, 461, 521})
CUSTOMER_GONE_CODES = frozenset({8015, 8065, 8069, 8109})
"""Capillary error codes meaning the customer no longer exists as asked (not found, merged, PII-deleted)."""
MAX_ERROR_MESSAGE_CHARS = 200

LEDGER_EVENT_NAMES: Mapping[tuple[str, str], str] = {
    ("TransactionAdd", "CREDIT"): "pointsIssued",
    ("CustomerRegistration", "CREDIT"): "pointsIssued",
    ("PointsRedemption", "DEBIT"): "pointsRedeemed",
    ("PointsExpiry", "DEBIT"): "pointsExpired",
    ("ReturnBill", "DEBIT"): "issuedPointsReversed",
    ("DelayedAccrual", "CREDIT"): "promisedToCurrentPointsConversion",
}
"""Ledger ``(eventName, ledgerEntryType)`` to the event names of the ``loyalty_event`` record type.

Any other pair keeps the ledger's own event name, so the mapper reports it as unsupported instead of guessing.
"""

_MD5_HEX = re.compile(r"^[0-9a-fA-F]{32}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def password_digest(password: str, *, password_is_md5: bool = False) -> str:
    """The lower-case MD5 hex digest of a till password, as Capillary's Basic authentication sends it.

    :param password: The plain password, or its MD5 hex digest when ``password_is_md5`` is true.
    :param password_is_md5: Whether ``password`` already is the 32-character MD5 hex digest. Default false.
    """
    if not password_is_md5:
        return hashlib.md5(password.encode("utf-8"), usedforsecurity=False).hexdigest()
    if not _MD5_HEX.match(password):
        raise CapillaryError("The password is flagged as an MD5 digest but is not 32 hexadecimal characters")
    return password.lower()


def basic_auth_header(username: str, password: str, *, password_is_md5: bool = False) -> str:
    """Build Capillary's Basic ``Authorization`` value: ``Basic base64("<username>:" + md5_hex(password))``.

    :param username: The till username.
    :param password: The plain password, or its lower-case MD5 hex digest when ``password_is_md5`` is true.
    :param password_is_md5: Whether ``password`` already is the 32-character MD5 hex digest. Default false.
    """
    digest = password_digest(password, password_is_md5=password_is_md5)
    return "Basic " + base64.b64encode(f"{username}:{digest}".encode()).decode("ascii")


@dataclass(frozen=True)
class CapillaryConnectionSettings:
    """What a ``capillary`` connection holds, validated.

    :param base_url: The cluster's API base URL without a trailing slash, e.g. ``https://eu.api.capillarytech.com``.
    :param auth_type: ``oauth`` (client key and secret) or ``basic`` (till username and password).
    :param login: The OAuth client key or the till username.
    :param secret: The OAuth client secret or the till password (never shown in ``repr``).
    :param org_id: The Capillary org id, or None.
    :param token_header: The header that carries the OAuth token (``Authorization`` sends ``Bearer <token>``).
    :param password_is_md5: Whether the Basic password is stored as its MD5 hex digest.
    :param source: The profile source (``INSTORE``, ``ALL`` ...) of customer reads.
    :param account_id: The source account id for multi-account sources, or None.
    :param program_id: The loyalty program to report points and tiers of, or None for the default program.
    :param currency: The org's ISO 4217 currency, filled in where Capillary gives none, or None.
    :param timezone: The zone of Capillary timestamps without an offset and of date parameters.
    :param page_size: The page size asked for (capped by each endpoint's maximum).
    :param requests_per_minute: The client-side request budget; 0 disables throttling.
    :param timeout: Seconds to wait for a connection or a response.
    :param v2_offset_mode: Whether v2 list ``offset`` counts records (``record``) or pages (``page``).
    """

    base_url: str
    auth_type: str
    login: str
    secret: str = field(repr=False)
    org_id: int | None
    token_header: str
    password_is_md5: bool
    source: str
    account_id: str | None
    program_id: int | None
    currency: str | None
    timezone: tzinfo
    page_size: int
    requests_per_minute: float
    timeout: float
    v2_offset_mode: str

    @classmethod
    def from_connection(cls, conn: Connection) -> CapillaryConnectionSettings:
        """Validate an Airflow connection of type ``capillary``; raise :class:`CapillaryError` naming the field."""
        name = f"Capillary connection {conn.conn_id!r}"
        extra = conn.extra_dejson
        if not conn.host:
            raise CapillaryError(f"{name}: host (the cluster's API base URL) is empty")
        host = conn.host.strip().rstrip("/")
        if "://" not in host:
            host = f"{conn.schema or 'https'}://{host}"
        if conn.port:
            host = f"{host}:{conn.port}"
        auth_type = str(extra.get("auth_type") or "oauth").strip().lower()
        if auth_type not in AUTH_TYPES:
            raise CapillaryError(f"{name}: extra auth_type must be one of {AUTH_TYPES}, got {auth_type!r}")
        if not conn.login:
            what = "OAuth client key" if auth_type == "oauth" else "till username"
            raise CapillaryError(f"{name}: login (the {what}) is empty")
        if not conn.password:
            what = "OAuth client secret" if auth_type == "oauth" else "till password"
            raise CapillaryError(f"{name}: password (the {what}) is empty")
        timezone_name = str(extra.get("timezone") or "UTC")
        try:
            zone: tzinfo = ZoneInfo(timezone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise CapillaryError(f"{name}: extra timezone {timezone_name!r} is not an IANA zone name") from None
        offset_mode = str(extra.get("v2_offset_mode") or "record")
        if offset_mode not in V2_OFFSET_MODES:
            raise CapillaryError(f"{name}: extra v2_offset_mode must be one of {V2_OFFSET_MODES}")
        page_size = _setting_number(name, extra, "page_size", 100, int, minimum=1)
        return cls(
            base_url=host,
            auth_type=auth_type,
            login=conn.login,
            secret=conn.password,
            org_id=_setting_number(name, extra, "org_id", None, int, minimum=1),
            token_header=str(extra.get("token_header") or DEFAULT_TOKEN_HEADER),
            password_is_md5=_setting_bool(name, extra, "password_is_md5"),
            source=str(extra.get("default_source") or "INSTORE"),
            account_id=str(extra["account_id"]) if extra.get("account_id") else None,
            program_id=_setting_number(name, extra, "program_id", None, int, minimum=1),
            currency=str(extra["currency"]).upper() if extra.get("currency") else None,
            timezone=zone,
            page_size=page_size,
            requests_per_minute=_setting_number(name, extra, "requests_per_minute", 200.0, float, minimum=0),
            timeout=_setting_number(name, extra, "timeout", 30.0, float, minimum=0.001),
            v2_offset_mode=offset_mode,
        )


class _RetryableResponse(Exception):
    """An HTTP answer worth retrying (429, 461, 521, 5xx); carries the response for ``Retry-After``."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class CapillaryHook(BaseHook):
    """Interact with Capillary's REST APIs (v1.1, v2, v3) with one pooled session and a cached token.

    Authentication follows the connection's ``auth_type``: ``oauth`` exchanges the client key (login) and secret
    (password) at ``POST /v3/oauth/token/generate`` and sends the token in ``token_header``; the token is cached,
    refreshed at 80 % of its ``ttlSeconds`` and once on a 401. ``basic`` sends
    ``Authorization: Basic base64(<till username>:<md5 hex of the password>)``. Tokens, the MD5 digest and the Basic
    header are registered with Airflow's secret masker and never logged.

    HTTP 429, 461, 521 and 5xx answers and connection errors are retried with exponential back-off and jitter,
    honouring ``Retry-After``, at most ``max_attempts`` times and for at most ``max_retry_seconds``.

    :param capillary_conn_id: The Airflow connection of type ``capillary``. Default ``capillary_default``.
    :param timeout: Seconds to wait for a connection or a response; None uses the connection's ``timeout`` extra
        (default 30).
    :param max_attempts: Attempts per request, the first included. Default 6.
    :param max_retry_seconds: Schedule no further attempt of a request once this many seconds have passed
        since its first attempt (the total is at most this plus one back-off). Default 300.
    :param retry_initial_wait: Seconds of the first back-off (doubling each retry, plus up to as much jitter).
        Default 1.
    :param retry_max_wait: Upper bound of one back-off, ``Retry-After`` included. Default 60.
    """

    conn_name_attr = "capillary_conn_id"
    default_conn_name = "capillary_default"
    conn_type = "capillary"
    hook_name = "Capillary"

    def __init__(
        self,
        capillary_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_attempts: int = 6,
        max_retry_seconds: float = 300.0,
        retry_initial_wait: float = 1.0,
        retry_max_wait: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.capillary_conn_id = capillary_conn_id
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_retry_seconds = max_retry_seconds
        self.retry_initial_wait = retry_initial_wait
        self.retry_max_wait = retry_max_wait
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self._next_request_at = 0.0

    # -- connection, session, authentication -------------------------------------------------------------

    @cached_property
    def connection(self) -> Connection:
        """The Airflow connection, fetched once per hook."""
        return self.get_connection(self.capillary_conn_id)

    @cached_property
    def settings(self) -> CapillaryConnectionSettings:
        """The validated connection settings."""
        return CapillaryConnectionSettings.from_connection(self.connection)

    @cached_property
    def session(self) -> requests.Session:
        """One pooled HTTP session per hook, with the provider's ``User-Agent``."""
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=4)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.update(
            {"User-Agent": f"airflow-provider-capillary/{__version__}", "Accept": "application/json"}
        )
        return session

    def get_conn(self) -> requests.Session:
        """Return the hook's pooled ``requests.Session``."""
        return self.session

    @cached_property
    def _basic_authorization(self) -> str:
        settings = self.settings
        digest = password_digest(settings.secret, password_is_md5=settings.password_is_md5)
        mask_secret(digest)
        credentials = base64.b64encode(f"{settings.login}:{digest}".encode()).decode("ascii")
        mask_secret(credentials)
        return f"Basic {credentials}"

    def get_access_token(self, *, force_refresh: bool = False) -> str:
        """Return a valid OAuth token, generating one when none is cached, it is due or ``force_refresh``.

        :param force_refresh: Generate a new token even if the cached one is still fresh. Default false.
        """
        settings = self.settings
        if settings.auth_type != "oauth":
            raise CapillaryError("The connection uses Basic authentication; there is no OAuth token")
        now = time.monotonic()
        if self._token is not None and not force_refresh and now < self._token_refresh_at:
            return self._token
        response = self._send("POST", TOKEN_PATH, json={"key": settings.login, "secret": settings.secret}, headers={})
        body = _json_or_none(response)
        data = body.get("data") if isinstance(body, dict) else None
        token = data.get("accessToken") if isinstance(data, dict) else None
        code, message = _envelope_error(body)
        if response.status_code >= 400 and response.status_code not in (400, 401, 403):
            raise CapillaryAPIError(  # a failure (wrong host path, outage), not a refusal of the credentials
                f"Capillary POST {TOKEN_PATH} failed"
                + (f": {message}" if message else "")
                + _request_id_suffix(response),
                status=response.status_code,
                code=code,
            )
        if response.status_code >= 400 or not isinstance(token, str) or not token:
            raise CapillaryAuthError(
                "Capillary rejected the OAuth client key/secret"
                + (f": {message}" if message else "")
                + _request_id_suffix(response),
                status=response.status_code,
                code=code,
            )
        mask_secret(token)
        ttl = _as_float(data.get("ttlSeconds")) if isinstance(data, dict) else None
        ttl = ttl if ttl and ttl > 0 else DEFAULT_TOKEN_TTL_SECONDS
        self._token = token
        self._token_refresh_at = time.monotonic() + TOKEN_REFRESH_FRACTION * ttl
        self.log.info("Generated a Capillary OAuth token valid for %s s", int(ttl))
        return token

    def _auth_headers(self, *, force_refresh: bool = False) -> dict[str, str]:
        settings = self.settings
        if settings.auth_type == "basic":
            return {"Authorization": self._basic_authorization}
        token = self.get_access_token(force_refresh=force_refresh)
        if settings.token_header.lower() == "authorization":
            return {"Authorization": f"Bearer {token}"}
        return {settings.token_header: token}

    # -- requests ------------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Send one authenticated request and return the decoded JSON body.

        A 401 with OAuth refreshes the token and resends once. Errors raise :class:`CapillaryAuthError`,
        :class:`CapillaryRateLimitError` or :class:`CapillaryAPIError` with the status, Capillary's error code and
        message and the ``X-Cap-Requestid`` (never headers, tokens or the query string).

        :param method: HTTP method.
        :param path: Path below the base URL, e.g. ``/v2/customers/17742``.
        :param params: Query parameters.
        :param json: JSON body, if any.
        """
        response = self._send(method, path, params=params, json=json, headers=self._auth_headers())
        if response.status_code == 401 and self.settings.auth_type == "oauth":
            self.log.info("Capillary answered 401 to %s %s; generating a new OAuth token once", method, path)
            headers = self._auth_headers(force_refresh=True)
            response = self._send(method, path, params=params, json=json, headers=headers)
        return self._decode(response, method, path)

    def _decode(self, response: requests.Response, method: str, path: str) -> Any:
        body = _json_or_none(response)
        what = f"Capillary {method} {path}"
        if response.status_code == 401:
            code, message = _envelope_error(body)
            who = "OAuth token" if self.settings.auth_type == "oauth" else "till username/password"
            raise CapillaryAuthError(
                f"{what}: Capillary rejected the {who}"
                + (f": {message}" if message else "")
                + _request_id_suffix(response),
                status=401,
                code=code,
            )
        if response.status_code >= 400:
            code, message = _envelope_error(body)
            raise CapillaryAPIError(
                f"{what} failed" + (f": {message}" if message else "") + _request_id_suffix(response),
                status=response.status_code,
                code=code,
            )
        if body is None:
            raise CapillaryAPIError(
                f"{what} answered HTTP {response.status_code} with a body that is not JSON"
                + _request_id_suffix(response),
                status=response.status_code,
            )
        status = body.get("response", {}).get("status") if isinstance(body, dict) else None
        if isinstance(status, dict) and str(status.get("success")).lower() == "false":
            code = _as_int(status.get("code"))
            raise CapillaryAPIError(
                f"{what} failed: {_truncate(status.get('message'))}" + _request_id_suffix(response),
                status=response.status_code,
                code=code,
            )
        return body

    def _send(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> requests.Response:
        """Send with throttling and retries; return the first non-retryable response."""
        url = f"{self.settings.base_url}{path}"
        timeout = self.timeout if self.timeout is not None else self.settings.timeout

        def attempt() -> requests.Response:
            self._throttle()
            response = self.session.request(
                method, url, params=params, json=json, headers=dict(headers), timeout=timeout
            )
            self.log.debug(
                "Capillary %s %s: HTTP %s, request id %s",
                method,
                path,
                response.status_code,
                response.headers.get("X-Cap-Requestid", "-"),
            )
            if response.status_code in RETRYABLE_STATUSES or response.status_code >= 500:
                raise _RetryableResponse(response)
            return response

        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            reason = str(exc) if isinstance(exc, _RetryableResponse) else type(exc).__name__
            wait = state.next_action.sleep if state.next_action else 0.0
            self.log.warning(
                "Capillary %s %s: %s on attempt %d of %d; retrying in %.2f s",
                method,
                path,
                reason,
                state.attempt_number,
                self.max_attempts,
                wait,
            )

        retrying = Retrying(
            stop=retry_stop(self.max_attempts, self.max_retry_seconds),
            wait=self._retry_wait,
            retry=retry_if_exception(_is_retryable_exception),
            sleep=self._sleep,
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _RetryableResponse as exc:
            response = exc.response
            code, message = _envelope_error(_json_or_none(response))
            error_class = CapillaryRateLimitError if response.status_code == 429 else CapillaryAPIError
            raise error_class(
                f"Capillary {method} {path} still failing after {self.max_attempts} attempt(s)"
                + (f": {message}" if message else "")
                + _request_id_suffix(response),
                status=response.status_code,
                code=code,
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise CapillaryAPIError(
                f"Cannot reach Capillary at {self.settings.base_url} for {method} {path} "
                f"({type(exc).__name__}) after {self.max_attempts} attempt(s)"
            ) from None

    def _retry_wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableResponse):
            retry_after = parse_retry_after(exc.response.headers)
            if retry_after is not None:
                return min(retry_after, self.retry_max_wait)
        exponential = self.retry_initial_wait * 2 ** (state.attempt_number - 1)
        return min(self.retry_max_wait, exponential + random.uniform(0, self.retry_initial_wait))

    def _throttle(self) -> None:
        rpm = self.settings.requests_per_minute
        if rpm <= 0:
            return
        now = time.monotonic()
        if self._next_request_at > now:
            self._sleep(self._next_request_at - now)
            now = self._next_request_at
        self._next_request_at = now + 60.0 / rpm

    def _sleep(self, seconds: float) -> None:
        """Sleep between retries and for the request budget (one place, so tests can observe the waits)."""
        time.sleep(seconds)

    @contextlib.contextmanager
    def _single_attempt(self) -> Iterator[None]:
        saved = self.max_attempts
        self.max_attempts = 1
        try:
            yield
        finally:
            self.max_attempts = saved

    # -- connection test -------------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Authenticate and read the org's details; return ``(ok, message)`` and never raise.

        Messages name what failed: an invalid connection field, an unreachable host, rejected credentials, an
        org id that differs from the one the credentials belong to, or another API error.
        """
        try:
            settings = self.settings
        except CapillaryError as exc:
            return False, str(exc)
        except Exception as exc:
            return False, f"Cannot read connection {self.capillary_conn_id!r}: {type(exc).__name__}"
        try:
            with self._single_attempt():
                if settings.auth_type == "oauth":
                    self.get_access_token(force_refresh=True)
                organization = self.get_organization()
        except CapillaryAuthError as exc:
            who = "OAuth client key/secret" if settings.auth_type == "oauth" else "till username/password"
            return False, f"Bad credentials: Capillary rejected the {who} ({_error_detail(exc)})"
        except CapillaryError as exc:
            if exc.status is None:
                return False, str(exc)
            if exc.status == 404:
                return False, f"No Capillary API at {settings.base_url} (HTTP 404): check the host"
            return False, f"Capillary answered with an error: {exc}"
        except Exception as exc:
            return False, f"Unexpected {type(exc).__name__} while testing the Capillary connection"
        org_id = _as_int(organization.get("id"))
        if settings.org_id is not None and org_id != settings.org_id:
            return False, (
                f"Wrong org: the credentials belong to Capillary org {org_id}, "
                f"but the connection's org_id is {settings.org_id}"
            )
        name = organization.get("name") or "unnamed"
        return True, (
            f"Connected to Capillary org {org_id} ({name}) at {settings.base_url} with {settings.auth_type} auth"
        )

    # -- reads -----------------------------------------------------------------------------------------------

    def get_organization(self) -> dict[str, Any]:
        """Return the org's details (``GET /v1.1/organization/get``): ``id``, ``name``, ``currency``, ``timezone``."""
        body = self.request("GET", ORGANIZATION_PATH, params={"format": "json"})
        organization = body.get("response", {}).get("organization") if isinstance(body, dict) else None
        if not isinstance(organization, dict):
            raise CapillaryAPIError(f"Capillary GET {ORGANIZATION_PATH} answered without an organization block")
        return organization

    def iter_customer_ids(self, registered_before: datetime) -> Iterator[str]:
        """Yield the ids of customers registered before ``registered_before`` (v1.1 customer search).

        Capillary has no org-wide "changed since" feed; every customer with activity in a window was registered
        before the window's end, so this is the complete candidate list for a window (rounded up to the next
        local midnight: a few extra customers, never a missing one). Paged by record ``offset`` until ``count``.

        :param registered_before: Timezone-aware upper bound.
        """
        _require_aware("registered_before", registered_before)
        day = _ceil_local_date(registered_before, self.settings.timezone)
        params: dict[str, Any] = {"format": "json", "q": f"(registered_date:LESS:{day.isoformat()})"}
        limit = self.settings.page_size
        offset = 0
        while True:
            body = self.request("GET", CUSTOMER_SEARCH_PATH, params={**params, "limit": limit, "offset": offset})
            block = body.get("response", {}).get("customer", {}) if isinstance(body, dict) else {}
            items = (block.get("results") or {}).get("item") or []
            if isinstance(items, dict):
                items = [items]
            for item in items:
                customer_id = item.get("user_id") or item.get("id")
                if customer_id in (None, ""):
                    raise CapillaryAPIError(
                        f"Capillary GET {CUSTOMER_SEARCH_PATH} returned a customer without user_id at offset {offset}"
                    )
                yield str(customer_id)
            offset += len(items)
            count = _as_int(block.get("count"))
            if len(items) < limit or (count is not None and offset >= count):
                return

    def get_customer(self, customer_id: int | str, *, embed: Iterable[str] = CUSTOMER_EMBEDS) -> dict[str, Any]:
        """Return a customer's v2 profile (``GET /v2/customers/{id}``).

        :param customer_id: Capillary's customer (user) id.
        :param embed: Blocks to embed. Default points, subscriptions and mlp (per-program points and tiers).
        """
        settings = self.settings
        params: dict[str, Any] = {"source": settings.source}
        embeds = ",".join(embed)
        if embeds:
            params["embed"] = embeds
        if settings.account_id:
            params["accountId"] = settings.account_id
        path = f"/v2/customers/{customer_id}"
        body = self.request("GET", path, params=params)
        if not isinstance(body, dict) or body.get("id") is None:
            code, message = _envelope_error(body)
            raise CapillaryAPIError(f"Capillary GET {path}: no customer returned: {message}", status=200, code=code)
        return body

    def iter_customer_transactions(
        self, customer_id: int | str, start: datetime, end: datetime
    ) -> Iterator[dict[str, Any]]:
        """Yield a customer's bills billed in ``[start, end)`` (``GET /v2/customers/{id}/transactions``).

        Asks for the enclosing local dates (``startDate``/``endDate``), pages with ``limit``/``offset`` (v2 style,
        ``pagination.total``) in ascending order, and keeps the bills whose ``billingTime`` is in the window.
        Items carry no line items (see :meth:`get_transaction`).

        :param customer_id: Capillary's customer id.
        :param start: Window start, inclusive, timezone-aware.
        :param end: Window end, exclusive, timezone-aware.
        """
        zone = self.settings.timezone
        params = {
            "startDate": start.astimezone(zone).date().isoformat(),
            "endDate": _ceil_local_date(end, zone).isoformat(),
            "sortOrder": "ASC",
            "embed": TRANSACTION_EMBEDS,
        }
        path = f"/v2/customers/{customer_id}/transactions"
        for item in self._paginate_v2(
            path,
            params,
            items=lambda body: body.get("data") or [],
            pagination=lambda body: body.get("pagination") or {},
            max_page_size=TRANSACTIONS_MAX_PAGE_SIZE,
        ):
            billed = _parse_time(item.get("billingTime"), zone, f"transaction {item.get('id')} billingTime")
            if billed is not None and start <= billed < end:
                yield item

    def get_transaction(self, transaction_id: int | str, transaction_type: str = "REGULAR") -> dict[str, Any]:
        """Return one bill with its line items (``GET /v2/transactions/{id}?type=``).

        :param transaction_id: Capillary's transaction id.
        :param transaction_type: ``REGULAR``, ``RETURN``, ``NOT_INTERESTED`` or ``NOT_INTERESTED_RETURN``.
            Default ``REGULAR``.
        """
        return self.request("GET", f"/v2/transactions/{transaction_id}", params={"type": transaction_type})

    def iter_points_ledger(self, customer_id: int | str, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """Yield a customer's points-ledger entries created in ``[start, end)`` (``getCustomerLedgerInfo``).

        The window is cut into spans under Capillary's 30-day limit, each asked for in local time
        (``YYYY-MM-DDThh:mm:ss``, rounded outwards to whole seconds), paged by page number (``offset``) with the
        maximum ``limit`` of 10 until ``ledgerDetails.pageCount``; entries outside a span are dropped, so an entry
        on a span boundary is yielded once.

        :param customer_id: Capillary's customer id.
        :param start: Window start, inclusive, timezone-aware.
        :param end: Window end, exclusive, timezone-aware.
        """
        settings = self.settings
        zone = settings.timezone
        for span_start, span_end in _split_window(start, end, LEDGER_WINDOW):
            base = {
                "identifierName": "id",
                "identifierValue": str(customer_id),
                "source": settings.source,
                "startDate": _local_seconds(span_start, zone, ceil=False),
                "endDate": _local_seconds(span_end, zone, ceil=True),
                "sortOrder": "ASC",
                "limit": LEDGER_MAX_PAGE_SIZE,
            }
            if settings.program_id is not None:
                base["programId"] = settings.program_id
            page = 0
            while True:
                body = self.request("GET", LEDGER_PATH, params={**base, "offset": page})
                entries = body.get("ledgerEntries") or []
                for entry in entries:
                    created = _parse_time(
                        entry.get("ledgerCreatedDate"), zone, f"ledger entry {entry.get('eventLogId')}"
                    )
                    if created is not None and span_start <= created < span_end:
                        yield entry
                page_count = _as_int((body.get("ledgerDetails") or {}).get("pageCount"))
                if len(entries) < LEDGER_MAX_PAGE_SIZE or (page_count is not None and page + 1 >= page_count):
                    break
                page += 1

    def get_reward_issual(self, customer_id: int | str, reward_transaction_id: int | str) -> dict[str, Any]:
        """Return one reward issued to a customer from the rewards catalog (Marvel).

        ``GET /api_gateway/rewards/core/v1/management/customer/{customerId}/issuals/{rewardTransactionId}``; the
        ``data`` block: ``rewardTransactionId``, ``customerId``, ``rewardTransactionDate`` (epoch ms) and
        ``rewardDetails`` (``rewardId``, ``name``, ``intouchPoints``). Capillary documents no list of issuals, so
        reward issues reach the ``loyalty_event`` records through event notifications or exports, and this read
        serves enrichment of a ``rewardIssued`` event (whose ``ref_id`` ends with the reward transaction id).

        :param customer_id: Capillary's customer id.
        :param reward_transaction_id: The reward transaction id.
        """
        path = REWARD_ISSUALS_PATH.format(customer_id=customer_id, reward_transaction_id=reward_transaction_id)
        body = self.request("GET", path)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            code, message = _envelope_error(body)
            raise CapillaryAPIError(
                f"Capillary GET {path}: no reward issual returned: {message}", status=200, code=code
            )
        return data

    def iter_customer_coupons(self, customer_id: int | str) -> Iterator[dict[str, Any]]:
        """Yield every coupon issued to a customer, with its redemptions (``GET /v2/customers/coupons``).

        Paged v2 style with ``limit``/``offset`` until ``entity.pagination.total``.

        :param customer_id: Capillary's customer id.
        """

        def coupons(body: Any) -> list[dict[str, Any]]:
            customers = (body.get("entity") or {}).get("customers") or []
            return [coupon for customer in customers for coupon in customer.get("coupons") or []]

        yield from self._paginate_v2(
            COUPONS_PATH,
            {"id": str(customer_id)},
            items=coupons,
            pagination=lambda body: (body.get("entity") or {}).get("pagination") or {},
            max_page_size=self.settings.page_size,
        )

    def _paginate_v2(
        self,
        path: str,
        params: Mapping[str, Any],
        *,
        items: Callable[[Any], list[dict[str, Any]]],
        pagination: Callable[[Any], Mapping[str, Any]],
        max_page_size: int,
    ) -> Iterator[dict[str, Any]]:
        limit = min(self.settings.page_size, max_page_size)
        page_mode = self.settings.v2_offset_mode == "page"
        offset = 0
        seen = 0
        while True:
            body = self.request("GET", path, params={**params, "limit": limit, "offset": offset})
            page = items(body)
            yield from page
            seen += len(page)
            total = _as_int(pagination(body).get("total"))
            if len(page) < limit or (total is not None and seen >= total):
                return
            offset = offset + 1 if page_mode else offset + len(page)

    # -- canonical records -----------------------------------------------------------------------------------

    def iter_records(
        self,
        record_type: str,
        start: datetime,
        end: datetime,
        *,
        customer_ids: Iterable[int | str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield the canonical records of ``record_type`` whose time falls in ``[start, end)``.

        Window bounds: ``start`` inclusive, ``end`` exclusive, both timezone-aware and compared as instants (so
        ``2025-06-01T00:00:00+01:00`` equals ``2025-05-31T23:00:00Z``); ``start == end`` yields nothing. The time
        of a record is ``updated_at`` (customer: the profile's last update), ``billing_time`` (transaction) or
        ``event_time`` (loyalty_event).

        Strategies (Capillary has no org-wide change feed): customers are ``customer_ids`` or, when None, every
        customer registered before ``end`` (:meth:`iter_customer_ids`). Per customer:

        - ``customer``: the current v2 profile with points, tier (program ``program_id``) and subscriptions, kept
          when its last update is in the window (a snapshot: the values are today's, not the window's);
        - ``transaction``: the bills in the window, each completed with its line items;
        - ``loyalty_event``: the points-ledger entries in the window (one record per program and entry type,
          ``event_id`` ``{eventLogId}-{programId}-{entryType}``) and coupon issues and redemptions in the window.
          Tier changes and reward issues have no REST history; they come from event notifications or exports.

        Customers that are not found, merged or deleted (codes 8015, 8065, 8069, 8109) are skipped with a warning.
        Records are in API order, not sorted by time.

        :param record_type: ``customer``, ``transaction`` or ``loyalty_event``.
        :param start: Window start, inclusive, timezone-aware.
        :param end: Window end, exclusive, timezone-aware.
        :param customer_ids: Customer ids to read, or None for every customer registered before ``end``.
        """
        if record_type not in RECORD_TYPES:
            raise ValueError(f"record_type must be one of {RECORD_TYPES}, got {record_type!r}")
        _require_aware("start", start)
        _require_aware("end", end)
        if start > end:
            raise ValueError(f"The window start {start.isoformat()} is after its end {end.isoformat()}")
        if start == end:
            return
        builders: dict[str, Callable[[str, datetime, datetime], Iterator[dict[str, Any]]]] = {
            "customer": self._customer_records,
            "transaction": self._transaction_records,
            "loyalty_event": self._loyalty_event_records,
        }
        build = builders[record_type]
        ids = self.iter_customer_ids(end) if customer_ids is None else map(_customer_id, customer_ids)
        for customer_id in ids:
            try:
                yield from build(customer_id, start, end)
            except CapillaryAPIError as exc:
                if _as_int(exc.code) not in CUSTOMER_GONE_CODES:
                    raise
                self.log.warning("Skipping Capillary customer %s: %s", customer_id, exc)

    def _customer_records(self, customer_id: str, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        record = customer_record(self.get_customer(customer_id), self.settings)
        updated = _parse_time(record["updated_at"], self.settings.timezone, f"customer {customer_id} updated_at")
        if updated is None:
            self.log.warning("Capillary customer %s has no update time; it cannot be placed in a window", customer_id)
        elif start <= updated < end:
            yield record

    def _identity(self, customer_id: str) -> dict[str, Any]:
        profile = self.get_customer(customer_id, embed=())
        identifiers = _identifiers(profile)
        return {
            "customer_id": str(profile.get("id", customer_id)),
            "external_id": identifiers.get("externalId"),
            "mobile": identifiers.get("mobile"),
            "email": identifiers.get("email"),
        }

    def _transaction_records(self, customer_id: str, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        identity: dict[str, Any] | None = None
        for item in self.iter_customer_transactions(customer_id, start, end):
            detail = self.get_transaction(item["id"], str(item.get("type") or "REGULAR"))
            if identity is None:
                identity = self._identity(customer_id)
            yield transaction_record(item, detail, identity, self.settings)

    def _loyalty_event_records(self, customer_id: str, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        identity: dict[str, Any] | None = None
        settings = self.settings
        for entry in self.iter_points_ledger(customer_id, start, end):
            if identity is None:
                identity = self._identity(customer_id)
            yield from ledger_event_records(entry, identity, settings)
        for coupon in self.iter_customer_coupons(customer_id):
            events = coupon_event_records(coupon, {"customer_id": customer_id}, start, end, settings)
            if not events:
                continue
            if identity is None:
                identity = self._identity(customer_id)
            for event in events:
                event.update(identity)
                yield event


# -- canonical record builders (pure functions of API payloads) ---------------------------------------------


def customer_record(profile: Mapping[str, Any], settings: CapillaryConnectionSettings) -> dict[str, Any]:
    """Build a canonical ``customer`` record from a v2 profile read with ``embed=points,subscriptions,mlp``.

    :param profile: The ``GET /v2/customers/{id}`` body.
    :param settings: The connection settings (program, currency and timezone defaults).
    """
    zone = settings.timezone
    customer_id = str(profile["id"])
    first = (profile.get("profiles") or [{}])[0]
    identifiers = _identifiers(profile)
    fields = first.get("fields") or {}
    extended = profile.get("extendedFields") or {}
    loyalty = profile.get("loyaltyInfo") or {}
    program = _select_program(profile.get("loyaltyProgramDetails"), settings.program_id)
    if not program:
        program = profile.get("pointsSummary") or {}
    attribution = first.get("attribution") or {}
    cards = profile.get("cardDetails") or [{}]
    subscriptions = _subscriptions(profile)
    loyalty_type = str(loyalty.get("loyaltyType") or "").upper() or None
    what = f"customer {customer_id}"
    return {
        "customer_id": customer_id,
        "external_id": identifiers.get("externalId"),
        "mobile": identifiers.get("mobile"),
        "email": identifiers.get("email"),
        "first_name": first.get("firstName") or None,
        "last_name": first.get("lastName") or None,
        "gender": _gender(fields.get("gender") or extended.get("gender")),
        "date_of_birth": _date_only(extended.get("dob") or extended.get("dateOfBirth") or fields.get("dob")),
        "loyalty_type": loyalty_type,
        "source": first.get("source") or None,
        "registered_on": _iso(attribution.get("createDate"), zone, f"{what} createDate"),
        "registered_store_code": None,  # not in the v2 profile (v1.1 only)
        "program_id": _as_int(program.get("programId")) or (settings.program_id if program else None),
        "program_name": None,  # the v2 profile names no program
        "tier": program.get("currentSlab") or None,
        "tier_number": _as_int(program.get("slabSNo")),
        "next_tier": program.get("nextSlab") or None,
        "tier_expiry_date": _iso(program.get("slabExpiryDate"), zone, f"{what} slabExpiryDate"),
        "points_balance": _decimal(program.get("loyaltyPoints")),
        "lifetime_points": _decimal(program.get("lifetimePoints")),
        "points_redeemed": _decimal(program.get("redeemed")),
        "points_expired": _decimal(program.get("expired")),
        "lifetime_purchases": _decimal(
            loyalty.get("lifetimePurchases")
            if loyalty.get("lifetimePurchases") is not None
            else program.get("cumulativePurchases")
        ),
        "currency": settings.currency,
        "card_number": cards[0].get("cardNumber") if cards else None,
        "email_optin": subscriptions.get("EMAIL"),
        "sms_optin": subscriptions.get("SMS"),
        "updated_at": _iso(
            first.get("autoUpdateTime") or attribution.get("modifiedDate"), zone, f"{what} autoUpdateTime"
        ),
    }


def transaction_record(
    item: Mapping[str, Any],
    detail: Mapping[str, Any],
    identity: Mapping[str, Any],
    settings: CapillaryConnectionSettings,
) -> dict[str, Any]:
    """Build a canonical ``transaction`` record from a v2 transaction list item and its detail.

    :param item: One item of ``GET /v2/customers/{id}/transactions`` (bill amounts, points, store, attribution).
    :param detail: ``GET /v2/transactions/{id}`` (line items, payment modes, delivery status).
    :param identity: ``customer_id``, ``external_id``, ``mobile`` and ``email`` of the customer.
    :param settings: The connection settings (org id, program, currency and timezone defaults).
    """
    zone = settings.timezone
    bill = detail.get("billDetails") or {}
    store = item.get("billingStore") or bill.get("billingStore") or {}
    attribution = item.get("attribution") or detail.get("attribution") or {}
    created_by = attribution.get("createdBy") or {}
    points = _select_program((item.get("billPoints") or {}).get("aggregatedBillPoints"), settings.program_id)
    earned = None
    if points:
        earned = sum(
            (_decimal((points.get(key) or {}).get("points")) or Decimal(0) for key in ("regularPoints", "promoPoints")),
            Decimal(0),
        )
    what = f"transaction {item.get('id')}"
    line_items = [
        {
            "serial": _as_int(details.get("serial")),
            "item_code": details.get("itemCode"),
            "description": details.get("description"),
            "qty": _decimal(details.get("qty")),
            "rate": _decimal(details.get("rate")),
            "value": _decimal(details.get("value")),
            "discount": _decimal(details.get("discount")),
            "amount": _decimal(details.get("amount")),
        }
        for details in ((line.get("details") or {}) for line in detail.get("lineItems") or [])
    ]
    payment_modes = [
        {"mode": mode.get("mode"), "value": _decimal(mode.get("amount", mode.get("value")))}
        for mode in detail.get("paymentModes") or item.get("paymentModes") or []
    ]
    return {
        "record_type": "transaction",
        "org_id": settings.org_id,
        "transaction_id": _as_int(item.get("id")),
        "bill_number": item.get("billNumber") or bill.get("billNumber"),
        "type": item.get("type") or detail.get("type"),
        "customer_id": identity.get("customer_id") or _str_or_none(item.get("customerId")),
        "external_id": identity.get("external_id"),
        "mobile": identity.get("mobile"),
        "email": identity.get("email"),
        "billing_time": _iso(item.get("billingTime") or bill.get("billingTime"), zone, f"{what} billingTime"),
        "store_code": store.get("code"),
        "store_name": store.get("name"),
        "till_code": created_by.get("code") if str(created_by.get("type", "TILL")).upper() == "TILL" else None,
        "currency": item.get("currencyCode") or detail.get("currencyCode") or settings.currency,
        "gross_amount": _decimal(item.get("grossAmount", bill.get("grossAmount"))),
        "discount": _decimal(item.get("discount", bill.get("discount"))),
        "amount": _decimal(item.get("amount", bill.get("amount"))),
        "points_earned": earned,
        "points_redeemed": None,
        "program_id": _as_int(points.get("programId")) if points else None,
        "delivery_status": detail.get("deliveryStatus") or item.get("deliveryStatus"),
        "line_items": line_items,
        "payment_modes": payment_modes,
        "coupons": None,
        "original_bill_number": None,
        "custom_fields": dict(item.get("customFields") or detail.get("customFields") or {}),
        "updated_at": _iso(
            attribution.get("modifiedDate") or detail.get("autoUpdateTime"), zone, f"{what} modifiedDate"
        ),
    }


def ledger_event_records(
    entry: Mapping[str, Any], identity: Mapping[str, Any], settings: CapillaryConnectionSettings
) -> list[dict[str, Any]]:
    """Build canonical ``loyalty_event`` records from one points-ledger entry.

    Points of the entry's details are summed per program and entry type (credits positive, debits negative);
    each sum is one record with ``event_id`` ``{eventLogId}-{programId}-{entryType}``. ``OPENING_BALANCE``
    details are balances carried forward, not events, and are left out.

    :param entry: One item of ``ledgerEntries``.
    :param identity: ``customer_id``, ``external_id``, ``mobile`` and ``email`` of the customer.
    :param settings: The connection settings (org id and timezone).
    """
    event_log_id = entry.get("eventLogId")
    event_time = _iso(entry.get("ledgerCreatedDate"), settings.timezone, f"ledger entry {event_log_id}")
    transaction = entry.get("transactionDetails") or {}
    transaction_id = _as_int(transaction.get("transactionId"))
    totals: dict[tuple[int | None, str], Decimal] = {}
    for detail in entry.get("entryDetails") or []:
        entry_type = str(detail.get("ledgerEntryType") or "").upper()
        if entry_type not in ("CREDIT", "DEBIT"):
            continue
        points = _decimal(detail.get("points")) or Decimal(0)
        signed = abs(points) if entry_type == "CREDIT" else -abs(points)
        key = (_as_int(detail.get("programId")), entry_type)
        totals[key] = totals.get(key, Decimal(0)) + signed
    ledger_name = str(entry.get("eventName") or "")
    records = []
    for (program_id, entry_type), points in totals.items():
        records.append(
            _loyalty_event(
                identity,
                event_id=f"{event_log_id}-{program_id}-{entry_type}",
                event_name=LEDGER_EVENT_NAMES.get((ledger_name, entry_type), ledger_name),
                event_time=event_time,
                program_id=program_id,
                points=points,
                transaction_id=transaction_id,
                bill_number=transaction.get("transactionNumber"),
                store_code=entry.get("storeCode"),
                ref_id=f"{settings.org_id}_{transaction_id}" if settings.org_id and transaction_id else None,
            )
        )
    return records


def coupon_event_records(
    coupon: Mapping[str, Any],
    identity: Mapping[str, Any],
    start: datetime,
    end: datetime,
    settings: CapillaryConnectionSettings,
) -> list[dict[str, Any]]:
    """Build ``CouponIssue`` and ``CouponRedeem`` records of one coupon whose time falls in ``[start, end)``.

    :param coupon: One coupon of ``GET /v2/customers/coupons`` (``createdDate`` and ``redemptions[]``).
    :param identity: ``customer_id``, ``external_id``, ``mobile`` and ``email`` of the customer.
    :param start: Window start, inclusive, timezone-aware.
    :param end: Window end, exclusive, timezone-aware.
    :param settings: The connection settings (program and timezone).
    """
    zone = settings.timezone
    coupon_id = coupon.get("id")
    common = {
        "program_id": settings.program_id,
        "coupon_code": coupon.get("code"),
        "coupon_series_id": _as_int(coupon.get("seriesId")),
        "discount_type": coupon.get("discountType") or coupon.get("couponDiscountType"),
        "discount_value": _decimal(coupon.get("discountValue")),
    }
    records = []
    issued = _parse_time(coupon.get("createdDate"), zone, f"coupon {coupon_id} createdDate")
    if issued is not None and start <= issued < end:
        records.append(
            _loyalty_event(
                identity,
                event_id=f"coupon-{coupon_id}-issued",
                event_name="CouponIssue",
                event_time=issued.isoformat(),
                store_code=(coupon.get("issuedAt") or {}).get("code"),
                **common,
            )
        )
    for redemption in coupon.get("redemptions") or []:
        redeemed = _parse_time(redemption.get("date"), zone, f"coupon {coupon_id} redemption date")
        if redeemed is None or not start <= redeemed < end:
            continue
        bill_number = redemption.get("transactionNumber")
        records.append(
            _loyalty_event(
                identity,
                event_id=f"coupon-{coupon_id}-redeemed-{bill_number or redeemed.isoformat()}",
                event_name="CouponRedeem",
                event_time=redeemed.isoformat(),
                bill_number=bill_number,
                store_code=(redemption.get("redeemedAt") or {}).get("code"),
                **common,
            )
        )
    return records


def _loyalty_event(identity: Mapping[str, Any], **values: Any) -> dict[str, Any]:
    record = dict.fromkeys(LOYALTY_EVENT_COLUMNS)
    for key in ("customer_id", "external_id", "mobile", "email"):
        record[key] = identity.get(key)
    unknown = set(values) - set(LOYALTY_EVENT_COLUMNS)
    if unknown:
        raise KeyError(f"Not loyalty_event columns: {sorted(unknown)}")
    record.update(values)
    return record


# -- small helpers ------------------------------------------------------------------------------------------


def _identifiers(profile: Mapping[str, Any]) -> dict[str, Any]:
    first = (profile.get("profiles") or [{}])[0]
    found: dict[str, Any] = {}
    for identifier in first.get("identifiers") or []:
        kind = identifier.get("type")
        if kind and kind not in found and identifier.get("value") not in (None, ""):
            found[kind] = str(identifier["value"])
    return found


def _select_program(programs: Any, program_id: int | None) -> dict[str, Any]:
    if not isinstance(programs, list) or not programs:
        return {}
    if program_id is not None:
        for program in programs:
            if _as_int(program.get("programId")) == program_id:
                return program
        return {}
    return programs[0]


def _subscriptions(profile: Mapping[str, Any]) -> dict[str, bool]:
    found: dict[str, bool] = {}
    for item in (profile.get("subscriptionInfo") or {}).get("subscriptions") or []:
        if str(item.get("priority", "BULK")).upper() != "BULK":
            continue
        kind = str(item.get("type") or "").upper()
        if kind in ("OPTIN", "OPTOUT"):
            found[str(item.get("channel") or "").upper()] = kind == "OPTIN"
    return found


def _gender(value: Any) -> str | None:
    text = str(value or "").strip().upper()
    if not text:
        return None
    if text in ("M", "MALE"):
        return "M"
    if text in ("F", "FEMALE"):
        return "F"
    return "O"


def _date_only(value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = str(value).strip()
    return text[:10] if _ISO_DATE.match(text) else text


def _parse_time(value: Any, zone: tzinfo, what: str) -> datetime | None:
    """Parse a Capillary time (ISO-8601 with or without offset, ``YYYY-MM-DD hh:mm:ss.S``, epoch ms)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CapillaryAPIError(f"Capillary returned an unreadable time for {what}: {text[:40]!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


def _iso(value: Any, zone: tzinfo, what: str) -> str | None:
    parsed = _parse_time(value, zone, what)
    return parsed.isoformat() if parsed is not None else None


def _require_aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (e.g. UTC), got naive {value.isoformat()}")


def _ceil_local_date(moment: datetime, zone: tzinfo) -> date:
    """The first local date whose midnight is at or after ``moment``."""
    local = moment.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return local.date() if local == midnight else local.date() + timedelta(days=1)


def _local_seconds(moment: datetime, zone: tzinfo, *, ceil: bool) -> str:
    local = moment.astimezone(zone).replace(tzinfo=None)
    if ceil and local.microsecond:
        local = local + timedelta(seconds=1)
    return local.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%S")


def _split_window(start: datetime, end: datetime, span: timedelta) -> Iterator[tuple[datetime, datetime]]:
    cursor = start
    while cursor < end:
        upper = min(cursor + span, end)
        yield cursor, upper
        cursor = upper


def _customer_id(value: int | str) -> str:
    text = str(value).strip()
    if not text.isdigit():
        raise ValueError(f"Capillary customer ids are digits; got {text[:40]!r}")
    return text


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise CapillaryAPIError(f"Capillary returned a non-numeric amount: {str(value)[:40]!r}") from None


def _as_int(value: Any) -> int | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _str_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _setting_number(name: str, extra: Mapping[str, Any], key: str, default: Any, kind: type, *, minimum: float) -> Any:
    value = extra.get(key)
    if value is None or value == "":
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise CapillaryError(f"{name}: extra {key} must be a number, got {str(value)[:40]!r}") from None
    if number < minimum:
        raise CapillaryError(f"{name}: extra {key} must be at least {minimum}, got {number}")
    return number


def _setting_bool(name: str, extra: Mapping[str, Any], key: str) -> bool:
    value = extra.get(key, False)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise CapillaryError(f"{name}: extra {key} must be true or false, got {text[:20]!r}")


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _envelope_error(body: Any) -> tuple[int | str | None, str]:
    """Capillary's error code and message from a v2/v3 (``errors[]``) or v1.1 (``response.status``) body."""
    if not isinstance(body, dict):
        return None, ""
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return errors[0].get("code"), _truncate(errors[0].get("message"))
    response = body.get("response")
    if isinstance(response, dict):
        status = response.get("status") or {}
        item_status = response.get("item_status") or {}
        if isinstance(item_status, dict) and str(item_status.get("success")).lower() == "false":
            return item_status.get("code"), _truncate(item_status.get("message"))
        if isinstance(status, dict):
            return status.get("code"), _truncate(status.get("message"))
    return None, _truncate(body.get("message") or body.get("error"))


def _truncate(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_ERROR_MESSAGE_CHARS else text[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"


def _request_id_suffix(response: requests.Response) -> str:
    request_id = response.headers.get("X-Cap-Requestid")
    return f" [request id {request_id}]" if request_id else ""


def _error_detail(exc: CapillaryError) -> str:
    parts = [f"HTTP {exc.status}" if exc.status is not None else "", f"code {exc.code}" if exc.code else ""]
    return "; ".join(part for part in parts if part) or "no details"


def _is_retryable_exception(exc: BaseException) -> bool:
    return isinstance(exc, _RetryableResponse | requests.ConnectionError | requests.Timeout)
