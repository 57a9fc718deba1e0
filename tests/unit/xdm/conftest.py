"""Fixtures for the XDM tests: sample rows read with the stdlib, and schemas resolved from the official XDM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from xdm_support import SAMPLE_FILES, TENANT, Row, read_rows

from airflow_provider_capillary.testing.xdm_registry import XDMDefinitions
from airflow_provider_capillary.xdm.schemas import schema_spec
from airflow_provider_capillary.xdm.validation import Validator, compile_validator


@pytest.fixture(scope="session")
def sample_rows(shared_dir: Path) -> dict[str, list[Row]]:
    """Rows of the three sample extracts by record type."""
    folder = shared_dir / "samples" / "capillary"
    return {name: read_rows(folder / file) for name, file in SAMPLE_FILES.items()}


@pytest.fixture(scope="session")
def xdm_definitions(shared_dir: Path) -> XDMDefinitions:
    """The official XDM definitions (adobe/xdm layout)."""
    return XDMDefinitions.from_directory(shared_dir / "reference" / "xdm")


@pytest.fixture(scope="session")
def resolved_schemas(xdm_definitions: XDMDefinitions) -> dict[str, dict[str, Any]]:
    """Per record type: class + the spec's field groups + its tenant field group, resolved (xed-full)."""
    result = {}
    for name in SAMPLE_FILES:
        spec = schema_spec(name, TENANT)
        result[name] = xdm_definitions.resolve(
            spec.class_id, spec.field_group_ids, tenant_field_groups=[spec.tenant_field_group]
        )
    return result


@pytest.fixture(scope="session")
def validators(resolved_schemas: dict[str, dict[str, Any]]) -> dict[str, Validator]:
    """Compiled validators of the resolved schemas."""
    return {name: compile_validator(schema) for name, schema in resolved_schemas.items()}
