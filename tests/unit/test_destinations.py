"""The destination seam (shared.destinations): TikTok's claims keep their document ids, any destination runs.

No emulator and no HTTP: Firestore is the stand-in of tests/unit/memory.py,
and the second destination is a recording one defined here (production has
one destination, TikTok).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from shared.destinations import Answer, Destination, registry
from shared.destinations.tiktok import DESTINATION as TIKTOK
from shared.domain.models import Envelope
from shared.infra.metrics import Counters
from shared.infra.store import DEAD_EVENTS, EVENT_CLAIMS, doc_id
from shared.outcome import Kind
from shared.send.claims import ClaimStore
from shared.send.process import Processor
from tests.unit.memory import MemoryStore
from tests.unit.test_delivery import PIXEL, make_envelope


class Recorder:
    """A recording destination's connection: every request it was given, with its credential."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.answer = answer or Answer("ok", 0, "OK", request_id="rec-1")
        self.requests: list[tuple[list[str], str]] = []
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _send(client: Recorder, request: list[str], credential: str) -> Answer:
    client.requests.append((request, credential))
    return client.answer


def recording(name: str = "recording", max_batch_events: int = 2) -> Destination[Recorder, list[str]]:
    """A second destination: keyed by event_id alone, one credential per event name, small requests."""
    return Destination(
        name=name,
        title="Recorder",
        request_name="recording",
        claim_key=lambda e: (e.event_id,),
        batch_key=lambda e: e.event,
        max_batch_events=max_batch_events,
        credential_key=lambda e: e.event,
        credentials=lambda settings: {},
        missing_credential=lambda e: f"no credential for {e.event}",
        connect=lambda settings, transport: Recorder(),
        request=lambda envelopes: [e.event_id for e in envelopes],
        send=_send,
        read_answer=lambda status, body: Answer("ok" if status == 200 else "retry", None, body.decode()),
    )


def claims(store: MemoryStore) -> ClaimStore:
    return ClaimStore(store, dt.timedelta(seconds=60), dt.timedelta(days=8), dt.timedelta(days=30), counters=Counters())


SAMPLES = [
    make_envelope("shopify:order:1001:Purchase"),
    make_envelope("web-123", source="collect", event="ViewContent", pixel_code="C0THER_PIXEL-2"),
    make_envelope("a/b", event="AddToCart"),  # a "/" in the id: hashed
    make_envelope("x" * 512),  # too long for a document id: hashed
    make_envelope("recording:|e", pixel_code="recording"),  # a pixel named like another destination
]


def test_tiktok_claim_documents_keep_the_ids_they_always_had() -> None:
    for envelope in SAMPLES:
        legacy = doc_id(envelope.pixel_code, envelope.event, envelope.event_id)  # the formula before destinations
        assert doc_id(*TIKTOK.stored_key(envelope)) == legacy
        assert doc_id(*TIKTOK.stored_key(envelope)).encode() == legacy.encode()


def test_tiktok_claims_are_written_and_read_under_the_legacy_ids() -> None:
    store = MemoryStore()
    tiktok = Recorder()
    envelope = make_envelope("e-legacy")
    processor = Processor(claims(store), TIKTOK, tiktok, {PIXEL: "t"}, counters=Counters())  # type: ignore[arg-type]
    tiktok.track = lambda body, token: Answer("ok", 0, "OK", request_id="r1")  # type: ignore[attr-defined]
    assert processor.process([(envelope, "m1")])[0].kind == Kind.SENT
    legacy = doc_id(PIXEL, "Purchase", "e-legacy")
    assert store.docs[(EVENT_CLAIMS, legacy)]["state"] == "sent"
    assert [key for key in store.docs if key[0] == EVENT_CLAIMS] == [(EVENT_CLAIMS, legacy)]


def test_other_destinations_ids_never_collide_with_tiktoks() -> None:
    other = recording()
    tiktok_ids = {doc_id(*TIKTOK.stored_key(e)) for e in SAMPLES}
    other_ids = {doc_id(*other.stored_key(e)) for e in SAMPLES}
    assert not tiktok_ids & other_ids
    # Even a destination whose key looks like TikTok's, for the same event.
    lookalike = recording("lookalike")
    lookalike = Destination(**{**lookalike.__dict__, "claim_key": TIKTOK.claim_key})
    assert not tiktok_ids & {doc_id(*lookalike.stored_key(e)) for e in SAMPLES}
    assert all(key.startswith("recording:|") or key.startswith("h_") for key in other_ids)


def test_the_registry_has_one_legacy_destination_and_the_sender_sends_to_tiktok() -> None:
    assert registry.SENDER is TIKTOK and registry.DESTINATIONS == {"tiktok": TIKTOK}
    assert [d.name for d in registry.DESTINATIONS.values() if d.legacy_claim_keys] == ["tiktok"]
    assert TIKTOK.max_batch_events == 1000 and TIKTOK.read_answer(200, b'{"code": 0}').ok


def test_the_processor_runs_any_destination() -> None:
    store = MemoryStore()
    destination = recording()
    client = Recorder()
    counters = Counters()
    envelopes = [make_envelope(f"p{i}") for i in range(3)] + [make_envelope("v1", event="ViewContent")]
    credentials = {"Purchase": "secret-p", "ViewContent": "secret-v"}
    processor = Processor(claims(store), destination, client, credentials, counters=counters)
    outcomes = processor.process([(e, f"m-{e.event_id}") for e in envelopes])
    assert [o.kind for o in outcomes] == [Kind.SENT] * 4
    # Requests follow its batch key and limit, with the credential of its credential key.
    assert sorted(client.requests) == [(["p0", "p1"], "secret-p"), (["p2"], "secret-p"), (["v1"], "secret-v")]
    # Its claims are its own documents, prefixed with its name.
    claimed = sorted(key[1] for key in store.docs if key[0] == EVENT_CLAIMS)
    assert claimed == ["recording:|p0", "recording:|p1", "recording:|p2", "recording:|v1"]
    assert counters.snapshot()["recording.requests"] == 3
    # A copy is a duplicate of its claim.
    (again,) = processor.process([(envelopes[0], "m-again")])
    assert again.kind == Kind.DUPLICATE and len(client.requests) == 3


def test_a_destination_without_the_credential_dead_letters_under_its_own_key() -> None:
    store = MemoryStore()
    client = Recorder()
    envelope = make_envelope("no-cred", event="AddToCart")
    processor = Processor(claims(store), recording(), client, {"Purchase": "s"}, counters=Counters())
    (outcome,) = processor.process([(envelope, "m1")])
    assert outcome.kind == Kind.DEAD and outcome.reason == "no credential for AddToCart"
    assert store.docs[(DEAD_EVENTS, "recording:|no-cred")]["kind"] == "missing_token"
    assert client.requests == []


def test_a_refusal_is_bisected_and_dead_lettered_with_the_destinations_title() -> None:
    store = MemoryStore()

    def send(client: Recorder, request: list[str], credential: str) -> Answer:
        client.requests.append((request, credential))
        bad = "bad" in request
        return Answer("reject", 7, "no", request_id="r") if bad else Answer("ok", 0, "OK", request_id="r")

    destination = Destination(**{**recording(max_batch_events=10).__dict__, "send": send})
    client = Recorder()
    envelopes: Sequence[Envelope] = [make_envelope(i) for i in ("a", "bad", "c")]
    processor: Processor[Recorder, Any] = Processor(claims(store), destination, client, {"Purchase": "s"})
    outcomes = processor.process([(e, None) for e in envelopes])
    assert [o.kind for o in outcomes] == [Kind.SENT, Kind.DEAD, Kind.SENT]
    assert outcomes[1].reason.startswith("Recorder refused the event: code 7")
