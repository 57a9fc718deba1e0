"""``customer``: a loyalty member's profile snapshot → XDM Individual Profile (record).

Schema: XDM Individual Profile + Demographic Details + Personal Contact Details + IdentityMap + Loyalty
Details + the tenant field group below. Natural key ``customer_id``; the latest ``updated_at`` wins
(``_id`` = one id per version, see :mod:`airflow_provider_capillary.xdm.ids`). ``customer_id`` is required
here (it is the profile's key), so the fallback primary identity never applies to this type: a row without
it is the dead letter ``missing_primary_key``.

Mapping (``reference/capillary.md`` §8.2; ``_t`` = ``_{tenantId}``). Decisions that differ from or add to
the proposal are marked *decision*:

=====================  ==========================================================================================
Column                 XDM target
=====================  ==========================================================================================
customer_id            identityMap.CAPLOYALTY (primary); ``loyalty.loyaltyID[0]``; ``_t.capillary.customerId``
                       (the identity descriptor's field)
external_id            ``_t.capillary.externalId``
mobile                 identityMap.Phone; ``mobilePhone.number`` (E.164) — *decision*: not sent in clear text
                       when identities are hashed
email                  identityMap.Email; ``personalEmail.address`` — same rule as ``mobile``
first_name/last_name   ``person.name.firstName`` / ``lastName``
gender                 ``person.gender``: M/MALE → male, F/FEMALE → female, O/OTHER → non_specific (*decision*:
                       XDM's value for "other"), U/UNKNOWN → not_specified; blank → omitted
date_of_birth          ``person.birthDate``
loyalty_type           ``loyalty.status``: LOYALTY → active, NON_LOYALTY → non_loyalty
source                 ``_t.capillary.source``
registered_on          ``loyalty.joinDate`` (UTC)
registered_store_code  ``_t.capillary.registeredStoreCode``
program_id             ``_t.capillary.programId`` (string)
program_name           ``loyalty.program``
tier / next_tier       ``loyalty.tier`` / ``loyalty.nextTier`` (names as Capillary spells them)
tier_number            ``_t.capillary.tierNumber``
tier_expiry_date       ``loyalty.tierExpiryDate`` (UTC)
points_balance …       ``loyalty.points``, ``lifetimePoints``, ``pointsRedeemed``, ``expiredPoints``,
                       ``lifetimePurchases``
currency               ``_t.capillary.currency``
card_number            ``loyalty.cardsDetails[0].number``
email_optin/sms_optin  ``_t.capillary.emailOptIn`` / ``smsOptIn`` — *decision*: the Consents field group is not
                       part of the schema, so the flags are kept as tenant booleans
updated_at             ``_t.capillary.updatedAt`` (UTC; also the version order)
=====================  ==========================================================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_capillary.xdm.record_types.base import (
    PROFILE_CLASS,
    Behavior,
    BuildContext,
    Column,
    ColumnType,
    RecordType,
    SchemaDefinition,
    register,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

_STR = {"type": "string"}
_NUM = {"type": "number"}
_DATETIME = {"type": "string", "format": "date-time"}

_TENANT_PROPERTIES: dict[str, Any] = {
    "capillary": {
        "title": "Capillary",
        "type": "object",
        "description": "Capillary loyalty attributes with no standard XDM field.",
        "properties": {
            "customerId": {"title": "Capillary Customer ID", **_STR},
            "externalId": {"title": "External ID", **_STR},
            "source": {"title": "Source", **_STR},
            "registeredStoreCode": {"title": "Registered Store Code", **_STR},
            "programId": {"title": "Program ID", **_STR},
            "tierNumber": {"title": "Tier Number", "type": "integer"},
            "currency": {"title": "Currency", "type": "string", "pattern": "^[A-Z]{3}$"},
            "emailOptIn": {"title": "E-mail Opt-in", "type": "boolean"},
            "smsOptIn": {"title": "SMS Opt-in", "type": "boolean"},
            "updatedAt": {"title": "Updated At", **_DATETIME},
        },
    }
}

_GENDERS = {
    "M": "male",
    "MALE": "male",
    "F": "female",
    "FEMALE": "female",
    "O": "non_specific",
    "OTHER": "non_specific",
    "U": "not_specified",
    "UNKNOWN": "not_specified",
}

_CAP = "_tenant.capillary."

COLUMNS = (
    Column("customer_id", ColumnType.ID, targets=(_CAP + "customerId",)),
    Column("updated_at", ColumnType.DATETIME, required=True, targets=(_CAP + "updatedAt",)),
    Column("registered_on", ColumnType.DATETIME, required=True, targets=("loyalty.joinDate",)),
    Column(
        "loyalty_type",
        ColumnType.STRING,
        required=True,
        targets=("loyalty.status",),
        enum={"LOYALTY": "active", "NON_LOYALTY": "non_loyalty"},
    ),
    Column("external_id", ColumnType.STRING, targets=(_CAP + "externalId",)),
    Column("mobile", ColumnType.PHONE),
    Column("email", ColumnType.EMAIL),
    Column("first_name", ColumnType.STRING, targets=("person.name.firstName",)),
    Column("last_name", ColumnType.STRING, targets=("person.name.lastName",)),
    Column("gender", ColumnType.STRING, targets=("person.gender",), enum=_GENDERS),
    Column("date_of_birth", ColumnType.DATE, targets=("person.birthDate",)),
    Column("source", ColumnType.STRING, targets=(_CAP + "source",)),
    Column("registered_store_code", ColumnType.STRING, targets=(_CAP + "registeredStoreCode",)),
    Column("program_id", ColumnType.ID, targets=(_CAP + "programId",)),
    Column("program_name", ColumnType.STRING, targets=("loyalty.program",)),
    Column("tier", ColumnType.STRING, targets=("loyalty.tier",)),
    Column("tier_number", ColumnType.INTEGER, targets=(_CAP + "tierNumber",)),
    Column("next_tier", ColumnType.STRING, targets=("loyalty.nextTier",)),
    Column("tier_expiry_date", ColumnType.DATETIME, targets=("loyalty.tierExpiryDate",)),
    Column("points_balance", ColumnType.DECIMAL, targets=("loyalty.points",)),
    Column("lifetime_points", ColumnType.DECIMAL, targets=("loyalty.lifetimePoints",)),
    Column("points_redeemed", ColumnType.DECIMAL, targets=("loyalty.pointsRedeemed",)),
    Column("points_expired", ColumnType.DECIMAL, targets=("loyalty.expiredPoints",)),
    Column("lifetime_purchases", ColumnType.DECIMAL, targets=("loyalty.lifetimePurchases",)),
    Column("currency", ColumnType.CURRENCY, targets=(_CAP + "currency",)),
    Column("card_number", ColumnType.STRING),
    Column("email_optin", ColumnType.BOOLEAN, targets=(_CAP + "emailOptIn",)),
    Column("sms_optin", ColumnType.BOOLEAN, targets=(_CAP + "smsOptIn",)),
)


def _build(parsed: Mapping[str, Any], raw: Mapping[str, Any], entity: dict[str, Any], ctx: BuildContext) -> None:
    loyalty = entity.setdefault("loyalty", {})
    loyalty["loyaltyID"] = [parsed["customer_id"]]
    card = parsed.get("card_number")
    if card is not None:
        loyalty["cardsDetails"] = [{"number": card}]
    if not ctx.hashed_identities:
        email = parsed.get("email")
        if email is not None:
            entity["personalEmail"] = {"address": email, "primary": True}
        phone = parsed.get("mobile")
        if phone is not None:
            entity["mobilePhone"] = {"number": phone}


CUSTOMER = register(
    RecordType(
        name="customer",
        behavior=Behavior.RECORD,
        columns=COLUMNS,
        natural_key=lambda parsed: str(parsed["customer_id"]),
        build=_build,
        schema=SchemaDefinition(
            title="Capillary Loyalty Profiles",
            class_id=PROFILE_CLASS,
            field_group_ids=(
                "https://ns.adobe.com/xdm/context/profile-person-details",
                "https://ns.adobe.com/xdm/context/profile-personal-details",
                "https://ns.adobe.com/xdm/context/identitymap",
                "https://ns.adobe.com/xdm/mixins/profile/profile-loyalty-details",
            ),
            tenant_properties=_TENANT_PROPERTIES,
            primary_identity_path="/_tenant/capillary/customerId",
        ),
        version_column="updated_at",
        identity_fallback=False,
    )
)
