"""The IMS token-exchange contract (aep-api.md section 1): a documented exchange passes, mutations fail."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.contract.ims_contract import ims_request_problems, ims_response_problems
from tests.contract.openapi_specs import HttpCall

pytestmark = pytest.mark.contract

FORM = "application/x-www-form-urlencoded"
DOCUMENTED_FORM = (
    b"grant_type=client_credentials&client_id=cid&client_secret=secret"
    b"&scope=openid,session,AdobeID,read_organizations,additional_info.projectedProductContext"
)


def token_call(
    body: bytes = DOCUMENTED_FORM,
    content_type: str = FORM,
    url: str = "/ims/token/v3",
    status: int = 200,
    answer: Any = None,
) -> HttpCall:
    """A token exchange; by default the documented request and answer."""
    if answer is None:
        answer = {"access_token": "eyJ.x.y", "token_type": "bearer", "expires_in": 86399}
    return HttpCall.from_url(
        "POST",
        url,
        headers={"Content-Type": content_type},
        body=body,
        status=status,
        response_headers={"Content-Type": "application/json"},
        response_body=json.dumps(answer).encode(),
    )


def test_the_documented_exchange_passes() -> None:
    assert ims_request_problems(token_call()) == []
    assert ims_response_problems(token_call()) == []


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (token_call(url="/ims/token/v2"), "token request must be POST /ims/token/v3"),
        (token_call(content_type="application/json"), "Content-Type must be application/x-www-form-urlencoded"),
        (token_call(body=DOCUMENTED_FORM.replace(b"&client_secret=secret", b"")), "['client_secret']"),
        (token_call(body=DOCUMENTED_FORM.replace(b"client_credentials", b"password")), "grant_type must be"),
        (token_call(body=DOCUMENTED_FORM.replace(b"openid,session", b"openid, session")), "without spaces"),
        (token_call(url="/ims/token/v3?client_secret=s"), "sent in the query string"),
    ],
    ids=["v2-path", "json-body", "no-secret", "password-grant", "spaced-scopes", "secret-in-query"],
)
def test_a_wrong_request_fails(call: HttpCall, problem: str) -> None:
    problems = ims_request_problems(call)
    assert any(problem in text for text in problems), problems


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"token_type": "bearer", "expires_in": 86399}, "access_token missing"),
        ({"access_token": "t", "token_type": "mac", "expires_in": 86399}, "token_type must be bearer"),
        ({"access_token": "t", "token_type": "bearer", "expires_in": 86399999}, "seconds (v3)"),
        ({"access_token": "t", "token_type": "bearer", "expires_in": "86399"}, "seconds (v3)"),
        (["t"], "not an object"),
    ],
    ids=["no-token", "not-bearer", "milliseconds", "string-expiry", "array"],
)
def test_a_wrong_answer_fails(answer: Any, problem: str) -> None:
    problems = ims_response_problems(token_call(answer=answer))
    assert any(problem in text for text in problems), problems


def test_errors_must_be_oauth_error_objects() -> None:
    oauth = {"error": "invalid_client", "error_description": "invalid client_id parameter"}
    assert ims_response_problems(token_call(status=401, answer=oauth)) == []
    assert ims_response_problems(token_call(status=400, answer={"message": "bad"})) != []
