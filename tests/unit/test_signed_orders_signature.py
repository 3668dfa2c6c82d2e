"""The signed-orders signature (Stripe's scheme): pure, signed here exactly as production verifies."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from shared.sources.signed_orders.signature import SignatureError, StaleSignature, parse_header, sign, verify

BODY = b'{"order_id":"A-1001","paid_at":1767225600}'
SECRET, OLD_SECRET = "current-secret", "previous-secret"
NOW = 1_767_225_600
TOLERANCE = 300


def check(header: str | None, body: bytes = BODY, secrets: tuple[str, ...] = (SECRET,), now: float = NOW):
    return verify(body, header, secrets, tolerance=TOLERANCE, now=now)


def test_a_valid_signature_passes_and_says_when_it_was_made():
    verified = check(sign(BODY, SECRET, NOW - 10))
    assert verified.timestamp == NOW - 10


def test_the_signature_is_the_documented_hmac_of_t_dot_body():
    """What docs/signed-orders.md tells a backend to compute, written out by hand."""
    digest = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET, NOW) == f"t={NOW},v1={digest}"
    assert check(f"t={NOW},v1={digest}").timestamp == NOW
    assert check(f"t={NOW}, v1={digest.upper()}").timestamp == NOW  # spaces and upper-case hex are tolerated


def test_during_a_rotation_either_secret_and_either_signature_passes():
    old = sign(BODY, OLD_SECRET, NOW).split(",")[1]
    new = sign(BODY, SECRET, NOW).split(",")[1]
    # The backend signs with both; we hold only the new secret, or only the old one, or both.
    for secrets in ((SECRET,), (OLD_SECRET,), (SECRET, OLD_SECRET)):
        assert check(f"t={NOW},{old},{new}", secrets=secrets).timestamp == NOW
    # The backend signs with the new one only; we still hold both.
    assert check(f"t={NOW},{new}", secrets=(OLD_SECRET, SECRET)).timestamp == NOW


def test_every_valid_signature_of_one_signing_has_the_same_replay_key():
    """A replay that keeps only one of a rotation's signatures is still the same signing."""
    both = sign(BODY, SECRET, NOW) + "," + sign(BODY, OLD_SECRET, NOW).split(",")[1]
    keys = {check(header, secrets=(SECRET, OLD_SECRET)).payload_digest
            for header in (both, sign(BODY, SECRET, NOW), sign(BODY, OLD_SECRET, NOW))}  # fmt: skip
    assert len(keys) == 1
    assert check(sign(BODY, SECRET, NOW + 1)).payload_digest not in keys  # a fresh signing is a new one


@pytest.mark.parametrize("offset", [TOLERANCE + 1, 3600, 10**6])
def test_a_stale_signature_is_refused_with_what_to_do(offset):
    with pytest.raises(StaleSignature) as raised:
        check(sign(BODY, SECRET, NOW - offset))
    assert "timestamp outside the tolerance" in raised.value.reason
    assert "sign each attempt anew" in raised.value.reason and "clock" in raised.value.reason


@pytest.mark.parametrize("offset", [TOLERANCE + 1, 86_400])
def test_a_signature_from_the_future_is_refused_too(offset):
    with pytest.raises(StaleSignature):
        check(sign(BODY, SECRET, NOW + offset))


def test_the_tolerance_is_inclusive_both_ways():
    assert check(sign(BODY, SECRET, NOW - TOLERANCE)).timestamp == NOW - TOLERANCE
    assert check(sign(BODY, SECRET, NOW + TOLERANCE)).timestamp == NOW + TOLERANCE


def test_a_wrong_secret_is_refused():
    with pytest.raises(SignatureError) as raised:
        check(sign(BODY, "someone-elses-secret", NOW))
    assert not isinstance(raised.value, StaleSignature)
    assert "matches" in raised.value.reason


def test_a_stale_signature_under_a_wrong_secret_says_only_that_it_does_not_match():
    with pytest.raises(SignatureError) as raised:
        check(sign(BODY, "wrong", NOW - 10_000))
    assert not isinstance(raised.value, StaleSignature)


@pytest.mark.parametrize(
    "tampered",
    [BODY + b" ", BODY.replace(b"1001", b"1002"), b"", BODY[:-1]],
)
def test_a_tampered_body_is_refused(tampered):
    with pytest.raises(SignatureError):
        check(sign(BODY, SECRET, NOW), body=tampered)


def test_a_changed_timestamp_is_refused():
    header = sign(BODY, SECRET, NOW)
    with pytest.raises(SignatureError):
        check(header.replace(f"t={NOW}", f"t={NOW + 1}"))


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "v1=" + "a" * 64,  # no timestamp
        f"t={NOW}",  # no signature
        f"t={NOW},v1=xyz",  # not hex
        f"t={NOW},v1=" + "a" * 63,  # too short
        f"t={NOW},v0=" + "a" * 64,  # another scheme only
        f"t={NOW}000,v1=" + "a" * 64,  # milliseconds
        "t=abc,v1=" + "a" * 64,
        "t=-5,v1=" + "a" * 64,
        f"t={NOW},t={NOW},v1=" + "a" * 64,  # two timestamps
        "t=" + "9" * 40 + ",v1=" + "a" * 64,
        "x" * 5000,
        f"t={NOW}," + ",".join(["v1=" + "a" * 64] * 9),
    ],
)
def test_missing_or_malformed_headers_are_refused_with_a_reason(header):
    with pytest.raises(SignatureError) as raised:
        check(header)
    assert "Pipeline-Signature" in raised.value.reason


def test_unknown_schemes_beside_a_valid_v1_are_ignored():
    header = sign(BODY, SECRET, NOW) + ",v0=" + "b" * 64 + ",junk"
    assert check(header).timestamp == NOW
    assert parse_header(header) == (NOW, [sign(BODY, SECRET, NOW).split("=", 2)[2]])


def test_no_secret_at_all_never_verifies():
    for secrets in ((), ("",)):
        with pytest.raises(SignatureError):
            check(sign(BODY, "", NOW), secrets=secrets)
