"""Hooks for Adobe Experience Platform: Adobe IMS OAuth Server-to-Server and every AEP API family the provider uses.

``AEPHook`` is the synchronous hook used by operators; ``AEPAsyncHook`` is its aiohttp twin for triggers.

Why not ``HttpHook`` from apache-airflow-providers-http: it sends every unknown connection extra as an HTTP header
(``org_id``, ``scopes`` and any secret kept in extras would leave the process as headers), builds a new
``requests.Session`` and re-reads the connection on every ``run()`` (no keep-alive across thousands of streaming
requests), treats a 207 multi-status as something to check by hand, and its async twin never retries 429 or
connection errors. What it does serve, we use: its keep-alive transport (``TCPKeepAliveAdapter`` from
requests-toolbelt, HttpHook's default adapter) pools the hook's connections.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import orjson
import requests
from airflow.providers.common.compat.sdk import BaseHook, mask_secret
from requests_toolbelt.adapters.socket_options import TCPKeepAliveAdapter
from tenacity import AsyncRetrying, Retrying, retry_if_exception

from airflow_provider_capillary import AEP_CONN_TYPE, __version__
from airflow_provider_capillary.exceptions import (
    AEPAuthError,
    AEPConflictError,
    AEPError,
    AEPNotFoundError,
    AEPRateLimitError,
    AEPServerError,
    AEPValidationError,
)
from airflow_provider_capillary.hooks._retry import (
    RETRYABLE_STATUSES,
    BackoffWait,
    TransientHTTPError,
    describe_attempt,
    is_retryable,
    parse_retry_after,
    retry_stop,
)

if TYPE_CHECKING:
    from tenacity import RetryCallState

DEFAULT_IMS_URL = "https://ims-na1.adobelogin.com"
DEFAULT_PLATFORM_URL = "https://platform.adobe.io"
DEFAULT_DCS_URL = "https://dcs.adobedc.net"
DEFAULT_SANDBOX = "prod"
DEFAULT_SCOPES = "openid,session,AdobeID,read_organizations,additional_info.projectedProductContext"

SCHEMA_REGISTRY = "/data/foundation/schemaregistry"
CATALOG = "/data/foundation/catalog"
FLOW_SERVICE = "/data/foundation/flowservice"
#: Flow Service object collections (path segments).
FlowItemKind = Literal["connections", "sourceConnections", "targetConnections", "flows"]
BATCH_INGESTION = "/data/foundation/import"
IDENTITY_NAMESPACES = "/data/core/idnamespace/identities"
PROFILE_ENTITIES = "/data/core/ups/access/entities"

#: Flow Service ids of the HTTP API streaming source (aep-api.md §5).
HTTP_API_CONNECTION_SPEC_ID = "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb"
DATA_LAKE_CONNECTION_SPEC_ID = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
XDM_FLOW_SPEC_ID = "d8a6f005-7eaf-4153-983e-e8574508b877"

XED_ID = "application/vnd.adobe.xed-id+json"
XED = "application/vnd.adobe.xed+json; version=1"
XED_FULL = "application/vnd.adobe.xed-full+json; version=1"
XDM_DESCRIPTORS = "application/vnd.adobe.xdm+json"
#: ``schemaRef.contentType`` used in datasets, target connections and streaming envelopes.
SCHEMA_REF_CONTENT_TYPE = "application/vnd.adobe.xed-full+json;version=1"

#: Largest file sent with one PUT; bigger files use the chunked (INITIALIZE/PATCH/COMPLETE) upload.
SINGLE_PUT_LIMIT = 256 * 1024 * 1024
#: ``expires_in`` above this is taken as milliseconds (the retired JWT exchange used ms; v3 uses seconds).
_EXPIRES_IN_MS_THRESHOLD = 1_000_000
_ERROR_TEXT_LIMIT = 500


@dataclass(frozen=True)
class AEPSettings:
    """Everything the hooks read from an ``adobe_experience_platform`` connection.

    :param client_id: OAuth Server-to-Server client id (the connection's login); also the ``x-api-key``.
    :param client_secret: OAuth client secret (the connection's password).
    :param org_id: IMS organisation id (extra ``org_id``).
    :param sandbox: Sandbox name (extra ``sandbox``, default ``prod``).
    :param scopes: Comma-separated IMS scopes (extra ``scopes``).
    :param ims_url: IMS base URL (extra ``ims_url``).
    :param platform_url: Platform API base URL (extra ``platform_url``).
    :param dcs_url: Override of the streaming inlets' base URL (extra ``dcs_url``); ``None`` uses inlet URLs as given.
    """

    client_id: str
    client_secret: str
    org_id: str
    sandbox: str = DEFAULT_SANDBOX
    scopes: str = DEFAULT_SCOPES
    ims_url: str = DEFAULT_IMS_URL
    platform_url: str = DEFAULT_PLATFORM_URL
    dcs_url: str | None = None

    @classmethod
    def from_connection(cls, conn: Any) -> AEPSettings:
        """Read and check the settings of an Airflow connection; a missing required field is a clear error."""
        extra = conn.extra_dejson or {}
        missing = [
            label
            for label, value in (
                ("Client ID (login)", conn.login),
                ("Client Secret (password)", conn.password),
                ("Org ID (extra org_id)", extra.get("org_id")),
            )
            if not value
        ]
        if missing:
            raise AEPAuthError(f"Connection {conn.conn_id!r} is missing {', '.join(missing)}")
        return cls(
            client_id=conn.login,
            client_secret=conn.password,
            org_id=extra["org_id"],
            sandbox=(extra.get("sandbox") or DEFAULT_SANDBOX).strip(),
            scopes=(extra.get("scopes") or DEFAULT_SCOPES).replace(" ", ""),
            ims_url=(extra.get("ims_url") or DEFAULT_IMS_URL).rstrip("/"),
            platform_url=(extra.get("platform_url") or DEFAULT_PLATFORM_URL).rstrip("/"),
            dcs_url=(extra.get("dcs_url") or "").rstrip("/") or None,
        )

    @property
    def token_key(self) -> str:
        """Key of this credential in the per-process token cache (the secret only as a digest)."""
        material = "|".join((self.ims_url, self.client_id, self.org_id, self.scopes, _digest(self.client_secret)))
        return _digest(material)

    def token_form(self) -> dict[str, str]:
        """The form body of the IMS client-credentials request."""
        return {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scope": self.scopes,
        }

    def platform_headers(self, token: str) -> dict[str, str]:
        """Headers required on every platform and DCS call (aep-api.md §0)."""
        return {
            "Authorization": f"Bearer {token}",
            "x-api-key": self.client_id,
            "x-gw-ims-org-id": self.org_id,
            "x-sandbox-name": self.sandbox,
        }


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class _TokenCache:
    """Per-process cache of IMS access tokens, shared by every hook in the process (mapped tasks, threads).

    A token is refreshed once 90 % of its lifetime has passed (for IMS's 24 h tokens: 2.4 h before they expire).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}

    def get(self, key: str) -> str | None:
        with self._lock:
            entry = self._tokens.get(key)
        if entry and time.time() < entry[1]:
            return entry[0]
        return None

    def put(self, key: str, token: str, expires_in: float) -> None:
        if expires_in > _EXPIRES_IN_MS_THRESHOLD:
            expires_in /= 1000.0
        refresh_in = expires_in * 0.9
        with self._lock:
            self._tokens[key] = (token, time.time() + refresh_in)

    def invalidate(self, key: str, token: str | None = None) -> None:
        """Forget the cached token; with ``token``, only while it is still the cached one."""
        with self._lock:
            entry = self._tokens.get(key)
            if entry and (token is None or entry[0] == token):
                del self._tokens[key]

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


TOKEN_CACHE = _TokenCache()


def parse_error_body(body: Any) -> tuple[str | None, str | None, str | None]:
    """Pull ``(error code, title, detail)`` out of any AEP or IMS error body shape (aep-api.md §0, §1, §6.5)."""
    if not isinstance(body, Mapping):
        return None, None, (str(body)[:_ERROR_TEXT_LIMIT] if body else None)
    code = body.get("error_code") or body.get("errorCode") or body.get("code") or body.get("error")
    chain = body.get("error-chain")
    if not code and isinstance(chain, list) and chain and isinstance(chain[0], Mapping):
        code = chain[0].get("errorCode")
    title = body.get("title")
    detail = body.get("detail") or body.get("message") or body.get("error_description")
    report = body.get("report")
    if isinstance(report, Mapping):
        if not detail:
            detail = report.get("message") or orjson.dumps(report).decode()
        violations = _violations(report.get("cause"))
        if violations:
            detail = f"{detail}: {'; '.join(violations[:5])}"
    detail_text = str(detail)[:_ERROR_TEXT_LIMIT] if detail else None
    return (str(code) if code is not None else None), (str(title) if title else None), detail_text


def _violations(cause: Any) -> list[str]:
    """``"pointer: message"`` of each leaf schema violation in a DCS validation report (aep-api.md §6.3)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, Mapping):
            children = node.get("causingExceptions")
            if children:
                walk(children)
            elif node.get("message") and node.get("pointerToViolation"):
                found.append(f"{node['pointerToViolation']}: {node['message']}")
            for key, value in node.items():
                if key != "causingExceptions" and isinstance(value, list | Mapping):
                    walk(value)

    walk(cause)
    return found


def error_for_status(action: str, status: int, body: Any, request_id: str | None = None) -> AEPError:
    """The typed exception for a failed call: auth, not found, conflict, validation, rate limit or server."""
    code, title, detail = parse_error_body(body)
    cls: type[AEPError]
    if status in (401, 403):
        cls = AEPAuthError
    elif status == 404:
        cls = AEPNotFoundError
    elif status in (409, 412):
        cls = AEPConflictError
    elif status in (400, 413, 415, 422):
        cls = AEPValidationError
    elif status == 429:
        cls = AEPRateLimitError
    elif status >= 500:
        cls = AEPServerError
    else:
        cls = AEPError
    return cls(action, status=status, error_code=code, title=title, detail=detail, request_id=request_id)


def _json_or_none(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:_ERROR_TEXT_LIMIT]


def dataset_id_from_create_response(body: Any) -> str:
    """The id in Catalog's create answer ``["@/dataSets/{id}"]``."""
    if isinstance(body, list) and body and isinstance(body[0], str):
        return body[0].rsplit("/", 1)[-1]
    raise AEPError(f"Unexpected Catalog create response: {str(body)[:_ERROR_TEXT_LIMIT]}")


def batch_record(batch_id: str, body: Any) -> dict[str, Any]:
    """A batch from Catalog's answer ``{batch id: {...}}``, with its ``id``."""
    record = body.get(batch_id) if isinstance(body, Mapping) else None
    return {"id": batch_id, **(record if isinstance(record, Mapping) else body or {})}


def batches_page(body: Any) -> list[dict[str, Any]]:
    """The batches of one Catalog list page (an object keyed by batch id), each with its ``id``."""
    return [{"id": k, **v} for k, v in (body or {}).items() if isinstance(v, Mapping)]


def profile_entity(body: Any) -> dict[str, Any] | None:
    """The first (merged) profile of a Profile Access answer keyed by entity id, or ``None``."""
    if not isinstance(body, Mapping) or not body:
        return None
    return dict(next(iter(body.values())))


def batch_url_for_inlet(inlet: str, dcs_url: str | None = None) -> tuple[str, str]:
    """``(single-message URL, multi-message URL)`` for an inlet id or inlet URL, optionally re-based on ``dcs_url``.

    The multi-message URL inserts ``/batch`` before the inlet id (aep-api.md §6.1).
    """
    if inlet.startswith(("http://", "https://")):
        parts = urlsplit(inlet)
        inlet_id = parts.path.rstrip("/").rsplit("/", 1)[-1]
        base = dcs_url or f"{parts.scheme}://{parts.netloc}"
    else:
        inlet_id = inlet
        base = dcs_url or DEFAULT_DCS_URL
    return f"{base}/collection/{inlet_id}", f"{base}/collection/batch/{inlet_id}"


class AEPHook(BaseHook):
    """Talk to Adobe Experience Platform: IMS OAuth Server-to-Server tokens and the AEP APIs the provider uses.

    One pooled HTTP session per hook; tokens are cached per process, refreshed before they expire and once after
    a 401, and registered with Airflow's secret masker. Throttling (429), server errors (5xx), timeouts and
    dropped connections are retried with exponential backoff and jitter, honouring ``Retry-After``, bounded by
    ``max_attempts`` and ``max_retry_seconds``; anything else raises a typed :class:`~.exceptions.AEPError`
    carrying AEP's status, error code, title, detail and request id.

    :param aep_conn_id: Airflow connection of type ``adobe_experience_platform``. Default ``aep_default``.
    :param timeout: Seconds to wait for each HTTP response. Default 30.
    :param max_attempts: Attempts per call, first one included. Default 6.
    :param max_retry_seconds: Total seconds one call may spend retrying. Default 300.
    :param max_retry_wait: Cap on a single backoff wait (and on ``Retry-After``), in seconds. Default 30.
    :param pool_size: Pooled connections per host (raise it for concurrent streaming). Default 16.
    :param on_retry: Called with the HTTP status (``None`` for a connection error or timeout) before each retry
        wait, e.g. so a rate limiter can slow down on 429. Default: none.
    """

    conn_name_attr = "aep_conn_id"
    default_conn_name = "aep_default"
    conn_type = AEP_CONN_TYPE
    hook_name = "Adobe Experience Platform"

    user_agent: ClassVar[str] = f"airflow-provider-capillary/{__version__}"

    def __init__(
        self,
        aep_conn_id: str = default_conn_name,
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        max_retry_seconds: float = 300.0,
        max_retry_wait: float = 30.0,
        pool_size: int = 16,
        on_retry: Callable[[int | None], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.aep_conn_id = aep_conn_id
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_retry_seconds = max_retry_seconds
        self.max_retry_wait = max_retry_wait
        self.pool_size = pool_size
        self.on_retry = on_retry

    # ------------------------------------------------------------------ connection, session, token

    @cached_property
    def settings(self) -> AEPSettings:
        """The connection's settings (one connection look-up per hook)."""
        return AEPSettings.from_connection(self.get_connection(self.aep_conn_id))

    @cached_property
    def session(self) -> requests.Session:
        """The hook's pooled keep-alive HTTP session."""
        session = requests.Session()
        adapter = TCPKeepAliveAdapter(pool_connections=4, pool_maxsize=self.pool_size, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers["User-Agent"] = self.user_agent
        return session

    def get_conn(self) -> requests.Session:
        """Return the hook's HTTP session."""
        return self.session

    def get_access_token(self, *, force_refresh: bool = False) -> str:
        """A valid IMS access token, from the per-process cache unless expired or ``force_refresh``."""
        settings = self.settings
        if not force_refresh:
            token = TOKEN_CACHE.get(settings.token_key)
            if token:
                return token
        token, expires_in = self._fetch_token(settings)
        TOKEN_CACHE.put(settings.token_key, token, expires_in)
        return token

    def _fetch_token(self, settings: AEPSettings) -> tuple[str, float]:
        url = f"{settings.ims_url}/ims/token/v3"
        action = "Requesting an Adobe IMS access token"
        try:
            response = self._retrying(
                lambda: self._send_once("POST", url, data=settings.token_form(), ok=(200,)), action=action
            )
        except _HTTPFailure as failure:
            code, title, detail = parse_error_body(failure.body)
            raise AEPAuthError(action, status=failure.status, error_code=code, title=title, detail=detail) from None
        body = _json_or_none(response)
        if not isinstance(body, Mapping) or not body.get("access_token"):
            raise AEPAuthError("Adobe IMS answered without an access_token", status=response.status_code)
        token = str(body["access_token"])
        mask_secret(token)
        return token, float(body.get("expires_in") or 0)

    # ------------------------------------------------------------------ the one request path

    def _retrying(self, attempt: Any, *, action: str) -> requests.Response:
        """Run ``attempt`` under the retry policy; translate exhausted transient failures into typed errors."""
        retryer = Retrying(
            retry=retry_if_exception(is_retryable),
            wait=BackoffWait(maximum=self.max_retry_wait),
            stop=retry_stop(self.max_attempts, self.max_retry_seconds),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retryer(attempt)
        except TransientHTTPError as exc:
            raise error_for_status(action, exc.status, exc.body, exc.request_id) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise AEPServerError(f"{action}: could not reach AEP ({type(exc).__name__})") from None

    def _log_retry(self, retry_state: RetryCallState) -> None:
        self.log.warning("AEP call %s; retrying", describe_attempt(retry_state))
        if self.on_retry is not None:
            exc = retry_state.outcome.exception() if retry_state.outcome else None
            self.on_retry(exc.status if isinstance(exc, TransientHTTPError) else None)

    def _send_once(
        self,
        method: str,
        url: str,
        *,
        ok: Sequence[int],
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        response = self.session.request(method, url, headers=dict(headers or {}), timeout=self.timeout, **kwargs)
        if response.status_code in ok:
            return response
        request_id = response.headers.get("x-request-id")
        if response.status_code in RETRYABLE_STATUSES:
            raise TransientHTTPError(
                response.status_code,
                parse_retry_after(response.headers),
                _json_or_none(response),
                request_id,
            )
        raise _HTTPFailure(response.status_code, _json_or_none(response), request_id)

    def request(
        self,
        method: str,
        url: str,
        *,
        action: str,
        ok: Sequence[int] = (200, 201, 204, 207),
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json: Any = None,
        data: bytes | IO[bytes] | None = None,
        content_type: str | None = None,
        accept: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send an authenticated AEP request with the required headers, retries and typed errors.

        :param method: HTTP method.
        :param url: Absolute URL (platform, DCS or batch ingestion).
        :param action: What the call does, for error messages (e.g. ``"Creating dataset 'x'"``).
        :param ok: Statuses that count as success.
        :param params: Query parameters.
        :param json: A JSON body (serialised with orjson; ``Content-Type: application/json``).
        :param data: A raw body (bytes or a binary file object positioned at its start).
        :param content_type: Content type of ``data`` (default ``application/json`` for bytes).
        :param accept: The ``Accept`` header (Schema Registry needs specific values).
        :param headers: More headers.
        """
        body = orjson.dumps(json) if json is not None else data
        base_headers: dict[str, str] = {}
        if body is not None:
            base_headers["Content-Type"] = content_type or "application/json"
        if accept:
            base_headers["Accept"] = accept
        if headers:
            base_headers.update(headers)
        rewind = body.tell() if body is not None and not isinstance(body, bytes) else None
        settings = self.settings

        def attempt() -> requests.Response:
            refreshed = False
            while True:
                token = self.get_access_token()
                if rewind is not None:
                    body.seek(rewind)  # type: ignore[union-attr]
                try:
                    return self._send_once(
                        method,
                        url,
                        ok=ok,
                        params=params,
                        data=body,
                        headers={**settings.platform_headers(token), **base_headers},
                    )
                except _HTTPFailure as failure:
                    if failure.status == 401 and not refreshed:
                        # An expired or revoked token: renew it once and send again.
                        TOKEN_CACHE.invalidate(settings.token_key, token)
                        refreshed = True
                        continue
                    raise error_for_status(action, failure.status, failure.body, failure.request_id) from None

        return self._retrying(attempt, action=action)

    def _platform(self, path: str) -> str:
        return f"{self.settings.platform_url}{path}"

    def _json(self, method: str, path: str, *, action: str, **kwargs: Any) -> Any:
        response = self.request(method, self._platform(path), action=action, **kwargs)
        return _json_or_none(response)

    def test_connection(self) -> tuple[bool, str]:
        """Get a token, then make one cheap authenticated call (Schema Registry ``/stats``: checks org and sandbox)."""
        try:
            settings = self.settings
        except Exception as exc:
            return False, str(exc)
        try:
            self.get_access_token(force_refresh=True)
        except AEPError as exc:
            if exc.status is None:
                return False, f"Could not reach Adobe IMS at {settings.ims_url}: {exc}"
            return False, f"Adobe IMS rejected the Client ID / Client Secret or scopes: {exc}"
        try:
            tenant = self.get_tenant_id()
        except AEPError as exc:
            if exc.status is None:
                return False, f"Could not reach the AEP platform API at {settings.platform_url}: {exc}"
            if exc.error_code == "403025" or (exc.status == 403 and "org" in str(exc).lower()):
                return False, f"The credentials are not entitled to Org ID {settings.org_id!r}: {exc}"
            if "sandbox" in str(exc).lower():
                return False, f"Sandbox {settings.sandbox!r} was refused: {exc}"
            return False, f"AEP refused the authenticated test call: {exc}"
        return True, f"Connected to org {settings.org_id}, sandbox {settings.sandbox!r}, tenant {tenant!r}"

    # ------------------------------------------------------------------ Schema Registry

    def get_tenant_id(self) -> str:
        """The org's tenant id (``GET /stats``); payload fields live under ``_{tenant id}``."""
        body = self._json(
            "GET",
            f"{SCHEMA_REGISTRY}/stats",
            action="Reading the Schema Registry tenant id",
            accept="application/json",
        )
        tenant = body.get("tenantId") if isinstance(body, Mapping) else None
        if not tenant:
            raise AEPError("The Schema Registry /stats answer has no tenantId")
        return str(tenant)

    def _iter_registry(self, path: str, params: list[tuple[str, str]], action: str) -> Iterator[dict[str, Any]]:
        """Items of a Schema Registry listing, following ``_page.next`` (passed back as ``start``)."""
        params = [*params, ("orderby", "title")]
        while True:
            body = self._json("GET", path, action=action, params=params, accept=XED_ID)
            yield from body.get("results", [])
            next_start = (body.get("_page") or {}).get("next")
            if not next_start:
                return
            params = [(k, v) for k, v in params if k != "start"] + [("start", str(next_start))]

    def _find_one_by_title(self, kind: str, title: str) -> dict[str, Any] | None:
        found = list(
            self._iter_registry(
                f"{SCHEMA_REGISTRY}/tenant/{kind}",
                [("property", f"title=={title}")],
                f"Finding {kind} {title!r}",
            )
        )
        matches = [item for item in found if item.get("title") == title]
        if len(matches) > 1:
            ids = ", ".join(str(m.get("$id")) for m in matches)
            raise AEPConflictError(f"{len(matches)} tenant {kind} are titled {title!r} ({ids}); titles must be unique")
        return matches[0] if matches else None

    def find_schema(self, title: str) -> dict[str, Any] | None:
        """The tenant schema with this exact title (``$id``, ``meta:altId``, ``version``, ``title``), or ``None``."""
        return self._find_one_by_title("schemas", title)

    def create_schema(
        self, title: str, class_id: str, field_group_ids: Sequence[str] = (), description: str | None = None
    ) -> dict[str, Any]:
        """Create a tenant schema of ``class_id`` with the given field groups; returns the created schema."""
        body: dict[str, Any] = {
            "type": "object",
            "title": title,
            "description": description or title,
            "allOf": [{"$ref": ref} for ref in (class_id, *field_group_ids)],
        }
        return self._json("POST", f"{SCHEMA_REGISTRY}/tenant/schemas", action=f"Creating schema {title!r}", json=body)

    def get_schema(self, schema_id: str, *, full: bool = False) -> dict[str, Any]:
        """A tenant schema by ``$id`` or ``meta:altId``: raw (``allOf`` kept) or ``full`` (resolved, for validation)."""
        return self._json(
            "GET",
            f"{SCHEMA_REGISTRY}/tenant/schemas/{quote(schema_id, safe='')}",
            action=f"Reading schema {schema_id}",
            accept=XED_FULL if full else XED,
        )

    def add_field_groups(self, schema_id: str, field_group_ids: Sequence[str]) -> dict[str, Any]:
        """Add the field groups the schema lacks (JSON Patch ``add /allOf/-``); a no-op when it has them all."""
        schema = self.get_schema(schema_id)
        present = {item.get("$ref") for item in schema.get("allOf", [])} | set(schema.get("meta:extends", []))
        missing = [ref for ref in dict.fromkeys(field_group_ids) if ref not in present]
        if not missing:
            return schema
        patch = [{"op": "add", "path": "/allOf/-", "value": {"$ref": ref}} for ref in missing]
        return self._json(
            "PATCH",
            f"{SCHEMA_REGISTRY}/tenant/schemas/{quote(schema_id, safe='')}",
            action=f"Adding field groups to schema {schema_id}",
            json=patch,
        )

    def find_field_group(self, title: str) -> dict[str, Any] | None:
        """The tenant field group with this exact title, or ``None``."""
        return self._find_one_by_title("fieldgroups", title)

    def create_field_group(
        self,
        title: str,
        intended_to_extend: Sequence[str],
        definitions: Mapping[str, Any],
        description: str | None = None,
    ) -> dict[str, Any]:
        """Create a tenant field group; ``definitions`` hold the fields under ``_{tenant id}`` (aep-api.md §2.6)."""
        body = {
            "type": "object",
            "title": title,
            "description": description or title,
            "meta:intendedToExtend": list(intended_to_extend),
            "definitions": dict(definitions),
            "allOf": [{"$ref": f"#/definitions/{name}"} for name in definitions],
        }
        return self._json(
            "POST",
            f"{SCHEMA_REGISTRY}/tenant/fieldgroups",
            action=f"Creating field group {title!r}",
            json=body,
        )

    def list_descriptors(self, schema_id: str | None = None) -> list[dict[str, Any]]:
        """Tenant descriptors (of one schema when ``schema_id`` is given)."""
        body = self._json(
            "GET",
            f"{SCHEMA_REGISTRY}/tenant/descriptors",
            action="Listing descriptors",
            accept=XDM_DESCRIPTORS,
        )
        items: list[dict[str, Any]] = []
        if isinstance(body, Mapping):  # grouped by @type
            for value in body.values():
                if isinstance(value, list):
                    items.extend(dict(v) for v in value if isinstance(v, Mapping))
        elif isinstance(body, list):
            items = [dict(v) for v in body if isinstance(v, Mapping)]
        if schema_id is not None:
            items = [d for d in items if d.get("xdm:sourceSchema") == schema_id]
        return items

    def create_identity_descriptor(
        self, schema_id: str, source_property: str, namespace: str, *, primary: bool = True
    ) -> dict[str, Any]:
        """Mark ``source_property`` (e.g. ``/_tenant/capillary/customerId``) as an identity in ``namespace``."""
        body = {
            "@type": "xdm:descriptorIdentity",
            "xdm:sourceSchema": schema_id,
            "xdm:sourceVersion": 1,
            "xdm:sourceProperty": source_property,
            "xdm:namespace": namespace,
            "xdm:property": "xdm:code",
            "xdm:isPrimary": primary,
        }
        return self._json(
            "POST",
            f"{SCHEMA_REGISTRY}/tenant/descriptors",
            action=f"Creating identity descriptor {source_property} on {schema_id}",
            json=body,
        )

    def enable_schema_for_profile(self, schema_id: str) -> dict[str, Any]:
        """Add the ``union`` tag (needs a primary identity first); a no-op on an enabled schema."""
        schema = self.get_schema(schema_id)
        if "union" in schema.get("meta:immutableTags", []):
            return schema
        return self._json(
            "PATCH",
            f"{SCHEMA_REGISTRY}/tenant/schemas/{quote(schema_id, safe='')}",
            action=f"Enabling schema {schema_id} for Profile",
            json=[{"op": "add", "path": "/meta:immutableTags", "value": ["union"]}],
        )

    # ------------------------------------------------------------------ Identity Service

    def list_identity_namespaces(self) -> list[dict[str, Any]]:
        """Every identity namespace of the sandbox (standard and custom)."""
        return self._json("GET", IDENTITY_NAMESPACES, action="Listing identity namespaces") or []

    def create_identity_namespace(
        self, code: str, name: str, *, id_type: str = "Cross_device", description: str | None = None
    ) -> dict[str, Any]:
        """Create a custom identity namespace (its code can never be changed or deleted)."""
        body = {"code": code, "name": name, "idType": id_type, "description": description or name}
        return self._json("POST", IDENTITY_NAMESPACES, action=f"Creating identity namespace {code!r}", json=body)

    # ------------------------------------------------------------------ Catalog

    def find_dataset(self, name: str) -> tuple[str, dict[str, Any]] | None:
        """``(id, dataset)`` of the dataset with this name; ``None`` if none.

        Catalog does not keep names unique: when several datasets share the name, the oldest (by ``created``,
        then id) is returned, so that every caller — including a run racing this one — picks the same one.
        """
        body = self._json(
            "GET",
            f"{CATALOG}/dataSets",
            action=f"Finding dataset {name!r}",
            params={"property": f"name=={name}", "limit": "100"},
        )
        matches = [
            (str(k), dict(v)) for k, v in (body or {}).items() if isinstance(v, Mapping) and v.get("name") == name
        ]
        if not matches:
            return None
        if len(matches) > 1:
            self.log.warning("%d datasets are named %r; using the oldest", len(matches), name)
        return min(matches, key=lambda item: (item[1].get("created") or 0, item[0]))

    def find_or_create(
        self,
        what: str,
        *,
        find: Callable[[], str | None],
        create: Callable[[], str],
        delete: Callable[[str], None],
    ) -> tuple[str, bool]:
        """Find an object, or create it so that runs racing to create the same one end up sharing one.

        Catalog datasets and Flow Service objects have no unique names: two runs that both find nothing both
        create. So after creating, look again: ``find`` must pick deterministically (the oldest) among several
        matches; when the object it picks is not the one just created, another run won the race, and the
        object just created is deleted.

        :param what: What the object is, for the log (e.g. ``dataset 'Capillary Loyalty Events'``).
        :param find: Returns the id of the matching object (the oldest when several), or ``None``.
        :param create: Creates the object, returns its id.
        :param delete: Deletes an object by id.
        :return: ``(id, created)``.
        """
        found = find()
        if found is not None:
            return found, False
        created = create()
        winner = find()
        if winner is None or winner == created:
            return created, True
        self.log.warning("Another run created %s at the same time (%s): using it, deleting %s", what, winner, created)
        delete(created)
        return winner, False

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete a dataset (and its data). A dataset that is already gone is not an error."""
        try:
            self._json("DELETE", f"{CATALOG}/dataSets/{dataset_id}", action=f"Deleting dataset {dataset_id}")
        except AEPNotFoundError:
            self.log.info("Dataset %s was already deleted", dataset_id)

    def create_dataset(
        self,
        name: str,
        schema_id: str,
        *,
        profile_enabled: bool = False,
        identity_enabled: bool = False,
        description: str | None = None,
    ) -> str:
        """Create a dataset for a schema, optionally enabled for Profile and Identity; returns its id."""
        body: dict[str, Any] = {
            "name": name,
            "description": description or name,
            "schemaRef": {"id": schema_id, "contentType": SCHEMA_REF_CONTENT_TYPE},
        }
        tags = {}
        if profile_enabled:
            tags["unifiedProfile"] = ["enabled:true"]
        if identity_enabled:
            tags["unifiedIdentity"] = ["enabled:true"]
        if tags:
            body["tags"] = tags
        return dataset_id_from_create_response(
            self._json("POST", f"{CATALOG}/dataSets", action=f"Creating dataset {name!r}", json=body)
        )

    def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        """A dataset by id."""
        body = self._json("GET", f"{CATALOG}/dataSets/{dataset_id}", action=f"Reading dataset {dataset_id}")
        return dict(body[dataset_id]) if isinstance(body, Mapping) and dataset_id in body else dict(body or {})

    def enable_dataset_for_profile(self, dataset_id: str, *, identity: bool = True) -> None:
        """Tag an existing dataset for Profile (and Identity); its schema must already be Profile-enabled."""
        tags = {"unifiedProfile": ["enabled:true"]}
        if identity:
            tags["unifiedIdentity"] = ["enabled:true"]
        self._json(
            "PATCH", f"{CATALOG}/dataSets/{dataset_id}", action=f"Enabling dataset {dataset_id}", json={"tags": tags}
        )

    def iter_batches(
        self,
        dataset_id: str,
        *,
        created_after: int | None = None,
        status: str | None = None,
        page_size: int = 100,
    ) -> Iterator[dict[str, Any]]:
        """The dataset's Catalog batches, oldest first, each with its ``id``; Catalog pages by ``start`` offset.

        :param dataset_id: The dataset.
        :param created_after: Only batches created after this epoch-milliseconds instant.
        :param status: Only batches in this status.
        :param page_size: Batches per page (1-100).
        """
        if not 1 <= page_size <= 100:
            raise ValueError("page_size must be between 1 and 100 (Catalog's limit)")
        params: dict[str, str] = {"dataSet": dataset_id, "orderBy": "asc:created", "limit": str(page_size)}
        if created_after is not None:
            params["createdAfter"] = str(created_after)
        if status:
            params["status"] = status
        start = 0
        while True:
            body = self._json(
                "GET",
                f"{CATALOG}/batches",
                action=f"Listing batches of dataset {dataset_id}",
                params={**params, "start": str(start)},
            )
            page = batches_page(body)
            yield from page
            if len(page) < page_size:
                return
            start += len(page)

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        """A batch's Catalog record (``status``, ``recordCount``, ``errors``, ...) with its ``id``."""
        return batch_record(
            batch_id, self._json("GET", f"{CATALOG}/batches/{batch_id}", action=f"Reading batch {batch_id}")
        )

    # ------------------------------------------------------------------ Flow Service

    def _iter_flow(self, path: str, params: Sequence[tuple[str, str]], action: str) -> Iterator[dict[str, Any]]:
        """Items of a Flow Service listing, following ``_links.next.href`` (its ``continuationToken``)."""
        query = list(params)
        while True:
            body = self._json("GET", f"{FLOW_SERVICE}{path}", action=action, params=query)
            yield from body.get("items", [])
            next_href = ((body.get("_links") or {}).get("next") or {}).get("href")
            token = parse_qs(urlsplit(next_href).query).get("continuationToken") if next_href else None
            if not token:
                return
            query = [(k, v) for k, v in params if k != "continuationToken"] + [("continuationToken", token[0])]

    def _find_flow_item(self, path: str, filters: Sequence[str], what: str) -> dict[str, Any] | None:
        items = list(self._iter_flow(path, [("property", f) for f in filters], f"Finding {what}"))
        if len(items) > 1:
            self.log.warning("%d %s match; using the oldest", len(items), what)
        return min(items, key=lambda i: (i.get("createdAt") or 0, i.get("id", ""))) if items else None

    def delete_flow_item(self, kind: FlowItemKind, item_id: str) -> None:
        """Delete a Flow Service object: ``kind`` is ``flows``, ``sourceConnections``, ``targetConnections`` or
        ``connections`` (delete a base connection's source connections and flows first). One that is already gone
        is not an error."""
        try:
            self._json("DELETE", f"{FLOW_SERVICE}/{kind}/{item_id}", action=f"Deleting {kind} {item_id}")
        except AEPNotFoundError:
            self.log.info("%s %s was already deleted", kind, item_id)

    def find_base_connection(self, name: str) -> dict[str, Any] | None:
        """The HTTP API streaming base connection with this name, or ``None``."""
        return self._find_flow_item(
            "/connections",
            [f"name=={name}", f"connectionSpec.id=={HTTP_API_CONNECTION_SPEC_ID}"],
            f"streaming connection {name!r}",
        )

    def create_streaming_connection(
        self, name: str, *, authenticated: bool = True, description: str | None = None
    ) -> str:
        """Create an HTTP API streaming base connection for XDM data; returns its id."""
        body = {
            "name": name,
            "description": description or name,
            "connectionSpec": {"id": HTTP_API_CONNECTION_SPEC_ID, "version": "1.0"},
            "auth": {
                "specName": "Streaming Connection",
                "params": {"dataType": "xdm", "name": name, "authenticationRequired": authenticated},
            },
        }
        created = self._json(
            "POST", f"{FLOW_SERVICE}/connections", action=f"Creating streaming connection {name!r}", json=body
        )
        return str(created["id"])

    def get_base_connection(self, connection_id: str) -> dict[str, Any]:
        """A Flow Service base connection by id."""
        body = self._json(
            "GET", f"{FLOW_SERVICE}/connections/{connection_id}", action=f"Reading connection {connection_id}"
        )
        items = body.get("items") if isinstance(body, Mapping) else None
        if not items:
            raise AEPNotFoundError(f"Connection {connection_id} not found", status=404)
        return dict(items[0])

    def get_inlet(self, connection_id: str) -> tuple[str, str]:
        """``(inlet id, inlet URL)`` of a streaming base connection (the URL re-based on ``dcs_url`` if set)."""
        params = self.get_base_connection(connection_id).get("auth", {}).get("params", {})
        inlet_id, inlet_url = params.get("inletId"), params.get("inletUrl")
        if not inlet_id or not inlet_url:
            raise AEPError(f"Connection {connection_id} has no streaming inlet (not an HTTP API connection?)")
        single_url, _ = batch_url_for_inlet(inlet_url, self.settings.dcs_url)
        return str(inlet_id), single_url

    def find_source_connection(self, base_connection_id: str) -> dict[str, Any] | None:
        """The source connection on a base connection, or ``None``."""
        return self._find_flow_item(
            "/sourceConnections", [f"baseConnectionId=={base_connection_id}"], "source connections"
        )

    def create_source_connection(self, name: str, base_connection_id: str) -> str:
        """Create the source connection of a streaming base connection; returns its id."""
        body = {
            "name": name,
            "baseConnectionId": base_connection_id,
            "connectionSpec": {"id": HTTP_API_CONNECTION_SPEC_ID, "version": "1.0"},
        }
        created = self._json(
            "POST",
            f"{FLOW_SERVICE}/sourceConnections",
            action=f"Creating source connection {name!r}",
            json=body,
        )
        return str(created["id"])

    def find_target_connection(self, dataset_id: str) -> dict[str, Any] | None:
        """The Data Lake target connection writing to a dataset, or ``None``."""
        return self._find_flow_item(
            "/targetConnections",
            [f"params.dataSetId=={dataset_id}", f"connectionSpec.id=={DATA_LAKE_CONNECTION_SPEC_ID}"],
            f"target connections of dataset {dataset_id}",
        )

    def create_target_connection(self, name: str, dataset_id: str, schema_id: str) -> str:
        """Create a Data Lake target connection to a dataset; returns its id."""
        body = {
            "name": name,
            "connectionSpec": {"id": DATA_LAKE_CONNECTION_SPEC_ID, "version": "1.0"},
            "data": {"schema": {"id": schema_id, "version": "application/vnd.adobe.xed-full+json;version=1.0"}},
            "params": {"dataSetId": dataset_id},
        }
        created = self._json(
            "POST",
            f"{FLOW_SERVICE}/targetConnections",
            action=f"Creating target connection {name!r}",
            json=body,
        )
        return str(created["id"])

    def find_dataflow(self, source_connection_id: str, target_connection_id: str) -> dict[str, Any] | None:
        """The dataflow from a source connection to a target connection, or ``None``."""
        return self._find_flow_item(
            "/flows",
            [
                f"sourceConnectionIds[]=={source_connection_id}",
                f"targetConnectionIds[]=={target_connection_id}",
            ],
            "dataflows",
        )

    def create_dataflow(self, name: str, source_connection_id: str, target_connection_id: str) -> str:
        """Create an XDM (no mapping) dataflow; returns its id. AEP advises waiting ~5 min before streaming to it."""
        body = {
            "name": name,
            "flowSpec": {"id": XDM_FLOW_SPEC_ID, "version": "1.0"},
            "sourceConnectionIds": [source_connection_id],
            "targetConnectionIds": [target_connection_id],
        }
        created = self._json("POST", f"{FLOW_SERVICE}/flows", action=f"Creating dataflow {name!r}", json=body)
        return str(created["id"])

    # ------------------------------------------------------------------ Streaming (DCS)

    @staticmethod
    def streaming_message(
        entity: Mapping[str, Any],
        *,
        schema_id: str,
        dataset_id: str,
        flow_id: str,
        org_id: str,
        source_name: str = "Capillary",
    ) -> dict[str, Any]:
        """The XDM envelope DCS expects around one record (aep-api.md §6.2)."""
        schema_ref = {"id": schema_id, "contentType": SCHEMA_REF_CONTENT_TYPE}
        return {
            "header": {
                "schemaRef": schema_ref,
                "imsOrgId": org_id,
                "datasetId": dataset_id,
                "flowId": flow_id,
                "source": {"name": source_name},
            },
            "body": {"xdmMeta": {"schemaRef": schema_ref}, "xdmEntity": entity},
        }

    def send_message(self, inlet: str, message: Mapping[str, Any], *, sync_validation: bool = False) -> dict[str, Any]:
        """Stream one message to an inlet (id or URL); ``sync_validation`` asks DCS to validate now (dev only)."""
        url, _ = batch_url_for_inlet(inlet, self.settings.dcs_url)
        response = self.request(
            "POST",
            url,
            action="Streaming a message",
            ok=(200,),
            params={"syncValidation": "true"} if sync_validation else None,
            json=message,
        )
        return dict(_json_or_none(response) or {})

    def send_messages(self, inlet: str, messages: Sequence[Mapping[str, Any]] | bytes) -> list[dict[str, Any]]:
        """Stream many messages in one request; returns DCS's per-message results, in request order.

        :param inlet: Inlet id or inlet URL.
        :param messages: The envelopes, or an already serialised ``{"messages": [...]}`` body (≤ 1 MB).
        :return: One dict per message: ``{"xactionId": ...}`` on success, ``{"statusCode": ..., "message": ...}`` on
            failure.
        """
        _, url = batch_url_for_inlet(inlet, self.settings.dcs_url)
        if isinstance(messages, bytes):
            body, expected = messages, None
        else:
            body, expected = orjson.dumps({"messages": list(messages)}), len(messages)
        response = self.request("POST", url, action="Streaming a multi-message request", ok=(207, 200), data=body)
        results = (_json_or_none(response) or {}).get("responses")
        if not isinstance(results, list) or (expected is not None and len(results) != expected):
            got = len(results) if isinstance(results, list) else "no"
            raise AEPError(f"DCS answered {got} results for {expected if expected is not None else 'the'} messages")
        return results

    # ------------------------------------------------------------------ Profile

    def lookup_profile(
        self,
        entity_id: str,
        namespace: str,
        *,
        fields: Sequence[str] | None = None,
        merge_policy_id: str | None = None,
    ) -> dict[str, Any] | None:
        """The merged profile of an identity (Profile Access API), or ``None`` when AEP has none (yet)."""
        params = {"schema.name": "_xdm.context.profile", "entityId": entity_id, "entityIdNS": namespace}
        if fields:
            params["fields"] = ",".join(fields)
        if merge_policy_id:
            params["mergePolicyId"] = merge_policy_id
        try:
            body = self._json("GET", PROFILE_ENTITIES, action=f"Looking up a {namespace} profile", params=params)
        except AEPNotFoundError:
            return None
        return profile_entity(body)

    # ------------------------------------------------------------------ Batch Ingestion

    def create_batch(self, dataset_id: str, *, input_format: str = "json") -> str:
        """Open a Batch Ingestion batch for a dataset (JSON lines by default); returns its id."""
        body = {"datasetId": dataset_id, "inputFormat": {"format": input_format}}
        created = self._json("POST", f"{BATCH_INGESTION}/batches", action="Creating a batch", json=body)
        return str(created["id"])

    def upload_file(
        self,
        batch_id: str,
        dataset_id: str,
        file_name: str,
        data: bytes | IO[bytes],
        *,
        size: int | None = None,
        chunk_size: int = 64 * 1024 * 1024,
        single_put_limit: int = SINGLE_PUT_LIMIT,
    ) -> None:
        """Upload a file into a batch: one PUT up to ``single_put_limit`` bytes, else the chunked upload.

        :param batch_id: The open batch.
        :param dataset_id: The batch's dataset.
        :param file_name: Name of the file inside the batch (a second upload of the same name replaces it).
        :param data: The file's bytes, or a binary file object (read in chunks, never whole, when large).
        :param size: Size of ``data`` in bytes when it is a file object (default: found by seeking).
        :param chunk_size: Bytes per PATCH in the chunked upload (AEP allows up to 512,000,000).
        :param single_put_limit: Largest size sent with a single PUT (AEP: 256 MB).
        """
        url = f"{self._platform(BATCH_INGESTION)}/batches/{batch_id}/datasets/{dataset_id}/files/{quote(file_name)}"
        octets = "application/octet-stream"
        if isinstance(data, bytes):
            size = len(data)
        elif size is None:
            start = data.tell()
            size = data.seek(0, 2) - start
            data.seek(start)
        action = f"Uploading {file_name} to batch {batch_id}"
        if size <= single_put_limit:
            self.request("PUT", url, action=action, ok=(200, 201), data=data, content_type=octets)
            return
        self.request(
            "POST", url, action=action, ok=(200, 201), params={"action": "INITIALIZE"}, headers={"Content-Type": octets}
        )
        for index in range(math.ceil(size / chunk_size)):
            start = index * chunk_size
            chunk = data[start : start + chunk_size] if isinstance(data, bytes) else data.read(chunk_size)
            end = start + len(chunk) - 1
            self.request(
                "PATCH",
                url,
                action=action,
                ok=(200, 201),
                data=chunk,
                content_type=octets,
                headers={"Content-Range": f"bytes {start}-{end}/{size}"},
            )
        self.request(
            "POST", url, action=action, ok=(200, 201), params={"action": "COMPLETE"}, headers={"Content-Type": octets}
        )

    def complete_batch(self, batch_id: str) -> None:
        """Signal that every file is uploaded; AEP then ingests the batch (poll :meth:`get_batch`)."""
        self.request(
            "POST",
            f"{self._platform(BATCH_INGESTION)}/batches/{batch_id}",
            action=f"Completing batch {batch_id}",
            ok=(200, 201, 204),
            params={"action": "COMPLETE"},
        )


class _HTTPFailure(Exception):
    """A non-retryable HTTP status seen by one attempt (internal; callers get a typed AEPError)."""

    def __init__(self, status: int, body: Any, request_id: str | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.request_id = request_id


class AEPAsyncHook(BaseHook):
    """The asyncio twin of :class:`AEPHook` for triggers: the read-only calls they poll, over aiohttp.

    Shares the per-process token cache and the retry policy with the sync hook. Open it with ``async with``; one
    ``aiohttp.ClientSession`` serves every call made inside.

    :param aep_conn_id: Airflow connection of type ``adobe_experience_platform``. Default ``aep_default``.
    :param timeout: Seconds to wait for each HTTP response. Default 30.
    :param max_attempts: Attempts per call, first one included. Default 6.
    :param max_retry_seconds: Total seconds one call may spend retrying. Default 300.
    :param max_retry_wait: Cap on a single backoff wait (and on ``Retry-After``), in seconds. Default 30.
    """

    conn_name_attr = "aep_conn_id"
    default_conn_name = "aep_default"
    conn_type = AEP_CONN_TYPE
    hook_name = "Adobe Experience Platform (async)"

    def __init__(
        self,
        aep_conn_id: str = default_conn_name,
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        max_retry_seconds: float = 300.0,
        max_retry_wait: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.aep_conn_id = aep_conn_id
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_retry_seconds = max_retry_seconds
        self.max_retry_wait = max_retry_wait
        self._settings: AEPSettings | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AEPAsyncHook:
        from airflow.providers.common.compat.connection import get_async_connection

        self._settings = AEPSettings.from_connection(await get_async_connection(self.aep_conn_id, self))
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout), headers={"User-Agent": AEPHook.user_agent}
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def settings(self) -> AEPSettings:
        if self._settings is None:
            raise RuntimeError("Use AEPAsyncHook inside 'async with'")
        return self._settings

    async def _send_once(self, method: str, url: str, *, ok: Sequence[int], **kwargs: Any) -> tuple[int, Any]:
        assert self._session is not None
        async with self._session.request(method, url, **kwargs) as response:
            raw = await response.read()
            try:
                body: Any = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                body = raw[:_ERROR_TEXT_LIMIT].decode(errors="replace")
            request_id = response.headers.get("x-request-id")
            if response.status in ok:
                return response.status, body
            if response.status in RETRYABLE_STATUSES:
                raise TransientHTTPError(response.status, parse_retry_after(response.headers), body, request_id)
            raise _HTTPFailure(response.status, body, request_id)

    async def _retrying(self, attempt: Any, *, action: str) -> tuple[int, Any]:
        retryer = AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            wait=BackoffWait(maximum=self.max_retry_wait),
            stop=retry_stop(self.max_attempts, self.max_retry_seconds),
            reraise=True,
        )
        try:
            return await retryer(attempt)
        except TransientHTTPError as exc:
            raise error_for_status(action, exc.status, exc.body, exc.request_id) from None
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise AEPServerError(f"{action}: could not reach AEP ({type(exc).__name__})") from None

    async def get_access_token(self) -> str:
        """A valid IMS access token from the per-process cache, fetched when missing or expired."""
        settings = self.settings
        token = TOKEN_CACHE.get(settings.token_key)
        if token:
            return token
        action = "Requesting an Adobe IMS access token"

        async def attempt() -> tuple[int, Any]:
            return await self._send_once(
                "POST", f"{settings.ims_url}/ims/token/v3", ok=(200,), data=settings.token_form()
            )

        try:
            status, body = await self._retrying(attempt, action=action)
        except _HTTPFailure as failure:
            code, title, detail = parse_error_body(failure.body)
            raise AEPAuthError(action, status=failure.status, error_code=code, title=title, detail=detail) from None
        if not isinstance(body, Mapping) or not body.get("access_token"):
            raise AEPAuthError("Adobe IMS answered without an access_token", status=status)
        token = str(body["access_token"])
        mask_secret(token)
        TOKEN_CACHE.put(settings.token_key, token, float(body.get("expires_in") or 0))
        return token

    async def _get_json(self, path: str, *, action: str, params: Mapping[str, str] | None = None) -> Any:
        settings = self.settings
        url = f"{settings.platform_url}{path}"

        async def attempt() -> tuple[int, Any]:
            refreshed = False
            while True:
                token = await self.get_access_token()
                try:
                    return await self._send_once(
                        "GET", url, ok=(200,), params=params, headers=settings.platform_headers(token)
                    )
                except _HTTPFailure as failure:
                    if failure.status == 401 and not refreshed:
                        TOKEN_CACHE.invalidate(settings.token_key, token)
                        refreshed = True
                        continue
                    raise error_for_status(action, failure.status, failure.body, failure.request_id) from None

        _, body = await self._retrying(attempt, action=action)
        return body

    async def get_batch(self, batch_id: str) -> dict[str, Any]:
        """A batch's Catalog record with its ``id``."""
        return batch_record(
            batch_id,
            await self._get_json(f"{CATALOG}/batches/{batch_id}", action=f"Reading batch {batch_id}"),
        )

    async def list_batches(
        self, dataset_id: str, *, created_after: int | None = None, page_size: int = 100
    ) -> list[dict[str, Any]]:
        """Every Catalog batch of a dataset (created after ``created_after`` epoch ms), oldest first."""
        params = {"dataSet": dataset_id, "orderBy": "asc:created", "limit": str(page_size)}
        if created_after is not None:
            params["createdAfter"] = str(created_after)
        batches: list[dict[str, Any]] = []
        start = 0
        while True:
            body = await self._get_json(
                f"{CATALOG}/batches",
                action=f"Listing batches of dataset {dataset_id}",
                params={**params, "start": str(start)},
            )
            page = batches_page(body)
            batches.extend(page)
            if len(page) < page_size:
                return batches
            start += len(page)

    async def lookup_profile(self, entity_id: str, namespace: str) -> dict[str, Any] | None:
        """The merged profile of an identity, or ``None`` when AEP has none (yet)."""
        params = {"schema.name": "_xdm.context.profile", "entityId": entity_id, "entityIdNS": namespace}
        try:
            body = await self._get_json(PROFILE_ENTITIES, action=f"Looking up a {namespace} profile", params=params)
        except AEPNotFoundError:
            return None
        return profile_entity(body)
