"""``AEPEmulator``: a local Adobe Experience Platform (IMS, platform APIs, DCS) on one port."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from airflow_provider_capillary.testing.aep_emulator.app import build_app
from airflow_provider_capillary.testing.aep_emulator.context import EmulatorConfig, EmulatorContext
from airflow_provider_capillary.testing.aep_emulator.faults import FaultPlan
from airflow_provider_capillary.testing.aep_emulator.state import EmulatorState
from airflow_provider_capillary.testing.xdm_registry import XDMDefinitions

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

#: Environment variable naming a folder with the official XDM definitions (adobe/xdm layout).
XDM_ROOT_ENV = "AEP_EMULATOR_XDM_ROOT"
_START_TIMEOUT = 30.0


class AEPEmulator:
    """
    A local, in-memory Adobe Experience Platform for tests and offline demos.

    IMS (``/ims/token/v3``), the platform APIs (``/data/...``) and streaming ingestion
    (``/collection/...``) are served on one port, with the documented request checks, bodies and
    status codes; ``/_emulator/...`` is a control API for other processes. Point a connection's
    ``ims_url``, ``platform_url`` and ``dcs_url`` at :attr:`url` (see :meth:`connection_json`).

    :param host: interface to bind; loopback by default.
    :param port: port to bind; ``0`` picks a free one.
    :param client_id: the OAuth client id IMS accepts; it is also the valid ``x-api-key``.
    :param client_secret: the client secret IMS accepts.
    :param org_id: the IMS org id expected in ``x-gw-ims-org-id`` and message headers.
    :param sandboxes: sandbox names that exist (``x-sandbox-name`` values).
    :param tenant_id: the Schema Registry tenant id (tenant object ``_{tenant_id}``).
    :param token_lifetime: seconds until an issued token expires (``expires_in``).
    :param xdm_root: folder with the official XDM definitions; defaults to the ``AEP_EMULATOR_XDM_ROOT``
        environment variable, else the small built-in catalogue (:meth:`XDMDefinitions.builtin`).
    :param faults: fault plan; default injects nothing. Replaceable at runtime via :attr:`faults`.
    :param journal: record every request and response (secrets redacted) in :attr:`journal`.
    :param landing_delay: seconds before accepted records appear as Catalog batches.
    :param reject_unknown_fields: treat a record with fields its schema does not define as invalid, as
        AEP's streaming validation does ("extraneous key [...] is not permitted"); default true.
    :param async_validation: how the multi-message endpoint treats a record that fails schema validation:
        ``False`` (default) answers it with ``statusCode`` 400 in the 207; ``True`` behaves like AEP's
        asynchronous validation: the message gets an ``xactionId`` and the record lands in a ``failed``
        Catalog batch of its dataset. Envelope errors are always answered with 400.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        client_id: str = "emulator-client-id",
        client_secret: str = "emulator-client-secret",
        org_id: str = "EMULATORORG@AdobeOrg",
        sandboxes: Sequence[str] = ("prod", "dev"),
        tenant_id: str = "acmecorp",
        token_lifetime: int = 86399,
        xdm_root: str | os.PathLike[str] | None = None,
        faults: FaultPlan | None = None,
        journal: bool = False,
        landing_delay: float = 0.0,
        reject_unknown_fields: bool = True,
        async_validation: bool = False,
    ) -> None:
        self._host = host
        self._port = port
        config = EmulatorConfig(
            client_id=client_id,
            client_secret=client_secret,
            org_id=org_id,
            sandboxes=tuple(sandboxes),
            tenant_id=tenant_id,
            token_lifetime=token_lifetime,
            landing_delay=landing_delay,
            reject_unknown_fields=reject_unknown_fields,
            async_validation=async_validation,
        )
        root = xdm_root if xdm_root is not None else os.environ.get(XDM_ROOT_ENV)
        definitions = XDMDefinitions.from_directory(root) if root else XDMDefinitions.builtin()
        self.journal: list[dict[str, Any]] = []
        self._ctx = EmulatorContext(
            config,
            EmulatorState(config.sandboxes),
            definitions,
            faults or FaultPlan(),
            self.journal if journal else None,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> AEPEmulator:
        """Serve in a background thread with its own event loop; return once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._bind())
            except BaseException as err:  # reported to the starting thread
                failure.append(err)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._unbind())
            loop.close()

        self._thread = threading.Thread(target=serve, name="aep-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(_START_TIMEOUT):
            raise RuntimeError(f"the emulator did not start within {_START_TIMEOUT} s")
        if failure:
            self._thread = None
            raise RuntimeError(f"the emulator could not bind {self._host}:{self._port}: {failure[0]}") from failure[0]
        return self

    async def _bind(self) -> None:
        self._runner = web.AppRunner(build_app(self._ctx), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = self._ctx.url = f"http://{self._host}:{port}"

    async def _unbind(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def stop(self) -> None:
        """Stop serving and wait for the server thread to end."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_START_TIMEOUT)
        self._thread = None
        self._loop = None

    def __enter__(self) -> AEPEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # -- test hooks ------------------------------------------------------------------------------

    @property
    def state(self) -> EmulatorState:
        """The in-memory store (sandboxes, resources, accepted records); see :class:`EmulatorState`."""
        return self._ctx.state

    @property
    def definitions(self) -> XDMDefinitions:
        """The standard XDM definitions the Schema Registry serves."""
        return self._ctx.definitions

    @property
    def faults(self) -> FaultPlan:
        """The active fault plan."""
        return self._ctx.faults

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        self._ctx.faults = plan

    @property
    def client_id(self) -> str:
        """The OAuth client id (and ``x-api-key``) the emulator accepts."""
        return self._ctx.config.client_id

    @property
    def org_id(self) -> str:
        """The IMS org id."""
        return self._ctx.config.org_id

    def revoke_tokens(self) -> None:
        """Invalidate every issued token (later calls get 401 ``401013``)."""
        self._ctx.revoke_tokens()

    def reset(self) -> None:
        """Forget every resource, record and token; journal entries are cleared too."""
        self._ctx.reset()
        self.journal.clear()

    def connection_json(self, sandbox: str = "prod", **extras: Any) -> str:
        """
        The ``AIRFLOW_CONN_*`` JSON of an ``adobe_experience_platform`` connection pointing here.

        :param sandbox: the ``sandbox`` extra.
        :param extras: further extras to set or override (e.g. ``scopes``).
        """
        config = self._ctx.config
        extra: Mapping[str, Any] = {
            "org_id": config.org_id,
            "sandbox": sandbox,
            "ims_url": self.url,
            "platform_url": self.url,
            "dcs_url": self.url,
            **extras,
        }
        connection = {
            "conn_type": "adobe_experience_platform",
            "login": config.client_id,
            "password": config.client_secret,
            "extra": dict(extra),
        }
        return orjson.dumps(connection).decode()
