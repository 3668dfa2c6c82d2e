"""What the pipeline holds of each order: its records read by key, one outcome each, as ``make report`` counts.

The records are the report's (``shared.report``): the sender's claim and dead record of the
Purchase (``event_claims`` / ``dead_events`` under ``(pixel_code, "Purchase", event_id)``) and
the webhooks' outcome record (``order_events`` under ``("outcome", event_id)``). They are read by
key (three documents per order, batched) instead of by time, so an order whose claim was written
before the window still counts; :func:`shared.report.classify` gives each its one outcome, the
furthest it got. Pure apart from :func:`read_outcomes`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared import report
from shared.infra.store import DEAD_EVENTS, EVENT_CLAIMS, ORDER_EVENTS, OUTCOME_RECORD, Found, is_expired
from shared.reconcile import CANCELLED, PAID, TEST

PURCHASE = "Purchase"
READ_BATCH = 300  # documents per batched read

# An order's state: the report's outcome of its Purchase, or one of these when the pipeline holds nothing.
MISSING = "missing"  # a paid order the pipeline never saw: backfill sends it
IGNORED = "ignored"  # an unpaid or refunded order (or a test or cancelled one never delivered): nothing to send
STATES = (report.SENT, report.WITHHELD, report.SKIPPED, report.DEAD, report.PENDING, MISSING, IGNORED)
# Classes the order flow has something to say about when nothing was recorded: backfill runs them through it
# (a paid order is sent or withheld; a test or cancelled one is recorded skipped, with its rule).
BACKFILLED_CLASSES = frozenset({PAID, TEST, CANCELLED})


class Documents(Protocol):
    """The store as reconciliation reads it (:class:`shared.infra.store.Store`)."""

    def get_many(self, collection: str, keys: Sequence[Sequence[object]]) -> list[Found]: ...


@dataclass(frozen=True)
class Held:
    """What the pipeline holds of one order's Purchase."""

    outcome: str  # one of the report's outcomes (sent, withheld_consent, skipped, dead, pending)
    rule: str | None = None  # a skipped one's rule
    code: int | None = None  # a dead one's TikTok code


def _live(found: Iterable[Found]) -> list[dict[str, Any]]:
    return [f.data for f in found if f.data is not None and not is_expired(f.data)]


def read_outcomes(store: Documents, pixel_code: str, event_ids: Sequence[str]) -> dict[str, Held]:
    """Each event id the pipeline holds a record of, with its one outcome (absent: nothing at all)."""
    order_records: list[dict[str, Any]] = []
    claims: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    for start in range(0, len(event_ids), READ_BATCH):
        batch = event_ids[start : start + READ_BATCH]
        claim_keys = [(pixel_code, PURCHASE, event_id) for event_id in batch]
        order_records += _live(store.get_many(ORDER_EVENTS, [(OUTCOME_RECORD, event_id) for event_id in batch]))
        claims += _live(store.get_many(EVENT_CLAIMS, claim_keys))
        dead += _live(store.get_many(DEAD_EVENTS, claim_keys))
    return held(order_records, claims, dead)


def held(
    order_records: Iterable[Mapping[str, Any]], claims: Iterable[Mapping[str, Any]], dead: Iterable[Mapping[str, Any]]
) -> dict[str, Held]:
    """Pure: the report's one outcome per event id named by these records."""
    return {event_id: Held(event.outcome, event.rule, event.code)
            for event_id, event in report.classify(order_records, claims, dead).items()}  # fmt: skip


def state(kind: str, record: Held | None) -> str:
    """Pure: an order's state from its class and what the pipeline holds."""
    if record is not None:
        return record.outcome
    return MISSING if kind == PAID else IGNORED
