"""Query helpers shared by the emulated services: ``property=`` filters and JSON Patch."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_capillary.testing.aep_emulator.errors import APIError, problem

_PROPERTY = re.compile(r"^(?P<path>[^=!<>~]+?)(?P<op>==|!=|<=|>=|<|>|~)(?P<value>.*)$")


class PropertyFilter:
    """
    One ``property=<path><op><value>`` filter as Schema Registry, Catalog and Flow Service accept it.

    A bare path means "exists"; comma-separated values are alternatives (OR); ``[]`` after a path
    segment matches any element of that array (``sourceConnectionIds[]==abc``); ``~`` is a regular
    expression match (Catalog).

    :param expression: the parameter value, e.g. ``title==Capillary Loyalty Profiles``.
    """

    def __init__(self, expression: str) -> None:
        match = _PROPERTY.match(expression)
        if match is None:
            self.path, self.op, self.values = expression.strip(), "exists", [""]
        else:
            self.path, self.op = match.group("path").strip(), match.group("op")
            raw = match.group("value")
            # Ids and titles may contain commas only rarely; URIs never. Split alternatives on commas.
            self.values = [raw] if self.op == "~" else raw.split(",")

    def matches(self, item: Mapping[str, Any]) -> bool:
        """
        Whether ``item`` passes this filter.

        :param item: a resource.
        """
        found = _lookup(item, self.path.split("."))
        if self.op == "exists":
            return bool(found)
        if self.op == "!=":
            return all(str(value) not in self.values for value in found)
        for value in found:
            for wanted in self.values:
                if _compare(value, self.op, wanted):
                    return True
        return False


def _lookup(item: Any, segments: Sequence[str]) -> list[Any]:
    """All values at a dotted path; ``name[]`` fans out over an array; arrays at the end match any element."""
    if not segments:
        if isinstance(item, list):
            return list(item)
        return [item]
    segment, rest = segments[0], segments[1:]
    if not isinstance(item, Mapping):
        return []
    name = segment.removesuffix("[]")
    if name not in item:
        return []
    value = item[name]
    if segment.endswith("[]") and isinstance(value, list):
        return [found for element in value for found in _lookup(element, rest)]
    return _lookup(value, rest)


def _compare(value: Any, op: str, wanted: str) -> bool:
    if op == "~":
        return re.search(wanted, str(value)) is not None
    if op == "==":
        return str(value).lower() == wanted.lower() if isinstance(value, bool) else str(value) == wanted
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            other: Any = float(wanted)
        except ValueError:
            return False
    else:
        value, other = str(value), wanted
    if op == "<":
        return bool(value < other)
    if op == ">":
        return bool(value > other)
    if op == "<=":
        return bool(value <= other)
    return bool(value >= other)


def filter_items(items: Sequence[Mapping[str, Any]], expressions: Sequence[str]) -> list[Mapping[str, Any]]:
    """
    Keep the items that pass every ``property=`` expression (repeated parameters are ANDed).

    :param items: the resources.
    :param expressions: the ``property`` query values.
    """
    filters = [PropertyFilter(expression) for expression in expressions]
    return [item for item in items if all(each.matches(item) for each in filters)]


def apply_json_patch(document: Mapping[str, Any], operations: Any) -> dict[str, Any]:
    """
    Apply a JSON Patch (RFC 6902 ``add``/``replace``/``remove``) to a copy of ``document``.

    :param document: the resource to patch (not modified).
    :param operations: the request body; must be a list of operations.
    """
    if not isinstance(operations, list) or not operations:
        raise problem(400, "GW-400", "Invalid JSON Patch", "the body must be a non-empty JSON Patch array")
    patched: dict[str, Any] = copy.deepcopy(dict(document))
    for index, operation in enumerate(operations):
        if not isinstance(operation, Mapping) or operation.get("op") not in ("add", "replace", "remove"):
            raise _patch_error(index, "op must be one of add, replace, remove")
        path = operation.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise _patch_error(index, "path must be a JSON pointer starting with '/'")
        if operation["op"] != "remove" and "value" not in operation:
            raise _patch_error(index, "value is required")
        tokens = [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]
        parent: Any = patched
        for token in tokens[:-1]:
            parent = _child(parent, token, index)
        last = tokens[-1]
        value = copy.deepcopy(operation.get("value"))
        if isinstance(parent, list):
            if last == "-" and operation["op"] == "add":
                parent.append(value)
                continue
            if not last.isdigit() or int(last) > len(parent) - (operation["op"] != "add"):
                raise _patch_error(index, f"array index {last!r} is out of range")
            position = int(last)
            if operation["op"] == "add":
                parent.insert(position, value)
            elif operation["op"] == "replace":
                parent[position] = value
            else:
                del parent[position]
        elif isinstance(parent, dict):
            if operation["op"] != "add" and last not in parent:
                raise _patch_error(index, f"{path} does not exist")
            if operation["op"] == "remove":
                del parent[last]
            else:
                parent[last] = value
        else:
            raise _patch_error(index, f"{path} does not point into an object or array")
    return patched


def _child(parent: Any, token: str, index: int) -> Any:
    if isinstance(parent, dict) and token in parent:
        return parent[token]
    if isinstance(parent, list) and token.isdigit() and int(token) < len(parent):
        return parent[int(token)]
    raise _patch_error(index, f"path segment {token!r} does not exist")


def _patch_error(index: int, reason: str) -> APIError:
    return problem(400, "GW-400", "Invalid JSON Patch", f"operation {index}: {reason}")


def int_param(query: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    """
    Read an integer query parameter within bounds; 400 naming the parameter otherwise.

    :param query: the request's query parameters.
    :param name: parameter name.
    :param default: value when absent.
    :param low: smallest accepted value.
    :param high: largest accepted value.
    """
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise problem(400, "GW-400", "Invalid parameter", f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise problem(400, "GW-400", "Invalid parameter", f"{name}={value} must be between {low} and {high}")
    return value
