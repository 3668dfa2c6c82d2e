"""Turn raw shopper identifiers into the hashed :class:`~shared.domain.models.UserData`.

The webhooks and the collect endpoint all go through :func:`build_user`, so a
raw value is hashed in exactly one place, and checked there against its shape
(:mod:`shared.domain.shapes`): a ttclid, ``_ttp``, locale, city, state, zip or
country that does not have its field's shape is dropped, and the caller learns
which (``on_drop``) to count it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from shared.domain import hashing, shapes
from shared.domain.models import UserData
from shared.domain.shapes import valid_ip


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


def checked(raw: RawIdentity) -> tuple[RawIdentity, list[str]]:
    """``raw`` with every shaped field that does not have its shape emptied, and those fields' names."""
    kept: dict[str, Any] = {}  # str | None under SHAPES' field names, which replace() can not check
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
