"""TikTok's Events API 2.0 as a destination: the one definition the sender runs (see :mod:`shared.destinations`).

The request format is :mod:`shared.tiktok.request`, the client and what each
answer means :mod:`shared.tiktok.api`; this is what the sender needs to know
of them. TikTok deduplicates on pixel + event + event_id, so claims do; its
claims keep the key they always had (``legacy_claim_keys``). Tokens are per
pixel (``TIKTOK_ACCESS_TOKEN``, one or a JSON object keyed by pixel code).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.destinations import Answer, Destination
from shared.domain.models import Envelope
from shared.tiktok.api import TikTokClient, classify
from shared.tiktok.request import envelopes_to_request

if TYPE_CHECKING:
    import httpx

    from shared.config import SenderSettings


def _connect(settings: SenderSettings, transport: httpx.BaseTransport | None) -> TikTokClient:
    return TikTokClient(settings.api_url, settings.timeout_seconds, transport=transport)


def _tokens(settings: SenderSettings) -> dict[str, str]:
    return {pixel: secret.get_secret_value() for pixel, secret in settings.access_tokens().items()}


def _missing_token(envelope: Envelope) -> str:
    return (
        f"no access token for pixel {envelope.pixel_code}: add it to TIKTOK_ACCESS_TOKEN "
        "(a JSON object keyed by pixel code for several pixels), then re-drive"
    )


def _send(client: TikTokClient, body: dict[str, Any], access_token: str) -> Answer:
    return client.track(body, access_token)


def _pixel(envelope: Envelope) -> str:
    return envelope.pixel_code


DESTINATION: Destination[TikTokClient, dict[str, Any]] = Destination(
    name="tiktok",
    title="TikTok",
    request_name="Events API request",
    claim_key=Envelope.claim_key,  # pixel + event + event_id, as TikTok dedups
    batch_key=Envelope.batch_key,  # pixel + test code: test events never ride with production ones
    max_batch_events=1000,
    credential_key=_pixel,
    credentials=_tokens,
    missing_credential=_missing_token,
    connect=_connect,
    request=envelopes_to_request,
    send=_send,
    read_answer=classify,
    legacy_claim_keys=True,
)
