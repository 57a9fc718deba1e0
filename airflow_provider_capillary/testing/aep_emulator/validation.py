"""XDM record validation as DCS and Batch Ingestion apply it: compiled once per schema version."""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import fastjsonschema

#: Java-style type names used in AEP validation messages ("expected type: String, found: Long").
_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "Boolean"),
    (int, "Long"),
    (float, "Double"),
    (str, "String"),
    (dict, "JSONObject"),
    (list, "JSONArray"),
    (type(None), "Null"),
)
_EXTRA_KEYS = re.compile(r"must not contain \{(.*)\} properties")

Validator = Callable[[Any], Any]


class RecordInvalid(ValueError):
    """
    An XDM record does not conform to its dataset's schema.

    :param keyword: the failed JSON Schema keyword (``type``, ``required``, ``additionalProperties``...).
    :param pointer: JSON pointer of the offending value (``#/loyalty/points``).
    :param schema_location: JSON pointer into the schema (``#/properties/loyalty/properties/points``).
    :param message: what is wrong, in AEP's wording where known.
    """

    def __init__(self, keyword: str, pointer: str, schema_location: str, message: str) -> None:
        super().__init__(f"{pointer}: {message}")
        self.keyword = keyword
        self.pointer = pointer
        self.schema_location = schema_location
        self.message = message

    def report(self) -> dict[str, Any]:
        """The ``_streamingValidation`` entry DCS returns for this violation."""
        return {
            "schemaLocation": "#",
            "pointerToViolation": "#",
            "message": "1 schema violations found",
            "causingExceptions": [
                {
                    "schemaLocation": self.schema_location,
                    "pointerToViolation": self.pointer,
                    "keyword": self.keyword,
                    "message": self.message,
                    "causingExceptions": [],
                }
            ],
        }


def closed_schema(
    schema: Mapping[str, Any], required_paths: Sequence[Sequence[str]] = (), *, reject_unknown_fields: bool = True
) -> dict[str, Any]:
    """
    Prepare a resolved schema for validation as AEP applies it.

    Each path in ``required_paths`` (e.g. the primary identity field) becomes required at every level.
    With ``reject_unknown_fields``, objects with ``properties`` reject keys they do not define, as
    AEP's validation does ("extraneous key [...] is not permitted"); maps such as ``identityMap`` stay
    open.

    :param schema: a resolved compatibility-mode schema (not modified).
    :param required_paths: property paths that must be present, e.g. ``[("_acmecorp", "capillary", "id")]``.
    :param reject_unknown_fields: close objects to fields the schema does not define (default true).
    """
    prepared = copy.deepcopy(dict(schema))
    _strip(prepared, close=reject_unknown_fields)
    for path in required_paths:
        node = prepared
        for name in path:
            required = node.setdefault("required", [])
            if name not in required:
                required.append(name)
            node = node.get("properties", {}).get(name, {})
    return prepared


def _strip(node: dict[str, Any], *, close: bool) -> None:
    """Drop documentation keys (smaller generated code) and, with ``close``, close objects."""
    for key in ("meta:xdmField", "meta:enum", "meta:status", "title", "description", "default"):
        node.pop(key, None)
    if "properties" in node:
        if close:
            node.setdefault("additionalProperties", False)
        for sub in node["properties"].values():
            _strip(sub, close=close)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            _strip(node[key], close=close)
    for key in ("oneOf", "anyOf"):
        for sub in node.get(key, ()):
            _strip(sub, close=close)


def compile_validator(schema: Mapping[str, Any]) -> Validator:
    """
    Compile a prepared schema (see :func:`closed_schema`) into a fast validator.

    :param schema: the prepared JSON Schema.
    """
    return fastjsonschema.compile(dict(schema), use_default=False)


def check(validator: Validator, record: Any) -> None:
    """
    Validate one record; raise :class:`RecordInvalid` describing the first violation.

    :param validator: a validator from :func:`compile_validator`.
    :param record: the ``xdmEntity`` (decoded JSON).
    """
    try:
        validator(record)
    except fastjsonschema.JsonSchemaValueException as err:
        raise _describe(err) from None


def _describe(err: fastjsonschema.JsonSchemaValueException) -> RecordInvalid:
    path = list(err.path or ["data"])[1:]
    pointer = "#/" + "/".join(path) if path else "#"
    location = "#" + "".join("/items" if part.isdigit() else f"/properties/{part}" for part in path)
    rule = str(err.rule or "")
    if rule == "type":
        found = next((name for kind, name in _TYPE_NAMES if isinstance(err.value, kind)), "Unknown")
        message = f"expected type: {str(err.rule_definition).capitalize()}, found: {found}"
    elif rule == "additionalProperties":
        match = _EXTRA_KEYS.search(err.message)
        keys = match.group(1).replace("'", "") if match else "?"
        message = f"extraneous key [{keys}] is not permitted"
    elif rule == "required":
        message = f"required key {err.rule_definition} not found".replace("'", "")
    else:
        message = err.message.replace("data.", "", 1) if err.message.startswith("data.") else err.message
    return RecordInvalid(rule, pointer, f"{location}/{rule}" if rule else location, message)


class ValidatorCache:
    """Compiled validators keyed by schema id and version; thread-safe, compiled once per key."""

    def __init__(self) -> None:
        self._validators: dict[tuple[str, str], Validator] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str], build: Callable[[], Mapping[str, Any]]) -> Validator:
        """
        Return the validator for ``key``, compiling ``build()`` the first time.

        :param key: ``(schema $id, schema version)``.
        :param build: returns the prepared schema to compile.
        """
        validator = self._validators.get(key)
        if validator is None:
            with self._lock:
                validator = self._validators.get(key)
                if validator is None:
                    validator = self._validators[key] = compile_validator(build())
        return validator

    def clear(self) -> None:
        """Drop every compiled validator."""
        with self._lock:
            self._validators.clear()
