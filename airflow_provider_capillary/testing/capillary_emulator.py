"""A local Capillary API emulator over real HTTP, for tests and the offline demo.

It serves the documented read APIs the provider uses, on one port (``aiohttp.web`` in a background thread):

- ``POST /v3/oauth/token/generate`` (client key and secret to a token with ``ttlSeconds``) and Basic till
  authentication (``base64(username:md5_hex(password))``) on every other route;
- ``GET /v1.1/organization/get`` and ``GET /v1.1/customer/search`` (``registered_date`` ``LESS``/``GREATER``/``ON``
  queries, record ``limit``/``offset``, ``count``/``start``/``rows``);
- ``GET /v2/customers/{id}`` (``embed=points,subscriptions,mlp``), ``GET /v2/customers/{id}/transactions`` and
  ``GET /v2/customers/coupons`` (v2 ``limit``/``offset`` with a ``pagination`` block, ``offset`` counting records or
  pages), ``GET /v2/transactions/{id}`` (line items);
- ``GET /v2/pointsLedger/getCustomerLedgerInfo`` (``limit`` at most 10, ``offset`` = page number, ``ledgerDetails``,
  windows of at most 30 days) and the rewards catalog's issual read (``/api_gateway/rewards/...``);
- Capillary's error envelopes (v2/v3 ``errors[]``, v1.1 ``response.status``) and an ``X-Cap-Requestid`` header.

Data comes from canonical extract files (``samples_dir`` with ``customers.csv``, ``transactions.jsonl`` and
``loyalty_events.csv``; rows Capillary could not hold, such as impossible dates or missing ids, are left out) or from
a small deterministic generated dataset. Faults are injected by script (:meth:`CapillaryEmulator.add_fault`, e.g. a
429 with ``Retry-After``) or at random with a seeded rate.

Run it for the demo with ``python -m airflow_provider_capillary.testing.capillary_emulator --port 8766``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import hashlib
import json
import random
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

DEFAULT_CLIENT_KEY = "emulator-client-key"
DEFAULT_CLIENT_SECRET = "emulator-client-secret-0123456789"
DEFAULT_TILL_USERNAME = "acme.till01"
DEFAULT_TILL_PASSWORD = "till-password-0123"
DEFAULT_TOKEN_HEADER = "X-CAP-API-OAUTH-TOKEN"
LEDGER_MAX_LIMIT = 10
LEDGER_MAX_DAYS = 30
TRANSACTIONS_MAX_LIMIT = 1000
LEDGER_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
LEDGER_NAMES = {
    "pointsIssued": "TransactionAdd",
    "pointsRedeemed": "PointsRedemption",
    "pointsExpired": "PointsExpiry",
    "issuedPointsReversed": "ReturnBill",
    "promisedToCurrentPointsConversion": "DelayedAccrual",
}
_SEARCH_QUERY = re.compile(r"^\(?registered_date:(LESS|GREATER|ON):(\d{4}-\d{2}-\d{2})\)?$")


@dataclass
class Fault:
    """A scripted failure: the next ``times`` requests whose path starts with ``path_prefix`` get ``status``.

    :param path_prefix: Path prefix the fault applies to, e.g. ``/v2/customers``.
    :param status: HTTP status to answer with.
    :param times: How many matching requests fail. Default 1.
    :param retry_after: ``Retry-After`` header value (seconds or an HTTP date), or None for no header.
    :param method: HTTP method the fault applies to, or None for any.
    """

    path_prefix: str
    status: int
    times: int = 1
    retry_after: str | None = None
    method: str | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received (kept in memory for assertions; never written anywhere).

    :param method: HTTP method.
    :param path: URL path.
    :param query: Query parameters.
    :param headers: Request headers as received.
    :param body: Raw request body bytes.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = field(repr=False)


class CapillaryEmulator:
    """A Capillary API server on ``host:port`` in a background thread.

    :param host: Interface to bind. Default ``127.0.0.1``.
    :param port: Port to bind; 0 picks a free one (read it from :attr:`url`). Default 0.
    :param org_id: The org id the credentials belong to. Default 50001.
    :param org_name: The org's name. Default ``Acme Rewards``.
    :param client_key: The OAuth client key accepted. Default ``emulator-client-key``.
    :param client_secret: The OAuth client secret accepted.
    :param till_username: The Basic-auth till username accepted. Default ``acme.till01``.
    :param till_password: The till's plain password (Basic sends its MD5 hex digest).
    :param token_ttl_seconds: ``ttlSeconds`` of issued tokens; tokens stop working after it. Default 300.
    :param token_header: Header that carries OAuth tokens; ``Authorization`` expects ``Bearer <token>``.
        Default ``X-CAP-API-OAUTH-TOKEN``.
    :param samples_dir: Folder of canonical extract files to serve, or None for the generated dataset.
    :param generated_customers: Customers in the generated dataset. Default 12.
    :param data_date: Day of the generated dataset's activity. Default 2025-06-01.
    :param currency: The org's currency. Default ``GBP``.
    :param timezone: The org's IANA zone, used for ledger times (Capillary returns them without an offset) and
        date parameters. Default ``Europe/London``.
    :param v2_offset_mode: ``record`` if v2 ``offset`` counts records, ``page`` if it counts pages.
        Default ``record``.
    :param fault_rate: Probability (0-1) that any request gets a random 429 or 503 with ``Retry-After: 0``.
        Default 0.
    :param seed: Seed of the random faults and of the generated dataset. Default 0.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        org_id: int = 50001,
        org_name: str = "Acme Rewards",
        client_key: str = DEFAULT_CLIENT_KEY,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        till_username: str = DEFAULT_TILL_USERNAME,
        till_password: str = DEFAULT_TILL_PASSWORD,
        token_ttl_seconds: int = 300,
        token_header: str = DEFAULT_TOKEN_HEADER,
        samples_dir: str | Path | None = None,
        generated_customers: int = 12,
        data_date: date = date(2025, 6, 1),
        currency: str = "GBP",
        timezone: str = "Europe/London",
        v2_offset_mode: str = "record",
        fault_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        if v2_offset_mode not in ("record", "page"):
            raise ValueError(f"v2_offset_mode must be 'record' or 'page', got {v2_offset_mode!r}")
        self.host = host
        self.port = port
        self.org_id = org_id
        self.org_name = org_name
        self.client_key = client_key
        self.client_secret = client_secret
        self.till_username = till_username
        self.till_password = till_password
        self.token_ttl_seconds = token_ttl_seconds
        self.token_header = token_header
        self.currency = currency
        self.timezone_name = timezone
        self.zone: tzinfo = ZoneInfo(timezone)
        self.v2_offset_mode = v2_offset_mode
        self.fault_rate = fault_rate
        self._random = random.Random(seed)
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        if samples_dir is not None:
            customers, transactions, events = load_samples(Path(samples_dir))
        else:
            customers, transactions, events = generate_dataset(generated_customers, data_date, seed, self.zone)
        self.customers: dict[str, dict[str, Any]] = {}
        self.transactions: dict[int, dict[str, Any]] = {}
        self.ledger: dict[str, list[dict[str, Any]]] = {}
        self.coupons: dict[str, list[dict[str, Any]]] = {}
        self.rewards: dict[tuple[str, int], dict[str, Any]] = {}
        self._seed(customers, transactions, events)

    # -- lifecycle ------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the running emulator, e.g. ``http://127.0.0.1:8766``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> CapillaryEmulator:
        """Start serving in a background thread; return once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("The Capillary emulator is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        self._loop = loop

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                runner = web.AppRunner(self._application(), access_log=None)
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, self.host, self.port)
                loop.run_until_complete(site.start())
                self._runner = runner
                self.port = runner.addresses[0][1]
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="capillary-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=15):
            raise RuntimeError("The Capillary emulator did not start within 15 s")
        if failure:
            self._thread = None
            raise RuntimeError(f"The Capillary emulator could not start: {failure[0]}") from failure[0]
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)
        self._thread = None
        self._loop = None
        self._runner = None

    def __enter__(self) -> CapillaryEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- test helpers ---------------------------------------------------------------------------------------

    def connection_json(self, auth_type: str = "oauth", **extra: Any) -> str:
        """The ``AIRFLOW_CONN_CAPILLARY_DEFAULT`` JSON for this emulator.

        :param auth_type: ``oauth`` (client key and secret) or ``basic`` (till username and password).
        :param extra: Extra fields to add or override (``page_size``, ``v2_offset_mode`` ...). By default the
            org id, currency, timezone and token header are the emulator's and ``requests_per_minute`` is 0
            (no client-side throttling against a local server).
        """
        if auth_type not in ("oauth", "basic"):
            raise ValueError(f"auth_type must be 'oauth' or 'basic', got {auth_type!r}")
        login, password = (
            (self.client_key, self.client_secret) if auth_type == "oauth" else (self.till_username, self.till_password)
        )
        extras: dict[str, Any] = {
            "auth_type": auth_type,
            "org_id": self.org_id,
            "currency": self.currency,
            "timezone": self.timezone_name,
            "token_header": self.token_header,
            "v2_offset_mode": self.v2_offset_mode,
            "requests_per_minute": 0,
        }
        extras.update(extra)
        return json.dumps(
            {"conn_type": "capillary", "host": self.url, "login": login, "password": password, "extra": extras}
        )

    def add_fault(
        self,
        path_prefix: str,
        status: int,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        method: str | None = None,
    ) -> None:
        """Make the next ``times`` matching requests fail with ``status`` (see :class:`Fault`)."""
        header = None if retry_after is None else str(retry_after)
        with self._lock:
            self.faults.append(Fault(path_prefix, status, times, header, method.upper() if method else None))

    def reset(self) -> None:
        """Forget received requests, pending faults and issued tokens (the data stays)."""
        with self._lock:
            self.requests.clear()
            self.faults.clear()
            self._tokens.clear()

    def expire_tokens(self) -> None:
        """Invalidate every issued OAuth token (the next call with one gets a 401)."""
        with self._lock:
            self._tokens.clear()

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RecordedRequest]:
        """Requests received whose path starts with ``path_prefix`` (and of ``method`` if given)."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path.startswith(path_prefix) and (method is None or r.method == method.upper())
            ]

    # -- data -----------------------------------------------------------------------------------------------

    def _seed(
        self,
        customers: Iterable[dict[str, Any]],
        transactions: Iterable[dict[str, Any]],
        events: Iterable[dict[str, Any]],
    ) -> None:
        for row in customers:
            customer_id = str(row["customer_id"])
            current = self.customers.get(customer_id)
            if current is None or _instant(row["updated_at"]) >= _instant(current["updated_at"]):
                self.customers[customer_id] = row
        for row in transactions:
            self.transactions[int(row["transaction_id"])] = row
        event_log_id = 30400000
        coupon_id = 397759000
        coupons_by_code: dict[tuple[str, str], dict[str, Any]] = {}
        seen_events: set[str] = set()
        for row in events:
            if str(row.get("event_id")) in seen_events:
                continue  # at-least-once duplicates of the extracts: Capillary holds each event once
            seen_events.add(str(row.get("event_id")))
            customer_id = str(row["customer_id"])
            name = row["event_name"]
            moment = _instant(row["event_time"])
            if name in LEDGER_NAMES:
                event_log_id += 1
                self.ledger.setdefault(customer_id, []).append(self._ledger_entry(event_log_id, row, moment))
            elif name == "rewardIssued":
                reward_transaction_id = _int_or_none(str(row.get("ref_id") or "").rpartition("_")[2])
                if reward_transaction_id is not None:
                    self.rewards[(customer_id, reward_transaction_id)] = {
                        "rewardTransactionId": reward_transaction_id,
                        "customerId": int(customer_id),
                        "rewardTransactionDate": int(moment.timestamp() * 1000),
                        "rewardDetails": {
                            "rewardId": _int_or_none(row.get("coupon_series_id")),
                            "name": row.get("coupon_code") or None,
                            "intouchPoints": _number(row.get("points")) or 0,
                        },
                    }
            elif name in ("CouponIssue", "CouponRedeem"):
                key = (customer_id, str(row["coupon_code"]))
                coupon = coupons_by_code.get(key)
                if coupon is None:
                    coupon_id += 1
                    coupon = {
                        "id": coupon_id,
                        "code": row["coupon_code"],
                        "seriesId": _int_or_none(row.get("coupon_series_id")),
                        "description": f"Coupon {row['coupon_code']}",
                        "discountType": row.get("discount_type") or None,
                        "discountValue": _number(row.get("discount_value")),
                        "createdDate": None,
                        "issuedAt": {"code": row.get("store_code") or None},
                        "redemptions": [],
                    }
                    coupons_by_code[key] = coupon
                    self.coupons.setdefault(customer_id, []).append(coupon)
                if name == "CouponIssue":
                    coupon["createdDate"] = moment.isoformat()
                else:
                    coupon["redemptions"].append(
                        {
                            "date": moment.isoformat(),
                            "transactionNumber": row.get("bill_number") or None,
                            "redeemedAt": {"code": row.get("store_code") or None},
                        }
                    )
        for coupons in self.coupons.values():
            for coupon in coupons:
                if coupon["createdDate"] is None:
                    first = min(_instant(r["date"]) for r in coupon["redemptions"])
                    coupon["createdDate"] = (first - timedelta(days=1)).isoformat()

    def _ledger_entry(self, event_log_id: int, row: dict[str, Any], moment: datetime) -> dict[str, Any]:
        points = Decimal(str(row["points"]))
        local = moment.astimezone(self.zone).replace(tzinfo=None)
        entry: dict[str, Any] = {
            "eventLogId": event_log_id,
            "eventName": LEDGER_NAMES[row["event_name"]],
            "ledgerCreatedDate": local.strftime("%Y-%m-%d %H:%M:%S.0"),
            "entryDetails": [
                {
                    "ledgerEntryType": "CREDIT" if points >= 0 else "DEBIT",
                    "points": f"{abs(points):.3f}",
                    "pointsCategory": "Main",
                    "programName": self.org_name,
                    "programId": _int_or_none(row.get("program_id")),
                }
            ],
            "netPointsOnEvent": f"{points:.3f}",
            "store": row.get("store_code") or "",
            "storeCode": row.get("store_code") or "",
            "tillCode": f"{(row.get('store_code') or 'hq').lower()}.till01",
        }
        if row.get("transaction_id"):
            entry["transactionDetails"] = {
                "transactionId": int(row["transaction_id"]),
                "transactionNumber": row.get("bill_number") or None,
            }
        return entry

    # -- HTTP -----------------------------------------------------------------------------------------------

    def _application(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/v3/oauth/token/generate", self._token)
        app.router.add_get("/v1.1/organization/get", self._organization)
        app.router.add_get("/v1.1/customer/search", self._customer_search)
        app.router.add_get("/v2/customers/coupons", self._coupons)
        app.router.add_get("/v2/customers/{customer_id}/transactions", self._customer_transactions)
        app.router.add_get("/v2/customers/{customer_id}", self._customer)
        app.router.add_get("/v2/transactions/{transaction_id}", self._transaction)
        app.router.add_get("/v2/pointsLedger/getCustomerLedgerInfo", self._ledger)
        app.router.add_get(
            "/api_gateway/rewards/core/v1/management/customer/{customer_id}/issuals/{reward_transaction_id}",
            self._reward_issual,
        )
        return app

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            self.requests.append(
                RecordedRequest(request.method, request.path, dict(request.query), dict(request.headers), body)
            )
        request_id = uuid.uuid4().hex
        response: web.StreamResponse | None = self._fault(request)
        unrouted = request.match_info.http_exception
        if response is None and unrouted is not None:
            response = self._error(request, unrouted.status, unrouted.status, "No such resource")
        if response is None and request.path != "/v3/oauth/token/generate" and not self._authorised(request):
            response = self._error(request, 401, 401, "Unauthorized: invalid or expired credentials")
        if response is None:
            response = await handler(request)
        response.headers["X-Cap-Requestid"] = request_id
        return response

    def _fault(self, request: web.Request) -> web.Response | None:
        with self._lock:
            for fault in self.faults:
                matches = fault.times > 0 and request.path.startswith(fault.path_prefix)
                if matches and (fault.method is None or fault.method == request.method):
                    fault.times -= 1
                    response = self._error(request, fault.status, fault.status, "Injected fault")
                    if fault.retry_after is not None:
                        response.headers["Retry-After"] = fault.retry_after
                    return response
            if self.fault_rate and self._random.random() < self.fault_rate:
                status = self._random.choice((429, 503))
                response = self._error(request, status, status, "Random injected fault")
                response.headers["Retry-After"] = "0"
                return response
        return None

    def _authorised(self, request: web.Request) -> bool:
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            digest = hashlib.md5(self.till_password.encode("utf-8"), usedforsecurity=False).hexdigest()
            expected = base64.b64encode(f"{self.till_username}:{digest}".encode()).decode("ascii")
            return secrets.compare_digest(authorization[len("Basic ") :], expected)
        if self.token_header.lower() == "authorization":
            token = authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else ""
        else:
            token = request.headers.get(self.token_header, "")
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    def _error(self, request: web.Request, status: int, code: int, message: str) -> web.Response:
        if request.path.startswith("/v1.1/"):
            body: dict[str, Any] = {"response": {"status": {"success": "false", "code": code, "message": message}}}
        elif request.path.startswith("/v3/"):
            body = {"data": None, "errors": [{"code": code, "message": message}]}
        else:
            body = {"entity": None, "warnings": [], "errors": [{"status": False, "code": code, "message": message}]}
        return web.json_response(body, status=status)

    async def _token(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except ValueError:
            return self._error(request, 400, 400, "Request body is not JSON")
        if not isinstance(payload, dict) or not isinstance(payload.get("key"), str):
            return self._error(request, 400, 400, "key and secret are required")
        key_ok = secrets.compare_digest(payload.get("key", ""), self.client_key)
        secret_ok = secrets.compare_digest(str(payload.get("secret", "")), self.client_secret)
        if not (key_ok and secret_ok):
            return self._error(request, 401, 401, "Invalid client key or secret")
        token = "emu." + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl_seconds
        return web.json_response({"data": {"accessToken": token, "ttlSeconds": self.token_ttl_seconds}, "errors": None})

    async def _organization(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "response": {
                    "status": {"success": "true", "code": 200, "message": "SUCCESS"},
                    "organization": {
                        "id": self.org_id,
                        "name": self.org_name,
                        "currency": self.currency,
                        "timezone": self.timezone_name,
                    },
                }
            }
        )

    async def _customer_search(self, request: web.Request) -> web.Response:
        match = _SEARCH_QUERY.match(request.query.get("q", "").strip())
        if match is None:
            return self._error(request, 400, 1001, "Unsupported search query")
        limit, offset = _int_param(request, "limit", 10), _int_param(request, "offset", 0)
        if limit is None or offset is None or limit < 1 or offset < 0:
            return self._error(request, 400, 1002, "Invalid limit or offset")
        operator, day = match.group(1), date.fromisoformat(match.group(2))

        def selected(row: dict[str, Any]) -> bool:
            registered = _instant(row["registered_on"]).astimezone(self.zone).date()
            return {"LESS": registered < day, "GREATER": registered > day, "ON": registered == day}[operator]

        found = sorted((row for row in self.customers.values() if selected(row)), key=lambda r: int(r["customer_id"]))
        page = found[offset : offset + limit]
        items = [
            {
                "user_id": int(row["customer_id"]),
                "firstname": row.get("first_name") or "",
                "lastname": row.get("last_name") or "",
                "mobile": _digits(row.get("mobile")),
                "email": _email(row.get("email")),
                "external_id": row.get("external_id") or "",
            }
            for row in page
        ]
        return web.json_response(
            {
                "response": {
                    "status": {"success": "true", "code": 200, "message": "SUCCESS"},
                    "customer": {
                        "count": str(len(found)),
                        "start": str(offset),
                        "rows": str(len(items)),
                        "results": {"item": items},
                    },
                }
            }
        )

    async def _customer(self, request: web.Request) -> web.Response:
        row = self.customers.get(request.match_info["customer_id"])
        if row is None:
            return self._error(request, 400, 8015, "Customer not found")
        embeds = {e.strip() for e in request.query.get("embed", "").split(",") if e.strip()}
        return web.json_response(self._profile(row, embeds, request.query.get("source", "INSTORE")))

    def _profile(self, row: dict[str, Any], embeds: set[str], source: str) -> dict[str, Any]:
        customer_id = int(row["customer_id"])
        identifiers = [
            {"type": kind, "value": value}
            for kind, value in (
                ("mobile", _digits(row.get("mobile"))),
                ("email", _email(row.get("email"))),
                ("externalId", row.get("external_id") or None),
            )
            if value
        ]
        if row.get("card_number"):
            identifiers.append(
                {"type": "cardNumber", "value": row["card_number"], "seriesId": 19, "statusLabel": "ACTIVE"}
            )
        fields: dict[str, Any] = {}
        gender = {"M": "Male", "F": "Female", "O": "Other"}.get(str(row.get("gender") or "").upper())
        if gender:
            fields["gender"] = gender
        loyal = str(row.get("loyalty_type") or "").upper() == "LOYALTY"
        profile: dict[str, Any] = {
            "id": customer_id,
            "profiles": [
                {
                    "firstName": row.get("first_name") or "",
                    "lastName": row.get("last_name") or "",
                    "source": row.get("source") or source,
                    "userId": customer_id,
                    "accountId": "",
                    "fields": fields,
                    "identifiers": identifiers,
                    "commChannels": [],
                    "attribution": {
                        "createDate": row["registered_on"],
                        "modifiedDate": row["updated_at"],
                        "createdBy": {"code": self.till_username, "type": "TILL"},
                    },
                    "autoUpdateTime": row["updated_at"],
                }
            ],
            "loyaltyInfo": {
                "loyaltyType": "loyalty" if loyal else "non_loyalty",
                "lifetimePurchases": _number(row.get("lifetime_purchases")) or 0,
            },
            "extendedFields": {"dob": row["date_of_birth"]} if row.get("date_of_birth") else {},
            "cardDetails": (
                [{"cardNumber": row["card_number"], "seriesName": "acmecard", "statusInfo": {"label": "ACTIVE"}}]
                if row.get("card_number")
                else []
            ),
            "warnings": [],
        }
        points = {
            "loyaltyPoints": _number(row.get("points_balance")) or 0,
            "lifetimePoints": _number(row.get("lifetime_points")) or 0,
            "redeemed": _number(row.get("points_redeemed")) or 0,
            "expired": _number(row.get("points_expired")) or 0,
            "returned": 0,
            "adjusted": 0,
            "cumulativePurchases": _number(row.get("lifetime_purchases")) or 0,
            "currentSlab": row.get("tier") or "",
            "slabSNo": _int_or_none(row.get("tier_number")),
            "nextSlab": row.get("next_tier") or "",
            "slabExpiryDate": row.get("tier_expiry_date") or None,
        }
        if "points" in embeds:
            profile["pointsSummary"] = {**points, "loyaltyId": customer_id}
        if "mlp" in embeds:
            program_id = _int_or_none(row.get("program_id"))
            profile["loyaltyProgramDetails"] = [{**points, "programId": program_id}] if program_id else []
        if "subscriptions" in embeds:
            subscriptions = []
            for channel, column in (("EMAIL", "email_optin"), ("SMS", "sms_optin")):
                value = str(row.get(column) or "").lower()
                if value in ("true", "false"):
                    kind = "OPTIN" if value == "true" else "OPTOUT"
                    subscriptions.append({"channel": channel, "priority": "BULK", "type": kind})
            profile["subscriptionInfo"] = {"subscriptions": subscriptions}
        return profile

    async def _customer_transactions(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["customer_id"]
        if customer_id not in self.customers:
            return self._error(request, 400, 8015, "Customer not found")
        limit, offset = _int_param(request, "limit", 20), _int_param(request, "offset", 0)
        if limit is None or offset is None or not 1 <= limit <= TRANSACTIONS_MAX_LIMIT or offset < 0:
            return self._error(request, 400, 1002, f"limit must be 1-{TRANSACTIONS_MAX_LIMIT}; offset >= 0")
        try:
            first = date.fromisoformat(request.query["startDate"]) if "startDate" in request.query else None
            last = date.fromisoformat(request.query["endDate"]) if "endDate" in request.query else None
        except ValueError:
            return self._error(request, 400, 1003, "startDate and endDate must be YYYY-MM-DD")
        descending = request.query.get("sortOrder", "DESC").upper() == "DESC"
        found = []
        for row in self.transactions.values():
            if str(row.get("customer_id")) != customer_id:
                continue
            local_day = _instant(row["billing_time"]).astimezone(self.zone).date()
            if (first is None or local_day >= first) and (last is None or local_day <= last):
                found.append(row)
        found.sort(key=lambda r: (_instant(r["billing_time"]), int(r["transaction_id"])), reverse=descending)
        start = offset * limit if self.v2_offset_mode == "page" else offset
        page = found[start : start + limit]
        return web.json_response(
            {
                "pagination": {
                    "limit": limit,
                    "offset": offset,
                    "total": len(found),
                    "sortBy": "BILLING_TIME",
                    "sortOrder": "DESC" if descending else "ASC",
                },
                "data": [self._transaction_item(row) for row in page],
                "warnings": [],
            }
        )

    def _transaction_item(self, row: dict[str, Any]) -> dict[str, Any]:
        program_id = _int_or_none(row.get("program_id"))
        return {
            "id": int(row["transaction_id"]),
            "customerId": int(row["customer_id"]),
            "loyaltyLogId": int(row["transaction_id"]),
            "billNumber": row["bill_number"],
            "type": row["type"],
            "billingTime": row["billing_time"],
            "amount": _number(row.get("amount")),
            "grossAmount": _number(row.get("gross_amount")),
            "discount": _number(row.get("discount")),
            "notes": "",
            "outlierStatus": "NORMAL",
            "billingStore": {"code": row.get("store_code"), "name": row.get("store_name"), "type": "STORE"},
            "customFields": row.get("custom_fields") or {},
            "extendedFields": {},
            "billPoints": {
                "aggregatedBillPoints": (
                    [
                        {
                            "programId": program_id,
                            "regularPoints": {"points": _number(row.get("points_earned")) or 0},
                            "promisePoints": {"points": 0},
                            "promoPoints": {"points": 0},
                        }
                    ]
                    if program_id
                    else []
                )
            },
            "attribution": {
                "createDate": row["billing_time"],
                "modifiedDate": row.get("updated_at") or row["billing_time"],
                "createdBy": {"code": row.get("till_code"), "type": "TILL"},
            },
        }

    async def _transaction(self, request: web.Request) -> web.Response:
        transaction_id = _int_or_none(request.match_info["transaction_id"])
        row = self.transactions.get(transaction_id) if transaction_id is not None else None
        wanted = request.query.get("type", "REGULAR").upper()
        if row is None or str(row["type"]).upper() != wanted:
            return self._error(request, 400, 9001, "Transaction not found for the given id and type")
        return web.json_response(
            {
                "id": int(row["transaction_id"]),
                "customerId": int(row["customer_id"]),
                "type": row["type"],
                "basketSize": len(row.get("line_items") or []),
                "autoUpdateTime": row.get("updated_at") or row["billing_time"],
                "deliveryStatus": row.get("delivery_status"),
                "customFields": row.get("custom_fields") or {},
                "extendedFields": {},
                "paymentModes": [
                    {"mode": mode.get("mode"), "amount": _number(mode.get("value")), "notes": ""}
                    for mode in row.get("payment_modes") or []
                ],
                "billDetails": {
                    "billNumber": row["bill_number"],
                    "billingTime": row["billing_time"],
                    "amount": _number(row.get("amount")),
                    "grossAmount": _number(row.get("gross_amount")),
                    "discount": _number(row.get("discount")),
                    "note": "",
                    "billingStore": {"code": row.get("store_code"), "name": row.get("store_name")},
                },
                "lineItems": [
                    {
                        "id": int(row["transaction_id"]) * 100 + index,
                        "details": {
                            "serial": _int_or_none(item.get("serial")),
                            "itemCode": item.get("item_code"),
                            "description": item.get("description"),
                            "qty": _number(item.get("qty")),
                            "rate": _number(item.get("rate")),
                            "value": _number(item.get("value")),
                            "discount": _number(item.get("discount")),
                            "amount": _number(item.get("amount")),
                        },
                        "outlierStatus": "NORMAL",
                    }
                    for index, item in enumerate(row.get("line_items") or [], start=1)
                ],
            }
        )

    async def _ledger(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("identifierName") != "id" or query.get("identifierValue") not in self.customers:
            return self._error(request, 400, 8015, "Customer not found")
        limit, page = _int_param(request, "limit", 10), _int_param(request, "offset", 0)
        if limit is None or page is None or not 1 <= limit <= LEDGER_MAX_LIMIT or page < 0:
            return self._error(request, 400, 1002, f"limit must be 1-{LEDGER_MAX_LIMIT}; offset is a page number")
        try:
            end = datetime.strptime(query["endDate"], LEDGER_TIME_FORMAT) if "endDate" in query else None
            start = datetime.strptime(query["startDate"], LEDGER_TIME_FORMAT) if "startDate" in query else None
        except ValueError:
            return self._error(request, 400, 1003, "startDate and endDate must be YYYY-MM-DDThh:mm:ss")
        end = end or datetime.now(self.zone).replace(tzinfo=None, microsecond=0)
        start = start or end - timedelta(days=7)
        if end < start or end - start > timedelta(days=LEDGER_MAX_DAYS):
            return self._error(request, 400, 1004, "startDate and endDate must be at most 30 days apart")
        customer_id = query["identifierValue"]
        entries = [
            entry
            for entry in self.ledger.get(customer_id, [])
            if start <= datetime.strptime(entry["ledgerCreatedDate"], "%Y-%m-%d %H:%M:%S.0") <= end
        ]
        entries.sort(key=lambda e: (e["ledgerCreatedDate"], e["eventLogId"]), reverse=query.get("sortOrder") == "DESC")
        row = self.customers[customer_id]
        return web.json_response(
            {
                "customerDetails": {
                    "userId": int(customer_id),
                    "externalId": row.get("external_id") or "",
                    "entityType": "CUSTOMER",
                },
                "ledgerDetails": {
                    "pageNumber": page,
                    "pageSize": limit,
                    "totalEntries": len(entries),
                    "pageCount": (len(entries) + limit - 1) // limit,
                },
                "ledgerEntries": entries[page * limit : (page + 1) * limit],
            }
        )

    async def _reward_issual(self, request: web.Request) -> web.Response:
        reward_transaction_id = _int_or_none(request.match_info["reward_transaction_id"])
        key = (request.match_info["customer_id"], reward_transaction_id or 0)
        if key not in self.rewards:
            return self._error(request, 404, 404, "Reward issual not found")
        return web.json_response({"data": self.rewards[key], "errors": None})

    async def _coupons(self, request: web.Request) -> web.Response:
        customer_id = request.query.get("id", "")
        if customer_id not in self.customers:
            return self._error(request, 400, 8015, "Customer not found")
        limit, offset = _int_param(request, "limit", 10), _int_param(request, "offset", 0)
        if limit is None or offset is None or limit < 1 or offset < 0:
            return self._error(request, 400, 1002, "Invalid limit or offset")
        coupons = self.coupons.get(customer_id, [])
        start = offset * limit if self.v2_offset_mode == "page" else offset
        row = self.customers[customer_id]
        return web.json_response(
            {
                "entity": {
                    "pagination": {"limit": limit, "offset": offset, "total": len(coupons)},
                    "customers": [
                        {
                            "id": int(customer_id),
                            "mobile": _digits(row.get("mobile")),
                            "coupons": coupons[start : start + limit],
                        }
                    ],
                },
                "warnings": [],
            }
        )


# -- datasets -------------------------------------------------------------------------------------------------


def load_samples(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Read canonical extract files and keep the rows Capillary itself could hold.

    Left out: customers without an id or with an impossible ``registered_on``/``updated_at``; transactions without
    a customer or with an impossible ``billing_time``; loyalty events without a customer, with an impossible
    ``event_time``, or ``pointsIssued`` with negative points.

    :param folder: Folder with any of ``customers.csv``, ``transactions.jsonl`` and ``loyalty_events.csv``.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"Capillary samples folder {folder} does not exist")
    customers: list[dict[str, Any]] = []
    transactions: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    if (folder / "customers.csv").is_file():
        with (folder / "customers.csv").open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                if str(row.get("customer_id") or "").isdigit() and _valid_times(row, "registered_on", "updated_at"):
                    customers.append(dict(row))
    if (folder / "transactions.jsonl").is_file():
        with (folder / "transactions.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                row = json.loads(line)
                if row.get("customer_id") not in (None, "") and _valid_times(row, "billing_time"):
                    transactions.append(row)
    if (folder / "loyalty_events.csv").is_file():
        with (folder / "loyalty_events.csv").open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                if not str(row.get("customer_id") or "").isdigit() or not _valid_times(row, "event_time"):
                    continue
                if row["event_name"] == "pointsIssued" and (_number(row.get("points")) or 0) < 0:
                    continue
                events.append(dict(row))
    return customers, transactions, events


def generate_dataset(
    customers: int, day: date, seed: int, zone: tzinfo
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """A small deterministic dataset of canonical records with activity on ``day`` (local time in ``zone``).

    :param customers: Number of customers.
    :param day: The day of the transactions, points events and coupon activity.
    :param seed: Random seed.
    :param zone: Zone of the generated local times.
    """
    rng = random.Random(seed)
    first_names = ["Olivia", "José", "Zoë", "Amelia", "Noah", "Seán", "Liam", "Hannah", "Mia", "Ava", "Leo", "Isla"]
    last_names = ["Bennett", "Núñez", "Ångström", "Shah", "Evans", "O'Connor", "Walker", "Kowalski", "Rossi"]
    tiers = ["Bronze", "Silver", "Gold", "Platinum"]
    stores = [("LDN-001", "Acme London Oxford St"), ("MAN-004", "Acme Manchester Arndale"), ("WEB-UK", "Acme Online")]
    items = [("SKU-100235", "LED Bath Light", Decimal("159.00")), ("SKU-200345", "Drill Bit Set", Decimal("24.50"))]
    items += [("SKU-310001", "Crème brûlée ramekins", Decimal("32.00")), ("SKU-120410", "Sandpaper", Decimal("6.49"))]
    customer_rows: list[dict[str, Any]] = []
    transaction_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []
    midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
    for index in range(customers):
        customer_id = 700000001 + index
        tier_number = rng.randrange(len(tiers))
        balance = Decimal(rng.randrange(100, 20000))
        first, last = first_names[index % len(first_names)], last_names[index % len(last_names)]
        identity = {
            "customer_id": str(customer_id),
            "external_id": f"ACME-{index + 1:04d}",
            "mobile": f"447700900{index + 200:03d}",
            "email": f"customer{index + 1}@example.com",
        }
        registered = midnight - timedelta(days=rng.randrange(30, 1500), minutes=rng.randrange(1440))
        updated = midnight + timedelta(minutes=rng.randrange(1440))
        customer_rows.append(
            {
                **identity,
                "first_name": first,
                "last_name": last,
                "gender": rng.choice("MFO"),
                "date_of_birth": date(1960 + rng.randrange(45), rng.randrange(1, 13), rng.randrange(1, 29)).isoformat(),
                "loyalty_type": "LOYALTY",
                "source": "INSTORE",
                "registered_on": registered.isoformat(),
                "registered_store_code": stores[index % len(stores)][0],
                "program_id": "1001",
                "program_name": "Acme Rewards",
                "tier": tiers[tier_number],
                "tier_number": str(tier_number),
                "next_tier": tiers[tier_number + 1] if tier_number + 1 < len(tiers) else "",
                "tier_expiry_date": datetime(day.year + 1, 3, 31, 23, 59, 59, tzinfo=zone).isoformat(),
                "points_balance": str(balance),
                "lifetime_points": str(balance + rng.randrange(0, 5000)),
                "points_redeemed": str(rng.randrange(0, 3000)),
                "points_expired": "0",
                "lifetime_purchases": f"{rng.randrange(100, 20000)}.{rng.randrange(100):02d}",
                "currency": "GBP",
                "card_number": f"AC9{customer_id:09d}",
                "email_optin": rng.choice(["true", "false"]),
                "sms_optin": rng.choice(["true", "false"]),
                "updated_at": updated.isoformat(),
            }
        )
        for number in range(rng.randrange(0, 4)):
            transaction_id = 901300000 + index * 10 + number
            store_code, store_name = rng.choice(stores)
            billed = midnight + timedelta(minutes=rng.randrange(1440), seconds=rng.randrange(60))
            lines = []
            for serial in range(1, rng.randrange(1, 4) + 1):
                code, description, rate = rng.choice(items)
                qty = rng.randrange(1, 3)
                lines.append(
                    {
                        "serial": serial,
                        "item_code": code,
                        "description": description,
                        "qty": qty,
                        "rate": float(rate),
                        "value": float(rate * qty),
                        "discount": 0.0,
                        "amount": float(rate * qty),
                    }
                )
            amount = sum((Decimal(str(line["amount"])) for line in lines), Decimal(0))
            bill_number = f"{store_code.replace('-', '')}-{day:%Y%m%d}-{transaction_id % 10000:04d}"
            transaction_rows.append(
                {
                    "record_type": "transaction",
                    "org_id": 50001,
                    "transaction_id": transaction_id,
                    "bill_number": bill_number,
                    "type": "REGULAR",
                    **identity,
                    "billing_time": billed.isoformat(),
                    "store_code": store_code,
                    "store_name": store_name,
                    "till_code": f"{store_code.lower()}.till01",
                    "currency": "GBP",
                    "gross_amount": float(amount),
                    "discount": 0.0,
                    "amount": float(amount),
                    "points_earned": int(amount),
                    "points_redeemed": 0,
                    "program_id": 1001,
                    "delivery_status": "DELIVERED",
                    "line_items": lines,
                    "payment_modes": [{"mode": "CARD", "value": float(amount)}],
                    "custom_fields": {"channel": "pos"},
                    "updated_at": billed.isoformat(),
                }
            )
            balance += int(amount)
            event_rows.append(
                _generated_event(rng, identity, "pointsIssued", billed + timedelta(seconds=2), int(amount), balance)
                | {"transaction_id": str(transaction_id), "bill_number": bill_number, "store_code": store_code}
            )
        if index % 4 == 1:
            moment = midnight + timedelta(hours=12, minutes=index)
            balance -= 500
            event_rows.append(_generated_event(rng, identity, "pointsRedeemed", moment, -500, balance))
        if index % 5 == 2:
            code = f"WELC{index:02d}AB"
            issued = midnight + timedelta(hours=9, minutes=index)
            coupon = {"coupon_code": code, "coupon_series_id": "353122", "discount_type": "ABS", "discount_value": "10"}
            event_rows.append(_generated_event(rng, identity, "CouponIssue", issued, None, None) | coupon)
            redeemed = issued + timedelta(hours=8)
            event_rows.append(_generated_event(rng, identity, "CouponRedeem", redeemed, None, None) | coupon)
    return customer_rows, transaction_rows, event_rows


def _generated_event(
    rng: random.Random,
    identity: dict[str, Any],
    name: str,
    moment: datetime,
    points: int | None,
    balance: Decimal | None,
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "event_name": name,
        "event_time": moment.isoformat(),
        **identity,
        "program_id": "1001",
        "points": "" if points is None else str(points),
        "points_balance_after": "" if balance is None else str(balance),
        "transaction_id": "",
        "bill_number": "",
        "store_code": "WEB-UK",
    }


# -- helpers ----------------------------------------------------------------------------------------------------


def _instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(str(value).strip())
    if parsed.tzinfo is None:
        raise ValueError(f"time without an offset: {value!r}")
    return parsed


def _valid_times(row: dict[str, Any], *columns: str) -> bool:
    try:
        for column in columns:
            _instant(row[column])
    except (KeyError, TypeError, ValueError):
        return False
    return True


def _number(value: Any) -> float | int | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return int(number) if number == number.to_integral_value() and "." not in str(value) else float(number)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _int_param(request: web.Request, name: str, default: int) -> int | None:
    return _int_or_none(request.query.get(name, default))


def _digits(value: Any) -> str | None:
    digits = re.sub(r"\D", "", str(value or ""))
    return digits or None


def _email(value: Any) -> str | None:
    text = str(value or "").strip().lower()
    return text or None


def main(argv: list[str] | None = None) -> None:
    """Run the emulator until interrupted and print the connection to use."""
    parser = argparse.ArgumentParser(description="Local Capillary API emulator (offline demo and tests).")
    parser.add_argument("--host", default="127.0.0.1", help="Interface to bind (default 127.0.0.1).")
    parser.add_argument("--port", type=int, default=8766, help="Port to bind (default 8766).")
    parser.add_argument("--samples", type=Path, help="Folder of canonical extract files to serve.")
    parser.add_argument("--customers", type=int, default=12, help="Customers in the generated dataset.")
    parser.add_argument("--auth-type", choices=("oauth", "basic"), default="oauth", help="Auth of the printed conn.")
    args = parser.parse_args(argv)
    emulator = CapillaryEmulator(args.host, args.port, samples_dir=args.samples, generated_customers=args.customers)
    with emulator:
        print(f"Capillary emulator listening on {emulator.url}", flush=True)
        print(f"export AIRFLOW_CONN_CAPILLARY_DEFAULT='{emulator.connection_json(args.auth_type)}'", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("Stopping the Capillary emulator", flush=True)


if __name__ == "__main__":
    main()
