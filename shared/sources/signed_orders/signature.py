"""The signature of a signed order: Stripe's scheme, checked apart from everything the body says.

A backend signs ``"<t>.<raw body>"`` with HMAC-SHA256 under its site's secret and sends
``Pipeline-Signature: t=<unix seconds>,v1=<hex digest>`` (several ``v1`` while it rotates its
secret: any one that matches passes). :func:`verify` is pure: it reads the header, compares in
constant time, bounds the timestamp and raises :class:`SignatureError`, whose ``reason`` says what
to fix. :func:`sign` sits beside it so that tests and the documented examples sign exactly as
production verifies. Remembering which signatures were used (a replay within the tolerance) needs
the store, so it is the handler's step; :attr:`Verified.replay_key` is what it remembers.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

SIGNATURE_HEADER = "Pipeline-Signature"
SITE_HEADER = "Pipeline-Site"
SCHEME = "v1"

# A header with a timestamp and a few v1 digests is ~250 characters; this bounds the work on garbage.
_MAX_HEADER_CHARS = 1024
_MAX_SIGNATURES = 8
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_SECONDS = re.compile(r"[0-9]{1,12}")


class SignatureError(Exception):
    """The request is not proven to come from the site; ``reason`` names what is wrong and the fix."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StaleSignature(SignatureError):
    """A valid signature whose timestamp lies further from our clock than the tolerance."""


@dataclass(frozen=True)
class Verified:
    """A signature that matched: when it was made, and the signed payload's digest."""

    timestamp: int
    # SHA-256 of "<t>.<body>": the same for every valid v1 of one signing (whichever secret), so a replay
    # that keeps only one of a rotation's signatures is still the same signing.
    payload_digest: str


def signed_payload(body: bytes, timestamp: int) -> bytes:
    """What is signed: the timestamp, a dot, and the raw body bytes as sent."""
    return str(timestamp).encode("ascii") + b"." + body


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``Pipeline-Signature`` value for ``body`` signed at ``timestamp`` (what a backend computes)."""
    digest = hmac.new(secret.encode("utf-8"), signed_payload(body, timestamp), hashlib.sha256).hexdigest()
    return f"t={timestamp},{SCHEME}={digest}"


def parse_header(header: str | None) -> tuple[int, list[str]]:
    """The timestamp and the v1 digests of a ``Pipeline-Signature`` value, or :class:`SignatureError`."""
    if header is None or not header.strip():
        raise SignatureError(f"{SIGNATURE_HEADER} is missing: sign '<t>.<body>' and send t=<unix seconds>,v1=<hex>")
    if len(header) > _MAX_HEADER_CHARS:
        raise SignatureError(f"{SIGNATURE_HEADER} is longer than {_MAX_HEADER_CHARS} characters")
    timestamps: list[str] = []
    digests: list[str] = []
    for item in header.split(","):
        name, equals, value = item.strip().partition("=")
        if not equals:
            continue  # tolerated, as Stripe does: a scheme we do not know is ignored, not refused
        if name == "t":
            timestamps.append(value.strip())
        elif name == SCHEME:
            digests.append(value.strip().lower())
    if len(timestamps) != 1 or not _SECONDS.fullmatch(timestamps[0]):
        raise SignatureError(f"{SIGNATURE_HEADER} needs exactly one t=<unix seconds> (an integer, not milliseconds)")
    usable = [digest for digest in digests if _HEX_DIGEST.fullmatch(digest)]
    if not usable:
        raise SignatureError(f"{SIGNATURE_HEADER} has no {SCHEME}=<64 hex digits> (HMAC-SHA256 of '<t>.<body>')")
    if len(usable) > _MAX_SIGNATURES:
        raise SignatureError(f"{SIGNATURE_HEADER} has more than {_MAX_SIGNATURES} {SCHEME} signatures")
    return int(timestamps[0]), usable


def verify(body: bytes, header: str | None, secrets: Iterable[str], *, tolerance: int, now: float) -> Verified:
    """The signing that ``header`` proves for ``body``, or :class:`SignatureError` saying why not.

    Every (secret, v1) pair is compared in constant time and all of them are tried, so the time
    taken does not say which matched. The timestamp is checked after the match (as Stripe does):
    only a request signed with the secret learns that its clock is off.
    """
    timestamp, digests = parse_header(header)
    payload = signed_payload(body, timestamp)
    matched = False
    for secret in secrets:
        if not secret:
            continue
        expected = hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest().encode("ascii")
        for digest in digests:
            matched |= hmac.compare_digest(expected, digest.encode("ascii"))
    if not matched:
        raise SignatureError(
            f"no {SCHEME} signature in {SIGNATURE_HEADER} matches: sign '<t>.<raw body>' (the exact bytes sent) "
            "with HMAC-SHA256 under the site's secret, hex-encoded"
        )
    if abs(now - timestamp) > tolerance:
        raise StaleSignature(
            f"timestamp outside the tolerance ({tolerance} s from our clock): sign each attempt anew, "
            "with the current time, and check that the server's clock is set (NTP)"
        )
    return Verified(timestamp, hashlib.sha256(payload).hexdigest())
