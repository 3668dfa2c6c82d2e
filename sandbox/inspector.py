"""What the inspector page shows: the sandbox's events as TikTok's Test Events tab would, without their values.

Pure functions over what :mod:`sandbox.app` stores. A row says *which* match keys
an event carried, never what they were: the page has no use for a hash or an IP
address, and what it never gets it can never show. Like the contract, this does
not reuse ``shared/``: the sandbox checks our code, so it must not share its
mistakes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

PAGE_DIR = Path(__file__).resolve().parent / "page"
MAX_ROWS = 200
CHART_MINUTES = 30
# TikTok drops a second event with the same pixel, event name and event_id within 48 hours.
DEDUP_SECONDS = 48 * 3600

ACCEPTED = "accepted"
REFUSED = "refused"

# Order events carry ``<platform>:<shop>:order:...`` (shared/domain/events.py); collect refuses
# ids of that shape from browsers, so an event whose id has another shape came through collect.
_ORDER_EVENT_ID = re.compile(r"^(shopify|woocommerce):[^:]+:order:")


def _has(user: Mapping[str, Any], key: str) -> bool:
    value = user.get(key)
    if isinstance(value, list):
        return any(isinstance(item, str) and item for item in value)
    return isinstance(value, str) and bool(value)


# (name shown, whether a ``user`` object carries it), in the order the page shows them.
MATCH_KEYS: tuple[tuple[str, Callable[[Mapping[str, Any]], bool]], ...] = (
    ("email", lambda u: _has(u, "email")),
    ("phone", lambda u: _has(u, "phone")),
    ("external_id", lambda u: _has(u, "external_id")),
    ("ttclid", lambda u: _has(u, "ttclid")),
    ("ttp", lambda u: _has(u, "ttp")),
    # TikTok matches on the pair: an IP address without the browser's user agent is weak.
    ("ip+user_agent", lambda u: _has(u, "ip") and _has(u, "user_agent")),
    ("names", lambda u: _has(u, "first_name") or _has(u, "last_name")),
    ("zip", lambda u: _has(u, "zip_code")),
    ("city", lambda u: _has(u, "city")),
    ("state", lambda u: _has(u, "state")),
    ("country", lambda u: _has(u, "country")),
)


def event_source(event_id: Any) -> str:
    """``shopify``, ``woocommerce`` or ``collect``, read from the event_id's scheme."""
    if not isinstance(event_id, str):
        return "unknown"
    order = _ORDER_EVENT_ID.match(event_id)
    return order[1] if order else "collect"


def match_keys(user: Any) -> list[str]:
    """The names of the match keys present in a ``user`` object: presence only, never a value."""
    if not isinstance(user, Mapping):
        return []
    return [name for name, present in MATCH_KEYS if present(user)]


def rows(events: Sequence[Mapping[str, Any]], limit: int = MAX_ROWS) -> list[dict[str, Any]]:
    """One row per event, newest first, each flagged when TikTok would drop it as a duplicate.

    Every field is chosen here, by name: nothing of the event is passed through
    whole, so nothing added to an event later can leak onto the page.
    """
    first_seen: dict[tuple[Any, Any, Any], float] = {}
    built: list[dict[str, Any]] = []
    for event in events:
        key = (event.get("event_source_id"), event.get("event"), event.get("event_id"))
        received_at = float(event.get("received_at") or 0)
        earlier = first_seen.get(key)
        duplicate = earlier is not None and received_at - earlier <= DEDUP_SECONDS
        if not duplicate:  # past the window the event counts again, and starts a new one
            first_seen[key] = received_at
        limited = event.get("limited_data_use")
        built.append(
            {
                "received_at": received_at,
                "pixel": event.get("event_source_id"),
                "event": event.get("event"),
                "event_id": event.get("event_id"),
                "source": event_source(event.get("event_id")),
                "match_keys": match_keys(event.get("user")),
                "limited_data_use": limited if isinstance(limited, bool) else None,
                "test_event_code": event.get("test_event_code"),
                "duplicate": duplicate,
                "request_id": event.get("request_id"),
            }
        )
    return built[::-1][:limit]


def per_minute(requests: Iterable[Mapping[str, Any]], now: float, minutes: int = CHART_MINUTES) -> list[dict]:
    """Events per minute by outcome for the last ``minutes``, oldest first, empty minutes included.

    Accepted: in a request TikTok answered 200 with code 0. Refused: any other
    answer (a contract violation, a bad token, an injected fault).
    """
    last = math.floor(now / 60)
    first = last - minutes + 1
    counts = {minute: {ACCEPTED: 0, REFUSED: 0} for minute in range(first, last + 1)}
    for request in requests:
        minute = math.floor(float(request.get("received_at") or 0) / 60)
        if minute not in counts:
            continue
        outcome = ACCEPTED if request.get("http_status") == 200 and request.get("code") == 0 else REFUSED
        counts[minute][outcome] += int(request.get("event_count") or 0)
    return [{"minute": minute * 60, **counts[minute]} for minute in range(first, last + 1)]


def snapshot(events: Sequence[Mapping[str, Any]], requests: Sequence[Mapping[str, Any]], now: float) -> dict:
    """The page's JSON: the latest rows, totals and the per-minute chart."""
    return {
        "now": now,
        "total_events": len(events),
        "total_requests": len(requests),
        "match_key_names": [name for name, _ in MATCH_KEYS],
        "rows": rows(events),
        "per_minute": per_minute(requests, now),
    }


def page_file(name: str) -> bytes:
    return (PAGE_DIR / name).read_bytes()
