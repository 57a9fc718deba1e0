"""The provider's metadata: valid for Airflow, importable, and visible through Airflow's own CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import airflow
import jsonschema
import pytest
from airflow.providers.common.compat.module_loading import import_string

from airflow_provider_capillary import get_provider_info


def test_provider_info_matches_airflows_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_package_name_is_the_distribution_name_and_entry_point_is_registered() -> None:
    dist = distribution("airflow-provider-capillary")
    assert get_provider_info()["package-name"] == dist.metadata["Name"]
    entry_points = [ep for ep in dist.entry_points if ep.group == "apache_airflow_provider"]
    assert [ep.load() for ep in entry_points] == [get_provider_info]


def test_every_connection_type_names_an_importable_hook_of_that_type() -> None:
    info = get_provider_info()
    assert info["connection-types"], "no connection types declared"
    for conn_type in info["connection-types"]:
        hook = import_string(conn_type["hook-class-name"])
        assert hook.conn_type == conn_type["connection-type"]
        assert hook.hook_name == conn_type["hook-name"]
    kinds = ("hooks", "operators", "sensors", "triggers")
    assert all(info.get(kind) for kind in kinds)
    for kind in kinds:
        for entry in info[kind]:
            for module in entry["python-modules"]:
                __import__(module)


def test_aep_connection_form() -> None:
    (aep,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "adobe_experience_platform"]
    assert set(aep["conn-fields"]) == {"org_id", "sandbox", "scopes", "ims_url", "platform_url", "dcs_url"}
    assert aep["conn-fields"]["sandbox"]["schema"]["default"] == "prod"
    assert aep["ui-field-behaviour"]["relabeling"] == {"login": "Client ID", "password": "Client Secret"}
    assert {"host", "port", "schema"} <= set(aep["ui-field-behaviour"]["hidden-fields"])


def _airflow_cli(*args: str, tmp_path: Path) -> str:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # one key for every command of a test, so a connection written by one is readable by the next
        "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(hashlib.sha256(str(tmp_path).encode()).digest()).decode(),
    }
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args], capture_output=True, text=True, env=env, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("providers", "list"), "airflow-provider-capillary"),
        (("providers", "hooks"), "airflow_provider_capillary.hooks.aep.AEPHook"),
        (("providers", "widgets"), "extra__adobe_experience_platform__org_id"),
        (("providers", "behaviours"), "adobe_experience_platform"),
    ],
    ids=["providers-list", "hooks", "widgets", "behaviours"],
)
def test_airflow_cli_shows_the_provider(args: tuple[str, ...], expected: str, tmp_path: Path) -> None:
    assert expected in _airflow_cli(*args, tmp_path=tmp_path)


def test_connections_of_our_type_can_be_added_and_listed(tmp_path: Path) -> None:
    _airflow_cli("db", "migrate", tmp_path=tmp_path)
    _airflow_cli(
        "connections",
        "add",
        "aep_from_cli",
        "--conn-type",
        "adobe_experience_platform",
        "--conn-login",
        "client-id",
        "--conn-password",
        "client-secret-value",
        "--conn-extra",
        json.dumps({"org_id": "ORG@AdobeOrg", "sandbox": "dev"}),
        tmp_path=tmp_path,
    )
    listed = json.loads(_airflow_cli("connections", "list", "-o", "json", tmp_path=tmp_path))
    (conn,) = [c for c in listed if c["conn_id"] == "aep_from_cli"]
    assert conn["conn_type"] == "adobe_experience_platform"
