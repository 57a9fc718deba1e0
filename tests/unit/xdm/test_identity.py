from __future__ import annotations

import pytest

from airflow_provider_capillary.xdm.identity import (
    IdentityNamespaces,
    build_identity_map,
    normalize_email,
    normalize_phone,
    sha256_hex,
)
from airflow_provider_capillary.xdm.values import FieldError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Liam.Walker@Example.COM ", "liam.walker@example.com"),
        ("olivia.bennett@example.com", "olivia.bennett@example.com"),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_email_is_trimmed_and_lower_cased(raw: str | None, expected: str | None) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["not-an-email", "a@b", "two@@example.com", "sp ace@example.com", 42])
def test_invalid_email(raw: object) -> None:
    with pytest.raises(FieldError) as err:
        normalize_email(raw)
    assert (err.value.reason, err.value.field, err.value.value) == ("invalid_email", "email", raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+44 7700 900107", "+447700900107"),
        ("447700900101", "+447700900101"),
        ("0044 (7700) 900-101", "+447700900101"),
        (447700900101, "+447700900101"),
        ("91.9740.000000", "+919740000000"),
        ("447700900123\u00a0", "+447700900123"),  # Unicode white space around it, as the other columns trim
        ("\u2003+44 7700 900123\n", "+447700900123"),
        ("", None),
        (None, None),
    ],
)
def test_phone_is_normalised_to_e164(raw: object, expected: str | None) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "07700 900107",
        "+44 7700",
        "+1234567890123456",
        "call me",
        True,
        4.4,
        "+\u0664\u0664\u0667\u0667\u0660\u0660\u0669\u0660\u0660",
    ],
)
def test_invalid_phone(raw: object) -> None:
    with pytest.raises(FieldError) as err:
        normalize_phone(raw, "mobile")
    assert err.value.reason == "invalid_phone"


def test_sha256_matches_the_published_test_vector() -> None:
    # FIPS 180-2 example: SHA-256("abc")
    assert sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_identity_map_marks_exactly_one_primary() -> None:
    identity_map = build_identity_map(
        "564100001", "a@example.com", "+447700900101", namespaces=IdentityNamespaces(), hashed=False, primary="customer"
    )
    assert identity_map == {
        "CAPLOYALTY": [{"id": "564100001", "authenticatedState": "authenticated", "primary": True}],
        "Email": [{"id": "a@example.com", "authenticatedState": "ambiguous", "primary": False}],
        "Phone": [{"id": "+447700900101", "authenticatedState": "ambiguous", "primary": False}],
    }


def test_hashed_identities_use_the_configured_hashed_namespaces() -> None:
    namespaces = IdentityNamespaces(hashed_email="EMAILHASH", hashed_phone="PHONEHASH", customer="CRMLOY")
    identity_map = build_identity_map(None, "h1", "h2", namespaces=namespaces, hashed=True, primary="Phone")
    assert identity_map == {
        "EMAILHASH": [{"id": "h1", "authenticatedState": "ambiguous", "primary": False}],
        "PHONEHASH": [{"id": "h2", "authenticatedState": "ambiguous", "primary": True}],
    }
