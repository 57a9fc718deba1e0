"""Fixtures of the contract tests: Adobe's specs, loaded once per session (strict and relaxed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.contract.openapi_specs import ContractSpecs

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="session")
def spec_dir(shared_dir: Path) -> Path:
    """Adobe's OpenAPI specs (``../shared/reference/openapi``), read in place."""
    return shared_dir / "reference" / "openapi"


@pytest.fixture(scope="session")
def contract_specs(spec_dir: Path) -> ContractSpecs:
    """Every spec, converted and relaxed at exactly the documented points: the contract."""
    return ContractSpecs(spec_dir)


@pytest.fixture(scope="session")
def strict_specs(spec_dir: Path) -> ContractSpecs:
    """The specs the contract relaxes, as Adobe wrote them: shows each relaxation is needed."""
    return ContractSpecs(
        spec_dir,
        spec_files=(
            "schema-registry.yaml",
            "streaming-ingestion.yaml",
            "batch-ingestion.yaml",
            "identity-service.yaml",
            "profile.yaml",
            "flow-service.yaml",
        ),
        relaxations=(),
    )
