"""
Where extract files live: the partition path template, part-file listing and the completion marker.

Layout (``capillary.md`` §8.1, ``DESIGN.md``): under a root URL that Airflow's object storage understands
(``file://``, ``s3://``, ``gs://``, ...), one partition per record type and data interval::

    {record_type}/dt=YYYY-MM-DD/part-NNNN.{csv|jsonl|parquet}[.gz]      (+ optional _SUCCESS marker)

Path template
-------------
The template is a path relative to the root whose **last segment is a file-name glob** (``*``, ``?``,
``[...]``); the directories before it form the partition, where the completion marker is looked for.
Placeholders use single braces, so a template can sit in an Airflow templated field untouched by Jinja
(Jinja only reacts to ``{{``, ``{%`` and ``{#``), and Jinja expressions such as ``{{ ds }}`` may be used
as well: they are rendered by Airflow before this module sees the string. The placeholders, all taken
from the data interval start as given (Airflow passes it in UTC):

=================  =======================================================
``{record_type}``  the record type, e.g. ``customer``
``{ds}``           ``%Y-%m-%d`` (``2025-06-01``); ``{date}`` is the same
``{ds_nodash}``    ``%Y%m%d`` (``20250601``)
``{year}``         ``%Y``; likewise ``{month}`` (``%m``), ``{day}`` (``%d``),
                   ``{hour}`` (``%H``) and ``{minute}`` (``%M``)
``{start:FMT}``    any ``strftime`` format, e.g. ``{start:%Y/%m/%d/%H}``
=================  =======================================================

Examples: the default :data:`DEFAULT_PATH_TEMPLATE` ``{record_type}/dt={ds}/part-*``; hourly partitions
``{record_type}/dt={ds}/hr={hour}/part-*``; a whole day of hourly partitions
``{record_type}/dt={ds}/hr=*/part-*``; only gzip CSV ``{record_type}/dt={ds}/part-*.csv.gz``.
Literal braces are written ``{{`` and ``}}`` (``str.format`` rules). Any other placeholder, attribute or
index access, conversion (``!r``) or format spec (except on ``start``) is rejected with ``ValueError``.

Part files
----------
Files matching the glob are listed in a deterministic order: by URL, comparing digit runs as numbers
(``part-2`` before ``part-10``). Names starting with ``.`` or ``_`` (``_SUCCESS``, ``.part-0.crc``) are
never data files. The format comes from the name: ``.csv``, ``.jsonl`` (or ``.ndjson``) and ``.parquet``,
each optionally followed by ``.gz``; other matching files are still listed, and reading one reports an
``unsupported_format`` error rather than ignoring it.

Completion marker
-----------------
:func:`partition_ready` is what ``CapillaryExtractSensor`` calls: with a marker (default ``_SUCCESS``) the
partition is ready once the marker exists in the partition directory (when the directory part of the
template holds a glob, at least one marker must exist and every directory holding data files must have
one); a marker with no data files is a complete, empty partition. With ``marker=None`` the partition is
ready as soon as one data file is listed.
"""

from __future__ import annotations

import re
import string
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Literal

from airflow.sdk import ObjectStoragePath

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_PATH_TEMPLATE = "{record_type}/dt={ds}/part-*"
"""Default partition path template, relative to the extract root (see the module docstring)."""

DEFAULT_MARKER = "_SUCCESS"
"""Default completion marker file name in a partition directory."""

FileFormat = Literal["csv", "jsonl", "parquet"]

_FORMAT_SUFFIXES: Mapping[str, FileFormat] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
_STRFTIME_FIELDS: Mapping[str, str] = {
    "ds": "%Y-%m-%d",
    "date": "%Y-%m-%d",
    "ds_nodash": "%Y%m%d",
    "year": "%Y",
    "month": "%m",
    "day": "%d",
    "hour": "%H",
    "minute": "%M",
}
_GLOB_CHARS = re.compile(r"[*?\[]")
_DIGITS = re.compile(r"(\d+)")


def render_path_template(path_template: str, record_type: str, interval_start: datetime | date) -> str:
    """
    Fill a path template's placeholders for one record type and data interval.

    :param path_template: the template (see the module docstring), e.g. ``{record_type}/dt={ds}/part-*``.
    :param record_type: the record type, e.g. ``customer``.
    :param interval_start: the data interval start; a ``date`` means midnight of that day.
    :return: the rendered relative path glob, without a leading ``/``.
    :raises ValueError: if the template uses an unknown placeholder or a format the syntax does not allow.
    """
    start = interval_start if isinstance(interval_start, datetime) else datetime.combine(interval_start, time())
    parts: list[str] = []
    for literal, field, spec, conversion in string.Formatter().parse(path_template):
        parts.append(literal)
        if field is None:
            continue
        if conversion is not None or (spec and field != "start"):
            raise ValueError(
                f"path_template {path_template!r}: placeholder {{{field}}} takes no conversion or format "
                "spec (only {start:<strftime format>} does)"
            )
        if field == "record_type":
            parts.append(record_type)
        elif field in _STRFTIME_FIELDS:
            parts.append(start.strftime(_STRFTIME_FIELDS[field]))
        elif field == "start" and spec:
            parts.append(start.strftime(spec))
        else:
            allowed = ", ".join(f"{{{name}}}" for name in ["record_type", *_STRFTIME_FIELDS, "start:FMT"])
            raise ValueError(f"path_template {path_template!r}: unknown placeholder {{{field}}}; use {allowed}")
    rendered = "".join(parts).lstrip("/")
    if not rendered or rendered.endswith("/"):
        raise ValueError(f"path_template {path_template!r} must end with a file-name glob such as part-*")
    return rendered


def detect_format(path: str | ObjectStoragePath) -> tuple[FileFormat | None, bool]:
    """
    Tell a part file's format and compression from its name.

    :param path: the file's path or URL.
    :return: ``(format, gzipped)``; format is ``None`` when the name has no supported suffix.
    """
    name = str(path).rsplit("/", 1)[-1].lower()
    gzipped = name.endswith(".gz")
    if gzipped:
        name = name[:-3]
    dot = name.rfind(".")
    return (_FORMAT_SUFFIXES.get(name[dot:]) if dot >= 0 else None), gzipped


def _natural_key(path: ObjectStoragePath) -> list[str | int]:
    """Sort key that orders digit runs by value (``part-2`` before ``part-10``), then by text."""
    return [int(piece) if piece.isdigit() else piece for piece in _DIGITS.split(str(path))]


def _is_data_file(path: ObjectStoragePath) -> bool:
    return not path.name.startswith((".", "_")) and path.is_file()


def _as_root(root: str | ObjectStoragePath) -> ObjectStoragePath:
    return root if isinstance(root, ObjectStoragePath) else ObjectStoragePath(root)


def partition_files(
    root: str | ObjectStoragePath,
    record_type: str,
    interval_start: datetime | date,
    *,
    path_template: str = DEFAULT_PATH_TEMPLATE,
) -> list[ObjectStoragePath]:
    """
    List a partition's part files in deterministic (natural) order.

    :param root: the extract root URL or path, e.g. ``s3://bucket/capillary`` (the ``capillary_extract_uri``
        Variable).
    :param record_type: the record type, e.g. ``customer``.
    :param interval_start: the data interval start the partition belongs to.
    :param path_template: the partition path template; default :data:`DEFAULT_PATH_TEMPLATE`.
    :return: the matching files (hidden ``.``/``_`` names excluded); empty if the partition does not exist.
    """
    pattern = render_path_template(path_template, record_type, interval_start)
    files = [path for path in _as_root(root).glob(pattern) if _is_data_file(path)]
    return sorted(files, key=_natural_key)


def partition_ready(
    root: str | ObjectStoragePath,
    record_type: str,
    interval_start: datetime | date,
    *,
    path_template: str = DEFAULT_PATH_TEMPLATE,
    marker: str | None = DEFAULT_MARKER,
) -> bool:
    """
    Whether a partition is complete and may be read (what ``CapillaryExtractSensor`` pokes).

    :param root: the extract root URL or path.
    :param record_type: the record type, e.g. ``customer``.
    :param interval_start: the data interval start the partition belongs to.
    :param path_template: the partition path template; default :data:`DEFAULT_PATH_TEMPLATE`.
    :param marker: name of the completion marker in the partition directory, default ``_SUCCESS``;
        ``None`` means "ready when at least one data file exists".
    """
    base = _as_root(root)
    if marker is None:
        return bool(partition_files(base, record_type, interval_start, path_template=path_template))
    pattern = render_path_template(path_template, record_type, interval_start)
    directory = pattern.rsplit("/", 1)[0] if "/" in pattern else ""
    if not _GLOB_CHARS.search(directory):
        return (base / directory / marker if directory else base / marker).exists()
    marked = {str(path.parent) for path in base.glob(f"{directory}/{marker}")}
    if not marked:
        return False
    data_dirs = {str(path.parent) for path in base.glob(pattern) if _is_data_file(path)}
    return data_dirs <= marked
