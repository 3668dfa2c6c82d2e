"""What an admitted, consented request leads to, as a :class:`Plan`: pure, no I/O.

Identifiers are hashed once (:func:`shared.domain.identity.build_user`); URLs and the free
text TikTok uses are scrubbed of personal data, and free text it does not use is
dropped (docs/collect.md, "What is forwarded"); order events and, unless the pixel
takes them, purchases are left to the order webhooks; an event's time is the page's
within a window, else the time of receipt.
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
from shared.domain.events import (
    ATTRIBUTION_WINDOW,
    BROWSER_CLOCK_AHEAD_SECONDS,
    PURCHASE_EVENTS,
    is_order_event_id,
    within_browser_window,
)
from shared.domain.hashing import customer_key
from shared.domain.identity import RawIdentity, build_user
from shared.domain.models import Envelope, Page, Properties, UserData
from shared.domain.scrub import looks_like_pii, scrub_text, scrub_url
from shared.infra import log
from shared.infra.metrics import count_dropped
from shared.receive.collect.keys import BoundKeys, bind
from shared.receive.collect.schema import MAX_NUMBER, CollectBody
from shared.sources import collect

SOURCE = collect.SOURCE.name
# The page's clock is trusted within these bounds; outside them, the time of receipt is used
# (COLLECT_MAX_EVENT_AGE_DAYS' default: TikTok's default click attribution window).
MAX_EVENT_AGE_SECONDS = int(ATTRIBUTION_WINDOW.total_seconds())
# A millisecond timestamp (Date.now()) is above this; unix seconds stay below it until the year 5138.
_MILLISECONDS_FLOOR = 100_000_000_000
# Order events (``<platform>:<shop>:order:...``, or any id that reads as one) belong to the order
# webhooks, and so do purchases unless the pixel takes them from the browser; see docs/collect.md.
ORDER_EVENT_REASON = "order events are sent by the order webhook"
PURCHASE_REASON = (
    "purchase events come from the order webhooks; set browser_purchases and browser_purchase_max_value "
    "for this pixel (COLLECT_BROWSER_PURCHASES, COLLECT_BROWSER_PURCHASE_MAX_VALUE) to allow them"
)


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
    # Join keys (shared.receive.collect.keys) and context identifiers not of their shape left out, with
    # why: echoed in the answer, never their values.
    ignored: list[dict[str, str]] = field(default_factory=list)
    # Events published at the time of receipt because their event_time lay outside the window, with why.
    retimed: list[dict[str, str]] = field(default_factory=list)
    # The request's trace, taken on its own thread: a group commit publishes on another request's.
    traceparent: str | None = field(default_factory=log.outgoing_traceparent)
    # Events left out by kind ("purchase", "order_event"): the handler counts them (collect.skipped.<kind>).
    skipped_counts: dict[str, int] = field(default_factory=dict)


# What a context field dropped by build_user should have been (never its value: the answer does not echo).
_SHAPE_NAMES = {"ttclid": "a TikTok click id", "ttp": "a _ttp cookie value", "locale": "a language tag such as en-US"}


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
# Standard free text TikTok uses: forwarded with email- and phone-shaped runs redacted. Ids, codes and
# numbers are left as they are.
_FREE_TEXT = ("query",)
_CONTENT_TEXT = ("content_name", "content_category", "brand")
# Standard free text not taken from a browser: prose a page fills as it likes, where a name or a
# street address (which no pattern finds) would pass. Orders' descriptions come from the webhooks.
_BROWSER_PROSE = ("description",)


def is_personal_name(name: str) -> bool:
    """True when a property name says it holds personal data (``customer_email``, ``firstName``, ``name``)."""
    words = [w.lower() for w in _NAME_WORDS.findall(name)]
    compact = "".join(words)
    if any(w in _PERSONAL_WORDS for w in words) or any(part in compact for part in _PERSONAL_PARTS):
        return True
    return "name" in words and (words == ["name"] or any(w in _PERSON_WORDS for w in words))


def _personal_custom(name: str, value: Any) -> bool:
    """A custom property whose name says it holds personal data, or a number written like a phone."""
    if is_personal_name(name):
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool) and looks_like_pii(str(value))


def scrub_properties(properties: Properties) -> tuple[Properties, list[str], list[str]]:
    """Properties safe to forward; the custom ones dropped as personal data; the free text dropped.

    Custom properties are forwarded only as numbers and booleans (TikTok does not use custom text, and
    text, lists and objects may hold anything); ``query`` and the contents' names are scrubbed;
    ``description`` is not forwarded (see ``_BROWSER_PROSE``).
    """
    data = properties.model_dump()
    extra = properties.model_extra or {}
    personal = sorted(name for name, value in extra.items() if _personal_custom(name, value))
    text = sorted(
        [name for name, value in extra.items() if name not in personal and isinstance(value, (str, list, dict))]
        + [name for name in _BROWSER_PROSE if data.get(name) is not None]
    )
    for name in personal + text:
        data.pop(name, None)
    for name in _FREE_TEXT:
        if isinstance(data.get(name), str):
            data[name] = scrub_text(data[name])
    for content in data.get("contents") or []:
        for name in _CONTENT_TEXT:
            if isinstance(content.get(name), str):
                content[name] = scrub_text(content[name])
    return Properties.model_validate(data), personal, text


def _purchase_refusal(properties: Properties, pixel: PixelConfig) -> str | None:
    """Why a purchase-type event from the browser is not sent, or None when this pixel takes it."""
    if not pixel.browser_purchases:
        return PURCHASE_REASON
    limit = pixel.browser_purchase_max_value or 0.0
    amounts = [] if properties.value is None else [properties.value]
    if properties.contents:  # what TikTok could read as the value when `value` is absent or small
        amounts.append(sum((c.price or 0.0) * (1 if c.quantity is None else c.quantity) for c in properties.contents))
    if any(not math.isfinite(amount) or not 0 <= amount <= limit for amount in amounts):
        return f"purchase value (or contents' price x quantity) outside 0 to browser_purchase_max_value ({limit:g})"
    return None


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
    dropped_identifiers: list[str] = []  # not of their shape (shared.domain.shapes): counted, named in the answer
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
        on_drop=dropped_identifiers.append,
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
    skipped_counts: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    for event in body.events:
        refusal = ("order_event", ORDER_EVENT_REASON) if is_order_event_id(event.event_id) else None
        if refusal is None and event.event in PURCHASE_EVENTS:
            why = _purchase_refusal(event.properties, pixel)
            refusal = ("purchase", why) if why else None
        if refusal is not None:
            skipped.append({"event_id": event.event_id, "reason": refusal[1]})
            skipped_counts[refusal[0]] = skipped_counts.get(refusal[0], 0) + 1
            continue
        if (event.event, event.event_id) in seen:
            skipped.append({"event_id": event.event_id, "reason": "repeated in this request"})
            continue
        seen.add((event.event, event.event_id))
        page_url = (_safe_url(event.page.url) if event.page else None) or context_url
        referrer = (_safe_url(event.page.referrer) if event.page else None) or context_referrer
        properties, dropped, text = scrub_properties(event.properties)
        if dropped:
            skipped.append({"event_id": event.event_id, "reason": f"personal data not forwarded: {', '.join(dropped)}"})
        if text:
            skipped.append({"event_id": event.event_id, "reason": f"free text not forwarded: {', '.join(text)}"})
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
    for name in dropped_identifiers:
        count_dropped(name)
        where = "Accept-Language" if name == "locale" and not context_in.locale else f"context.{name}"
        ignored.append({"field": where, "reason": f"not {_SHAPE_NAMES[name]}: dropped, not forwarded"})
    return Plan(pixel, join_keys, context, envelopes, skipped, decision, ignored, retimed,
                skipped_counts=skipped_counts)  # fmt: skip


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
