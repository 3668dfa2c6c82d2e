"""What happened to one request or message: one type for every function, one line in the logs.

Each function logs exactly one outcome line per request or message, at its
entry point (``Outcome.log``). ``jsonPayload.outcome`` is what the log-based
metric of ``terraform/monitoring.tf`` counts and its alerts match by regular
expression, so the kinds are an enumeration: a kind the alerts name and no
function logs, or the other way round, is a test failure
(``tests/infra/test_monitoring.py``), not a silent gap in the dashboards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.infra import log


class Kind(StrEnum):
    """Every outcome a function logs; the value is what ``jsonPayload.outcome`` holds."""

    # Receivers (collect, Shopify, WooCommerce).
    ACCEPTED = "accepted"  # collect: stored and/or published what consent allows
    PUBLISHED = "published"  # an order event is on the topic
    RECORDED = "recorded"  # a cancellation or refund, recorded (TikTok has no such event)
    REDACTED = "redacted"  # a privacy webhook's deletions done
    WITHHELD_CONSENT = "withheld_consent"  # the shopper's consent does not allow sending
    SKIPPED = "skipped"  # a rule says no event (test, POS, draft or cancelled order; collect: an unchanged context)
    IGNORED = "ignored"  # nothing to do (a topic or status we do not map, a bot, a ping)
    DROPPED_BOT = "dropped_bot"  # collect: a crawler, previewer, monitor or HTTP library (not read)
    DROPPED_PREFETCH = "dropped_prefetch"  # collect: a browser's prefetch (not read)
    DROPPED_PREVIEW = "dropped_preview"  # collect: a theme editor or preview page
    PREFLIGHT = "preflight"  # collect: a CORS preflight answered
    REJECTED = "rejected"  # the request is not acceptable (unsigned, forged, malformed, too large)
    REJECTED_RATE_LIMIT = "rejected_rate_limit"  # collect: over its rate limit, answered 429
    PARKED = "parked"  # WooCommerce: Firestore or Pub/Sub down, the order logged for replay
    REFUSED = "refused"  # answered 4xx without a side effect (WooCommerce: could not even park; sender: not a push)
    ERROR_UNAVAILABLE = "error_unavailable"  # our Firestore or Pub/Sub failed: answered 503 so the caller retries
    DUPLICATE = "duplicate"  # already done: a repeat of a recorded change, or an event already sent
    # The sender.
    SENT = "sent"  # TikTok accepted the event
    RETRY = "retry"  # transient trouble: answered 503, Pub/Sub redelivers
    DEAD = "dead"  # TikTok refused it for good, or no token: recorded for re-driving
    DEAD_MALFORMED = "dead_malformed"  # not an envelope at all: recorded without its bytes


@dataclass(frozen=True)
class Outcome:
    """The outcome of one request or message: its kind, a reason a person can act on, and countable details."""

    kind: Kind
    reason: str = ""
    event_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    severity: str | None = None  # else by kind (shared.infra.log.outcome)

    def __post_init__(self) -> None:
        # A kind outside the enumeration fails where it is made, in tests, not silently in the dashboards.
        object.__setattr__(self, "kind", Kind(self.kind))

    @property
    def retry(self) -> bool:
        """Whether the caller should deliver it again (the sender answers 503)."""
        return self.kind == Kind.RETRY

    def log(self, **fields: Any) -> None:
        """The one outcome line of this request or message."""
        log.outcome(self.kind, self.reason or self.kind, severity=self.severity, event_id=self.event_id,
                    **{**self.details, **fields})  # fmt: skip
