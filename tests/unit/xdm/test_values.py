from __future__ import annotations

import json
import zoneinfo
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_capillary.xdm.values import (
    FieldError,
    epoch_us,
    parse_boolean,
    parse_date,
    parse_datetime,
    parse_decimal,
    parse_integer,
    to_json_number,
)

LONDON = zoneinfo.ZoneInfo("Europe/London")


class TestParseDatetime:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("2025-06-01T15:10:00+05:30", "2025-06-01T09:40:00Z"),
            ("2025-06-01T10:32:05+01:00", "2025-06-01T09:32:05Z"),
            ("2025-06-01T09:14:33Z", "2025-06-01T09:14:33Z"),
            ("2025-06-01T09:14:33z", "2025-06-01T09:14:33Z"),
            ("2025-06-01T00:05:00+01:00", "2025-05-31T23:05:00Z"),
            ("2025-06-01T20:00:00-0430", "2025-06-02T00:30:00Z"),
            ("2025-06-01 10:00:00+00:00", "2025-06-01T10:00:00Z"),
            ("2025-06-01T10:00Z", "2025-06-01T10:00:00Z"),
            ("2025-06-01T10:00:00.250+00:00", "2025-06-01T10:00:00.250000Z"),
            ("  2026-03-31T23:59:59+00:00 ", "2026-03-31T23:59:59Z"),
            ("2024-02-29T12:00:00+00:00", "2024-02-29T12:00:00Z"),
        ],
    )
    def test_normalises_to_utc(self, raw: str, expected: str) -> None:
        assert parse_datetime(raw, "t") == expected

    def test_epoch_microseconds_order_instants_not_wall_clocks(self) -> None:
        earlier = epoch_us(parse_datetime("2025-06-01T15:10:00+05:30", "t"))  # 09:40Z
        later = epoch_us(parse_datetime("2025-06-01T10:00:00+00:00", "t"))
        assert earlier < later
        assert later == int(datetime(2025, 6, 1, 10, tzinfo=UTC).timestamp()) * 1_000_000
        assert epoch_us(parse_datetime("2025-06-01T10:00:00.000001Z", "t")) == later + 1

    @pytest.mark.parametrize(
        "raw",
        [
            "2024-02-30T10:00:00+00:00",  # 30 February
            "2025-06-31 14:00:00",  # 31 June, and no offset
            "2025/06/01 25:61",
            "12/31/1990",
            "2025-06-01",
            "2025-06-01T24:00:00Z",
            "2025-06-01T10:00:00+25:00",
            "2025-06-01T10:00:00+0100x",
            "2025-06-01T10:00:00+05:75",  # offset minutes beyond 59 (Python's fromisoformat reads +06:15)
            "2025-06-01T10:00:00-0060",
            "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
            "9999-12-31T23:00:00-05:00",  # after year 9999 in UTC
            "yesterday",
            "",
        ],
    )
    def test_rejects_what_it_cannot_read_without_guessing(self, raw: str) -> None:
        with pytest.raises(FieldError) as err:
            parse_datetime(raw, "event_time")
        assert err.value.reason == "invalid_datetime"
        assert err.value.field == "event_time"
        assert err.value.value == raw

    @pytest.mark.parametrize("raw", [1748770800000, 1748770800.0, None, True])
    def test_rejects_non_strings_such_as_epoch_numbers(self, raw: object) -> None:
        with pytest.raises(FieldError, match="invalid_datetime"):
            parse_datetime(raw, "t")

    def test_naive_timestamp_is_rejected_by_default(self) -> None:
        with pytest.raises(FieldError, match="no UTC offset"):
            parse_datetime("2025-06-01T10:00:00", "t")

    def test_naive_timestamp_read_in_configured_zone(self) -> None:
        assert parse_datetime("2025-06-01T10:00:00", "t", LONDON) == "2025-06-01T09:00:00Z"
        assert parse_datetime("2025-01-01T10:00:00", "t", LONDON) == "2025-01-01T10:00:00Z"

    @pytest.mark.parametrize("raw", ["2025-03-30T01:30:00", "2025-10-26T01:30:00"])
    def test_dst_gap_and_overlap_are_not_guessed(self, raw: str) -> None:
        with pytest.raises(FieldError, match="ambiguous or non-existent"):
            parse_datetime(raw, "t", LONDON)

    def test_aware_datetime_objects_from_parquet(self) -> None:
        moment = datetime(2025, 6, 1, 15, 10, tzinfo=timezone(timedelta(hours=5, minutes=30)))
        assert parse_datetime(moment, "t") == "2025-06-01T09:40:00Z"
        with pytest.raises(FieldError):
            parse_datetime(datetime(2025, 6, 1, 15, 10), "t")

    @given(st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.timezones()))
    def test_round_trips_any_aware_instant(self, moment: datetime) -> None:
        if moment.utcoffset() is None or moment.utcoffset() != moment.replace(fold=1 - moment.fold).utcoffset():
            return
        offset = moment.utcoffset()
        assert offset is not None
        minutes = int(offset.total_seconds() // 60)
        if offset.total_seconds() % 60:
            return  # historic offsets with seconds cannot be written as ±HH:MM
        sign = "+" if minutes >= 0 else "-"
        text = moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        parsed = parse_datetime(text, "t")
        back = datetime.fromisoformat(parsed.replace("Z", "+00:00"))
        assert back == moment
        assert parsed.endswith("Z")


class TestParseDate:
    def test_accepts_iso_dates(self) -> None:
        assert parse_date("1988-04-12", "dob") == "1988-04-12"
        assert parse_date(date(1988, 4, 12), "dob") == "1988-04-12"

    @pytest.mark.parametrize(
        "raw", ["12/31/1990", "1990-02-30", "1990-1-5", "19900105", "1990-01-05T00:00:00Z", 19900105]
    )
    def test_rejects_other_forms(self, raw: object) -> None:
        with pytest.raises(FieldError) as err:
            parse_date(raw, "date_of_birth")
        assert (err.value.reason, err.value.field) == ("invalid_date", "date_of_birth")


class TestParseDecimal:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("8420.50", Decimal("8420.50")),
            ("19.98", Decimal("19.98")),
            (" -159 ", Decimal("-159")),
            ("333.333", Decimal("333.333")),
            (159, Decimal(159)),
            (19.99, Decimal("19.99")),
            (0.1, Decimal("0.1")),
            (Decimal("1.5"), Decimal("1.5")),
            (".5", Decimal("0.5")),
        ],
    )
    def test_parses_exactly(self, raw: object, expected: Decimal) -> None:
        assert parse_decimal(raw, "amount") == expected

    @pytest.mark.parametrize(
        "raw",
        ["1,234.50", "1e3", "NaN", "inf", "£5", "", True, float("nan"), [1], "12345678901234.56", 10**20, 1e300],
    )
    def test_rejects_anything_else(self, raw: object) -> None:
        with pytest.raises(FieldError) as err:
            parse_decimal(raw, "amount")
        assert err.value.reason == "invalid_number"

    @pytest.mark.parametrize("text", ["8420.50", "0.1", "1688.333", "99999999999.9999", "-0.07", "12345678901234.5"])
    def test_json_number_keeps_the_decimal_digits(self, text: str) -> None:
        number = to_json_number(parse_decimal(text, "x"))
        assert Decimal(json.dumps(number)) == Decimal(text)

    def test_integral_values_become_ints(self) -> None:
        assert to_json_number(Decimal("12850")) == 12850
        assert isinstance(to_json_number(Decimal("159.00")), int)

    @given(st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-(10**11), max_value=10**11))
    def test_any_money_value_survives_json(self, value: Decimal) -> None:
        number = to_json_number(parse_decimal(str(value), "x"))
        assert Decimal(json.dumps(number)) == value


class TestParseIntegerAndBoolean:
    @pytest.mark.parametrize(("raw", "expected"), [("2", 2), (2, 2), (2.0, 2), (" 3 ", 3), ("4.0", 4)])
    def test_integers(self, raw: object, expected: int) -> None:
        assert parse_integer(raw, "qty") == expected

    @pytest.mark.parametrize("raw", ["2.5", 2.5, "two", True, "", 2**31, str(-(2**31) - 1)])
    def test_bad_integers(self, raw: object) -> None:
        with pytest.raises(FieldError, match="invalid_integer"):
            parse_integer(raw, "qty")

    @pytest.mark.parametrize(
        ("raw", "expected"), [("true", True), ("FALSE", False), ("1", True), ("no", False), (True, True)]
    )
    def test_booleans(self, raw: object, expected: bool) -> None:
        assert parse_boolean(raw, "email_optin") is expected

    @pytest.mark.parametrize("raw", ["maybe", 1, ""])
    def test_bad_booleans(self, raw: object) -> None:
        with pytest.raises(FieldError, match="invalid_boolean"):
            parse_boolean(raw, "email_optin")


def _outcome(text: str) -> object:
    try:
        return parse_datetime(text, "t")
    except FieldError as err:
        return err.reason


_PARTS = st.tuples(
    st.sampled_from(["0001", "1999", "2024", "2025", "9999"]),
    st.sampled_from(["00", "01", "02", "06", "12", "13"]),
    st.sampled_from(["00", "01", "28", "29", "30", "31", "32"]),
    st.sampled_from(["T", " ", "t", "_"]),
    st.sampled_from(["00", "05", "12", "23", "24"]),
    st.sampled_from(["00", "07", "30", "59", "60"]),
    st.sampled_from(["00", "36", "59", "60"]),
    st.sampled_from(
        ["Z", "z", "+00:00", "-00:00", "+05:30", "-04:00", "+14:00", "-12:00", "+24:00", "+05:75", "+0100"]
    ),
)


@given(parts=_PARTS, noise=st.one_of(st.none(), st.tuples(st.integers(0, 24), st.sampled_from("x9 +-:٣T"))))
def test_the_datetime_fast_path_agrees_with_the_general_rules(
    parts: tuple[str, ...], noise: tuple[int, str] | None
) -> None:
    year, month, day, sep, hour, minute, second, offset = parts
    text = f"{year}-{month}-{day}{sep}{hour}:{minute}:{second}{offset}"
    if noise is not None and noise[0] < len(text):
        text = text[: noise[0]] + noise[1] + text[noise[0] + 1 :]
    fast = _outcome(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("airflow_provider_capillary.xdm.values.utc_text", lambda _text: None)
        assert _outcome(text) == fast
