"""Validate XDM entities before anything is sent: JSON Schema checks and the streaming record size.

:func:`compile_validator` takes the schema exactly as the Schema Registry returns it for
``Accept: application/vnd.adobe.xed-full+json; version=1`` (compatibility mode, references resolved; it may
carry ``meta:*`` keys, ``$id``/``$schema`` and formats) and compiles it once with ``fastjsonschema`` into
plain Python code. Compiled validators are cached per schema content (the one module-level cache of this
package, bounded to a few schemas), so every chunk of every task in a worker reuses it.

Why fastjsonschema: measured with ``tests/benchmarks/bench_mapping.py --validators`` on the schemas resolved
from the official XDM definitions (about 20,000 generated entities each, one core of a shared 2-core VM),
fastjsonschema validated a ``loyalty_event`` entity in ~9 µs, a ``transaction`` in ~20 µs and a
``customer`` in ~19 µs, against ~190 µs, ~720 µs and ~300 µs for the ``jsonschema`` library's
``Draft7Validator`` with its format checker — 16 to 35 times faster; compiling takes 0.02-0.12 s once.

Shape proof: validating every entity in full costs more than mapping it, while a mapper emits a few
recurring *shapes* (the same keys, array lengths and JSON types) with changing values. When the schema
uses only keywords whose outcome on an object or array depends on its shape alone (``type``,
``properties``, ``additionalProperties``, ``required``, ``items`` as one schema, ``min``/``maxItems``,
``min``/``maxProperties``; anything else anywhere — ``$ref``, ``allOf``/``anyOf``/``oneOf``/``not``,
``if``, ``patternProperties``, ``uniqueItems``, tuple ``items``, ``dependencies``... — turns the shortcut
off), the result of a full validation splits into a part fixed by the shape and one check per scalar. So
the first entity of each shape is validated in full; once one passes, later entities of that shape are
checked only on the scalars whose schema constrains more than their JSON type (formats, enums, patterns,
lengths, bounds, and ``integer``, which accepts a float without fraction), each with a validator compiled
from that scalar's own schema. Any failure there — or an unknown shape, or a value of a type JSON lacks —
falls back to the full validation, so the issue reported is always the full validator's. At most
``_MAX_SHAPES`` shapes are remembered per schema.

Formats: ``date`` (``YYYY-MM-DD``, real calendar date) and ``date-time`` (RFC 3339 with ``Z`` or an offset)
are checked with the same rules as :mod:`airflow_provider_capillary.xdm.values`; any other format that the
validator does not know is accepted (AEP defines formats the JSON Schema drafts lack, e.g. ``uri-reference``
on older drafts).

Size: AEP documents a maximum streaming record of 1 MB (recommended ≤ 10 KB; Real-Time Customer Profile
ignores ExperienceEvents over 10 KB and profile records over 100 KB, though the data lake keeps them).
:func:`check_record_size` turns a record over the limit into ``record_too_large``.
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache
from hashlib import sha256
from typing import TYPE_CHECKING, Any, NamedTuple

import fastjsonschema
import orjson

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: AEP's documented maximum size of one streaming record (bytes).
MAX_STREAMING_RECORD_BYTES = 1_000_000
#: Largest ExperienceEvent Real-Time Customer Profile keeps (bytes); larger ones only reach the data lake.
PROFILE_MAX_EVENT_BYTES = 10 * 1024
#: Largest profile record Real-Time Customer Profile keeps (bytes).
PROFILE_MAX_RECORD_BYTES = 100 * 1024

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$",
)
_KNOWN_FORMATS = frozenset(
    {"email", "hostname", "ipv4", "ipv6", "uri", "uri-reference", "json-pointer", "uri-template", "regex"}
)


class SchemaIssue(NamedTuple):
    """Why an entity does not conform to its schema.

    :param path: JSON Pointer of the offending value in the entity (``""`` for the entity itself).
    :param message: What is wrong, as the validator words it.
    """

    path: str
    message: str


def _is_date(value: Any) -> bool:
    if not isinstance(value, str) or _DATE_RE.match(value) is None:
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _accept(value: Any) -> bool:
    return True


def _formats_in(schema: Any, found: set[str]) -> set[str]:
    if isinstance(schema, dict):
        fmt = schema.get("format")
        if isinstance(fmt, str):
            found.add(fmt)
        for key, child in schema.items():
            if key != "enum" and key != "const":
                _formats_in(child, found)
    elif isinstance(schema, list):
        for child in schema:
            _formats_in(child, found)
    return found


#: Keywords fastjsonschema acts on whose outcome is not fixed by the shape of an object or array.
_UNSUPPORTED = frozenset(
    {
        "$ref", "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependencies", "dependentRequired",
        "dependentSchemas", "patternProperties", "propertyNames", "contains", "uniqueItems", "additionalItems",
        "prefixItems", "unevaluatedProperties", "unevaluatedItems",
    }
)  # fmt: skip
#: Keywords an object's or array's schema may carry for its shape to decide its own checks.
_CONTAINER_KEYWORDS = frozenset(
    {"type", "properties", "additionalProperties", "required", "minProperties", "maxProperties"}
    | {"items", "minItems", "maxItems"}
)
#: Every keyword fastjsonschema acts on (others are annotations such as ``title`` or ``meta:xdmType``).
_ACTING = _UNSUPPORTED | _CONTAINER_KEYWORDS | {
    "enum", "const", "format", "pattern", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "contentEncoding", "contentMediaType",
}  # fmt: skip
#: Schema keys whose values are data or names, not subschemas.
_DATA_KEYS = frozenset({"enum", "const", "default", "examples"})
_MAX_SHAPES = 4096
_END = object()
_SCALARS = frozenset({str, int, float, bool, type(None)})
_UNCACHEABLE: tuple[tuple[int, Callable[[Any], bool]], ...] = ((-1, _accept),)


def _shape_decides(schema: Any) -> bool:
    """Whether no keyword in the schema needs more than the shape of objects and arrays (see module doc)."""
    if isinstance(schema, list):
        return all(_shape_decides(child) for child in schema)
    if not isinstance(schema, dict):
        return True
    for key, child in schema.items():
        if key in _UNSUPPORTED or (key == "items" and isinstance(child, list)):
            return False
        if key in _DATA_KEYS or key.startswith("meta:"):
            continue
        if key in ("properties", "definitions", "$defs"):
            if isinstance(child, dict) and not all(_shape_decides(sub) for sub in child.values()):
                return False
        elif isinstance(child, dict | list) and not _shape_decides(child):
            return False
    return True


def _shape(node: Any, tokens: list[Any], leaves: list[Any]) -> bool:
    """Append the shape of ``node`` to ``tokens`` and its scalars to ``leaves``; False for non-JSON types.

    Tokens: ``dict`` … ``_END`` around an object's keys (each followed by its value's tokens), ``list`` …
    ``_END`` around an array's items, and the Python type of each scalar (``bool`` apart from ``int``).
    """
    kind = type(node)
    if kind is dict:
        tokens.append(dict)
        for key, value in node.items():
            if type(key) is not str:
                return False
            tokens.append(key)
            value_kind = type(value)
            if value_kind in _SCALARS:
                tokens.append(value_kind)
                leaves.append(value)
            elif not _shape(value, tokens, leaves):
                return False
        tokens.append(_END)
    elif kind is list:
        tokens.append(list)
        for value in node:
            value_kind = type(value)
            if value_kind in _SCALARS:
                tokens.append(value_kind)
                leaves.append(value)
            elif not _shape(value, tokens, leaves):
                return False
        tokens.append(_END)
    elif kind in _SCALARS:
        tokens.append(kind)
        leaves.append(node)
    else:
        return False
    return True


class Validator:
    """A compiled schema. Build with :func:`compile_validator`.

    :param schema: The resolved (``xed-full``) JSON Schema.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        formats: dict[str, str | Callable[[Any], bool]] = {"date": _is_date, "date-time": _DATE_TIME_RE.pattern}
        for fmt in _formats_in(schema, set()):
            if fmt not in formats and fmt not in _KNOWN_FORMATS:
                formats[fmt] = _accept
        self.schema_id: str | None = schema.get("$id")
        self._schema = dict(schema)
        self._formats = formats
        self._validate = fastjsonschema.compile(self._schema, formats=formats, use_default=False)
        self._shapes: dict[tuple[Any, ...], tuple[tuple[int, Callable[[Any], bool]], ...]] | None = (
            {} if _shape_decides(self._schema) else None
        )
        self._scalar_checks: dict[int, Callable[[Any], bool]] = {}

    def validate(self, entity: Mapping[str, Any]) -> SchemaIssue | None:
        """Check one entity.

        :param entity: The XDM entity (``xdmEntity``), with JSON types only.
        :return: ``None`` when it conforms, else the first issue found.
        """
        shapes = self._shapes
        key: tuple[Any, ...] | None = None
        if shapes is not None:
            tokens: list[Any] = []
            leaves: list[Any] = []
            if _shape(entity, tokens, leaves):
                key = tuple(tokens)
                checks = shapes.get(key)
                if checks is not None and checks is not _UNCACHEABLE:
                    for index, check in checks:
                        if not check(leaves[index]):
                            break
                    else:
                        return None
        try:
            self._validate(entity)
        except fastjsonschema.JsonSchemaValueException as err:
            parts = list(err.path or [])[1:]
            pointer = "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)
            return SchemaIssue(pointer, err.message)
        if shapes is not None and key is not None and key not in shapes and len(shapes) < _MAX_SHAPES:
            found: list[tuple[int, Callable[[Any], bool]]] = []
            shapes[key] = tuple(found) if self._plan(entity, self._schema, found, [0]) else _UNCACHEABLE
        return None

    def _plan(self, node: Any, schema: Any, checks: list[tuple[int, Callable[[Any], bool]]], count: list[int]) -> bool:
        """Collect ``(scalar index, check)`` for the scalars of a valid entity whose schema constrains values.

        Walks ``node`` in the order of :func:`_shape`; ``count`` holds the index of the next scalar. Returns
        False when an object's or array's schema has a keyword outside ``_CONTAINER_KEYWORDS``.
        """
        kind = type(node)
        if kind is dict or kind is list:
            if isinstance(schema, dict) and any(k in _ACTING and k not in _CONTAINER_KEYWORDS for k in schema):
                return False
            rules = schema if isinstance(schema, dict) else {}
            if kind is dict:
                properties = rules.get("properties", {})
                extra = rules.get("additionalProperties", True)
                return all(
                    self._plan(value, properties[name] if name in properties else extra, checks, count)
                    for name, value in node.items()
                )
            items = rules.get("items", True)
            return all(self._plan(value, items, checks, count) for value in node)
        index = count[0]
        count[0] += 1
        if isinstance(schema, dict):
            acting = [k for k in schema if k in _ACTING]
            types = schema.get("type")
            if acting != ["type"] or types == "integer" or (isinstance(types, list) and "integer" in types):
                if acting:
                    checks.append((index, self._scalar_check(schema)))
        return True

    def _scalar_check(self, schema: dict[str, Any]) -> Callable[[Any], bool]:
        """A check of one scalar against its own schema, compiled once per schema object."""
        check = self._scalar_checks.get(id(schema))
        if check is None:
            own = {**schema, "$schema": self._schema["$schema"]} if "$schema" in self._schema else schema
            validate = fastjsonschema.compile(own, formats=self._formats, use_default=False)

            def check(value: Any) -> bool:
                try:
                    validate(value)
                except fastjsonschema.JsonSchemaValueException:
                    return False
                return True

            self._scalar_checks[id(schema)] = check
        return check


@lru_cache(maxsize=8)
def _compile(key: str, schema_json: bytes) -> Validator:
    return Validator(orjson.loads(schema_json))


def compile_validator(schema: Mapping[str, Any]) -> Validator:
    """Compile a resolved XDM schema, or return the validator already compiled for the same schema.

    :param schema: The schema as AEP returns it for ``application/vnd.adobe.xed-full+json; version=1``.
    :return: A validator; the same object for equal schemas (cached by content).
    """
    schema_json = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    return _compile(sha256(schema_json).hexdigest(), schema_json)


def check_record_size(body: bytes, limit: int = MAX_STREAMING_RECORD_BYTES) -> str | None:
    """Check the serialised size of one record.

    :param body: The entity serialised as JSON (UTF-8).
    :param limit: Largest accepted size in bytes. Default: AEP's streaming maximum, 1 MB.
    :return: ``None`` when the record fits, else why it does not.
    """
    if len(body) > limit:
        return f"record is {len(body)} bytes, over the {limit}-byte limit"
    return None
