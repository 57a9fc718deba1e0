"""Options and fixtures of the reliability suite (marker ``reliability``).

Size: ``--reliability-runs N`` (env ``RELIABILITY_RUNS``, default 3: one run of each scenario) seeded runs of
``--reliability-rows N`` (env ``RELIABILITY_ROWS``, default 1,000) rows each, seeds from
``--reliability-first-seed`` (env ``RELIABILITY_FIRST_SEED``, default 0). The defaults keep the soak to about a
minute for CI; a longer soak is e.g. ``pytest tests/reliability -m reliability --reliability-runs 60
--reliability-rows 5000``, and one seed is replayed with ``--reliability-runs 1 --reliability-first-seed S``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_capillary.testing.aep_emulator import AEPEmulator

_OPTIONS = {
    "--reliability-runs": ("RELIABILITY_RUNS", 3, "number of seeded fault runs"),
    "--reliability-rows": ("RELIABILITY_ROWS", 1_000, "rows of each run's synthetic extract"),
    "--reliability-first-seed": ("RELIABILITY_FIRST_SEED", 0, "seed of the first run"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("reliability", "size of the reliability soak (tests/reliability)")
    for option, (env, default, text) in _OPTIONS.items():
        group.addoption(option, type=int, default=None, help=f"{text} (env {env}, default {default})")


def reliability_setting(config: pytest.Config, option: str) -> int:
    """An integer setting of the soak: the command-line option, else its environment variable, else the default.

    :param config: The pytest configuration.
    :param option: The option's name, e.g. ``--reliability-runs``.
    """
    env, default, _ = _OPTIONS[option]
    # getoption's default covers a run where this conftest was loaded after option parsing (e.g. ``pytest tests``).
    value = config.getoption(option, default=None)
    if value is None:
        value = int(os.environ.get(env, default))
    if value < 0:
        raise pytest.UsageError(f"{option} must not be negative, got {value}")
    return int(value)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``soak_seed`` over the configured seeds."""
    if "soak_seed" in metafunc.fixturenames:
        first = reliability_setting(metafunc.config, "--reliability-first-seed")
        runs = reliability_setting(metafunc.config, "--reliability-runs")
        seeds = list(range(first, first + runs))
        metafunc.parametrize("soak_seed", seeds, ids=[f"seed{seed}" for seed in seeds])


_REPORT = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def soak_report(pytestconfig: pytest.Config) -> list[str]:
    """One line per soak run, printed again at the end of the session."""
    return pytestconfig.stash.setdefault(_REPORT, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(_REPORT, [])
    if lines:
        terminalreporter.section("reliability soak")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def soak_rows(pytestconfig: pytest.Config) -> int:
    """Rows of each run's synthetic extract."""
    rows = reliability_setting(pytestconfig, "--reliability-rows")
    if rows < 50:
        raise pytest.UsageError(f"--reliability-rows must be at least 50, got {rows}")
    return rows


@pytest.fixture(scope="module")
def metadata_db() -> None:
    """An initialised Airflow metadata database (``dag.test()`` runs and the task state store live there)."""
    from airflow.utils.db import initdb

    initdb()


@pytest.fixture(scope="module")
def soak_emulator(shared_dir: Path) -> Iterator[AEPEmulator]:
    """One AEP emulator for the module, with a journal, validating against the official XDM definitions."""
    with AEPEmulator(xdm_root=shared_dir / "reference" / "xdm", journal=True) as emulator:
        yield emulator
