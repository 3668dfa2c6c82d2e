"""Turn raw shopper identifiers into the hashed :class:`~shared.domain.models.UserData`.

The webhooks and the collect endpoint all go through :func:`build_user`, so a
raw value is hashed in exactly one place, and checked there against its shape
(:mod:`shared.domain.shapes`): a ttclid, ``_ttp``, locale, city, state, zip or
country that does not have its field's shape is dropped, and the caller learns
which (``on_drop``) to count it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from shared.domain import hashing, shapes
from shared.domain.models import UserData


@dataclass
class RawIdentity:
    """Raw identifiers as a platform gives them. Lists may hold Nones and repeats."""

    emails: list[str | None] = field(default_factory=list)
    # (phone, country the phone belongs to) pairs: the country parses local numbers.
    phones: list[tuple[str | None, str | None]] = field(default_factory=list)
    external_ids: list[str | int | None] = field(default_factory=list)
    first_name: str | None = None
    last_name: str | None = None
    zip_code: str | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None
    ttclid: str | None = None
    ttp: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    locale: str | None = None


def _clean(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text[:limit] if text else None


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
    text = _clean(value, 64)
    if text is None:
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


def checked(raw: RawIdentity) -> tuple[RawIdentity, list[str]]:
    """``raw`` with every shaped field that does not have its shape emptied, and those fields' names."""
    kept: dict[str, str | None] = {}
    dropped: list[str] = []
    for name, shape in shapes.SHAPES.items():
        value = getattr(raw, name)
        kept[name] = shape(value)
        if kept[name] is None and _clean(value, 1) is not None:
            dropped.append(name)
    return replace(raw, **kept), dropped


def build_user(
    raw: RawIdentity, default_region: str | None = None, *, on_drop: Callable[[str], None] | None = None
) -> UserData:
    """Hash and normalize; drop whatever is empty, unusable or not of its shape (``on_drop`` hears each such field)."""
    raw, dropped = checked(raw)
    for name in dropped if on_drop else ():
        on_drop(name)  # type: ignore[misc]
    phones = []
    for phone, country in raw.phones:
        regions: Iterable[str | None] = (country, raw.country, default_region)
        phones.append(hashing.hash_phone(phone, regions))
    return UserData(
        email=hashing.unique(hashing.hash_email(e) for e in raw.emails)[:10],
        phone=hashing.unique(phones)[:10],
        external_id=hashing.unique(hashing.hash_external_id(x) for x in raw.external_ids)[:10],
        first_name=hashing.hash_name(raw.first_name),
        last_name=hashing.hash_name(raw.last_name),
        zip_code=hashing.hash_zip(raw.zip_code),
        city=_clean(hashing.normalize_location(raw.city), 100),
        state=_clean(hashing.normalize_location(raw.state), 100),
        country=hashing.normalize_country(raw.country),
        ttclid=_clean(raw.ttclid, 500),
        ttp=_clean(raw.ttp, 500),
        ip=valid_ip(raw.ip),
        user_agent=_clean(raw.user_agent, 1024),
        locale=_clean(raw.locale, 35),
    )
