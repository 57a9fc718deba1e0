"""Resolve XDM classes and field groups into the schema the AEP Schema Registry serves.

The public XDM definitions (the ``adobe/xdm`` repository layout: ``components/classes``,
``components/fieldgroups``, ``components/datatypes``, ...) are JSON-LD flavoured JSON Schemas with
namespaced field names (``xdm:loyalty``, ``@id``, ``repo:createDate``) and ``$ref``/``allOf``
composition. AEP stores and serves them in *compatibility mode*: the ``xdm:`` prefix is removed,
``@id`` becomes ``_id`` and other namespaces move under an object named ``_{prefix}``
(``repo:createDate`` becomes ``_repo.createDate``), with ``meta:xdmField`` recording the original
name. :meth:`XDMDefinitions.resolve` produces that resolved, compatibility-mode form
(``Accept: application/vnd.adobe.xed-full+json; version=1``) as a plain draft-07 JSON Schema that
``fastjsonschema`` and ``jsonschema`` compile.

:meth:`XDMDefinitions.builtin` serves a small hand-written catalogue (a subset of the standard
classes and field groups, only the fields this provider maps) for machines without the official
definitions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import os

__all__ = [
    "EXPERIENCE_EVENT_CLASS_ID",
    "PROFILE_CLASS_ID",
    "XDMDefinitionError",
    "XDMDefinitions",
    "compatibility_name",
    "flatten_fields",
    "to_compatibility_mode",
]

PROFILE_CLASS_ID = "https://ns.adobe.com/xdm/context/profile"
EXPERIENCE_EVENT_CLASS_ID = "https://ns.adobe.com/xdm/context/experienceevent"

#: Namespace prefixes declared by the XDM JSON-LD context; only these are rewritten in compatibility mode.
_NAMESPACE_PREFIXES = frozenset(
    {
        "activitystreams", "adcloud", "bizible", "cc", "core", "dataDotCom", "dc", "dsp", "exif", "id3",
        "iptc4xmpExt", "marketo", "owl", "photoshop", "plus", "rdf", "rdfs", "repo", "schema", "search",
        "searchads", "skos", "stArtboard", "stDim", "stEvt", "stFnt", "stLayerGroup", "tiff", "xdm", "xml",
        "xmp", "xmpDM", "xmpMM", "xmpRights", "xmpTPg", "xsd",
    }
)  # fmt: skip
_PREFIXED_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9]*):(.+)$")

#: The JSON-LD ``@context`` base schema: describes document metadata, not data fields; AEP drops it.
_JSONLD_CONTEXT_ID = "https://ns.adobe.com/xdm/common/extensible"

#: JSON Schema keywords copied through (after their sub-schemas are resolved). Everything else that is
#: not ``meta:*`` (e.g. ``auditable``, ``examples``, stray ``Title``) is dropped so validators see draft-07.
_COPIED_KEYWORDS = frozenset(
    {
        "type", "title", "description", "enum", "const", "default", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems",
        "maxItems", "uniqueItems", "minProperties", "maxProperties",
    }
)  # fmt: skip
#: ``format`` values kept (the ones AEP documents for XDM strings); others (``url``, ``uri-reference``...) are dropped.
_KNOWN_FORMATS = frozenset({"date-time", "date", "email", "uri"})
#: ``meta:*`` keys that only carry documentation bookkeeping; dropped to keep resolved schemas small.
_DROPPED_META = frozenset(
    {
        "meta:license", "meta:titleId", "meta:descriptionId", "meta:titleI", "meta:tags", "meta:createdDate",
        "meta:extensible", "meta:abstract", "meta:intendedToExtend", "meta:extends", "meta:usereditable",
    }
)  # fmt: skip

_BUILTIN_CATALOGUE = "xdm_builtin_catalogue.json"
_SIMPLE_TYPES = {
    "string": {"type": "string"},
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "date-time": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "email": {"type": "string", "format": "email"},
    "uri": {"type": "string", "format": "uri"},
}


class XDMDefinitionError(LookupError):
    """An XDM resource id is unknown, or a ``$ref`` inside the definitions cannot be followed."""


def compatibility_name(name: str) -> tuple[str, ...]:
    """
    Return the compatibility-mode path of one XDM JSON-LD field name.

    ``xdm:points`` -> ``("points",)``; ``@id`` -> ``("_id",)``; ``repo:createDate`` ->
    ``("_repo", "createDate")``; names without a known namespace prefix (``_acmecorp``, map keys such
    as ``https://...`` or ``Email``) are unchanged.

    :param name: a property name as written in the public XDM definitions.
    """
    if name.startswith("@"):
        return ("_" + name[1:],)
    match = _PREFIXED_NAME.match(name)
    if match is None or match.group(1) not in _NAMESPACE_PREFIXES:
        return (name,)
    prefix, local = match.groups()
    if prefix == "xdm":
        return (local,)
    return ("_" + prefix, local)


def to_compatibility_mode(value: Any) -> Any:
    """
    Convert an XDM JSON-LD instance (e.g. Adobe's ``*.example.N.json``) to compatibility-mode names.

    Keys are rewritten with :func:`compatibility_name`; the keys of ``identityMap`` (namespace codes
    or URIs) are kept as they are.

    :param value: a JSON value (dicts, lists, scalars); not modified.
    """
    return _to_compatibility_mode(value, is_map=False)


def _to_compatibility_mode(value: Any, *, is_map: bool) -> Any:
    if isinstance(value, list):
        return [_to_compatibility_mode(item, is_map=False) for item in value]
    if not isinstance(value, dict):
        return value
    result: dict[str, Any] = {}
    for key, item in value.items():
        path = (key,) if is_map else compatibility_name(key)
        converted = _to_compatibility_mode(item, is_map=path == ("identityMap",))
        target = result
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = converted
    return result


def flatten_fields(schema: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """
    List the leaf and container fields of a resolved schema as ``path -> type label``.

    Paths use dots between properties, ``[]`` for array items and ``*`` for map values
    (``identityMap.*[].id``). Labels are the JSON type, with the format after a colon for formatted
    strings (``string:date-time``).

    :param schema: a resolved schema (or sub-schema) as returned by :meth:`XDMDefinitions.resolve`.
    :param prefix: path of ``schema`` itself; empty for the root.
    """
    fields: dict[str, str] = {}
    for name, sub in schema.get("properties", {}).items():
        fields.update(_flatten_node(sub, f"{prefix}.{name}" if prefix else name))
    return fields


def _flatten_node(node: Mapping[str, Any], path: str) -> dict[str, str]:
    label = str(node.get("type", "any"))
    if "format" in node:
        label += ":" + str(node["format"])
    fields = {path: label}
    if isinstance(node.get("items"), Mapping):
        fields.update(_flatten_node(node["items"], path + "[]"))
    if isinstance(node.get("additionalProperties"), Mapping):
        fields.update(_flatten_node(node["additionalProperties"], path + ".*"))
    fields.update(flatten_fields(node, path))
    return fields


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``extra`` into a copy of ``base``: properties merge deeply, required lists union, rest overrides."""
    merged = dict(base)
    for key, value in extra.items():
        if key == "properties" and "properties" in merged:
            properties = dict(merged["properties"])
            for name, sub in value.items():
                properties[name] = _merge(properties[name], sub) if name in properties else sub
            merged["properties"] = properties
        elif key == "required" and "required" in merged:
            merged["required"] = list(dict.fromkeys([*merged["required"], *value]))
        else:
            merged[key] = value
    return merged


class XDMDefinitions:
    """
    An index of XDM resources (classes, field groups, data types) by ``$id``, and their resolver.

    Build it with :meth:`from_directory` (the official definitions) or :meth:`builtin` (a small
    hand-written subset). Resources are the raw JSON documents; nothing is resolved until
    :meth:`resolve` is called.

    :param documents: the resources, keyed by their ``$id``.
    """

    def __init__(self, documents: Mapping[str, Mapping[str, Any]]) -> None:
        self._documents: dict[str, Mapping[str, Any]] = dict(documents)

    @classmethod
    def from_directory(cls, root: str | os.PathLike[str]) -> XDMDefinitions:
        """
        Index every ``*.schema.json`` under ``root`` (the ``adobe/xdm`` layout) by its ``$id``.

        :param root: the folder holding ``components/`` (or any folder of ``*.schema.json`` files).
        """
        root_path = Path(root)
        if not root_path.is_dir():
            raise XDMDefinitionError(f"XDM definitions folder {str(root_path)!r} does not exist")
        documents: dict[str, Mapping[str, Any]] = {}
        for path in sorted(root_path.rglob("*.schema.json")):
            try:
                document = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError as err:
                raise XDMDefinitionError(f"{path} is not valid JSON: {err}") from err
            if isinstance(document, dict) and isinstance(document.get("$id"), str):
                documents[document["$id"]] = document
        if not documents:
            raise XDMDefinitionError(f"no *.schema.json files with an $id under {str(root_path)!r}")
        return cls(documents)

    @classmethod
    def builtin(cls) -> XDMDefinitions:
        """
        Load the hand-written catalogue shipped in ``testing/data`` (a SUBSET of the standard XDM).

        It covers the XDM Individual Profile and XDM ExperienceEvent classes and the IdentityMap,
        Demographic Details, Personal Contact Details, Loyalty Details, Commerce Details and Loyalty
        Event Details field groups, but only the fields this provider maps, already in
        compatibility-mode names. Use :meth:`from_directory` for full fidelity.
        """
        data = resources.files("airflow_provider_capillary.testing").joinpath("data", _BUILTIN_CATALOGUE)
        catalogue = orjson.loads(data.read_bytes())
        documents = {entry["$id"]: _catalogue_document(entry) for entry in catalogue["resources"]}
        return cls(documents)

    def __contains__(self, resource_id: object) -> bool:
        return resource_id in self._documents

    def __iter__(self) -> Iterator[str]:
        return iter(self._documents)

    def __len__(self) -> int:
        return len(self._documents)

    def has(self, resource_id: str) -> bool:
        """
        Tell whether a resource is known.

        :param resource_id: the resource's ``$id``.
        """
        return resource_id in self._documents

    def document(self, resource_id: str) -> Mapping[str, Any]:
        """
        Return the raw definition of one resource, as written in the definitions.

        :param resource_id: the resource's ``$id``.
        """
        try:
            return self._documents[resource_id]
        except KeyError:
            raise XDMDefinitionError(f"unknown XDM resource {resource_id!r}") from None

    def title(self, resource_id: str) -> str:
        """
        Return the title of a resource.

        :param resource_id: the resource's ``$id``.
        """
        return str(self.document(resource_id).get("title", ""))

    def intended_to_extend(self, resource_id: str) -> list[str]:
        """
        Return the class ids a field group declares in ``meta:intendedToExtend`` (empty = any class).

        :param resource_id: the field group's ``$id``.
        """
        return list(self.document(resource_id).get("meta:intendedToExtend", []))

    def is_class(self, resource_id: str) -> bool:
        """
        Tell whether a resource is an XDM class (and not a field group or data type).

        Classes are recognised by the behaviour they extend (record or time-series data).

        :param resource_id: the resource's ``$id``.
        """
        document = self.document(resource_id)
        if document.get("meta:resourceType") == "classes":
            return True
        behaviours = {"https://ns.adobe.com/xdm/data/record", "https://ns.adobe.com/xdm/data/time-series"}
        return bool(behaviours.intersection(document.get("meta:extends", [])))

    def resolve(
        self,
        class_id: str,
        field_group_ids: Sequence[str],
        tenant_field_groups: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """
        Resolve a class plus field groups into one compatibility-mode JSON Schema.

        ``$ref``s are inlined, every ``allOf`` is merged into one ``properties`` tree, field names are
        converted to compatibility mode (``meta:xdmField`` keeps the original name) and keywords that
        are not JSON Schema (other than ``meta:*``) are dropped.

        :param class_id: ``$id`` of the class (e.g. ``https://ns.adobe.com/xdm/context/profile``).
        :param field_group_ids: ``$id``s of standard field groups, or of tenant field groups passed in
            ``tenant_field_groups``; unknown ids raise :class:`XDMDefinitionError`.
        :param tenant_field_groups: tenant field groups as stored by the Schema Registry (a
            ``POST /tenant/fieldgroups`` body with ``definitions``/``allOf``, plus its ``$id`` if it has
            one); each one is merged in, whether or not its id is in ``field_group_ids``.
        """
        overlay = dict(self._documents)
        tenant_ids: list[str] = []
        anonymous: list[Mapping[str, Any]] = []
        for group in tenant_field_groups:
            group_id = group.get("$id")
            if isinstance(group_id, str):
                overlay[group_id] = group
                tenant_ids.append(group_id)
            else:
                anonymous.append(group)
        resolver = _Resolver(overlay)
        resolved: dict[str, Any] = {"type": "object"}
        for resource_id in dict.fromkeys([class_id, *field_group_ids, *tenant_ids]):
            if resource_id not in overlay:
                raise XDMDefinitionError(f"unknown XDM resource {resource_id!r}")
            resolved = _merge(resolved, resolver.resource(resource_id))
        for group in anonymous:
            resolved = _merge(resolved, resolver.node(group, group, ()))
        top: dict[str, Any] = {
            "type": "object",
            "meta:class": class_id,
            "meta:extends": list(dict.fromkeys([class_id, *field_group_ids, *tenant_ids])),
            "properties": resolved.get("properties", {}),
        }
        if resolved.get("required"):
            top["required"] = resolved["required"]
        return top


class _Resolver:
    """One resolution pass: follows ``$ref``s through ``documents`` and converts to compatibility mode."""

    def __init__(self, documents: Mapping[str, Mapping[str, Any]]) -> None:
        self._documents = documents

    def resource(self, resource_id: str) -> dict[str, Any]:
        document = self._documents[resource_id]
        return self.node(document, document, (f"{resource_id}#",))

    def node(self, node: Mapping[str, Any], document: Mapping[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
        """Resolve one schema node found in ``document``; ``stack`` holds the refs being expanded."""
        result: dict[str, Any] = {}
        if "$ref" in node:
            result = self._reference(str(node["$ref"]), document, stack)
        for part in node.get("allOf", ()):
            result = _merge(result, self.node(part, document, stack))
        own: dict[str, Any] = {}
        for key, value in node.items():
            if key in _COPIED_KEYWORDS:
                own[key] = value
            elif key == "format":
                if value in _KNOWN_FORMATS:
                    own[key] = value
            elif key == "properties":
                own = _merge(own, self._properties(value, document, stack))
            elif key == "required":
                own = _merge(own, _required(value))
            elif key == "items":
                if isinstance(value, list):
                    own[key] = [self.node(item, document, stack) for item in value]
                else:
                    own[key] = self.node(value, document, stack)
            elif key == "additionalProperties":
                own[key] = self.node(value, document, stack) if isinstance(value, Mapping) else value
            elif key == "patternProperties":
                own[key] = {pattern: self.node(sub, document, stack) for pattern, sub in value.items()}
            elif key in ("oneOf", "anyOf"):
                own[key] = [self.node(sub, document, stack) for sub in value]
            elif key.startswith("meta:") and key not in _DROPPED_META:
                own[key] = value
        return _merge(result, own)

    def _reference(self, ref: str, document: Mapping[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
        uri, _, fragment = ref.partition("#")
        if uri == _JSONLD_CONTEXT_ID:
            return {}
        if uri:
            target_document = self._documents.get(uri)
            if target_document is None:
                raise XDMDefinitionError(f"$ref {ref!r} points to an unknown XDM resource")
        else:
            target_document = document
        key = f"{target_document.get('$id', id(target_document))}#{fragment}"
        if key in stack:
            # A recursive data type: stop expanding (AEP also cuts recursion at this point).
            return {"type": "object"}
        target: Any = target_document
        for token in filter(None, fragment.split("/")):
            token = token.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or token not in target:
                raise XDMDefinitionError(f"$ref {ref!r} does not resolve")
            target = target[token]
        return self.node(target, target_document, (*stack, key))

    def _properties(
        self, properties: Mapping[str, Any], document: Mapping[str, Any], stack: tuple[str, ...]
    ) -> dict[str, Any]:
        converted: dict[str, Any] = {}
        for name, sub in properties.items():
            resolved = self.node(sub, document, stack)
            path = compatibility_name(name)
            if path != (name,):
                resolved["meta:xdmField"] = name
            for part in reversed(path[1:]):
                resolved = {part: resolved}
                resolved = {"type": "object", "properties": resolved}
            head = path[0]
            converted[head] = _merge(converted[head], resolved) if head in converted else resolved
        return {"properties": converted}


def _required(names: Iterable[str]) -> dict[str, Any]:
    """Convert a ``required`` list; a name that moves under ``_{prefix}`` becomes required there."""
    result: dict[str, Any] = {}
    for name in names:
        path = compatibility_name(name)
        if len(path) == 1:
            result = _merge(result, {"required": [path[0]]})
        else:
            result = _merge(result, {"properties": {path[0]: {"required": [path[1]]}}})
    return result


def _catalogue_document(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Build a JSON Schema resource from one entry of the built-in catalogue (``path: type`` fields)."""
    root: dict[str, Any] = {"type": "object", "properties": {}}
    for path, spec in entry["fields"].items():
        _add_field(root, path.split("."), spec)
    for path in entry.get("required", []):
        *parents, name = path.split(".")
        node = root
        for segment in parents:
            node = node["properties"][segment.removesuffix("[]")]
            if segment.endswith("[]"):
                node = node["items"]
        node.setdefault("required", []).append(name.removesuffix("[]"))
    return {
        "$id": entry["$id"],
        "title": entry["title"],
        "meta:intendedToExtend": entry.get("intendedToExtend", []),
        "meta:extends": entry.get("extends", []),
        **root,
    }


def _add_field(node: dict[str, Any], segments: list[str], spec: str | Mapping[str, Any]) -> None:
    """Add the field at ``segments`` (``name``, ``name[]`` array items, ``*`` map values) under ``node``."""
    segment, rest = segments[0], segments[1:]
    name = segment.removesuffix("[]")
    if name == "*":
        node["meta:xdmType"] = "map"
        child = node.setdefault("additionalProperties", {"type": "object"})
    else:
        child = node.setdefault("properties", {}).setdefault(name, {"type": "object"})
    if segment.endswith("[]"):
        child["type"] = "array"
        child = child.setdefault("items", {"type": "object"})
    if not rest:
        child.clear()
        child.update(_SIMPLE_TYPES[spec] if isinstance(spec, str) else spec)
        return
    _add_field(child, rest, spec)
