"""Where events go: the seam the sender runs (:class:`Destination`) and the answer it acts on (:class:`Answer`).

A destination is one folder below this package whose ``__init__`` exports
``DESTINATION``, one declarative definition: its claim key (what it
deduplicates on), its batch key and limit (which events may share one
request), its credentials (which one an event needs, where they come from,
what to say when one is missing), how to connect, build a request, send it
and read the answer. Everything else (claims, batching, bisecting a refused
request, retries, dead records, counters and logs) is the sender's
(:mod:`shared.send`), which never names a destination. :mod:`registry` lists
them; TikTok (:mod:`shared.destinations.tiktok`) is the one there is.

Claims carry the destination (the compatibility rule). A claim's document id
in ``event_claims`` (and a dead record's in ``dead_events``) is
``doc_id(*destination.stored_key(envelope))``:

- the TikTok destination keeps the key claims had before destinations existed,
  ``(pixel_code, event, event_id)``, byte for byte (``legacy_claim_keys``): the
  claims already stored are its claims, with no migration and no extra read;
- every other destination's key starts with ``"<name>:"``, and a ``:`` is never
  in a pixel code (``[A-Za-z0-9_-]+``), so its ids never collide with TikTok's
  (nor, hashed or not, with another destination's).

Only one destination may keep legacy keys (:mod:`registry` checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, Protocol, TypeVar

from shared.domain.models import Envelope

if TYPE_CHECKING:
    import httpx

    from shared.config import SenderSettings

Verdict = Literal["ok", "retry", "reject"]
ClaimKey = tuple[str, ...]  # an event's identity at its destination, as stored (:meth:`Destination.stored_key`)


@dataclass(frozen=True)
class Answer:
    """A destination's answer to one request, reduced to what the sender acts on."""

    verdict: Verdict
    code: int | None  # the destination's own code; None when there was no usable body
    message: str
    request_id: str | None = None
    http_status: int | None = None
    # The indexes of the events the destination names as failing, when it does.
    failed_indexes: tuple[int, ...] = ()
    request_level: bool = False  # a refusal of the request as a whole (credentials, permission): never split
    # Refused here, before the destination: the events could not be serialised into a request.
    local: bool = False
    # A "retry" that says "too many requests": the sender's gate (shared.send.throttle) holds everyone back.
    throttled: bool = False

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def describe(self) -> str:
        """One line for logs and dead records: code, HTTP status and the destination's message."""
        parts = [f"code {self.code}" if self.code is not None else "no TikTok code"]
        if self.http_status is not None and self.http_status != 200:
            parts.append(f"HTTP {self.http_status}")
        return f"{', '.join(parts)}: {self.message}"


class Connection(Protocol):
    """What a destination sends through (one per instance, reusing its connections); closed with the instance."""

    def close(self) -> None: ...


ClientT = TypeVar("ClientT", bound=Connection)
RequestT = TypeVar("RequestT")


@dataclass(frozen=True)
class Destination(Generic[ClientT, RequestT]):
    """One destination, declared: the sender (:class:`shared.send.process.Processor`) does the rest."""

    name: str  # counters and log lines (``<name>.requests``, ``"<name> answered"``), other destinations' key prefix
    title: str  # in outcome reasons and dead records ("TikTok refused the event: ...")
    request_name: str  # in the reason of an event that could not be written into a request
    claim_key: Callable[[Envelope], tuple[str, ...]]  # what the destination deduplicates on
    batch_key: Callable[[Envelope], Hashable]  # events with equal keys may share one request
    max_batch_events: int  # events per request at most
    credential_key: Callable[[Envelope], str]  # which credential an event is sent with
    credentials: Callable[[SenderSettings], Mapping[str, str]]  # every credential, by credential key
    missing_credential: Callable[[Envelope], str]  # the dead record's reason when an event's is missing
    connect: Callable[[SenderSettings, httpx.BaseTransport | None], ClientT]
    request: Callable[[Sequence[Envelope]], RequestT]  # ValueError: the events can not be sent (bisected)
    send: Callable[[ClientT, RequestT, str], Answer]  # one request with one credential; never raises
    read_answer: Callable[[int, bytes], Answer]  # an HTTP status and body to an answer (pure)
    legacy_claim_keys: bool = False  # see the compatibility rule above: TikTok only

    def stored_key(self, envelope: Envelope) -> ClaimKey:
        """The key of the event's claim and dead record (their document ids: ``doc_id(*key)``)."""
        key = self.claim_key(envelope)
        return key if self.legacy_claim_keys else (f"{self.name}:", *key)


def in_requests(
    envelopes: Iterable[Envelope], batch_key: Callable[[Envelope], Hashable], max_events: int
) -> list[list[Envelope]]:
    """Split envelopes into request-sized groups whose events share one batch key (in order of first sight)."""
    groups: dict[Hashable, list[list[Envelope]]] = {}
    for envelope in envelopes:
        chunks = groups.setdefault(batch_key(envelope), [[]])
        if len(chunks[-1]) >= max_events:
            chunks.append([])
        chunks[-1].append(envelope)
    return [chunk for chunks in groups.values() for chunk in chunks if chunk]
