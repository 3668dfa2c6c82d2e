"""Normalization and hashing: the reference vectors and properties that must always hold."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain import hashing
from shared.domain.identity import RawIdentity, build_user

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
HEX64 = set("0123456789abcdef")

# From ../shared/reference/tiktok-events-api.md: any correct implementation reproduces them.
REFERENCE_VECTORS = [
    (hashing.hash_email, " John.Doe@Example.COM ", "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"),
    (hashing.hash_phone, "+1 (213) 373-4253", "9f7ec22d72092cd3c0b58726ed9c2d91b92e51a3f29837508fb2948bb22dd2fd"),
    (hashing.hash_external_id, "user_123", "80fba0ae1c48e3978e43e4efc365e14e12ea0c830ba8ba5b9a2dafc7e3f2ab8b"),
    (hashing.hash_name, "John", "96d9632f363564cc3032521409cf22a852f2032eec099ed5967c0d000cec607a"),
    (hashing.hash_zip, "94107", "c884a209ebe08750a7d13db63bd02233b375bd79786cbe329ab11586cc35dead"),
]


@pytest.mark.parametrize(("function", "raw", "expected"), REFERENCE_VECTORS)
def test_reference_vectors(function, raw, expected):
    assert function(raw) == expected


def test_phone_normalizes_to_e164():
    assert hashing.normalize_phone("+1 (213) 373-4253") == "+12133734253"


@pytest.mark.parametrize(
    ("raw", "regions", "expected"),
    [
        ("020 7946 0958", ["GB"], "+442079460958"),
        ("(213) 373-4253", ["US"], "+12133734253"),
        ("0151 23456789", ["DE"], "+4915123456789"),
        ("0044 20 7946 0958", ["US"], "+442079460958"),
        ("06 12 34 56 78", [None, "FR"], "+33612345678"),
        # Country code 86 goes without the code (TikTok's help text).
        ("+86 138 0013 8000", [], "13800138000"),
        ("138 0013 8000", ["CN"], "13800138000"),
    ],
)
def test_phone_uses_the_shoppers_country(raw, regions, expected):
    assert hashing.normalize_phone(raw, regions) == expected


@pytest.mark.parametrize("raw", ["example string", "123", "", "   ", "+1 555", "not a phone"])
def test_unparseable_phones_are_dropped(raw):
    assert hashing.hash_phone(raw, ["US"]) is None


@pytest.mark.parametrize("raw", ["", "   ", None, "example string", "@", "a@b"])
def test_empty_or_invalid_emails_are_dropped(raw):
    assert hashing.hash_email(raw) is None


def test_names_drop_spaces_and_punctuation_but_keep_letters():
    assert hashing.normalize_name(" Mary-Jane O'Neil ") == "maryjaneoneil"
    assert hashing.normalize_name("José") == "josé"
    assert hashing.normalize_name("李 小龙") == "李小龙"
    assert hashing.normalize_name(" .- ") is None


def test_zip_plus_four_keeps_five_digits_and_other_zips_lose_spaces():
    assert hashing.normalize_zip("94107-1234") == "94107"
    assert hashing.normalize_zip("SW1A 1AA") == "sw1a1aa"


def test_locations_are_normalized_not_hashed():
    assert hashing.normalize_location("New York") == "newyork"
    assert hashing.normalize_location("N.Y.") == "ny"
    assert hashing.normalize_country(" US ") == "us"
    assert hashing.normalize_country("USA") is None


def test_external_id_keeps_case():
    assert hashing.hash_external_id("User_123") != hashing.hash_external_id("user_123")
    assert hashing.hash_external_id(820982911946154508) == hashlib.sha256(b"820982911946154508").hexdigest()


def test_already_hashed_values_pass_through_lowercased():
    digest = hashlib.sha256(b"x").hexdigest()
    for function in (hashing.hash_email, hashing.hash_phone, hashing.hash_name, hashing.hash_zip):
        assert function(digest.upper()) == digest


HASHERS = [hashing.hash_email, hashing.hash_phone, hashing.hash_external_id, hashing.hash_name, hashing.hash_zip]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(HASHERS), st.text(max_size=80))
def test_output_is_none_or_64_lowercase_hex_and_never_the_empty_hash(function, raw):
    result = function(raw)
    if result is not None:
        assert len(result) == 64 and set(result) <= HEX64
        assert result != EMPTY_SHA256


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(HASHERS), st.text(max_size=80))
def test_hashing_is_idempotent(function, raw):
    once = function(raw)
    if once is not None:
        assert function(once) == once


@settings(max_examples=100, deadline=None)
@given(st.emails())
def test_every_valid_email_hashes(email):
    assert hashing.hash_email(email) == hashlib.sha256(email.strip().lower().encode()).hexdigest()


def test_build_user_hashes_everything_personal_and_drops_empties():
    user = build_user(
        RawIdentity(
            emails=["A@Example.com", "a@example.com ", None, ""],
            phones=[("(213) 373-4253", "US"), ("", "US"), ("example string", None)],
            external_ids=[123, None],
            first_name="Ann",
            last_name="",
            zip_code="94107",
            city="San Francisco",
            state="CA",
            country="US",
            ttclid="E.C.P.abc",
            ip="203.0.113.9",
        )
    )
    assert user.email == [hashing.sha256_hex("a@example.com")]
    assert user.phone == [hashing.sha256_hex("+12133734253")]
    assert user.external_id == [hashing.sha256_hex("123")]
    assert user.first_name == hashing.sha256_hex("ann")
    assert user.last_name is None
    assert (user.city, user.state, user.country) == ("sanfrancisco", "ca", "us")
    assert user.ttclid == "E.C.P.abc" and user.ip == "203.0.113.9"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        (" 2001:DB8::1 ", "2001:db8::1"),
        ("example string", None),
        ("", None),
        ("unknown", None),
        ("0.0.0.0", None),
        ("::", None),
    ],
)
def test_build_user_keeps_only_real_ip_addresses(raw, expected):
    assert build_user(RawIdentity(ip=raw)).ip == expected
