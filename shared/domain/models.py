"""The event envelope carried on Pub/Sub, and the TikTok Events API 2.0 models.

Receivers (collect, shopify_webhook, woocommerce_webhook) build an
:class:`Envelope`; the sender groups envelopes and turns them into one
Events API request body with :func:`envelopes_to_request`.

The envelope only ever holds hashed identifiers (validated here), so raw PII
can not reach Pub/Sub even by mistake.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

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

ENVELOPE_SCHEMA_VERSION = 1
EVENT_SOURCE = "web"
PARTNER_NAME = "tiktok-eapi-gcp"


def _must_be_hash(value: str) -> str:
    if not is_sha256_hex(value):
        raise ValueError("must be a SHA-256 hex digest (64 hex characters), never a raw value")
    return value.lower()


Sha256Hex = Annotated[str, AfterValidator(_must_be_hash)]
ShortText = Annotated[str, Field(min_length=1, max_length=2048)]

Source = Literal["shopify", "woocommerce", "collect", "redrive", "manual"]


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
        from shared.domain.identity import valid_ip  # shared.domain.identity builds UserData: imported here, not above

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


class ApiEvent(BaseModel):
    """One item of ``data[]`` in an Events API 2.0 request."""

    event: str
    event_time: int
    event_id: str
    user: dict[str, Any]
    properties: dict[str, Any] = Field(default_factory=dict)
    page: dict[str, Any] | None = None
    limited_data_use: bool = False


class TrackRequest(BaseModel):
    """The body of ``POST /open_api/v1.3/event/track/``."""

    event_source: Literal["web"] = EVENT_SOURCE
    event_source_id: str
    test_event_code: str | None = None
    partner_name: str | None = PARTNER_NAME
    data: list[ApiEvent] = Field(min_length=1, max_length=1000)


class TrackResponse(BaseModel):
    """TikTok answers HTTP 200 with a ``code`` in the body, errors included."""

    model_config = ConfigDict(extra="allow")

    code: int
    message: str = ""
    request_id: str | None = None
    data: Any = None


def _compact(mapping: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v not in (None, [], {}, "")}


def envelope_to_api_event(envelope: Envelope) -> ApiEvent:
    user = _compact(envelope.user.model_dump(exclude_none=True))
    properties = envelope.properties.model_dump(exclude_none=True)
    properties["contents"] = [_compact(c) for c in properties.get("contents", [])]
    page = _compact(envelope.page.model_dump(exclude_none=True)) if envelope.page else None
    return ApiEvent(
        event=envelope.event,
        event_time=envelope.event_time,
        event_id=envelope.event_id,
        user=user,
        properties=_compact(properties),
        page=page or None,
        limited_data_use=envelope.limited_data_use,
    )


class MixedBatchError(ValueError):
    pass


def envelopes_to_request(envelopes: Sequence[Envelope]) -> dict[str, Any]:
    """The Events API 2.0 body for envelopes that share one pixel and one test code."""
    if not envelopes:
        raise ValueError("at least one envelope is needed")
    keys = {e.batch_key() for e in envelopes}
    if len(keys) != 1:
        # Test events must never ride with production events, nor pixels mix.
        raise MixedBatchError(f"envelopes for {len(keys)} different (pixel, test code) pairs")
    pixel_code, test_event_code = keys.pop()
    request = TrackRequest(
        event_source_id=pixel_code,
        test_event_code=test_event_code,
        data=[envelope_to_api_event(e) for e in envelopes],
    )
    return request.model_dump(exclude_none=True)


def group_for_requests(envelopes: Iterable[Envelope], max_events: int = 1000) -> list[list[Envelope]]:
    """Split envelopes into request-sized groups that never mix pixels or test codes."""
    groups: dict[tuple[str, str | None], list[list[Envelope]]] = {}
    for envelope in envelopes:
        chunks = groups.setdefault(envelope.batch_key(), [[]])
        if len(chunks[-1]) >= max_events:
            chunks.append([])
        chunks[-1].append(envelope)
    return [chunk for chunks in groups.values() for chunk in chunks if chunk]
