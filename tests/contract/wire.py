"""Turn what was sent and served into :class:`~tests.contract.openapi_specs.HttpCall` s, and check them.

Two views of the same traffic are checked:

* :class:`WireRecorder` sees every exchange on the hook's own ``requests`` session, byte for byte as sent (raw
  percent-encoded path, every repeated query parameter, the exact body) with the response as received;
* :func:`call_from_journal` rebuilds a call from the emulator's journal, which stores aiohttp's *decoded*
  ``request.path``, the query as a dict, and bodies decoded (JSON) or summarised (octet-stream).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

from tests.contract.ims_contract import IMS_TOKEN_PATH, ims_request_problems, ims_response_problems
from tests.contract.openapi_specs import ContractSpecs, ContractViolation, HttpCall, OperationMatch

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import requests

#: Schema Registry paths whose last segment is a resource id; ids are ``$id`` URIs, sent URL-encoded
#: (aep-api.md 2.2). The journal keeps the decoded path, so the id is re-encoded from it.
_REGISTRY_RESOURCE_PREFIX = "/data/foundation/schemaregistry/"
_REGISTRY_KINDS = ("schemas", "fieldgroups", "mixins", "classes", "datatypes", "descriptors", "unions")


@dataclass
class WireRecorder:
    """Records every exchange of a ``requests.Session`` through its ``response`` hook.

    :param calls: the recorded calls, in order.
    """

    calls: list[HttpCall] = field(default_factory=list)

    def attach(self, session: requests.Session) -> None:
        """Start recording ``session``'s exchanges.

        :param session: the session (e.g. ``AEPHook.session``).
        """
        session.hooks["response"].append(self._record)

    def _record(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        prepared = response.request
        url = urlsplit(str(prepared.url))
        body = prepared.body
        raw = body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else b""
        self.calls.append(
            HttpCall(
                method=str(prepared.method),
                path=url.path,
                query=tuple(parse_qsl(url.query, keep_blank_values=True)),
                headers=dict(prepared.headers),
                body=raw,
                status=response.status_code,
                response_headers=dict(response.headers),
                response_body=response.content,
            )
        )


def _encoded_path(path: str) -> str:
    """The on-the-wire path of a decoded journal path (Schema Registry resource ids re-encoded).

    :param path: aiohttp's decoded ``request.path``.
    """
    if path.startswith(_REGISTRY_RESOURCE_PREFIX):
        parts = path[len(_REGISTRY_RESOURCE_PREFIX) :].split("/", 2)
        if len(parts) == 3 and parts[1] in _REGISTRY_KINDS:
            container, kind, resource_id = parts
            return f"{_REGISTRY_RESOURCE_PREFIX}{container}/{kind}/{quote(resource_id, safe='')}"
    return quote(path, safe="/:@!$&'()*+,;=-._~")


def _body_bytes(body: Any, content_type: str) -> bytes:
    """Re-encode a journal body.

    :param body: the journal's decoded body (JSON value, text, or ``"<n bytes>"`` for octet-stream).
    :param content_type: its content type.
    """
    if body is None:
        return b""
    if content_type.split(";")[0].strip() in ("application/json", "application/json-patch+json"):
        return json.dumps(body).encode()
    return str(body).encode()


def call_from_journal(entry: Mapping[str, Any]) -> HttpCall:
    """Rebuild an :class:`HttpCall` from one emulator journal entry.

    :param entry: ``{"method", "path", "query", "headers", "body", "status", "response_headers",
        "response_body"}`` as the emulator records them.
    """
    headers = dict(entry.get("headers") or {})
    response_headers = dict(entry.get("response_headers") or {})
    request_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    response_type = {k.lower(): v for k, v in response_headers.items()}.get("content-type", "")
    return HttpCall(
        method=entry["method"],
        path=_encoded_path(entry["path"]),
        query=tuple((str(k), str(v)) for k, v in (entry.get("query") or {}).items()),
        headers=headers,
        body=_body_bytes(entry.get("body"), request_type),
        status=entry.get("status"),
        response_headers=response_headers,
        response_body=_body_bytes(entry.get("response_body"), response_type),
    )


@dataclass(frozen=True)
class Finding:
    """One contract problem of one call.

    :param index: the call's position in its list.
    :param call: ``METHOD path -> status``.
    :param side: ``request`` or ``response``.
    :param operation: the matched operation (``str(OperationMatch)``), or ``IMS`` / ``-``.
    :param problem: what is wrong.
    """

    index: int
    call: str
    side: str
    operation: str
    problem: str

    def __str__(self) -> str:
        return f"#{self.index} {self.call} [{self.side}] {self.operation}: {self.problem}"


def check_calls(
    specs: ContractSpecs, calls: Iterable[HttpCall], *, requests_too: bool = True
) -> tuple[list[Finding], list[OperationMatch]]:
    """Validate calls against the specs (IMS against aep-api.md 1); collect every problem, stop at none.

    :param specs: the contract.
    :param calls: the calls, each with its response.
    :param requests_too: also validate the requests (off for deliberately malformed requests).
    :return: the findings and the operation of every non-IMS call (for coverage).
    """
    findings: list[Finding] = []
    matched: list[OperationMatch] = []
    for index, call in enumerate(calls):
        label = f"{call.method} {call.path} -> {call.status}"
        if call.path == IMS_TOKEN_PATH:
            problems = [("request", p) for p in ims_request_problems(call)] if requests_too else []
            problems += [("response", p) for p in ims_response_problems(call)]
            findings.extend(Finding(index, label, side, "IMS", problem) for side, problem in problems)
            continue
        try:
            operation = specs.match(call.method, call.path)
        except ContractViolation as violation:
            findings.append(Finding(index, label, "request", "-", str(violation)))
            continue
        matched.append(operation)
        for side, validate in (("request", specs.validate_request), ("response", specs.validate_response)):
            if side == "request" and not requests_too:
                continue
            try:
                validate(call)
            except ContractViolation as violation:
                findings.append(Finding(index, label, side, str(operation), str(violation)))
    return findings, matched
