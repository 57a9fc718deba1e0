"""
Chunked, streaming readers for Capillary extract files in any object store Airflow supports.

``layout`` knows where a partition's part files are (path template, listing, ``_SUCCESS`` marker),
``readers`` turns part files into :class:`ExtractChunk` objects, and ``records`` defines what those hold.
"""

from __future__ import annotations

from airflow_provider_capillary.extracts.layout import (
    DEFAULT_MARKER,
    DEFAULT_PATH_TEMPLATE,
    detect_format,
    partition_files,
    partition_ready,
    render_path_template,
)
from airflow_provider_capillary.extracts.readers import REQUIRED_COLUMNS, read_file, read_partition
from airflow_provider_capillary.extracts.records import (
    MAX_RAW_CHARS,
    ColumnarRows,
    ErrorCode,
    ExtractChunk,
    ExtractError,
    SourceRow,
)

__all__ = [
    "DEFAULT_MARKER",
    "DEFAULT_PATH_TEMPLATE",
    "MAX_RAW_CHARS",
    "REQUIRED_COLUMNS",
    "ColumnarRows",
    "ErrorCode",
    "ExtractChunk",
    "ExtractError",
    "SourceRow",
    "detect_format",
    "partition_files",
    "partition_ready",
    "read_file",
    "read_partition",
    "render_path_template",
]
