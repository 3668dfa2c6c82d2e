"""The shapes of the identifiers TikTok takes raw or lightly normalized: one validator per shape.

Each validator returns the value (trimmed) when it has its field's shape, else
None. They are applied in one place, :func:`shared.domain.identity.build_user`,
which every source goes through (collect, Shopify, WooCommerce), and which
drops and counts what fails (``identity.dropped.<field>``). A shape says what
the value can be, so that free text someone typed (an email in a click id's
meta field, a phone number as the city) is never sent as what it is not.
From TikTok's Events API: ``ttclid`` is an opaque URL-safe token from the landing
URL (usually ``E.C.P.`` and base64url), ``_ttp`` the pixel's first-party cookie
(URL-safe, sometimes ``.tt.<n>`` at its end); ``country`` is ISO 3166-1 alpha-2.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable

from shared.domain.hashing import is_sha256_hex
from shared.domain.scrub import looks_like_pii

# Lengths: no real click id or cookie is shorter (TikTok's are tens to hundreds of characters);
# the upper bounds are UserData's.
_TTCLID = re.compile(r"[A-Za-z0-9._~-]{5,500}={0,2}")
_TTP = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{4,199}")
# BCP 47 as browsers and shops write it: "en", "en-US", "pt_BR", "zh-Hant-TW".
_LOCALE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,3}")
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_ZIP = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 -]{0,8}[A-Za-z0-9])?")
# Letters and marks of any script, spaces, dots, dashes, apostrophes; digits are counted apart.
_PLACE_CHARACTER = re.compile(r"[^\W_]|[\s.'’()-]")
MAX_CITY = 100
MAX_STATE = 60
# "Paris 15" or "Marseille 8e" have a digit or two; a phone number has seven or more.
_MAX_CITY_DIGITS = 2
# Numeric region codes ("JP13", "TR34", Shopify's "13"); no name has more.
_MAX_STATE_DIGITS = 3


def _text(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def ttclid(value: object) -> str | None:
    """A TikTok click id: URL-safe characters, 5 to 500, nothing email- or phone-shaped."""
    text = _text(value)
    return text if text and _TTCLID.fullmatch(text) and not looks_like_pii(text) else None


def ttp(value: object) -> str | None:
    """The ``_ttp`` cookie: URL-safe base64-like, 5 to 200, an optional ``.tt.<n>`` suffix included."""
    text = _text(value)
    return text if text and _TTP.fullmatch(text) and not looks_like_pii(text) else None


def locale(value: object) -> str | None:
    """A language tag: ``en``, ``en-US``, ``pt_BR``, ``zh-Hant-TW`` (at most 35 characters)."""
    text = _text(value)
    return text if text and len(text) <= 35 and _LOCALE.fullmatch(text) else None


def country(value: object) -> str | None:
    """ISO 3166-1 alpha-2 by shape: two Latin letters (fullwidth ones folded)."""
    text = _text(value)
    text = unicodedata.normalize("NFKC", text) if text else None
    return text if text and _COUNTRY.fullmatch(text) else None


def zip_code(value: object) -> str | None:
    """A postal code: 2 to 10 letters, digits, spaces and dashes, at least one digit; or a SHA-256 of one."""
    text = _text(value)
    if text and is_sha256_hex(text):
        return text  # already hashed (a parked order's replay): its shape was checked before
    text = unicodedata.normalize("NFKC", text) if text else None
    ok = text and 2 <= len(text) <= 10 and _ZIP.fullmatch(text) and any(c.isdigit() for c in text)
    return text if ok else None


def _place(value: object, limit: int, max_digits: int) -> str | None:
    text = _text(value)
    if not text:
        return None
    text = unicodedata.normalize("NFKC", text)
    digits = sum(c.isdigit() for c in text)
    if len(text) > limit or digits > max_digits or not any(c.isalpha() for c in text):
        return None
    return text if all(c.isdigit() or _PLACE_CHARACTER.fullmatch(c) for c in text) else None


def city(value: object) -> str | None:
    """A city: letters of any script, spaces, dots, dashes, apostrophes, at most two digits (no phone number)."""
    return _place(value, MAX_CITY, _MAX_CITY_DIGITS)


def state(value: object) -> str | None:
    """A region code or name: letters, spaces, dots, dashes, apostrophes, at most three digits (``JP13``)."""
    text = _text(value)
    if text and text.isdigit():  # Shopify's numeric province codes ("13" for Tokyo)
        return text if len(text) <= _MAX_STATE_DIGITS else None
    return _place(value, MAX_STATE, _MAX_STATE_DIGITS)


# Networks no shopper is reached at from the internet: a proxy's, a LAN's or a carrier NAT's
# inside address (Shopify's sample orders carry 192.168.0.1), which TikTok could only mismatch.
# Listed, not Python's is_private, which also covers the documentation ranges (203.0.113.0/24, 2001:db8::/32).
_INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


def valid_ip(value: str | None) -> str | None:
    """A public IPv4/IPv6 address or None: TikTok refuses anything else (placeholders, "unknown").

    "0.0.0.0" and "::" (old Shopify orders' placeholder) are no client's address either, nor are
    private, loopback, link-local, multicast and reserved addresses (also inside ``::ffff:a.b.c.d``).
    """
    text = str(value).strip()[:64] if value is not None else ""
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv4 address written the IPv6 way is judged as IPv4 (::ffff:0:0/96 itself counts as reserved).
    checked = getattr(address, "ipv4_mapped", None) or address
    if (
        checked.is_unspecified or checked.is_loopback or checked.is_link_local or checked.is_multicast
        or checked.is_reserved or getattr(checked, "is_site_local", False)
        or any(checked in network for network in _INTERNAL_NETWORKS if network.version == checked.version)
    ):  # fmt: skip
        return None
    return str(checked)


# Field of RawIdentity -> its validator: what build_user checks and counts.
SHAPES: dict[str, Callable[[object], str | None]] = {
    "ttclid": ttclid,
    "ttp": ttp,
    "locale": locale,
    "country": country,
    "zip_code": zip_code,
    "city": city,
    "state": state,
}
