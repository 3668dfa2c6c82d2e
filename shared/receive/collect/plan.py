"""What an admitted, consented request leads to, as a :class:`Plan`: pure, no I/O.

Identifiers are hashed once (:func:`shared.domain.identity.build_user`); URLs and free
text are scrubbed of personal data and custom properties whose names say they
hold it are dropped (docs/collect.md, "What is forwarded"); an event's time is
the page's within a window, else the time of receipt.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from shared.config import PixelConfig
from shared.domain.consent import ConsentDecision, ConsentSnapshot
from shared.domain.events import ATTRIBUTION_WINDOW, BROWSER_CLOCK_AHEAD_SECONDS, within_browser_window
from shared.domain.hashing import customer_key
from shared.domain.identity import RawIdentity, build_user
from shared.domain.models import Envelope, Page, Properties, UserData
from shared.domain.scrub import scrub_text, scrub_url
from shared.infra import log
from shared.receive.collect.keys import BoundKeys, bind
from shared.receive.collect.schema import MAX_NUMBER, CollectBody

SOURCE = "collect"
# The page's clock is trusted within these bounds; outside them, the time of receipt is used
# (COLLECT_MAX_EVENT_AGE_DAYS' default: TikTok's default click attribution window).
MAX_EVENT_AGE_SECONDS = int(ATTRIBUTION_WINDOW.total_seconds())
# A millisecond timestamp (Date.now()) is above this; unix seconds stay below it until the year 5138.
_MILLISECONDS_FLOOR = 100_000_000_000
# Order events (``<platform>:<shop>:order:...``) belong to the order webhooks; see docs/collect.md.
_ORDER_EVENT_ID = re.compile(r"^(shopify|woocommerce):[^:]+:order:")


def _event_time(value: int | float | None, received: int, max_age: int = MAX_EVENT_AGE_SECONDS) -> int | None:
    """Unix seconds of the page's time, or None when it lies outside the window (its clock is wrong)."""
    if value is None:
        return received
    if not math.isfinite(value) or value > MAX_NUMBER:
        return None
    seconds = int(value / 1000) if value >= _MILLISECONDS_FLOOR else int(value)
    return seconds if within_browser_window(seconds, received, max_age) else None


@dataclass(frozen=True)
class Plan:
    """What an admitted, consented request leads to: the context to store and the events to publish."""

    pixel: PixelConfig
    join_keys: list[tuple[str, str]]
    context: dict[str, Any]
    envelopes: list[Envelope]
    skipped: list[dict[str, str]]
    decision: ConsentDecision
    # Join keys left out, with why (shared.receive.collect.keys): echoed in the answer, never their values.
    ignored: list[dict[str, str]] = field(default_factory=list)
    # Events published at the time of receipt because their event_time lay outside the window, with why.
    retimed: list[dict[str, str]] = field(default_factory=list)
    # The request's trace, taken on its own thread: a group commit publishes on another request's.
    traceparent: str | None = field(default_factory=log.outgoing_traceparent)


def bound_keys(body: CollectBody, pixel: PixelConfig) -> BoundKeys:
    """The join keys this request may write under (see :mod:`shared.receive.collect.keys`)."""
    keys = body.context.join_keys
    return bind(keys.pairs(), keys.customer_id_signature, pixel.signing_secrets)


# --- personal data in free text (docs/collect.md, "What is forwarded") ---------------------------

# A custom property is dropped when a word of its name says it holds personal data.
_PERSONAL_WORDS = frozenset({
    "email", "emails", "mail", "phone", "phones", "tel", "telephone", "mobile", "cell", "fax", "whatsapp",
    "address", "addr", "street", "zip", "zipcode", "postcode", "postal", "birthday", "birthdate", "dob", "ssn",
    "passport", "password", "iban", "ip", "surname", "firstname", "lastname", "fullname", "username",
})  # fmt: skip
_PERSONAL_PARTS = ("email", "phone", "address", "firstname", "lastname", "fullname", "surname", "givenname",
                   "familyname", "username", "birth")  # fmt: skip
# "name" is personal next to one of these ("customer_name", "first_name"), not in "product_name".
_PERSON_WORDS = frozenset({
    "first", "last", "full", "given", "family", "middle", "nick", "customer", "user", "buyer", "billing",
    "shipping", "contact", "recipient", "sender", "account", "member", "client", "person", "shopper",
})  # fmt: skip
_NAME_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
# Standard properties that are free text; ids, codes and numbers are left as they are.
_FREE_TEXT = ("query", "description")
_CONTENT_TEXT = ("content_name", "content_category", "brand")


def is_personal_name(name: str) -> bool:
    """True when a property name says it holds personal data (``customer_email``, ``firstName``, ``name``)."""
    words = [w.lower() for w in _NAME_WORDS.findall(name)]
    compact = "".join(words)
    if any(w in _PERSONAL_WORDS for w in words) or any(part in compact for part in _PERSONAL_PARTS):
        return True
    return "name" in words and (words == ["name"] or any(w in _PERSON_WORDS for w in words))


def _scrubbed_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, list):
        return [_scrubbed_value(item) for item in value]
    if isinstance(value, dict):
        return {k: _scrubbed_value(v) for k, v in value.items() if not is_personal_name(k) and scrub_text(k) == k}
    return value


def scrub_properties(properties: Properties) -> tuple[Properties, list[str]]:
    """Properties safe to forward, and the custom property names dropped for saying they hold personal data."""
    data = properties.model_dump()
    extra = set(properties.model_extra or {})
    dropped = sorted(name for name in extra if is_personal_name(name))
    for name in dropped:
        del data[name]
    for name in extra - set(dropped):
        data[name] = _scrubbed_value(data[name])
    for name in _FREE_TEXT:
        if isinstance(data.get(name), str):
            data[name] = scrub_text(data[name])
    for content in data.get("contents") or []:
        for name in _CONTENT_TEXT:
            if isinstance(content.get(name), str):
                content[name] = scrub_text(content[name])
    return Properties.model_validate(data), dropped


def _safe_url(url: str | None) -> str | None:
    scrubbed = scrub_url(url) if url else None
    return scrubbed[:2048] if scrubbed else None


def build_plan(
    body: CollectBody,
    pixel: PixelConfig,
    decision: ConsentDecision,
    *,
    ip: str | None,
    user_agent: str | None,
    accept_language: str | None = None,
    default_region: str | None = None,
    received: int | None = None,
    bound: BoundKeys | None = None,
    max_event_age: int = MAX_EVENT_AGE_SECONDS,
) -> Plan:
    """Pure: hash the identifiers once, build the context and the envelopes."""
    received = int(time.time()) if received is None else received
    bound = bound_keys(body, pixel) if bound is None else bound
    context_in = body.context
    locale = context_in.locale or (accept_language or "").split(",", 1)[0].split(";", 1)[0].strip() or None
    user: UserData = build_user(
        RawIdentity(
            emails=list(context_in.user.email),
            phones=[(phone, None) for phone in context_in.user.phone],
            external_ids=list(context_in.user.external_id),
            ttclid=context_in.ttclid,
            ttp=context_in.ttp,
            ip=ip,
            user_agent=user_agent,
            locale=locale,
        ),
        default_region,
    )
    join_keys = bound.pairs
    hashed = {name: getattr(user, name) for name in ("email", "phone", "external_id") if getattr(user, name)}
    # Signed or not: the tag lets customers/redact find this shopper's contexts; it is never a join key.
    customer_id = bound.customer_id
    snapshot = body.consent_snapshot() or ConsentSnapshot()
    context_url = _safe_url(context_in.page_url)
    context_referrer = _safe_url(context_in.referrer)
    context = {
        "ttclid": user.ttclid,
        "ttp": user.ttp,
        # Every key, Nones included: a merge into an older context replaces its whole answer.
        "consent": snapshot.model_dump(),
        "page_url": context_url,
        "ip": user.ip,
        "user_agent": user.user_agent,
        "locale": user.locale,
        "user": hashed or None,
        "customer_key": customer_key(customer_id) if customer_id else None,
    }
    envelopes: list[Envelope] = []
    skipped: list[dict[str, str]] = []
    retimed: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for event in body.events:
        if _ORDER_EVENT_ID.match(event.event_id):
            skipped.append({"event_id": event.event_id, "reason": "order events are sent by the order webhook"})
            continue
        if (event.event, event.event_id) in seen:
            skipped.append({"event_id": event.event_id, "reason": "repeated in this request"})
            continue
        seen.add((event.event, event.event_id))
        page_url = (_safe_url(event.page.url) if event.page else None) or context_url
        referrer = (_safe_url(event.page.referrer) if event.page else None) or context_referrer
        properties, dropped = scrub_properties(event.properties)
        if dropped:
            skipped.append({"event_id": event.event_id, "reason": f"personal data not forwarded: {', '.join(dropped)}"})
        event_time = _event_time(event.event_time, received, max_event_age)
        if event_time is None:
            days, minutes = max_event_age // 86_400, BROWSER_CLOCK_AHEAD_SECONDS // 60
            window = f"{days} days back (COLLECT_MAX_EVENT_AGE_DAYS) to {minutes} minutes ahead"
            retimed.append({"event_id": event.event_id, "reason": f"event_time outside {window}: time of receipt used"})
        envelopes.append(
            Envelope(
                source=SOURCE,
                pixel_code=pixel.pixel_code,
                event=event.event,
                event_id=event.event_id,
                event_time=received if event_time is None else event_time,
                user=user,
                page=Page(url=page_url, referrer=referrer or None) if page_url else None,
                properties=properties,
                limited_data_use=decision.limited_data_use,
                consent=decision.reason,
                test_event_code=pixel.test_event_code,
                received_at=received,
            )
        )
    ignored = [i.as_dict() for i in bound.ignored]
    return Plan(pixel, join_keys, context, envelopes, skipped, decision, ignored, retimed)


def unserialisable(plan: Plan) -> str | None:
    """Why this plan's publish or Firestore write would fail to serialise, or None.

    Checked before the plan joins a group commit: the group's one publish
    serialises every plan's envelopes, so one that cannot be would fail all of them.
    """
    for index, envelope in enumerate(plan.envelopes):
        try:
            envelope.to_json_bytes()
        except ValueError:  # PydanticSerializationError, UnicodeEncodeError
            return f"events[{index}] cannot be serialised (text that is not valid Unicode?)"
    try:
        json.dumps(plan.context, default=str, ensure_ascii=False).encode("utf-8")
        for _kind, value in plan.join_keys:
            value.encode("utf-8")
    except ValueError:
        return "the click context cannot be serialised (text that is not valid Unicode?)"
    return None
