"""``loyalty_event``: points, tier, coupon and reward events → XDM ExperienceEvent (time-series).

Schema: XDM ExperienceEvent + Loyalty Event Details + the tenant field group below. Natural key
``event_id``; ``timestamp`` = ``event_time`` in UTC. Every column is also kept, full-fidelity, under
``_t.capillary.loyaltyEvent`` (``_t`` = ``_{tenantId}``); identities as in ``reference/capillary.md`` §8.1.

Event names (``reference/capillary.md`` §8.4). ``points`` is signed (credit positive, debit negative); a
value of the wrong sign is a dead letter, a missing value on a points event is
``missing_required_field:points``:

=================================  ======  ==================================  =========================================
Capillary ``event_name``           sign    ``eventType``                       standard XDM fields
=================================  ======  ==================================  =========================================
pointsIssued                       ≥ 0     ``loyalty.pointsEarned``            ``loyalty.pointsGained[0]``
promisedToCurrentPointsConversion  ≥ 0     ``loyalty.pointsConverted``         ``loyalty.pointsGained[0]``
redeemedPointsReversed             ≥ 0     ``loyalty.pointsRedemptionReversed``  tenant only
pointsRedeemed                     ≤ 0     ``loyalty.pointsRedeemed``          ``loyalty.pointsRedemption[0]`` (value =
                                                                               abs(points), transactionId =
                                                                               redemption_id, else bill_number)
issuedPointsReversed               ≤ 0     ``loyalty.pointsReversed``          tenant only
pointsExpired                      ≤ 0     ``loyalty.pointsExpired``           tenant only
pointsExpiryReminder               > 0     ``loyalty.pointsExpiryReminder``    tenant only
tierUpgraded / tierDowngraded /    —       ``loyalty.tierUpgraded`` /          tenant ``fromTier``, ``toTier``,
tierRenewed                                ``…tierDowngraded`` / ``…tierRenewed``  ``tierExpiryDate``
CouponIssue / rewardIssued         —       ``loyalty.rewardIssued``            tenant coupon fields
CouponRedeem                       —       ``loyalty.rewardRedeemed``          ``loyalty.couponRedemption[0]``
anything else                      —       dead letter ``unsupported_event_name`` (extend with
                                           ``MappingOptions.extra_event_types``)
=================================  ======  ==================================  =========================================

Reason codes of the sign rules: ``negative_points_for_credit_event``, ``positive_points_for_debit_event``,
``non_positive_points_for_expiry_reminder``. ``pointsGained[0].transactionId`` is ``transaction_id``, else
``bill_number`` (omitted when neither is present).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from airflow_provider_capillary.xdm.record_types.base import (
    EXPERIENCE_EVENT_CLASS,
    Behavior,
    BuildContext,
    ChunkRules,
    Column,
    ColumnType,
    RecordType,
    SchemaDefinition,
    register,
    require,
)
from airflow_provider_capillary.xdm.values import FieldError, to_json_number

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from decimal import Decimal


class PointsSign(enum.Enum):
    """The sign the ``points`` of an event must have."""

    CREDIT = "credit"
    DEBIT = "debit"
    SCHEDULED = "scheduled"
    NONE = "none"


class StandardField(enum.Enum):
    """Which standard Loyalty Event Details field an event fills."""

    POINTS_GAINED = "pointsGained"
    POINTS_REDEMPTION = "pointsRedemption"
    COUPON_REDEMPTION = "couponRedemption"
    NONE = "none"


#: Capillary event name → (eventType, sign rule, standard field).
EVENTS: Mapping[str, tuple[str, PointsSign, StandardField]] = {
    "pointsIssued": ("loyalty.pointsEarned", PointsSign.CREDIT, StandardField.POINTS_GAINED),
    "promisedToCurrentPointsConversion": (
        "loyalty.pointsConverted",
        PointsSign.CREDIT,
        StandardField.POINTS_GAINED,
    ),
    "redeemedPointsReversed": ("loyalty.pointsRedemptionReversed", PointsSign.CREDIT, StandardField.NONE),
    "pointsRedeemed": ("loyalty.pointsRedeemed", PointsSign.DEBIT, StandardField.POINTS_REDEMPTION),
    "issuedPointsReversed": ("loyalty.pointsReversed", PointsSign.DEBIT, StandardField.NONE),
    "pointsExpired": ("loyalty.pointsExpired", PointsSign.DEBIT, StandardField.NONE),
    "pointsExpiryReminder": ("loyalty.pointsExpiryReminder", PointsSign.SCHEDULED, StandardField.NONE),
    "tierUpgraded": ("loyalty.tierUpgraded", PointsSign.NONE, StandardField.NONE),
    "tierDowngraded": ("loyalty.tierDowngraded", PointsSign.NONE, StandardField.NONE),
    "tierRenewed": ("loyalty.tierRenewed", PointsSign.NONE, StandardField.NONE),
    "CouponIssue": ("loyalty.rewardIssued", PointsSign.NONE, StandardField.NONE),
    "rewardIssued": ("loyalty.rewardIssued", PointsSign.NONE, StandardField.NONE),
    "CouponRedeem": ("loyalty.rewardRedeemed", PointsSign.NONE, StandardField.COUPON_REDEMPTION),
}

_STR = {"type": "string"}
_NUM = {"type": "number"}
_DATETIME = {"type": "string", "format": "date-time"}

_TENANT_PROPERTIES: dict[str, Any] = {
    "capillary": {
        "title": "Capillary",
        "type": "object",
        "description": "Capillary loyalty event attributes with no standard XDM field.",
        "properties": {
            "customerId": {"title": "Capillary Customer ID", **_STR},
            "externalId": {"title": "External ID", **_STR},
            "loyaltyEvent": {
                "title": "Loyalty Event",
                "type": "object",
                "properties": {
                    "eventName": {"title": "Event Name", **_STR},
                    "programId": {"title": "Program ID", **_STR},
                    "points": {"title": "Points (signed)", **_NUM},
                    "balanceAfter": {"title": "Balance After", **_NUM},
                    "pointsExpiryDate": {"title": "Points Expiry Date", "type": "string", "format": "date"},
                    "transactionId": {"title": "Transaction ID", **_STR},
                    "billNumber": {"title": "Bill Number", **_STR},
                    "redemptionId": {"title": "Redemption ID", **_STR},
                    "fromTier": {"title": "From Tier", **_STR},
                    "toTier": {"title": "To Tier", **_STR},
                    "tierExpiryDate": {"title": "Tier Expiry Date", **_DATETIME},
                    "couponCode": {"title": "Coupon Code", **_STR},
                    "couponSeriesId": {"title": "Coupon Series ID", **_STR},
                    "discountType": {"title": "Discount Type", **_STR},
                    "discountValue": {"title": "Discount Value", **_NUM},
                    "storeCode": {"title": "Store Code", **_STR},
                    "refId": {"title": "Capillary Ref ID", **_STR},
                },
            },
        },
    }
}

_CAP = "_tenant.capillary."
_EV = "_tenant.capillary.loyaltyEvent."

COLUMNS = (
    Column("event_id", ColumnType.STRING, required=True),
    Column("event_name", ColumnType.STRING, required=True, targets=(_EV + "eventName",)),
    Column("event_time", ColumnType.DATETIME, required=True),
    Column("customer_id", ColumnType.ID, targets=(_CAP + "customerId",)),
    Column("external_id", ColumnType.STRING, targets=(_CAP + "externalId",)),
    Column("mobile", ColumnType.PHONE),
    Column("email", ColumnType.EMAIL),
    Column("program_id", ColumnType.ID, targets=(_EV + "programId",)),
    Column("points", ColumnType.DECIMAL, targets=(_EV + "points",)),
    Column("points_balance_after", ColumnType.DECIMAL, targets=(_EV + "balanceAfter",)),
    Column("points_expiry_date", ColumnType.DATE, targets=(_EV + "pointsExpiryDate",)),
    Column("transaction_id", ColumnType.ID, targets=(_EV + "transactionId",)),
    Column("bill_number", ColumnType.STRING, targets=(_EV + "billNumber",)),
    Column("redemption_id", ColumnType.STRING, targets=(_EV + "redemptionId",)),
    Column("from_tier", ColumnType.STRING, targets=(_EV + "fromTier",)),
    Column("to_tier", ColumnType.STRING, targets=(_EV + "toTier",)),
    Column("tier_expiry_date", ColumnType.DATETIME, targets=(_EV + "tierExpiryDate",)),
    Column("coupon_code", ColumnType.STRING, targets=(_EV + "couponCode",)),
    Column("coupon_series_id", ColumnType.ID, targets=(_EV + "couponSeriesId",)),
    Column("discount_type", ColumnType.STRING, targets=(_EV + "discountType",)),
    Column("discount_value", ColumnType.DECIMAL, targets=(_EV + "discountValue",)),
    Column("store_code", ColumnType.STRING, targets=(_EV + "storeCode",)),
    Column("ref_id", ColumnType.STRING, targets=(_EV + "refId",)),
)


#: Sign rules: what the points of an event must satisfy, and the dead letter's reason and detail when they do not.
_SIGN_RULES: Mapping[PointsSign, tuple[Callable[[Decimal], bool], str, str]] = {
    PointsSign.CREDIT: (
        lambda points: points >= 0,
        "negative_points_for_credit_event",
        "must credit zero or more points",
    ),
    PointsSign.DEBIT: (
        lambda points: points <= 0,
        "positive_points_for_debit_event",
        "must debit (zero or negative points)",
    ),
    PointsSign.SCHEDULED: (
        lambda points: points > 0,
        "non_positive_points_for_expiry_reminder",
        "carries the points scheduled to expire (more than zero)",
    ),
}

#: The column whose value is ``transactionId`` of a standard points entry (``bill_number`` when it is empty).
_REFERENCE_COLUMN = {StandardField.POINTS_GAINED: "transaction_id", StandardField.POINTS_REDEMPTION: "redemption_id"}


def _event_spec(name: str, ctx: BuildContext) -> tuple[str, PointsSign, StandardField] | None:
    """``(eventType, sign rule, standard field)`` of an event name, ``None`` for an unsupported one."""
    spec = EVENTS.get(name)
    if spec is None:
        extra = ctx.extra_event_types.get(name)
        return None if extra is None else (extra, PointsSign.NONE, StandardField.NONE)
    return spec


def _points_entry(points: Decimal, program: str | None, reference: str | None) -> dict[str, Any]:
    """A ``pointsGained`` / ``pointsRedemption`` item."""
    entry: dict[str, Any] = {"value": to_json_number(abs(points))}
    if program is not None:
        entry["loyaltyProgramId"] = program
    if reference is not None:
        entry["transactionId"] = reference
    return entry


def _coupon_redemption(code: str, series: str | None) -> dict[str, Any]:
    """A ``couponRedemption`` item."""
    redemption: dict[str, Any] = {"id": code}
    if series is not None:
        redemption["series"] = series
    return redemption


def _build(parsed: Mapping[str, Any], raw: Mapping[str, Any], entity: dict[str, Any], ctx: BuildContext) -> None:
    name = parsed["event_name"]
    spec = _event_spec(name, ctx)
    if spec is None:
        raise FieldError(
            "unsupported_event_name",
            "event_name",
            name,
            "not a mapped Capillary event (add it to MappingOptions.extra_event_types to send it)",
        )
    event_type, sign, standard = spec
    if sign is not PointsSign.NONE:
        holds, reason, detail = _SIGN_RULES[sign]
        if not holds(require(parsed, "points")):
            raise FieldError(reason, "points", raw.get("points"), f"{name} {detail}")
    entity["eventType"] = event_type
    if standard is StandardField.COUPON_REDEMPTION:
        redemption = _coupon_redemption(require(parsed, "coupon_code"), parsed.get("coupon_series_id"))
        entity["loyalty"] = {"couponRedemption": [redemption]}
    elif standard is not StandardField.NONE:
        reference = parsed.get(_REFERENCE_COLUMN[standard]) or parsed.get("bill_number")
        entity["loyalty"] = {standard.value: [_points_entry(parsed["points"], parsed.get("program_id"), reference)]}


def _natural_keys(columns: Mapping[str, list[Any]]) -> list[str]:
    return [str(event_id) for event_id in columns["event_id"]]


def _build_chunk(columns: Mapping[str, list[Any]], bad: bytearray, ctx: BuildContext) -> Mapping[str, list[Any]]:
    """Column-wise :func:`_build`: the ``eventType`` and ``loyalty`` members of each row, by event name.

    A row :func:`_build` would reject (unsupported name, points of the wrong sign or missing, a coupon event
    without ``coupon_code``) is flagged, for the row path to say why.
    """
    names = columns["event_name"]
    event_types: list[str | None] = [None] * len(names)
    loyalty: list[dict[str, Any] | None] = [None] * len(names)
    by_name: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        if not bad[index]:
            by_name.setdefault(name, []).append(index)
    points, programs, bills = columns["points"], columns["program_id"], columns["bill_number"]
    for name, rows in by_name.items():
        spec = _event_spec(name, ctx)
        if spec is None:
            for index in rows:
                bad[index] = 1
            continue
        event_type, sign, standard = spec
        if sign is not PointsSign.NONE:
            holds = _SIGN_RULES[sign][0]
            for index in [index for index in rows if points[index] is None or not holds(points[index])]:
                bad[index] = 1
            rows = [index for index in rows if not bad[index]]
        for index in rows:
            event_types[index] = event_type
        if standard is StandardField.COUPON_REDEMPTION:
            coupons, series = columns["coupon_code"], columns["coupon_series_id"]
            for index in rows:
                if coupons[index] is None:
                    bad[index] = 1
                    continue
                loyalty[index] = {"couponRedemption": [_coupon_redemption(coupons[index], series[index])]}
        elif standard is not StandardField.NONE:
            references = columns[_REFERENCE_COLUMN[standard]]
            for index in rows:
                entry = _points_entry(points[index], programs[index], references[index] or bills[index])
                loyalty[index] = {standard.value: [entry]}
    return {"eventType": event_types, "loyalty": loyalty}


LOYALTY_EVENT = register(
    RecordType(
        name="loyalty_event",
        behavior=Behavior.TIME_SERIES,
        columns=COLUMNS,
        natural_key=lambda parsed: str(parsed["event_id"]),
        build=_build,
        schema=SchemaDefinition(
            title="Capillary Loyalty Events",
            class_id=EXPERIENCE_EVENT_CLASS,
            field_group_ids=("https://ns.adobe.com/xdm/context/experienceevent-loyalty-details",),
            tenant_properties=_TENANT_PROPERTIES,
        ),
        timestamp_column="event_time",
        chunk_rules=ChunkRules(natural_keys=_natural_keys, build=_build_chunk, members=("eventType", "loyalty")),
    )
)
