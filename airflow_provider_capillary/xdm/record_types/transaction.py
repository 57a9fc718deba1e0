"""``transaction``: a bill with its line items → XDM ExperienceEvent (time-series).

Schema: XDM ExperienceEvent + Commerce Details + Loyalty Event Details + the tenant field group below.
Natural key ``{transaction_id}-{type}``; ``timestamp`` = ``billing_time`` in UTC.

Mapping (``reference/capillary.md`` §8.3; ``_t`` = ``_{tenantId}``; *decision* marks a choice of ours):

=====================  =========================================================================================
Field                  XDM target
=====================  =========================================================================================
transaction_id         ``_id`` key; ``_t.capillary.transactionId``
type                   ``eventType``: REGULAR / NOT_INTERESTED → ``commerce.purchases`` (+ ``commerce.purchases.value``
                       = 1); RETURN / NOT_INTERESTED_RETURN → ``commerce.returns`` (custom value) with
                       ``commerce.order.returns {returnID = bill_number, purchaseID = original_bill_number}``
                       (*decision*: ``productListItems[].returnItem`` is not filled, no extract column feeds it);
                       other values → ``invalid_enum``. ``_t.capillary.transactionType`` keeps the value. A bill
                       with no identity at all (typical NOT_INTERESTED) → ``no_identity``.
bill_number            ``commerce.order.purchaseID``; ``_t.capillary.billNumber``
customer_id, …         identityMap (``reference/capillary.md`` §8.1); ``_t.capillary.customerId`` / ``externalId``
billing_time           ``timestamp`` (UTC)
store_code             ``commerce.commerceScope.storeCode``; ``store_name`` / ``till_code`` → ``_t.capillary.*``
currency               ``commerce.order.currencyCode``, line items and payments; the run's default currency when
                       empty
gross_amount           ``_t.capillary.grossAmount``
discount / amount      ``commerce.order.discountAmount`` / ``commerce.order.priceTotal``
points_earned          ``loyalty.pointsGained[0] {value, loyaltyProgramId, transactionId}`` when > 0; the signed
                       value always in ``_t.capillary.pointsEarned`` (a RETURN reverses points: negative)
points_redeemed        ``loyalty.pointsRedemption[0]`` when > 0; signed in ``_t.capillary.pointsRedeemed``
program_id             ``loyaltyProgramId`` above; ``_t.capillary.programId``
delivery_status        ``_t.capillary.deliveryStatus``
line_items[]           ``productListItems[] {SKU = item_code, name = description, quantity = qty (whole number),
                       priceTotal = amount, discountAmount = discount, currencyCode}``; omitted when empty
payment_modes[]        ``commerce.order.payments[] {paymentType, paymentAmount = value, currencyCode}``;
                       paymentType: CASH → cash, CREDIT_CARD → credit_card, DEBIT_CARD → debit_card, GIFT_CARD →
                       gift_card, CHEQUE/CHECK → check, PAYPAL → paypal, anything else lower-cased (XDM allows
                       custom values; *decision*: ``CARD`` → ``card``, since credit vs debit is unknown)
coupons[]              ``loyalty.couponRedemption[] {id = code, series = series_id}``
original_bill_number   ``_t.capillary.originalBillNumber``
custom_fields          ``_t.capillary.customFields`` (string map; other JSON values as their JSON text, nulls dropped)
updated_at             ``_t.capillary.updatedAt`` (UTC)
=====================  =========================================================================================
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from airflow_provider_capillary.xdm.record_types.base import (
    EXPERIENCE_EVENT_CLASS,
    Behavior,
    BuildContext,
    Column,
    ColumnType,
    RecordType,
    SchemaDefinition,
    register,
    require,
)
from airflow_provider_capillary.xdm.values import (
    FieldError,
    parse_decimal,
    parse_integer,
    to_json_number,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from decimal import Decimal

_STR = {"type": "string"}
_NUM = {"type": "number"}

_TENANT_PROPERTIES: dict[str, Any] = {
    "capillary": {
        "title": "Capillary",
        "type": "object",
        "description": "Capillary transaction attributes with no standard XDM field.",
        "properties": {
            "customerId": {"title": "Capillary Customer ID", **_STR},
            "externalId": {"title": "External ID", **_STR},
            "transactionId": {"title": "Transaction ID", **_STR},
            "transactionType": {"title": "Transaction Type", **_STR},
            "billNumber": {"title": "Bill Number", **_STR},
            "originalBillNumber": {"title": "Original Bill Number", **_STR},
            "storeName": {"title": "Store Name", **_STR},
            "tillCode": {"title": "Till Code", **_STR},
            "grossAmount": {"title": "Gross Amount", **_NUM},
            "pointsEarned": {"title": "Points Earned", **_NUM},
            "pointsRedeemed": {"title": "Points Redeemed", **_NUM},
            "programId": {"title": "Program ID", **_STR},
            "deliveryStatus": {"title": "Delivery Status", **_STR},
            "customFields": {
                "title": "Custom Fields",
                "type": "object",
                "meta:xdmType": "map",
                "additionalProperties": {"type": "string"},
            },
            "updatedAt": {"title": "Updated At", "type": "string", "format": "date-time"},
        },
    }
}

_COMPACT = (",", ":")
_PURCHASE_TYPES = {"REGULAR", "NOT_INTERESTED"}
_PAYMENT_TYPES = {
    "CASH": "cash",
    "CREDIT_CARD": "credit_card",
    "DEBIT_CARD": "debit_card",
    "GIFT_CARD": "gift_card",
    "GIFTCARD": "gift_card",
    "CHEQUE": "check",
    "CHECK": "check",
    "PAYPAL": "paypal",
}

_CAP = "_tenant.capillary."

COLUMNS = (
    Column("transaction_id", ColumnType.ID, required=True, targets=(_CAP + "transactionId",)),
    Column(
        "type",
        ColumnType.STRING,
        required=True,
        targets=(_CAP + "transactionType",),
        enum={name: name for name in ("REGULAR", "RETURN", "NOT_INTERESTED", "NOT_INTERESTED_RETURN")},
    ),
    Column("billing_time", ColumnType.DATETIME, required=True),
    Column("bill_number", ColumnType.STRING, required=True, targets=("commerce.order.purchaseID", _CAP + "billNumber")),
    Column("customer_id", ColumnType.ID, targets=(_CAP + "customerId",)),
    Column("external_id", ColumnType.STRING, targets=(_CAP + "externalId",)),
    Column("mobile", ColumnType.PHONE),
    Column("email", ColumnType.EMAIL),
    Column("org_id", ColumnType.ID),
    Column("store_code", ColumnType.STRING, targets=("commerce.commerceScope.storeCode",)),
    Column("store_name", ColumnType.STRING, targets=(_CAP + "storeName",)),
    Column("till_code", ColumnType.STRING, targets=(_CAP + "tillCode",)),
    Column("currency", ColumnType.CURRENCY),
    Column("gross_amount", ColumnType.DECIMAL, required=True, targets=(_CAP + "grossAmount",)),
    Column("discount", ColumnType.DECIMAL, targets=("commerce.order.discountAmount",)),
    Column("amount", ColumnType.DECIMAL, required=True, targets=("commerce.order.priceTotal",)),
    Column("points_earned", ColumnType.DECIMAL, targets=(_CAP + "pointsEarned",)),
    Column("points_redeemed", ColumnType.DECIMAL, targets=(_CAP + "pointsRedeemed",)),
    Column("program_id", ColumnType.ID, targets=(_CAP + "programId",)),
    Column("delivery_status", ColumnType.STRING, targets=(_CAP + "deliveryStatus",)),
    Column("original_bill_number", ColumnType.STRING, targets=(_CAP + "originalBillNumber",)),
    Column("updated_at", ColumnType.DATETIME, targets=(_CAP + "updatedAt",)),
    Column("line_items", ColumnType.ARRAY),
    Column("payment_modes", ColumnType.ARRAY),
    Column("coupons", ColumnType.ARRAY),
    Column("custom_fields", ColumnType.OBJECT),
)


def _item_text(item: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = item.get(key)
    if value is None or value == "":
        if required:
            raise FieldError("missing_required_field", key, None, f"{key} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise FieldError("invalid_value", key, value, "expected text")
    return str(value)


def _items(column: str, items: list[Any], build: Callable[[Mapping[str, Any]], dict[str, Any]]) -> list[dict[str, Any]]:
    """Build each object of an array column; a failure names its place, e.g. ``line_items[2].amount``."""
    result = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise FieldError("invalid_value", None, item, "expected an object")
            result.append(build(item))
        except FieldError as err:
            where = f"{column}[{index}]" + (f".{err.field}" if err.field else "")
            raise FieldError(err.reason, where, err.value, err.detail) from None
    return result


def _line_item(item: Mapping[str, Any], currency: str) -> dict[str, Any]:
    product: dict[str, Any] = {"SKU": _item_text(item, "item_code", required=True)}
    name = _item_text(item, "description")
    if name is not None:
        product["name"] = name
    if item.get("qty") is not None:
        product["quantity"] = parse_integer(item["qty"], "qty")
    if item.get("amount") is not None:
        product["priceTotal"] = to_json_number(parse_decimal(item["amount"], "amount"))
    if item.get("discount") is not None:
        product["discountAmount"] = to_json_number(parse_decimal(item["discount"], "discount"))
    product["currencyCode"] = currency
    return product


def _payment(mode: Mapping[str, Any], currency: str) -> dict[str, Any]:
    kind = _item_text(mode, "mode", required=True) or ""
    payment: dict[str, Any] = {"paymentType": _PAYMENT_TYPES.get(kind.upper(), kind.lower()), "currencyCode": currency}
    if mode.get("value") is not None:
        payment["paymentAmount"] = to_json_number(parse_decimal(mode["value"], "value"))
    return payment


def _coupon(coupon: Mapping[str, Any]) -> dict[str, Any]:
    redemption: dict[str, Any] = {"id": _item_text(coupon, "code", required=True)}
    series = _item_text(coupon, "series_id")
    if series is not None:
        redemption["series"] = series
    return redemption


def _points_entry(points: Decimal, program_id: str | None, transaction_id: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"value": to_json_number(points), "transactionId": transaction_id}
    if program_id is not None:
        entry["loyaltyProgramId"] = program_id
    return entry


def _build(parsed: Mapping[str, Any], raw: Mapping[str, Any], entity: dict[str, Any], ctx: BuildContext) -> None:
    kind = require(parsed, "type")
    currency = parsed.get("currency") or ctx.default_currency
    commerce = entity.setdefault("commerce", {})
    order = commerce.setdefault("order", {})
    order["currencyCode"] = currency
    if kind in _PURCHASE_TYPES:
        entity["eventType"] = "commerce.purchases"
        commerce["purchases"] = {"value": 1}
    else:
        entity["eventType"] = "commerce.returns"
        returns: dict[str, Any] = {"returnID": parsed["bill_number"]}
        if parsed.get("original_bill_number") is not None:
            returns["purchaseID"] = parsed["original_bill_number"]
        order["returns"] = returns
    if parsed.get("line_items"):
        entity["productListItems"] = _items("line_items", parsed["line_items"], lambda item: _line_item(item, currency))
    if parsed.get("payment_modes"):
        order["payments"] = _items("payment_modes", parsed["payment_modes"], lambda mode: _payment(mode, currency))
    loyalty: dict[str, Any] = {}
    transaction_id = parsed["transaction_id"]
    program_id = parsed.get("program_id")
    earned = parsed.get("points_earned")
    if earned is not None and earned > 0:
        loyalty["pointsGained"] = [_points_entry(earned, program_id, transaction_id)]
    redeemed = parsed.get("points_redeemed")
    if redeemed is not None and redeemed > 0:
        loyalty["pointsRedemption"] = [_points_entry(redeemed, program_id, transaction_id)]
    if parsed.get("coupons"):
        loyalty["couponRedemption"] = _items("coupons", parsed["coupons"], _coupon)
    if loyalty:
        entity["loyalty"] = loyalty
    custom = parsed.get("custom_fields")
    if custom:
        entity.setdefault(ctx.tenant_key, {}).setdefault("capillary", {})["customFields"] = {
            str(key): value
            if isinstance(value, str)
            else json.dumps(value, ensure_ascii=False, separators=_COMPACT, default=str)
            for key, value in custom.items()
            if value is not None
        }


TRANSACTION = register(
    RecordType(
        name="transaction",
        behavior=Behavior.TIME_SERIES,
        columns=COLUMNS,
        natural_key=lambda parsed: f"{parsed['transaction_id']}-{parsed['type']}",
        build=_build,
        schema=SchemaDefinition(
            title="Capillary Loyalty Transactions",
            class_id=EXPERIENCE_EVENT_CLASS,
            field_group_ids=(
                "https://ns.adobe.com/xdm/context/experienceevent-commerce",
                "https://ns.adobe.com/xdm/context/experienceevent-loyalty-details",
            ),
            tenant_properties=_TENANT_PROPERTIES,
        ),
        timestamp_column="billing_time",
    )
)
