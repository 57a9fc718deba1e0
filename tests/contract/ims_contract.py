"""The Adobe IMS token exchange as documented (aep-api.md section 1); Adobe publishes no OpenAPI spec for it.

``POST /ims/token/v3`` with an ``application/x-www-form-urlencoded`` body of exactly the four mandatory
client-credentials parameters; ``200 {"access_token", "token_type": "bearer", "expires_in": <seconds>}``.
Error bodies are not documented by Adobe ([UNCERTAIN] in aep-api.md): an OAuth ``{"error", ...}`` object is
expected for any non-200.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from tests.contract.openapi_specs import HttpCall

IMS_TOKEN_PATH = "/ims/token/v3"
_FORM = "application/x-www-form-urlencoded"
_REQUIRED_FORM_FIELDS = ("grant_type", "client_id", "client_secret", "scope")
#: ``expires_in`` above this would be milliseconds (the retired JWT exchange), not v3's seconds.
_MAX_EXPIRES_IN_SECONDS = 1_000_000


def ims_request_problems(call: HttpCall) -> list[str]:
    """What is wrong with a token request, per aep-api.md section 1 (empty when it follows the docs).

    :param call: the request.
    """
    problems = []
    if call.method.upper() != "POST" or call.path != IMS_TOKEN_PATH:
        problems.append(f"token request must be POST {IMS_TOKEN_PATH}, not {call.method} {call.path}")
    content_type = {k.lower(): v for k, v in call.headers.items()}.get("content-type", "")
    if content_type.split(";")[0].strip() != _FORM:
        problems.append(f"Content-Type must be {_FORM}, not {content_type!r}")
    leaked = sorted({name for name, _ in call.query} & {"client_secret", "client_id"})
    if leaked:
        problems.append(f"credentials {leaked} sent in the query string (Adobe: send them in the body)")
    form = dict(parse_qsl(call.body.decode("utf-8", "replace"), keep_blank_values=True))
    missing = [name for name in _REQUIRED_FORM_FIELDS if not form.get(name)]
    if missing:
        problems.append(f"form fields {missing} are missing or empty")
    if form.get("grant_type", "client_credentials") != "client_credentials":
        problems.append(f"grant_type must be client_credentials, not {form['grant_type']!r}")
    if " " in form.get("scope", ""):
        problems.append("scope must be comma-separated without spaces")
    return problems


def ims_response_problems(call: HttpCall) -> list[str]:
    """What is wrong with a token response, per aep-api.md section 1 (empty when it follows the docs).

    :param call: the request and its response.
    """
    try:
        body: Any = json.loads(call.response_body)
    except ValueError:
        return [f"IMS answered {call.status} with a non-JSON body"]
    if call.status != 200:
        if not isinstance(body, dict) or not isinstance(body.get("error"), str):
            return [f"IMS error {call.status} is not an OAuth error object {{'error', ...}}: {body!r}"]
        return []
    problems = []
    if not isinstance(body, dict):
        return [f"IMS token answer is not an object: {body!r}"]
    if not isinstance(body.get("access_token"), str) or not body["access_token"]:
        problems.append("access_token missing or not a string")
    if str(body.get("token_type", "")).lower() != "bearer":
        problems.append(f"token_type must be bearer, not {body.get('token_type')!r}")
    expires_in = body.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not 0 < expires_in <= _MAX_EXPIRES_IN_SECONDS:
        problems.append(f"expires_in must be a positive number of seconds (v3), not {expires_in!r}")
    return problems
