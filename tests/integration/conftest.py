"""Fixtures that run the local AEP emulator on a loopback port and point an Airflow connection at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_capillary.hooks.aep import TOKEN_CACHE
from airflow_provider_capillary.testing.aep_emulator import AEPEmulator


@pytest.fixture(scope="module")
def aep_emulator_module(shared_dir) -> Iterator[AEPEmulator]:
    """One emulator per test module, validating against the official XDM definitions in ``../shared``."""
    with AEPEmulator(xdm_root=shared_dir / "reference" / "xdm", journal=True) as emulator:
        yield emulator


@pytest.fixture
def aep_emulator(aep_emulator_module: AEPEmulator, monkeypatch: pytest.MonkeyPatch) -> AEPEmulator:
    """The module's emulator, reset, with ``aep_default`` pointing at it and an empty token cache."""
    aep_emulator_module.reset()
    aep_emulator_module.faults.clear_scripts()
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", aep_emulator_module.connection_json())
    TOKEN_CACHE.clear()
    return aep_emulator_module
