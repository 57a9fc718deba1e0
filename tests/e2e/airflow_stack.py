"""Start and stop a real Airflow deployment on loopback: PostgreSQL, Redis and the Airflow services with Celery.

What runs, with which command and environment, is read from ``docker/docker-compose.yaml`` (variables from its
``.env.example``, a fresh secret for each one left empty there): its one-shot Airflow services (``db migrate``) run
first, then every long-lived Airflow service that ``docker compose up`` starts (``api-server``, ``scheduler``,
``dag-processor``, ``triggerer``, ``celery worker``). Only what differs between containers and one machine is
translated:

- hosts: compose service names in URLs become ``127.0.0.1`` with the port of the server started here (or given with
  :meth:`AirflowStack.add_endpoint`); the api-server listens on 127.0.0.1 on a free port;
- paths: ``/opt/airflow`` becomes a temporary AIRFLOW_HOME, the image's ``/opt/airflow/dags`` the repository's
  ``dags/``, a named volume a folder of that AIRFLOW_HOME;
- listeners that would bind every interface: the log servers are switched off (``--skip-serve-logs``) and the
  scheduler's health check server is moved to 127.0.0.1;
- scale: :data:`WORKER_REPLICAS` Celery workers (``docker compose up --scale airflow-worker=2``), each with a
  concurrency of :data:`WORKER_CONCURRENCY` instead of the image's 16 (this machine has 2 cores).

PostgreSQL and Redis are Debian's servers, run from temporary data directories on 127.0.0.1 (PostgreSQL as its own
system user when the tests run as root). Every process runs in its own process group, its output in a log file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from base64 import urlsafe_b64encode
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
import yaml

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

#: First word of the Airflow commands that run as long-lived services.
SERVICE_COMMANDS = frozenset({"api-server", "scheduler", "dag-processor", "triggerer", "celery"})
#: Commands the image's entrypoint runs as they are rather than as ``airflow`` subcommands.
NON_AIRFLOW_COMMANDS = frozenset({"python", "bash"})
#: Service commands whose log server binds every interface unless told not to.
LOG_SERVING_COMMANDS = frozenset({("scheduler",), ("triggerer",), ("celery", "worker")})
#: Where the official Airflow image keeps AIRFLOW_HOME.
CONTAINER_AIRFLOW_HOME = "/opt/airflow"
#: Celery workers started for the compose file's worker service, as ``--scale`` would.
WORKER_REPLICAS = 2
#: Celery worker concurrency on this 2-core machine (the image's default is 16).
WORKER_CONCURRENCY = 2
#: How long a stopped process may take before it is killed.
STOP_TIMEOUT = 20.0

_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")
_URL = re.compile(r"(?P<prefix>[a-z][a-z0-9+.-]*://(?:[^@/\s]*@)?)(?P<host>[A-Za-z0-9_.-]+)(?::(?P<port>\d+))?")


class StackError(RuntimeError):
    """The stack could not be started, or did not reach the expected state in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    """
    Call ``check`` until it returns true.

    :param check: the condition; exceptions other than :class:`StackError` count as "not yet".
    :param timeout: seconds before giving up with :class:`StackError`.
    :param what: what is awaited, for the error message.
    :param interval: seconds between calls; default 0.5.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except StackError:
            raise
        except Exception as error:  # the condition is not met yet
            last_error = error
        time.sleep(interval)
    raise StackError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" ({last_error})" if last_error else ""))


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """
    Substitute compose variables (``${X}``, ``${X:-default}``, ``${X-default}``, ``${X:?error}``, ``${X:+alt}``,
    ``$$``) the way ``docker compose`` does.

    :param value: the text from the compose file.
    :param variables: the variables' values (the ``.env`` file and environment of a compose run).
    """

    def substitute(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        current = variables.get(name)
        if op in (":-", "-"):
            return current if current or (op == "-" and current is not None) else interpolate(arg, variables)
        if op in (":?", "?"):
            if not current and not (op == "?" and current is not None):
                raise StackError(f"compose variable {name} is required: {arg}")
            return current or ""
        if op in (":+", "+"):
            return interpolate(arg, variables) if current or (op == "+" and current is not None) else ""
        return current or ""

    return _INTERPOLATION.sub(substitute, value)


@dataclass(frozen=True)
class ComposeService:
    """
    One service of the compose file, as ``docker compose up`` would start it.

    :param name: the compose service name, e.g. ``airflow-scheduler``.
    :param args: the command; for Airflow services the words after ``airflow``, e.g. ``("celery", "worker")``.
    :param environment: the service's environment as written (interpolated, not yet translated).
    :param volumes: ``(source, container path)`` pairs; a source is a named volume or a host path resolved
        against the compose file's folder.
    :param image: the image, e.g. ``postgres:16``.
    """

    name: str
    args: tuple[str, ...]
    environment: dict[str, str]
    volumes: tuple[tuple[str, str], ...]
    image: str

    @property
    def runs_airflow(self) -> bool:
        """Whether the image's entrypoint runs ``airflow`` with this command (not ``python`` or ``bash``)."""
        return bool(self.args) and self.args[0] not in NON_AIRFLOW_COMMANDS

    @property
    def long_running(self) -> bool:
        """Whether this is an Airflow component that keeps running (not a one-shot like ``db migrate``)."""
        return self.runs_airflow and self.args[0] in SERVICE_COMMANDS

    @property
    def image_name(self) -> str:
        """The image's repository name without registry or tag: ``postgres`` for ``postgres:16``."""
        return self.image.split(":")[0].rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ComposeFile:
    """
    The services of a compose file that ``docker compose up`` starts (those without ``profiles``).

    :param services: every such service, in file order.
    """

    services: tuple[ComposeService, ...]

    @property
    def airflow_services(self) -> tuple[ComposeService, ...]:
        """The long-running Airflow components."""
        return tuple(service for service in self.services if service.long_running)

    @property
    def init_services(self) -> tuple[ComposeService, ...]:
        """One-shot Airflow commands (``db migrate``), run to completion before the components start."""
        return tuple(service for service in self.services if service.runs_airflow and not service.long_running)

    def with_image(self, image_name: str) -> ComposeService:
        """
        The service running an image.

        :param image_name: the image's repository name (``postgres``, ``redis``).
        """
        for service in self.services:
            if not service.args and service.image_name == image_name:
                return service
        raise StackError(f"the compose file runs no {image_name} image")

    def running(self, command: str) -> ComposeService:
        """
        The Airflow component whose command starts with ``command``.

        :param command: the Airflow subcommand: ``api-server``, ``scheduler``, ...
        """
        for service in self.airflow_services:
            if service.args[0] == command:
                return service
        raise StackError(f"the compose file has no service running `airflow {command}`")


def _words(command: Any) -> tuple[str, ...]:
    return tuple(shlex.split(command) if isinstance(command, str) else [str(word) for word in command or ()])


def _environment(raw: Any, variables: Mapping[str, str]) -> dict[str, str]:
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, variables.get(item, "")) for item in raw)
    return {str(key): interpolate("" if value is None else str(value), variables) for key, value in (raw or {}).items()}


def _volume(raw: Any, folder: Path, variables: Mapping[str, str]) -> tuple[str, str]:
    source, target = raw.split(":")[:2] if isinstance(raw, str) else (raw.get("source", ""), raw["target"])
    source, target = interpolate(str(source), variables), interpolate(str(target), variables).rstrip("/")
    if source.startswith((".", "/", "~")):
        source = str((folder / Path(source).expanduser()).resolve())
    return source, target


def load_compose(path: Path, variables: Mapping[str, str]) -> ComposeFile:
    """
    Read the services that ``docker compose up`` would start from a compose file.

    :param path: the compose file.
    :param variables: values for ``${...}`` interpolation (the secrets of its ``.env`` file).
    """
    document = yaml.safe_load(path.read_text())
    services = []
    for name, spec in (document.get("services") or {}).items():
        if spec.get("profiles"):
            continue
        if spec.get("entrypoint"):
            raise StackError(f"service {name} overrides the entrypoint; this translation knows only the image's")
        services.append(
            ComposeService(
                name=name,
                args=_words(spec.get("command")),
                environment=_environment(spec.get("environment"), variables),
                volumes=tuple(_volume(volume, path.parent, variables) for volume in spec.get("volumes") or ()),
                image=interpolate(str(spec.get("image", "")), variables),
            )
        )
    return ComposeFile(tuple(services))


def compose_variables(env_example: Path) -> dict[str, str]:
    """
    Values for a compose file's variables: the example ``.env`` file's, with a fresh secret for each left empty
    (a Fernet key where the name says so).

    :param env_example: the ``.env.example`` file beside the compose file.
    """
    values: dict[str, str] = {}
    for line in env_example.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        values[key] = value or (fernet_key() if "FERNET" in key else secrets.token_urlsafe(32))
    return values


def fernet_key() -> str:
    """A fresh Fernet key (32 random bytes, URL-safe base64)."""
    return urlsafe_b64encode(secrets.token_bytes(32)).decode()


@dataclass
class ManagedProcess:
    """
    A process started in its own process group, its output in a log file.

    :param name: a short name, used for the log file.
    :param argv: the command line.
    :param log_path: where stdout and stderr go.
    :param env: the environment; default the current one.
    :param user: run as this system user (via ``runuser``); default the current user.
    :param stop_signal: the signal that asks the process to end; default SIGTERM.
    """

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    user: str | None = None
    stop_signal: int = signal.SIGTERM
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        """Start the process."""
        argv = ["runuser", "-u", self.user, "--", *self.argv] if self.user else list(self.argv)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env) if self.env else None,
                start_new_session=True,
            )
        return self

    def running(self) -> bool:
        """Whether the process is still alive."""
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        """Send :attr:`stop_signal` to the process group (does not wait)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, self.stop_signal)

    def stop(self) -> None:
        """Terminate the process group, wait up to :data:`STOP_TIMEOUT` s, then kill what is left of the group."""
        if self.process is None:
            return
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(STOP_TIMEOUT)
        # Children may outlive the leader (forked task runners): end the rest of the group too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)

    def tail(self, lines: int = 60) -> str:
        """
        The end of the log file.

        :param lines: how many lines; default 60.
        """
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _postgres_bin() -> Path:
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in candidates:
        if (folder / "postgres").exists() and (folder / "initdb").exists():
            return folder
    raise StackError("PostgreSQL server binaries not found: run scripts/ci_services.sh (apt-get install postgresql)")


class PostgresServer:
    """
    A throw-away PostgreSQL cluster on 127.0.0.1 with a trusted superuser ``airflow`` and a database ``airflow``.

    :param logs: folder for the server log.
    """

    user = "airflow"
    database = "airflow"

    def __init__(self, logs: Path) -> None:
        self.port = free_port()
        self._bin = _postgres_bin()
        # PostgreSQL refuses to run as root, and its system user cannot enter pytest's private tmp folders.
        self._os_user = "postgres" if os.geteuid() == 0 else None
        self._root = Path(tempfile.mkdtemp(prefix="e2e-postgres-"))
        self.process = ManagedProcess(
            "postgres", [], logs / "postgres.log", user=self._os_user, stop_signal=signal.SIGINT
        )

    def _run(self, *argv: str) -> None:
        command = ["runuser", "-u", self._os_user, "--", *argv] if self._os_user else list(argv)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(f"{argv[0]} failed: {result.stdout}{result.stderr}")

    def start(self) -> PostgresServer:
        """Create the cluster, start the server and create the database."""
        data, sockets = self._root / "data", self._root / "sockets"
        sockets.mkdir()
        if self._os_user:
            shutil.chown(self._root, self._os_user)
            shutil.chown(sockets, self._os_user)
        self._run(str(self._bin / "initdb"), "-D", str(data), "-U", self.user, "-A", "trust", "-E", "UTF8", "--no-sync")
        self.process.argv = [str(self._bin / "postgres"), "-D", str(data), "-k", str(sockets)]
        self.process.argv += ["-h", "127.0.0.1", "-p", str(self.port), "-c", "max_connections=200"]
        # A throw-away cluster: durability buys nothing here.
        self.process.argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self.process.start()
        wait_for(self._accepts, 30, "PostgreSQL to accept connections")
        self._run(str(self._bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, self.database)
        return self

    def _accepts(self) -> bool:
        if not self.process.running():
            raise StackError(f"PostgreSQL exited:\n{self.process.tail()}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def stop(self) -> None:
        """Stop the server and delete its data."""
        self.process.stop()
        shutil.rmtree(self._root, ignore_errors=True)


class RedisServer:
    """
    A Redis server on 127.0.0.1 without persistence.

    :param root: folder for its working directory and log.
    """

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        work = root / "redis"
        work.mkdir()
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("redis-server not found: run scripts/ci_services.sh (apt-get install redis-server)")
        argv = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.process = ManagedProcess("redis", [*argv, "--dir", str(work)], root / "logs" / "redis.log")

    def start(self) -> RedisServer:
        """Start the server and wait until it answers ``PING``."""
        self.process.start()
        wait_for(self._pong, 20, "Redis to answer PING")
        return self

    def _pong(self) -> bool:
        if not self.process.running():
            raise StackError(f"redis-server exited:\n{self.process.tail()}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        """Stop the server."""
        self.process.stop()


class AirflowStack:
    """
    PostgreSQL, Redis and the compose file's Airflow services on loopback, from one temporary directory.

    :param compose_path: the compose file to read the services from; its ``.env.example`` gives the variables.
    :param root: a fresh folder for AIRFLOW_HOME, logs and data.
    :param dags_folder: the folder the image copies to ``/opt/airflow/dags`` (the repository's ``dags/``).
    :param extra_env: settings of this deployment only (Variables), given to every Airflow process last.
    """

    def __init__(
        self,
        compose_path: Path,
        root: Path,
        dags_folder: Path,
        extra_env: Mapping[str, str],
    ) -> None:
        self.root = root
        self.home = root / "airflow"
        self.logs = root / "logs"
        self.home.mkdir()
        self.logs.mkdir()
        self.dags_folder = dags_folder
        self.api_port = free_port()
        self.health_check_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.compose = load_compose(compose_path, compose_variables(compose_path.parent / ".env.example"))
        self._endpoints: dict[str, int] = {}
        self._extra_env = dict(extra_env)
        self.postgres: PostgresServer | None = None
        self.redis: RedisServer | None = None
        #: The processes of each Airflow service, by compose service name (several for the Celery workers).
        self.services: dict[str, list[ManagedProcess]] = {}

    def add_endpoint(self, service: str, port: int) -> None:
        """
        Point a compose service that this stack does not start itself (the AEP emulator) at a loopback port.

        :param service: the compose service name, as URLs in the compose environment name it.
        :param port: its port on 127.0.0.1.
        """
        self._endpoints[service] = port

    # -- translation -----------------------------------------------------------------------------

    def _translate_url_hosts(self, value: str) -> str:
        def loopback(match: re.Match[str]) -> str:
            port = self._endpoints.get(match["host"])
            return f"{match['prefix']}127.0.0.1:{port}" if port else match[0]

        return _URL.sub(loopback, value)

    def _translate_path(self, value: str, volumes: Sequence[tuple[str, str]]) -> str:
        mounts = [*volumes, (str(self.dags_folder), f"{CONTAINER_AIRFLOW_HOME}/dags")]
        for source, target in sorted(mounts, key=lambda mount: -len(mount[1])):
            if value == target or value.startswith(target + "/"):
                # Host paths stay; named volumes become folders of AIRFLOW_HOME named like their mount point.
                base = source if source.startswith("/") else str(self.home / Path(target).name)
                return base + value[len(target) :]
        if value == CONTAINER_AIRFLOW_HOME or value.startswith(CONTAINER_AIRFLOW_HOME + "/"):
            return str(self.home) + value[len(CONTAINER_AIRFLOW_HOME) :]
        return value

    def service_env(self, service: ComposeService) -> dict[str, str]:
        """
        The environment one service gets here: the compose environment with hosts, ports and paths translated to
        this machine, AIRFLOW_HOME and the API on loopback, then the extras.

        :param service: the compose service.
        """
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        for key, value in service.environment.items():
            env[key] = self._translate_path(self._translate_url_hosts(value), service.volumes)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                # The scheduler's health check server (when enabled) binds 0.0.0.0:8974 unless told otherwise.
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(self.health_check_port),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
                "PYTHONUNBUFFERED": "1",
                **self._extra_env,
            }
        )
        return env

    def service_argv(self, service: ComposeService) -> list[str]:
        """
        The command line one Airflow service runs here.

        :param service: the compose service.
        """
        args = list(service.args)
        if args[0] == "api-server":
            args += ["--host", "127.0.0.1", "--port", str(self.api_port)]
        if (tuple(args[:1]) in LOG_SERVING_COMMANDS or tuple(args[:2]) in LOG_SERVING_COMMANDS) and (
            "--skip-serve-logs" not in args
        ):
            args.append("--skip-serve-logs")
        return [sys.executable, "-m", "airflow", *args]

    # -- life cycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 180) -> AirflowStack:
        """
        Start PostgreSQL and Redis, run the one-shot services (``db migrate``), start every Airflow component and
        wait until the health endpoint reports each of them healthy.

        :param timeout: seconds for the Airflow components to become healthy; default 180.
        """
        self.postgres = PostgresServer(self.logs).start()
        self.redis = RedisServer(self.root).start()
        self._endpoints[self.compose.with_image("postgres").name] = self.postgres.port
        self._endpoints[self.compose.with_image("redis").name] = self.redis.port
        self._endpoints[self.compose.running("api-server").name] = self.api_port
        for service in self.compose.airflow_services + self.compose.init_services:
            for _, target in service.volumes:
                Path(self._translate_path(target, service.volumes)).mkdir(parents=True, exist_ok=True)
        for service in self.compose.init_services:
            log = self.logs / f"{service.name}.log"
            with log.open("wb") as out:
                done = subprocess.run(
                    self.service_argv(service),
                    env=self.service_env(service),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                    timeout=300,
                )
            if done.returncode != 0:
                raise StackError(f"{service.name} ({' '.join(service.args)}) failed:\n{log.read_text()[-3000:]}")
        for service in self.compose.airflow_services:
            argv, env = self.service_argv(service), self.service_env(service)
            if service.args[:2] == ("celery", "worker"):
                self.services[service.name] = [
                    ManagedProcess(
                        f"{service.name}-{n}",
                        [*argv, "--celery-hostname", f"{service.name}-{n}@%h"],
                        self.logs / f"{service.name}-{n}.log",
                        env,
                    ).start()
                    for n in range(1, WORKER_REPLICAS + 1)
                ]
            else:
                self.services[service.name] = [
                    ManagedProcess(service.name, argv, self.logs / f"{service.name}.log", env).start()
                ]
        wait_for(self._healthy, timeout, "every Airflow component to report healthy", interval=2)
        return self

    def check_running(self) -> None:
        """Raise :class:`StackError`, with the end of its log, if any process of the stack has ended."""
        for process in self.processes():
            if not process.running():
                code = process.process.returncode if process.process else None
                raise StackError(f"{process.name} has ended (exit code {code}):\n{process.tail()}")

    def _healthy(self) -> bool:
        self.check_running()
        health = requests.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
        return all(
            health.get(part, {}).get("status") == "healthy"
            for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
        )

    def stop(self) -> None:
        """Stop every Airflow service (all asked at once), then Redis and PostgreSQL; safe to call more than once."""
        for process in self._airflow_processes():
            process.terminate()
        for process in self._airflow_processes():
            process.stop()
        for server in (self.redis, self.postgres):
            if server is not None:
                server.stop()

    def __enter__(self) -> AirflowStack:
        """Start the stack; when it fails to start, print the services' log tails and stop what did start."""
        try:
            return self.start()
        except BaseException:
            print(self.log_tails())
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def processes(self) -> list[ManagedProcess]:
        """Every process started, backing services first."""
        backing = [server.process for server in (self.postgres, self.redis) if server is not None]
        return backing + self._airflow_processes()

    def _airflow_processes(self) -> list[ManagedProcess]:
        return [process for processes in self.services.values() for process in processes]

    def log_tails(self, lines: int = 40) -> str:
        """
        The end of every process's log, for a failure report.

        :param lines: lines per log; default 40.
        """
        return "\n\n".join(f"==> {p.log_path} <==\n{p.tail(lines)}" for p in self.processes())

    def admin_password(self) -> str:
        """The simple auth manager's generated password of the ``admin`` user (from the api-server's file)."""
        env = self.service_env(self.compose.running("api-server"))
        default = str(self.home / "simple_auth_manager_passwords.json.generated")
        path = Path(env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", default))
        return str(json.loads(path.read_text())["admin"])


class AirflowAPI:
    """
    Airflow's public REST API, authenticated the way the UI is: a JWT from ``POST /auth/token``.

    :param url: the api-server's base URL.
    :param username: the user to log in as.
    :param password: the user's password.
    """

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url
        self._session = requests.Session()
        response = self._session.post(
            f"{url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        if response.status_code != 201:
            raise StackError(f"login as {username} failed: HTTP {response.status_code} {response.text[:300]}")
        self._session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """
        Send one request and return the decoded JSON answer; raise :class:`StackError` on an error status.

        :param method: the HTTP method.
        :param path: the path below the base URL, e.g. ``/api/v2/dags``.
        :param body: a JSON body; default none.
        :param params: query parameters.
        """
        response = self._session.request(method, f"{self.url}{path}", json=body, params=params or None, timeout=30)
        if response.status_code >= 400:
            raise StackError(f"{method} {path} answered HTTP {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def text(self, path: str, **params: Any) -> str:
        """
        GET a path and return the answer as text (task logs).

        :param path: the path below the base URL.
        :param params: query parameters.
        """
        response = self._session.get(
            f"{self.url}{path}", params=params or None, headers={"Accept": "text/plain"}, timeout=30
        )
        if response.status_code >= 400:
            raise StackError(f"GET {path} answered HTTP {response.status_code}: {response.text[:500]}")
        return response.text
