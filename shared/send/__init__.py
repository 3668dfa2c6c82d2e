"""The sender: one Pub/Sub message (one envelope) to its destination (TikTok's Events API), each event delivered once.

The destination is a definition the sender runs (:class:`shared.destinations.Destination`:
claim key, batch key and limit, credentials, how to send a batch and read the answer);
nothing here names TikTok but the wiring (:mod:`shared.destinations.registry`).

The flow: decode the push (``decode``); coalesce the concurrent invocations
of one instance into a batch (``batching``); for the batch, check tokens,
claim every event in one bulk write, send with one request per pixel and
test code (bisecting a refusal down to the bad event) and finalize in one
bulk write (``process``, ``claims``, ``dead``).

Claims (``event_claims``, key: the destination's, pixel + event + event_id for TikTok
as it dedups; see the compatibility rule in :mod:`shared.destinations`) are
``sending`` while an attempt holds its lease and ``sent`` once TikTok accepted
the event; a transient failure releases the claim, a dead holder's claim is
taken over once its lease is over, a permanent failure becomes a dead record.
For an order event this claim is the order's only one (the receivers publish
every delivery; the deterministic event_id makes them one), and a
cancellation that came first leaves a ``cancelled`` tombstone: the Purchase
is ``skipped``. Browser events (source ``collect``) are sent unclaimed unless
``SENDER_CLAIM_BROWSER_EVENTS`` and recorded once accepted; a redelivery that
comes back to the same instance within minutes is a duplicate from memory,
one that reaches another instance is merged by TikTok on its event_id.
Dead records (``dead_events``) keep the envelope for re-driving (source
``redrive``); the sender deletes one once its envelope is delivered.

Modules:

- ``decode``: the push body and the envelope in it; byte limits, refusals, malformed messages.
- ``claims``: :class:`ClaimStore`, claim states, lease takeover, the final bulk write of a batch.
- ``dead``: the dead records' documents (kinds, what a malformed message keeps).
- ``process``: :class:`Processor` (one batch, start to finish) and :func:`deliver` (bisection).
- ``batching``: :func:`batch_due` and :class:`Dispatcher` (invocations sharing a batch).
- ``throttle``: :class:`ThrottleGate`, the instance's back-off while the destination throttles.
- ``sender``: :class:`Sender` (built from the settings), :func:`handle_push`, re-driving.
"""

from shared.infra.pubsub import PushRefused, read_push
from shared.send.claims import ClaimStore
from shared.send.decode import envelope_ids
from shared.send.sender import Sender, handle_push, push_refused, redrive_via_pubsub

__all__ = [
    "ClaimStore",
    "PushRefused",
    "Sender",
    "envelope_ids",
    "handle_push",
    "push_refused",
    "read_push",
    "redrive_via_pubsub",
]
