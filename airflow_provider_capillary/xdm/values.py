"""Parsing rules for the scalar values of Capillary extract rows (timestamps, dates, numbers, flags).

Every parser takes the raw value exactly as the extract reader produced it (CSV: ``str`` or ``None``;
JSON Lines: any JSON value) and either returns the XDM-ready value or raises :class:`FieldError` with a
stable machine-readable reason code. Nothing is guessed:

===========  ========================================================================================
Value        Rule
===========  ========================================================================================
datetime     ISO-8601 / RFC 3339 ``YYYY-MM-DDTHH:MM[:SS[.f…]]`` then ``Z`` or ``±HH:MM`` (``±HHMM``
             accepted, offset minutes below 60; a space may replace ``T`` as RFC 3339 allows), or a
             time-zone-aware
             ``datetime`` (Parquet). Converted to UTC and written ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``.
             A timestamp without an offset is rejected unless a time zone for naive timestamps is
             configured (then it is read in that zone; a wall-clock time that a DST change makes
             ambiguous or non-existent is rejected). Day/month order is never guessed
             (``12/31/1990`` is rejected); impossible dates (30 February) are rejected. Epoch
             numbers are rejected (ms or s is ambiguous). Reason ``invalid_datetime``.
date         ``YYYY-MM-DD`` only (or a ``date`` object), a real calendar date. Reason ``invalid_date``.
decimal      JSON numbers, ``Decimal`` (Parquet), or strings ``[+-]digits[.digits]`` (surrounding
             blanks ignored). No thousands separators, exponents, NaN or infinity. Parsed to
             :class:`~decimal.Decimal` (JSON floats through their shortest ``repr``, so ``19.99`` stays
             ``19.99``). Reason ``invalid_number``.
integer      JSON integers, or strings of digits (``"2"``); ``2.0`` is accepted, ``2.5`` is not; the
             value must fit XDM's ``integer`` (32-bit). Reason ``invalid_integer``.
boolean      JSON booleans, or ``true/false/1/0/yes/no/y/n`` in any case. Reason ``invalid_boolean``.
===========  ========================================================================================

Money and points are kept as :class:`~decimal.Decimal` through every computation (e.g. the absolute value of
redeemed points). Only the final payload value becomes a JSON number, through :func:`to_json_number`: an
integral decimal becomes an ``int``; any other becomes the ``float`` whose shortest representation is the
same decimal text (exact for up to 15 significant digits, which is guaranteed by rejecting values with more
significant digits, or of 10**15 and more, with ``invalid_number``). So ``8420.50`` is sent as ``8420.5`` and never as
``8420.499999…``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

#: Largest number of significant digits a decimal may have to be sent as a JSON number without rounding.
MAX_SIGNIFICANT_DIGITS = 15

_DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:(Z|z)|[+-]\d{2}:?[0-5]\d)?")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_INT_RE = re.compile(r"[+-]?\d+")
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_FAST_INT_LIMIT = 10**MAX_SIGNIFICANT_DIGITS
_TRUE = frozenset({"true", "1", "yes", "y"})
_FALSE = frozenset({"false", "0", "no", "n"})


class FieldError(Exception):
    """A value of a row that cannot be mapped; becomes a dead letter.

    :param reason: Stable machine-readable reason code (``invalid_datetime``, ``invalid_date`` ...).
    :param field: The column (or ``column[index].key`` for nested values) that holds the value.
    :param value: The offending value as it was in the row.
    :param detail: A human-readable explanation.
    """

    def __init__(self, reason: str, field: str | None, value: Any, detail: str) -> None:
        super().__init__(f"{reason}: {field}={value!r}: {detail}")
        self.reason = reason
        self.field = field
        self.value = value
        self.detail = detail


def parse_datetime(value: Any, field: str, naive_tz: tzinfo | None = None) -> str:
    """Parse an ISO-8601 timestamp and normalise it to UTC.

    :param value: The raw value.
    :param field: Column name, for the error.
    :param naive_tz: Time zone in which to read a timestamp without offset; ``None`` (default) rejects it.
    :return: The UTC timestamp as XDM text, ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``.
    :raises FieldError: ``invalid_datetime``.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        fast = utc_text(text)
        if fast is not None:
            return fast
        match = _DATETIME_RE.fullmatch(text)
        if match is None:
            raise FieldError(
                "invalid_datetime", field, value, "not ISO-8601 (expected YYYY-MM-DDTHH:MM:SS±HH:MM or ...Z)"
            )
        if match.group(1) == "z":
            text = text[:-1] + "Z"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as err:
            raise FieldError("invalid_datetime", field, value, f"not a real date or time: {err}") from None
    else:
        raise FieldError("invalid_datetime", field, value, "expected an ISO-8601 string with a UTC offset")
    offset = parsed.utcoffset()
    if offset is None:
        if naive_tz is None:
            raise FieldError(
                "invalid_datetime", field, value, "no UTC offset, and no time zone for naive timestamps is configured"
            )
        parsed = _localize(parsed, naive_tz, field, value)
        offset = parsed.utcoffset()
    if offset:
        try:
            parsed = parsed.astimezone(UTC)
        except OverflowError:
            raise FieldError(
                "invalid_datetime", field, value, "outside the years 1-9999 once converted to UTC"
            ) from None
    elif parsed.tzinfo is not UTC:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.isoformat()[:-6] + "Z"


def utc_text(text: str) -> str | None:
    """The result of :func:`parse_datetime` for the common exact shapes, or ``None`` for any other text.

    :param text: A stripped timestamp.

    Handles ``YYYY-MM-DD[T ]HH:MM:SS`` followed by ``Z`` or ``±HH:MM`` (ASCII digits): the seconds are checked
    here, the rest (the local minute and its offset) is converted to UTC once per distinct minute and offset
    by ``datetime`` (:func:`_utc_minute`) and then looked up (measured 6.7 times faster than the general path on
    the benchmark's event times).
    """
    seconds = text[16:19]
    if seconds not in _SECONDS:
        return None
    key = text[:16] + text[19:]
    head = _UTC_MINUTES.get(key, _MISSING)
    if head is _MISSING:
        head = _utc_minute(key)
    return None if head is None else f"{head}{seconds}Z"


#: ``:00`` to ``:59``, the seconds :func:`utc_text` reads.
_SECONDS = frozenset(f":{second:02d}" for second in range(60))
_MINUTE_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ](?:[01]\d|2[0-3]):[0-5]\d(?:Z|[+-]\d{2}:[0-5]\d)", re.ASCII)
_MISSING = object()
#: :func:`_utc_minute`'s results by key; emptied when it reaches :data:`_UTC_MINUTES_LIMIT` entries.
_UTC_MINUTES: dict[str, str | None] = {}
_UTC_MINUTES_LIMIT = 16_384


def _utc_minute(key: str) -> str | None:
    """``YYYY-MM-DD?HH:MM`` and an offset (``Z`` or ``±HH:MM``) → that minute in UTC, ``YYYY-MM-DDTHH:MM``.

    ``None`` when the key has another shape, is not a real date and time or falls outside the years 1-9999
    in UTC: the general path of :func:`parse_datetime` then says why. Results are kept in
    :data:`_UTC_MINUTES`: a day's extract has at most 1,440 minutes per offset in use.
    """
    head: str | None = None
    if _MINUTE_RE.fullmatch(key):
        offset = "+00:00" if key[16:] == "Z" else key[16:]
        try:
            head = datetime.fromisoformat(f"{key[:16]}:00{offset}").astimezone(UTC).isoformat()[:16]
        except (ValueError, OverflowError):
            head = None
    if len(_UTC_MINUTES) >= _UTC_MINUTES_LIMIT:
        _UTC_MINUTES.clear()
    _UTC_MINUTES[key] = head
    return head


def _localize(naive: datetime, zone: tzinfo, field: str, raw: Any) -> datetime:
    """Attach a zone to a wall-clock time, refusing times a DST change makes ambiguous or non-existent."""
    early, late = naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1)
    if early.utcoffset() != late.utcoffset():
        raise FieldError("invalid_datetime", field, raw, f"ambiguous or non-existent local time in {zone}")
    return early


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def epoch_us(utc_text: str) -> int:
    """Microseconds since the epoch of a timestamp returned by :func:`parse_datetime` (orders versions).

    :param utc_text: ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``.
    """
    return (datetime.fromisoformat(utc_text) - _EPOCH) // _MICROSECOND


def parse_date(value: Any, field: str) -> str:
    """Parse a calendar date written ``YYYY-MM-DD``.

    :param value: The raw value.
    :param field: Column name, for the error.
    :return: The date as ``YYYY-MM-DD``.
    :raises FieldError: ``invalid_date``.
    """
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if not isinstance(value, str) or _DATE_RE.fullmatch(value.strip()) is None:
        raise FieldError("invalid_date", field, value, "expected YYYY-MM-DD")
    text = value.strip()
    try:
        date.fromisoformat(text)
    except ValueError as err:
        raise FieldError("invalid_date", field, value, f"not a real date: {err}") from None
    return text


def parse_decimal(value: Any, field: str) -> Decimal:
    """Parse a money or points amount.

    :param value: The raw value (JSON number or string).
    :param field: Column name, for the error.
    :return: The exact decimal.
    :raises FieldError: ``invalid_number``.
    """
    if isinstance(value, bool):
        raise FieldError("invalid_number", field, value, "a boolean is not a number")
    # Fast paths: at most 15 characters means at most 15 digits, so no further checks are needed.
    kind = type(value)
    if kind is str:
        text = value.strip()
        if len(text) <= MAX_SIGNIFICANT_DIGITS and _DECIMAL_RE.fullmatch(text):
            return Decimal(text)
    elif kind is float:
        text = repr(value)
        if len(text) <= MAX_SIGNIFICANT_DIGITS and "e" not in text and "n" not in text:
            return Decimal(text)
    elif kind is int and -_FAST_INT_LIMIT < value < _FAST_INT_LIMIT:
        return Decimal(value)
    if isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise FieldError("invalid_number", field, value, "not a finite number")
        result = value
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise FieldError("invalid_number", field, value, "not a finite number")
        result = Decimal(repr(value))
    elif isinstance(value, str) and _DECIMAL_RE.fullmatch(value.strip()):
        result = Decimal(value.strip())
    else:
        raise FieldError("invalid_number", field, value, "expected a decimal number such as 12.50")
    if result.adjusted() >= MAX_SIGNIFICANT_DIGITS or (
        len(result.as_tuple().digits) > MAX_SIGNIFICANT_DIGITS and result != result.to_integral_value()
    ):
        raise FieldError(
            "invalid_number",
            field,
            value,
            f"more than {MAX_SIGNIFICANT_DIGITS} significant digits cannot be sent without rounding",
        )
    return result


def parse_integer(value: Any, field: str) -> int:
    """Parse a whole number (quantities, tier numbers).

    :param value: The raw value (JSON number or string).
    :param field: Column name, for the error.
    :return: The integer.
    :raises FieldError: ``invalid_integer``.
    """
    number: int | None = None
    if isinstance(value, bool):
        raise FieldError("invalid_integer", field, value, "a boolean is not an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        number = int(value)  # the Capillary hook's API records carry Decimals
    elif isinstance(value, str):
        text = value.strip()
        if _INT_RE.fullmatch(text):
            number = int(text)
        elif _DECIMAL_RE.fullmatch(text):
            decimal = Decimal(text)
            if decimal == decimal.to_integral_value():
                number = int(decimal)
    if number is None:
        raise FieldError("invalid_integer", field, value, "expected a whole number")
    if not _INT_MIN <= number <= _INT_MAX:
        raise FieldError("invalid_integer", field, value, "outside the 32-bit range of an XDM integer")
    return number


def parse_boolean(value: Any, field: str) -> bool:
    """Parse a flag.

    :param value: The raw value (JSON boolean or string).
    :param field: Column name, for the error.
    :return: The boolean.
    :raises FieldError: ``invalid_boolean``.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise FieldError("invalid_boolean", field, value, "expected true or false")


def to_json_number(value: Decimal) -> int | float:
    """Turn a parsed decimal into the JSON number sent to AEP (see the module docstring for why this is exact).

    :param value: A decimal returned by :func:`parse_decimal` or computed from one.
    :return: An ``int`` when the decimal is integral, else the equal ``float``.
    """
    if value == value.to_integral_value():
        return int(value)
    return float(value)


MAX_KEPT_DEPTH = 200
"""Deepest nesting :func:`orjson_safe` keeps (orjson writes at most 255 levels; the enclosing lines add a few)."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**64 - 1


def orjson_safe(value: Any, depth: int = MAX_KEPT_DEPTH) -> Any:
    """
    A copy of a row's values that orjson can serialise, for where a row is written back (dead letters, spill files).

    Input rows can hold what orjson refuses to write: JSON nested deeper than 255 levels, or integers beyond 64
    bits. Containers deeper than ``depth`` become a short text saying so; such integers become their digits.

    :param value: the values (JSON types, possibly with other types ``default=`` handles).
    :param depth: container levels to keep; default :data:`MAX_KEPT_DEPTH`.
    """
    if isinstance(value, dict | list | tuple):
        if depth <= 0:
            return f"<nested more than {MAX_KEPT_DEPTH} levels deep: elided>"
        if isinstance(value, dict):
            return {key: orjson_safe(item, depth - 1) for key, item in value.items()}
        return [orjson_safe(item, depth - 1) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64_MIN <= value <= _INT64_MAX:
        return str(value)
    return value
