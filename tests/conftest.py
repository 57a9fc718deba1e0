"""Test configuration shared by every test: an isolated AIRFLOW_HOME and no example DAGs.

Airflow reads its configuration on first import, so the environment is prepared here, before any
test module imports it.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="airflow-home-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
# dag.test() (Airflow 3.3) runs only DAGs its bundle has parsed: test DAGs are written into this folder.
DAGS_FOLDER = Path(_AIRFLOW_HOME) / "dags"
DAGS_FOLDER.mkdir()
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_FOLDER)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``../shared`` folder beside the checkout (reference specs, XDM definitions, samples)."""
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: tests read Adobe's specs and the XDM definitions from it")
    return SHARED


@pytest.fixture
def dag_from_source() -> Callable[[str, str], Any]:
    """Write a DAG file into the dags folder and return its ``dag`` object, ready for ``dag.test()``."""

    def load(name: str, source: str) -> Any:
        path = DAGS_FOLDER / f"{name}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"test_dag_{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.dag

    return load
