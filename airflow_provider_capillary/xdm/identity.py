"""Identities: e-mail and phone normalisation, optional SHA-256 hashing, and the XDM ``identityMap``.

Rules (``reference/capillary.md`` §8.1, ``reference/aep-api.md`` §3):

- ``customer_id`` (Capillary user id) → custom namespace ``CAPLOYALTY``, ``authenticatedState: authenticated``,
  primary.
- ``email`` → trimmed and lower-cased → ``Email`` (secondary, ``ambiguous``). It must look like
  ``local@domain.tld``; anything else is the dead letter ``invalid_email``.
- ``mobile`` → E.164: surrounding white space trimmed, blanks, dots, dashes and brackets removed, a leading
  ``+`` or ``00`` dropped, then ``+`` and 8 to 15 ASCII digits (Capillary stores digits with the country
  code). A number starting with a single ``0`` is a national number whose country cannot be known → dead
  letter ``invalid_phone``.
- With hashing on, the normalised e-mail and phone are replaced by the lowercase hex SHA-256 of their
  normalised text and go to the hashed namespaces; clear-text ``personalEmail``/``mobilePhone`` are then
  not sent at all.

Namespace codes (all configurable through :class:`IdentityNamespaces`, since the spelling of the hashed
codes in a given org could not be confirmed):

=================  ======================  =========================================================
Identity           Default code            Note
=================  ======================  =========================================================
Capillary id       ``CAPLOYALTY``          custom namespace created by the set-up DAG (Cross_device)
e-mail             ``Email``               standard
phone              ``Phone``               standard
hashed e-mail      ``Email_LC_SHA256``     standard "Emails (SHA256, lowercased)"
hashed phone       ``Phone_SHA256_E164``   standard "Phone (SHA256_E.164)"; check the code with
                                           ``GET /data/core/idnamespace/identities``
external_id        none (off)              optional brand namespace such as ``CRMID`` (secondary)
=================  ======================  =========================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from airflow_provider_capillary.xdm.values import FieldError

#: What :func:`normalize_email` accepts (after trimming and lower-casing).
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE_PUNCTUATION = str.maketrans("", "", " \t.-()/")
_DIGITS_RE = re.compile(r"[0-9]{8,15}")


@dataclass(frozen=True)
class IdentityNamespaces:
    """Identity namespace codes used in ``identityMap``.

    :param customer: Namespace of the Capillary customer id. Default ``CAPLOYALTY``.
    :param email: Namespace of clear-text e-mails. Default ``Email``.
    :param phone: Namespace of clear-text E.164 phones. Default ``Phone``.
    :param hashed_email: Namespace of SHA-256 hashed lower-cased e-mails. Default ``Email_LC_SHA256``.
    :param hashed_phone: Namespace of SHA-256 hashed E.164 phones. Default ``Phone_SHA256_E164``.
    :param external: Namespace of the brand's own id (``external_id``), e.g. ``CRMID``. Default ``None``:
        ``external_id`` is kept as a tenant field only.
    """

    customer: str = "CAPLOYALTY"
    email: str = "Email"
    phone: str = "Phone"
    hashed_email: str = "Email_LC_SHA256"
    hashed_phone: str = "Phone_SHA256_E164"
    external: str | None = None


def normalize_email(value: Any, field: str = "email") -> str | None:
    """Trim and lower-case an e-mail address.

    :param value: Raw value; ``None`` or blank means "no e-mail".
    :param field: Column name, for the error.
    :return: The normalised address, or ``None``.
    :raises FieldError: ``invalid_email``.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise FieldError("invalid_email", field, value, "expected a string")
    text = value.strip().lower()
    if not text:
        return None
    if EMAIL_PATTERN.fullmatch(text) is None:
        raise FieldError("invalid_email", field, value, "not an e-mail address")
    return text


def normalize_phone(value: Any, field: str = "mobile") -> str | None:
    """Normalise a phone number to E.164.

    :param value: Raw value (string, or a JSON integer of digits); ``None`` or blank means "no phone".
    :param field: Column name, for the error.
    :return: ``+`` followed by 8-15 digits, or ``None``.
    :raises FieldError: ``invalid_phone``.
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip().translate(_PHONE_PUNCTUATION)
    else:
        raise FieldError("invalid_phone", field, value, "expected a string of digits")
    if not text:
        return None
    if text.startswith("+"):
        text = text[1:]
    elif text.startswith("00"):
        text = text[2:]
    elif text.startswith("0"):
        raise FieldError("invalid_phone", field, value, "national number without country code")
    if _DIGITS_RE.fullmatch(text) is None:
        raise FieldError("invalid_phone", field, value, "expected 8 to 15 digits including the country code")
    return "+" + text


def sha256_hex(text: str) -> str:
    """Return the lowercase hex SHA-256 of a normalised identity value.

    :param text: Normalised e-mail or E.164 phone.
    """
    return sha256(text.encode()).hexdigest()


def build_identity_map(
    customer_id: str | None,
    email: str | None,
    phone: str | None,
    *,
    namespaces: IdentityNamespaces,
    hashed: bool,
    primary: str | None,
    external_id: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Build the compatibility-mode ``identityMap``.

    :param customer_id: Capillary customer id, or ``None``.
    :param email: Normalised (or already hashed) e-mail, or ``None``.
    :param phone: Normalised (or already hashed) E.164 phone, or ``None``.
    :param namespaces: Namespace codes.
    :param hashed: Whether e-mail and phone are hashes (selects the hashed namespaces).
    :param primary: Which identity is primary: ``"customer"``, ``"Email"``, ``"Phone"`` or ``None``.
    :param external_id: The brand's own id; added (``authenticated``, never primary) when
        ``namespaces.external`` is set. Default ``None``.
    :return: ``{namespace: [{"id", "authenticatedState", "primary"}]}``.
    """
    result: dict[str, list[dict[str, Any]]] = {}
    if customer_id is not None:
        result[namespaces.customer] = [
            {"id": customer_id, "authenticatedState": "authenticated", "primary": primary == "customer"}
        ]
    if email is not None:
        code = namespaces.hashed_email if hashed else namespaces.email
        result[code] = [{"id": email, "authenticatedState": "ambiguous", "primary": primary == "Email"}]
    if phone is not None:
        code = namespaces.hashed_phone if hashed else namespaces.phone
        result[code] = [{"id": phone, "authenticatedState": "ambiguous", "primary": primary == "Phone"}]
    if external_id is not None and namespaces.external is not None:
        result[namespaces.external] = [{"id": external_id, "authenticatedState": "authenticated", "primary": False}]
    return result
