"""The body of an Events API 2.0 request, built from envelopes that share one pixel and one test code.

The sender groups envelopes with :func:`group_for_requests` and turns each
group into one ``POST /open_api/v1.3/event/track/`` body with
:func:`envelopes_to_request`; empty fields are left out, as TikTok asks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.destinations import in_requests
from shared.domain.models import Envelope

EVENT_SOURCE: Literal["web"] = "web"
PARTNER_NAME = "tiktok-eapi-gcp"  # tells TikTok which integration sent the events


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
    return in_requests(envelopes, Envelope.batch_key, max_events)
