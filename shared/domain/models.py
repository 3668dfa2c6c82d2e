"""The event envelope carried on Pub/Sub: what every receiver builds and the sender sends.

Receivers (collect, shopify_webhook, woocommerce_webhook) build an
:class:`Envelope`; the sender groups envelopes and turns them into one
Events API request body (:mod:`shared.tiktok.request`).

The envelope only ever holds hashed identifiers (validated here), so raw PII
can not reach Pub/Sub even by mistake.
"""

from __future__ import annotations

import time
from typing import Annotated, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
)

from shared.domain.events import canonical_event_name
from shared.domain.hashing import is_sha256_hex
from shared.domain.shapes import valid_ip
from shared.sources import registry

ENVELOPE_SCHEMA_VERSION: Final = 1


def _must_be_hash(value: str) -> str:
    if not is_sha256_hex(value):
        raise ValueError("must be a SHA-256 hex digest (64 hex characters), never a raw value")
    return value.lower()


Sha256Hex = Annotated[str, AfterValidator(_must_be_hash)]
ShortText = Annotated[str, Field(min_length=1, max_length=2048)]


def _known_source(value: str) -> str:
    if value not in registry.SOURCE_NAMES:
        raise ValueError(f"not a source of the registry (shared.sources.registry): {', '.join(registry.SOURCE_NAMES)}")
    return value


# A name of the registry (shared.sources.registry.SOURCE_NAMES): a new source is one registry entry, not an edit here.
Source = Annotated[str, AfterValidator(_known_source)]


class UserData(BaseModel):
    """What TikTok calls ``user``: hashed identifiers plus the raw matching signals."""

    model_config = ConfigDict(extra="forbid")

    email: list[Sha256Hex] = Field(default_factory=list, max_length=10)
    phone: list[Sha256Hex] = Field(default_factory=list, max_length=10)
    external_id: list[Sha256Hex] = Field(default_factory=list, max_length=10)
    first_name: Sha256Hex | None = None
    last_name: Sha256Hex | None = None
    zip_code: Sha256Hex | None = None
    # normalized, not hashed
    city: Annotated[str, Field(max_length=100)] | None = None
    state: Annotated[str, Field(max_length=100)] | None = None
    country: Annotated[str, Field(pattern=r"^[a-z]{2}$")] | None = None
    # sent raw
    ttclid: Annotated[str, Field(max_length=500)] | None = None
    ttp: Annotated[str, Field(max_length=500)] | None = None
    ip: Annotated[str, Field(max_length=64)] | None = None
    user_agent: Annotated[str, Field(max_length=1024)] | None = None
    locale: Annotated[str, Field(max_length=35)] | None = None

    @field_validator("ip")
    @classmethod
    def _public_ip(cls, value: str | None) -> str | None:
        """Dropped unless public: an envelope published before receivers dropped private addresses may hold one."""
        return valid_ip(value)

    def has_click(self) -> bool:
        return bool(self.ttclid or self.ttp)


class Page(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: ShortText | None = None
    referrer: ShortText | None = None


class Content(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    content_name: Annotated[str, Field(max_length=512)] | None = None
    content_category: Annotated[str, Field(max_length=256)] | None = None
    price: float | None = None
    quantity: int | None = None
    brand: Annotated[str, Field(max_length=256)] | None = None


class Properties(BaseModel):
    """Standard properties; custom ones are passed through (TikTok accepts them)."""

    model_config = ConfigDict(extra="allow")

    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    value: float | None = None
    content_type: Literal["product", "product_group"] | None = None
    contents: list[Content] = Field(default_factory=list, max_length=500)
    num_items: int | None = None
    order_id: Annotated[str, Field(max_length=256)] | None = None
    shop_id: Annotated[str, Field(max_length=256)] | None = None
    query: Annotated[str, Field(max_length=512)] | None = None
    description: Annotated[str, Field(max_length=1024)] | None = None


class Envelope(BaseModel):
    """One event on its way from a receiver to the sender (the Pub/Sub message body)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = ENVELOPE_SCHEMA_VERSION
    source: Source
    pixel_code: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    event: str
    event_id: Annotated[str, Field(min_length=1, max_length=512)]
    event_time: StrictInt = Field(gt=1_000_000_000, lt=100_000_000_000)
    user: UserData = Field(default_factory=UserData)
    page: Page | None = None
    properties: Properties = Field(default_factory=Properties)
    limited_data_use: bool = False
    # Why we may send it: "granted", "policy_opt_out", "limited" (sale of data opted out)...
    consent: Annotated[str, Field(min_length=1, max_length=64)]
    test_event_code: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    received_at: StrictInt = Field(default_factory=lambda: int(time.time()))

    @field_validator("event")
    @classmethod
    def _canonical_event(cls, value: str) -> str:
        return canonical_event_name(value)

    def batch_key(self) -> tuple[str, str | None]:
        """Events sharing a key may share one Events API request (same pixel, same test code)."""
        return (self.pixel_code, self.test_event_code)

    def claim_key(self) -> tuple[str, str, str]:
        """TikTok deduplicates on pixel + event + event_id; so do we."""
        return (self.pixel_code, self.event, self.event_id)

    def pubsub_attributes(self) -> dict[str, str]:
        """Routing attributes for Pub/Sub: never anything personal."""
        return {"pixel_code": self.pixel_code, "event": self.event, "source": self.source}

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()
