"""The JSON examples of ``aep-api.md`` (read in place from ``../shared``) against the contract.

Every fenced ``json`` block that is valid JSON (optionally prefixed by its HTTP status) is used: the IMS token
answer, the DCS single / sync-validation failure / multi-message answers, and the two full streaming envelopes of
section 11. Blocks with ``...`` placeholders are not JSON and are skipped by the parser, which the count checks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from tests.contract.ims_contract import ims_response_problems
from tests.contract.openapi_specs import ContractViolation, HttpCall

if TYPE_CHECKING:
    from pathlib import Path

    from tests.contract.openapi_specs import ContractSpecs

pytestmark = pytest.mark.contract

_JSON_BLOCK = re.compile(r"```json\n(.*?)```", re.S)
_STATUS_PREFIX = re.compile(r"\s*(\d{3})\s+(.*)", re.S)
HEADERS = {"Authorization": "Bearer t", "x-sandbox-name": "prod", "Content-Type": "application/json"}


@dataclass(frozen=True)
class DocumentedJson:
    """A JSON example of aep-api.md.

    :param status: the HTTP status written before it, if any.
    :param value: the parsed JSON.
    """

    status: int | None
    value: Any


def documented_json(aep_api_md: Path) -> list[DocumentedJson]:
    """Every fenced ``json`` block of aep-api.md that parses as JSON, in document order.

    :param aep_api_md: the path of ``aep-api.md``.
    """
    examples = []
    for block in _JSON_BLOCK.findall(aep_api_md.read_text(encoding="utf-8")):
        prefixed = _STATUS_PREFIX.fullmatch(block)
        status, raw = (int(prefixed[1]), prefixed[2]) if prefixed else (None, block)
        try:
            examples.append(DocumentedJson(status, json.loads(raw)))
        except ValueError:
            continue
    return examples


@pytest.fixture(scope="module")
def examples(shared_dir: Path) -> list[DocumentedJson]:
    """aep-api.md's JSON examples (six of its blocks are plain JSON)."""
    found = documented_json(shared_dir / "reference" / "aep-api.md")
    assert len(found) == 6, "aep-api.md changed: review which examples these tests use"
    return found


def _answer(path: str, status: int, body: Any) -> HttpCall:
    return HttpCall(
        "POST",
        path,
        headers=HEADERS,
        status=status,
        response_headers={"Content-Type": "application/json"},
        response_body=json.dumps(body).encode(),
    )


def _envelopes(examples: list[DocumentedJson]) -> list[dict[str, Any]]:
    return [e.value for e in examples if isinstance(e.value, dict) and set(e.value) == {"header", "body"}]


def test_the_documented_ims_answer_passes(examples: list[DocumentedJson]) -> None:
    (answer,) = (e.value for e in examples if isinstance(e.value, dict) and "access_token" in e.value)
    call = HttpCall("POST", "/ims/token/v3", status=200, response_body=json.dumps(answer).encode())
    assert ims_response_problems(call) == []


@pytest.mark.parametrize(
    ("status", "path"), [(200, "/collection/i1"), (400, "/collection/i1"), (207, "/collection/batch/i1")]
)
def test_the_documented_dcs_answers_pass(
    contract_specs: ContractSpecs, examples: list[DocumentedJson], status: int, path: str
) -> None:
    (answer,) = (e.value for e in examples if e.status == status)
    contract_specs.validate_response(_answer(path, status, answer))


def test_the_documented_single_answer_needs_the_relaxations(
    strict_specs: ContractSpecs, examples: list[DocumentedJson]
) -> None:
    (answer,) = (e.value for e in examples if e.status == 200)
    with pytest.raises(ContractViolation, match="is not a 'int32'"):
        strict_specs.validate_response(_answer("/collection/i1", 200, answer))


def test_the_documented_envelopes_pass_single_and_batched(
    contract_specs: ContractSpecs, examples: list[DocumentedJson]
) -> None:
    envelopes = _envelopes(examples)
    assert len(envelopes) == 2
    for envelope in envelopes:
        contract_specs.validate_request(
            HttpCall("POST", "/collection/i1", headers=HEADERS, body=json.dumps(envelope).encode())
        )
    batch = json.dumps({"messages": envelopes}).encode()
    contract_specs.validate_request(HttpCall("POST", "/collection/batch/i1", headers=HEADERS, body=batch))


def test_the_documented_event_envelope_needs_the_xdm_entity_relaxation(
    strict_specs: ContractSpecs, examples: list[DocumentedJson]
) -> None:
    batch = json.dumps({"messages": _envelopes(examples)}).encode()
    with pytest.raises(ContractViolation, match="is not of type 'object'"):
        strict_specs.validate_request(HttpCall("POST", "/collection/batch/i1", headers=HEADERS, body=batch))
