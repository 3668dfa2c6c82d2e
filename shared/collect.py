"""The collect endpoint's domain: admit a browser request, read it, gate it on consent, store and publish.

A request goes through these steps, each of which can end it (see docs/collect.md):

1. method: ``OPTIONS`` is a CORS preflight, ``POST`` is a collect request;
2. rate limit: a token bucket per client address and instance (429);
3. origin: an ``Origin`` header must be one of the configured origins (any pixel's);
4. drops (204, nothing read): prefetch/prerender requests, obvious bots;
5. body: ``application/json`` or ``text/plain`` (what ``navigator.sendBeacon``
   sends without a preflight), at most ``COLLECT_MAX_BODY_BYTES`` declared and read,
   parsed by :func:`shared.untrusted.parse_json` (bounded depth, numbers, no lone surrogates);
6. admission: a configured pixel, from one of *its* origins; without an Origin
   (Shopify's pixel sandbox) only with one of its collect keys;
7. validation (pydantic): a 400 that names the field;
8. join keys: only those the request proves it holds (:mod:`shared.collect_keys`);
9. consent: :func:`shared.consent.decide` with the pixel's policy; without
   consent the answer is 204 and nothing is stored or published;
10. the click context is stored under those join keys and the events are
    published as envelopes carrying the page's event ids, with URLs and free
    text scrubbed of personal data (:mod:`shared.scrub`); a plan that would not
    serialise is refused alone (400) before it joins a group commit.

Everything up to step 10 is pure; step 10 goes through the :class:`Runtime`'s
store and publisher. Raw identifiers are hashed by :func:`shared.identity.build_user`
and never logged, echoed or published.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import ipaddress
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from shared import log
from shared.coalesce import GroupCommit
from shared.collect_keys import BoundKeys, bind
from shared.config import CollectSettings, PixelConfig, Tenants
from shared.consent import ConsentDecision, ConsentSnapshot, decide
from shared.deadline import BoundedProxy, Deadline, DependencyUnavailable
from shared.events import UnknownEventName, canonical_event_name
from shared.identity import RawIdentity, build_user
from shared.metrics import COUNTERS
from shared.models import Envelope, Page, Properties, UserData
from shared.orders import (
    JOIN_CUSTOMER,
    JOIN_SHOPIFY_CART,
    JOIN_SHOPIFY_CHECKOUT,
    JOIN_WOO_ORDER_KEY,
    JOIN_WOO_SESSION,
)
from shared.pubsub import publisher_from_settings
from shared.ratelimit import TokenBuckets
from shared.scrub import scrub_text, scrub_url
from shared.store import MAX_BATCH_WRITES, ContextWrite, store_from_settings
from shared.untrusted import UnsafeInput, ascii_int, parse_json, read_body

SOURCE = "collect"
JSON_TYPES = frozenset({"application/json", "text/plain"})
# Browsers cache a preflight for at most 2 h (Chromium's cap), so longer is pointless.
PREFLIGHT_MAX_AGE_SECONDS = 7200
# The page's clock is trusted within these bounds; outside them, the time of receipt is used
# (COLLECT_MAX_EVENT_AGE_DAYS' default: TikTok's default click attribution window).
MAX_EVENT_AGE_SECONDS = 7 * 86_400
# Requests of one instance committed together at most (their contexts in <= 500-document batches).
COMMIT_MAX_REQUESTS = 100
# A page waits on its beacon's answer no longer than this for Firestore, and for Pub/Sub.
STORE_TIMEOUT_SECONDS = 5.0
# What an instance remembers of the contexts it wrote (see KnownContexts): shorter than any CLICK_TTL_DAYS,
# long enough for a browsing session; about 200 bytes an entry.
KNOWN_CONTEXTS_MAX = 20_000
KNOWN_CONTEXTS_SECONDS = 30 * 60
PUBLISH_WAIT_SECONDS = 10.0
MAX_EVENT_AHEAD_SECONDS = 600
# A millisecond timestamp (Date.now()) is above this; unix seconds stay below it until the year 5138.
_MILLISECONDS_FLOOR = 100_000_000_000
# Numbers in properties: past this no price, quantity or value is real, and TikTok's doubles lose digits.
MAX_NUMBER = 1e15

# Obvious bots: crawlers, link previewers, monitors, headless browsers and HTTP libraries.
# A browser test must present a normal user agent (Chromium's --user-agent flag).
# Checked on the lowercased user agent with substring tests (fast), the regex only when "bot" occurs.
_BOT_WORDS = (
    "crawl", "spider", "slurp", "scraper", "facebookexternalhit", "headlesschrome", "phantomjs", "lighthouse",
    "pagespeed", "gtmetrix", "pingdom", "uptime", "statuscake", "prerender", "preview", "whatsapp",
)  # fmt: skip
_BOT_PREFIXES = (
    "curl", "wget", "python", "go-http-client", "java", "okhttp", "axios", "node-fetch", "undici", "libwww",
    "scrapy", "httpie",
)  # fmt: skip
_BOT_TOKEN = re.compile(r"(?<!cu)bot\b|bot[/_-]")  # Googlebot/2.1, AdsBot-Google, not the CUBOT phone
# Prefetch and prerender requests (Chromium: Sec-Purpose / Purpose, Firefox: X-Moz, Safari: X-Purpose).
_PREFETCH_HEADERS = ("sec-purpose", "purpose", "x-purpose", "x-moz")
_PREFETCH_VALUE = re.compile(r"prefetch|prerender|preview", re.IGNORECASE)
# Shopify's shareable theme preview links carry this query parameter.
_PREVIEW_QUERY_PARAMS = frozenset({"preview_theme_id"})
# Order events (``<platform>:<shop>:order:...``) belong to the order webhooks; see docs/collect.md.
_ORDER_EVENT_ID = re.compile(r"^(shopify|woocommerce):[^:]+:order:")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f]")
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_]{1,40}$")
# Steps pydantic adds to an error's path inside unions and validators: not field names.
_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "function-after", "function-before", "constrained-str"})


# --- the request schema ------------------------------------------------------------------

GrantState = Literal["granted", "denied"]
JoinValue = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
Identifier = Annotated[str, Field(max_length=256)]


def _one_or_many(value: Any) -> Any:
    """A single value or a list; numbers (ids) become text, so a union's errors do not double."""
    items = value if isinstance(value, list) else [value]
    return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in items]


def _id_text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class ConsentInput(BaseModel):
    """Consent as the page knows it; every vocabulary is optional and they may be mixed."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    granted: StrictBool | None = None
    # Google Consent Mode v2 (analytics_storage is accepted and ignored).
    ad_storage: GrantState | None = None
    ad_user_data: GrantState | None = None
    ad_personalization: GrantState | None = None
    analytics_storage: GrantState | None = None
    # Shopify Customer Privacy API, camelCase as Shopify names it or snake_case.
    marketing_allowed: StrictBool | None = Field(None, alias="marketingAllowed")
    sale_of_data_allowed: StrictBool | None = Field(None, alias="saleOfDataAllowed")
    analytics_processing_allowed: StrictBool | None = Field(None, alias="analyticsProcessingAllowed")
    preferences_processing_allowed: StrictBool | None = Field(None, alias="preferencesProcessingAllowed")

    def snapshot(self) -> ConsentSnapshot:
        return ConsentSnapshot(
            granted=self.granted,
            ad_storage=self.ad_storage,
            ad_user_data=self.ad_user_data,
            ad_personalization=self.ad_personalization,
            marketing_allowed=self.marketing_allowed,
            sale_of_data_allowed=self.sale_of_data_allowed,
        )


class JoinKeysInput(BaseModel):
    """Where the webhooks will look for this context (the kinds of shared.orders.JOIN_KINDS)."""

    model_config = ConfigDict(extra="forbid")

    shopify_cart_token: JoinValue | None = None
    shopify_checkout_token: JoinValue | None = None
    woocommerce_order_key: JoinValue | None = None
    woocommerce_session: JoinValue | None = None
    customer_id: JoinValue | None = None
    # HMAC-SHA256 (hex) of customer_id under COLLECT_SIGNING_SECRET, rendered by the store's server.
    customer_id_signature: Annotated[str, Field(max_length=128)] | None = None

    _ids = field_validator("customer_id", mode="before")(_id_text)

    def pairs(self) -> list[tuple[str, str]]:
        """(kind, value) pairs; a Shopify cart token loses its ``?key=`` secret (the order's cart_token has none)."""
        cart = self.shopify_cart_token.split("?", 1)[0] if self.shopify_cart_token else None
        values = [
            (JOIN_SHOPIFY_CHECKOUT, self.shopify_checkout_token),
            (JOIN_SHOPIFY_CART, cart),
            (JOIN_WOO_ORDER_KEY, self.woocommerce_order_key),
            (JOIN_WOO_SESSION, self.woocommerce_session),
            (JOIN_CUSTOMER, self.customer_id),
        ]
        return [(kind, value) for kind, value in values if value]


class UserInput(BaseModel):
    """Identifiers the site knows (raw or already SHA-256); hashed here, never stored raw."""

    model_config = ConfigDict(extra="forbid")

    email: list[Identifier] = Field(default_factory=list, max_length=10)
    phone: list[Identifier] = Field(default_factory=list, max_length=10)
    external_id: list[Identifier] = Field(default_factory=list, max_length=10)

    _lists = field_validator("email", "phone", "external_id", mode="before")(_one_or_many)


class PageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(max_length=2048)] | None = None
    referrer: Annotated[str, Field(max_length=2048)] | None = None


class ContextInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttclid: Annotated[str, Field(max_length=500)] | None = None
    ttp: Annotated[str, Field(max_length=500)] | None = None
    page_url: Annotated[str, Field(max_length=2048)] | None = None
    referrer: Annotated[str, Field(max_length=2048)] | None = None
    locale: Annotated[str, Field(max_length=35)] | None = None
    join_keys: JoinKeysInput = Field(default_factory=JoinKeysInput)
    user: UserInput = Field(default_factory=UserInput)
    # The page's word that it sent this same context (page aside) earlier in the session. Only ever
    # saves a write this instance already made: see KnownContexts.
    unchanged: StrictBool = False


_CUSTOM_PROPERTY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,49}$")
MAX_CUSTOM_PROPERTIES = 30
MAX_CUSTOM_TEXT = 1024


def _check_custom(name: str, value: Any, depth: int = 0) -> None:
    if isinstance(value, str):
        if len(value) > MAX_CUSTOM_TEXT:
            raise ValueError(f"custom property {name!r}: text longer than {MAX_CUSTOM_TEXT} characters")
    elif isinstance(value, (list, dict)):
        items = value.values() if isinstance(value, dict) else value
        if depth >= 2 or len(value) > 50:
            raise ValueError(f"custom property {name!r}: nested too deep or too many items")
        for item in items:
            _check_custom(name, item, depth + 1)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(f"custom property {name!r}", value)
    elif value is not None and not isinstance(value, bool):
        raise ValueError(f"custom property {name!r}: unsupported value")


def _check_number(what: str, value: float) -> None:
    if not math.isfinite(value) or abs(value) > MAX_NUMBER:
        raise ValueError(f"{what}: a number between -{MAX_NUMBER:.0e} and {MAX_NUMBER:.0e}")


class EventInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: Annotated[str, Field(min_length=1, max_length=50)]
    # The id the page passed to ttq.track(..., {event_id}): TikTok deduplicates on it.
    event_id: Annotated[str, Field(min_length=1, max_length=512)]
    # Unix seconds or milliseconds (Date.now()); absent: the time of receipt.
    event_time: float | None = Field(None, gt=0)
    properties: Properties = Field(default_factory=Properties)
    page: PageInput | None = None

    @field_validator("event")
    @classmethod
    def _known_name(cls, value: str) -> str:
        try:
            return canonical_event_name(value)
        except UnknownEventName:  # its message quotes the value: not echoed back
            raise ValueError("not a TikTok event name (a standard one, or letters, digits and _)") from None

    @field_validator("event_time", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError("must be a number: unix seconds or milliseconds (Date.now())")
        return value

    @field_validator("properties", mode="before")
    @classmethod
    def _currency_any_case(cls, value: Any) -> Any:
        """``"usd"`` is USD: a page's lowercase code must not cost the request its click context."""
        if isinstance(value, dict) and isinstance(value.get("currency"), str):
            return {**value, "currency": value["currency"].strip().upper()}
        return value

    @field_validator("event_id")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.strip() or _CONTROL_CHARACTER.search(value):
            raise ValueError("must be printable text (the id given to ttq.track)")
        return value.strip()

    @field_validator("properties")
    @classmethod
    def _bounded_custom(cls, value: Properties) -> Properties:
        extra = value.model_extra or {}
        if len(extra) > MAX_CUSTOM_PROPERTIES:
            raise ValueError(f"at most {MAX_CUSTOM_PROPERTIES} custom properties")
        for name, item in extra.items():
            if not _CUSTOM_PROPERTY.match(name):
                raise ValueError("custom property names are letters, digits and _ (at most 50)")
            _check_custom(name, item)
        for name in ("value", "num_items"):
            if getattr(value, name) is not None:
                _check_number(name, getattr(value, name))
        for content in value.contents:
            for name in ("price", "quantity"):
                if getattr(content, name) is not None:
                    _check_number(f"contents.{name}", getattr(content, name))
        return value


class CollectBody(BaseModel):
    """The JSON body of a collect request (documented in docs/collect.md)."""

    model_config = ConfigDict(extra="forbid")

    pixel_code: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    key: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    # true/false from a site's own banner, or an object of signals.
    consent: ConsentInput | None = None
    context: ContextInput = Field(default_factory=ContextInput)
    events: list[EventInput] = Field(default_factory=list)

    @field_validator("consent", mode="before")
    @classmethod
    def _plain_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return {"granted": value}
        if value is not None and not isinstance(value, dict):
            raise ValueError("must be true, false or an object of consent signals")
        return value

    def consent_snapshot(self) -> ConsentSnapshot | None:
        return None if self.consent is None else self.consent.snapshot()


# --- HTTP in, reply out --------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    """What the adapter hands over: headers with lowercase names and a bounded body reader."""

    method: str
    headers: Mapping[str, str]
    read: Callable[[int], bytes] = lambda _n: b""
    remote_addr: str | None = None

    def header(self, name: str) -> str:
        return (self.headers.get(name.lower()) or "").strip()


@dataclass(frozen=True)
class Reply:
    status: int
    outcome: str
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = ""


class Refused(Exception):
    """A request we answer with a 4xx; the reason names what to fix."""

    def __init__(self, status: int, error: str, reason: str, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason, self.fields = status, error, reason, fields


# --- pure helpers -------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def normalize_origin(value: str | None) -> str | None:
    """``scheme://host[:port]`` lowercased, default ports dropped; None for absent, ``null`` or malformed."""
    text = (value or "").strip().lower().rstrip("/")
    if not text or text == "null" or len(text) > 300:
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or parts.fragment:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def client_ip(forwarded_for: str | None, remote_addr: str | None, trusted_hops: int = 0) -> str | None:
    """The shopper's address.

    Google's front end appends the address it received the connection from as the
    last ``X-Forwarded-For`` entry; what precedes it came from the client and may be
    forged. Directly on a Cloud Run / functions URL the client is therefore the last
    entry; behind an external Application Load Balancer (which appends the client and
    then its own forwarding-rule address) set ``trusted_hops`` to 1. Without the
    header (local runs) the socket's peer is used.
    """
    if forwarded_for is None or not forwarded_for.strip():
        candidate = remote_addr
    else:
        entries = [part.strip() for part in forwarded_for.split(",") if part.strip()]
        candidate = entries[-1 - trusted_hops] if len(entries) > trusted_hops else None
    if not candidate:
        return None
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def drop_reason(request: HttpRequest, allow_automated: bool = False) -> str | None:
    """Why a request is dropped without being read (prefetch, bot), or None."""
    for name in _PREFETCH_HEADERS:
        value = request.headers.get(name)
        if value and _PREFETCH_VALUE.search(value):
            return "prefetch"
    return "bot" if is_bot(request.header("user-agent"), allow_automated) else None


def is_bot(user_agent: str, allow_automated: bool = False) -> bool:
    """An empty user agent, a crawler, a link previewer, a monitor, a headless browser or an HTTP library.

    ``allow_automated`` (COLLECT_ALLOW_AUTOMATED_BROWSERS, for testing) lets headless browsers through.
    """
    text = user_agent.lower()
    if allow_automated:
        text = text.replace("headlesschrome", "chrome").replace("phantomjs", "")
    if not text or text.startswith(_BOT_PREFIXES) or any(word in text for word in _BOT_WORDS):
        return True
    return "bot" in text and _BOT_TOKEN.search(text) is not None


def is_preview_page(url: str | None) -> bool:
    if not url or not any(name in url for name in _PREVIEW_QUERY_PARAMS):
        return False
    try:
        query = urlsplit(url).query
    except ValueError:
        return False
    return any(name in _PREVIEW_QUERY_PARAMS for name, _ in parse_qsl(query, keep_blank_values=True))


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def read_request_body(request: HttpRequest, limit: int) -> bytes:
    """The body, or :class:`Refused` (413) once it passes ``limit``, declared or while read (chunked)."""
    declared = request.header("content-length")
    length = ascii_int(declared, max_digits=19) if declared else None
    too_large = f"the body may be at most {limit} bytes (COLLECT_MAX_BODY_BYTES)"
    if declared and length is None:
        raise Refused(413, "payload too large", f"Content-Length is not a number of bytes; {too_large}")
    try:
        return read_body(request.read, limit, length)
    except UnsafeInput:  # BodyTooLarge: the only refusal read_body makes
        raise Refused(413, "payload too large", too_large) from None


def _field_path(loc: Iterable[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = str(part) if _SAFE_KEY.match(str(part)) else "<key>"
            path += ("." if path else "") + name
    return path or "body"


def describe_validation(exc: ValidationError, limit: int = 10) -> list[dict[str, str]]:
    """Field path and problem for each error; the input values are never echoed."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False)[:limit]:
        # A union's errors carry the tried type in their path (e.g. "str", "ConsentInput"); drop those.
        loc = [p for p in error["loc"] if not (isinstance(p, str) and (p[:1].isupper() or p in _TYPE_NAMES))]
        message = error["msg"].removeprefix("Value error, ")
        problems.append({"field": _field_path(loc), "problem": message})
    return problems


def parse_body(raw: bytes, max_events: int) -> CollectBody:
    """The validated body, or :class:`Refused` (400) naming the field.

    Parsed by :func:`shared.untrusted.parse_json`: what it lets through (bounded
    depth and integers, finite numbers, no lone surrogates) is what the publish
    and the Firestore write can serialise.
    """
    try:
        document = parse_json(raw, surrogates="reject")
    except UnsafeInput as exc:
        raise Refused(400, "invalid body", exc.reason) from None
    if not isinstance(document, dict):
        raise Refused(400, "invalid body", "the body must be a JSON object with pixel_code, consent, context, events")
    events = document.get("events")
    if isinstance(events, list) and len(events) > max_events:
        reason = f"events: at most {max_events} events per request (COLLECT_MAX_EVENTS), got {len(events)}"
        raise Refused(400, "invalid request", reason, [{"field": "events", "problem": reason}])
    try:
        return CollectBody.model_validate(document)
    except ValidationError as exc:
        problems = describe_validation(exc)
        reason = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        raise Refused(400, "invalid request", reason, problems) from None


def admit(
    body: CollectBody,
    origin: str | None,
    tenants: Tenants,
    origins_by_pixel: Mapping[str, frozenset[str]] | None = None,
) -> PixelConfig:
    """The pixel this request may write to, or :class:`Refused` (403) saying why not.

    - the pixel must be configured here;
    - a request with an Origin must come from one of the pixel's allowed origins;
    - a request without one (Shopify's pixel sandbox strips it, or sends ``null``)
      needs one of the pixel's collect keys; a key never admits a foreign Origin;
    - a key that is sent must be valid, even from an allowed origin.
    """
    pixel = tenants.pixel(body.pixel_code)
    if pixel is None:
        raise Refused(403, "forbidden", f"pixel_code {body.pixel_code!r} is not served by this endpoint")
    allowed = origins_by_pixel[pixel.pixel_code] if origins_by_pixel else pixel_origins(pixel)
    if origin is not None and origin not in allowed:
        raise Refused(403, "forbidden", f"origin {origin} is not allowed for pixel {pixel.pixel_code}")
    if body.key is not None and not _key_matches(body.key, pixel.collect_keys):
        raise Refused(403, "forbidden", f"key: not a collect key of pixel {pixel.pixel_code}")
    if origin is None and body.key is None:
        raise Refused(
            403, "forbidden", "a request without an Origin header needs the pixel's collect key (field 'key')"
        )
    return pixel


def pixel_origins(pixel: PixelConfig) -> frozenset[str]:
    return frozenset(o for o in map(normalize_origin, pixel.allowed_origins) if o)


def _key_matches(key: str, keys: Iterable[str]) -> bool:
    matched = False
    for candidate in keys:
        matched |= hmac.compare_digest(key.encode(), candidate.encode())
    return matched


def _event_time(value: int | float | None, received: int, max_age: int = MAX_EVENT_AGE_SECONDS) -> int | None:
    """Unix seconds of the page's time, or None when it lies outside the window (its clock is wrong)."""
    if value is None:
        return received
    if not math.isfinite(value) or value > MAX_NUMBER:
        return None
    seconds = int(value / 1000) if value >= _MILLISECONDS_FLOOR else int(value)
    if seconds < received - max_age or seconds > received + MAX_EVENT_AHEAD_SECONDS:
        return None
    return seconds


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Plan:
    """What an admitted, consented request leads to: the context to store and the events to publish."""

    pixel: PixelConfig
    join_keys: list[tuple[str, str]]
    context: dict[str, Any]
    envelopes: list[Envelope]
    skipped: list[dict[str, str]]
    decision: ConsentDecision
    # Join keys left out, with why (shared.collect_keys): echoed in the answer, never their values.
    ignored: list[dict[str, str]] = field(default_factory=list)
    # Events published at the time of receipt because their event_time lay outside the window, with why.
    retimed: list[dict[str, str]] = field(default_factory=list)
    # The request's trace, taken on its own thread: a group commit publishes on another request's.
    traceparent: str | None = field(default_factory=log.outgoing_traceparent)


def bound_keys(body: CollectBody, pixel: PixelConfig) -> BoundKeys:
    """The join keys this request may write under (see :mod:`shared.collect_keys`)."""
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
        "customer_key": _sha256(customer_id) if customer_id else None,
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
            days, minutes = max_event_age // 86_400, MAX_EVENT_AHEAD_SECONDS // 60
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


# --- accepted requests, committed together ---------------------------------------------------------


class Unavailable(Exception):
    """Firestore or Pub/Sub failed for one request: it answers 503 and the page may retry."""

    def __init__(self, what: str, cause: BaseException) -> None:
        super().__init__(f"{what} unavailable ({type(cause).__name__})")
        self.what = what
        self.cause = cause


def _is_request_error(exc: BaseException) -> bool:
    """A 4xx from the API (one bad document spoils a whole batch); not an outage."""
    try:
        from google.api_core import exceptions as gexc
    except ImportError:  # pragma: no cover - the client libraries are installed wherever a store is
        return False
    if isinstance(exc, DependencyUnavailable):  # the bounded call's own failure, wrapped
        exc = exc.__cause__ or exc
    # A message that does not serialise (ValueError, TypeError) is this data's fault too.
    return isinstance(exc, (gexc.ClientError, ValueError, TypeError))


def commit_plans(plans: Sequence[Plan], store: Any, publisher: Any) -> list[int | Exception]:
    """One round trip each to Pub/Sub and Firestore for several requests' plans, overlapped.

    Every plan's envelopes leave in one publish, on the publisher's helper thread,
    while the contexts are written in as few batches as Firestore allows; then
    the publish is waited for (a failed publish fails every plan with events:
    Pub/Sub stores a request's messages all or none). Returns, per
    plan, the number of context documents written or the :class:`Unavailable`
    that plan's request answers with. A batch or a publish refused as a bad
    request (or one that would not serialise) is retried plan by plan, so one
    request's bad data does not fail the others.
    """
    outcomes: list[int | Exception] = [0] * len(plans)
    envelopes = [envelope for plan in plans for envelope in plan.envelopes]
    publishing = None
    if envelopes:
        try:
            traces = [plan.traceparent for plan in plans for _ in plan.envelopes]
            publishing = publisher.publish_async(envelopes, traces)
        except Exception as exc:  # any client failure
            publishing = _failed(exc)
    for group in _store_groups(plans):
        writes = [_context_write(plans[i]) for i in group]
        try:
            store.put_click_contexts(writes)
        except Exception as exc:  # any client failure: the requests of this batch answer 503
            if len(group) > 1 and _is_request_error(exc):
                for index, write in zip(group, writes, strict=True):
                    try:
                        store.put_click_contexts([write])
                    except Exception as alone:  # this plan's own failure
                        outcomes[index] = Unavailable("firestore", alone)
            else:
                for index in group:
                    outcomes[index] = Unavailable("firestore", exc)
    if publishing is not None:
        try:
            # The publish has its own deadline; this bounds the wait even if its retries outlast it.
            publishing.result(timeout=PUBLISH_WAIT_SECONDS)
        except Exception as exc:  # any client failure or the deadline: every plan with events answers 503
            alone = sum(1 for plan in plans if plan.envelopes) > 1 and _is_request_error(exc)
            failures = _publish_alone(plans, publisher) if alone else {}
            for index, plan in enumerate(plans):
                if plan.envelopes and not isinstance(outcomes[index], Exception):
                    if not alone:
                        outcomes[index] = Unavailable("pubsub", exc)
                    elif index in failures:
                        outcomes[index] = Unavailable("pubsub", failures[index])
    for index, plan in enumerate(plans):
        if not isinstance(outcomes[index], Exception):
            outcomes[index] = len(plan.join_keys)
    return outcomes


def _publish_alone(plans: Sequence[Plan], publisher: Any) -> dict[int, Exception]:
    """Each plan's events in a publish of their own (overlapped); the failures by plan index."""
    pending: dict[int, Future] = {}
    for index, plan in enumerate(plans):
        if plan.envelopes:
            try:
                pending[index] = publisher.publish_async(plan.envelopes, [plan.traceparent] * len(plan.envelopes))
            except Exception as exc:  # this plan's own failure
                pending[index] = _failed(exc)
    failures: dict[int, Exception] = {}
    deadline = time.monotonic() + PUBLISH_WAIT_SECONDS
    for index, future in pending.items():
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
        except Exception as exc:  # this plan's own failure, or the shared deadline
            failures[index] = exc
    return failures


def _failed(exc: Exception) -> Future:
    future: Future = Future()
    future.set_exception(exc)
    return future


def _context_write(plan: Plan) -> ContextWrite:
    return (plan.pixel.pixel_code, plan.join_keys, plan.context, dt.timedelta(days=plan.pixel.click_ttl_days))


def _store_groups(plans: Sequence[Plan], limit: int = MAX_BATCH_WRITES) -> list[list[int]]:
    """Indexes of the plans with join keys, in consecutive groups of at most ``limit`` documents each."""
    groups: list[list[int]] = []
    size = limit
    for index, plan in enumerate(plans):
        count = len(plan.join_keys)
        if not count:
            continue
        if size + count > limit:
            groups.append([])
            size = 0
        groups[-1].append(index)
        size += count
    return groups


# --- contexts already written ---------------------------------------------------------------------


def context_digest(context: Mapping[str, Any]) -> str:
    """Pure: what a context would change when merged, as a digest; its page and Nones (merges keep those) aside."""
    kept = {k: v for k, v in context.items() if v is not None and k != "page_url"}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


class KnownContexts:
    """The click contexts this instance wrote lately: (pixel, join key) -> digest of what it wrote.

    A request that says its context is ``unchanged`` skips the write only when
    every one of its join keys was written here, with this very digest (consent
    included), within ``seconds``. So the flag can never keep a new consent, a
    new click or a new key from being stored, nor leave a deleted context
    deleted for a grant this instance has not itself written: at worst it saves
    a write that would have changed nothing but the page and the time to live.
    """

    def __init__(self, max_entries: int = KNOWN_CONTEXTS_MAX, seconds: float = KNOWN_CONTEXTS_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.max_entries, self.seconds, self.clock = max_entries, seconds, clock
        self._entries: OrderedDict[tuple[str, str, str], tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def known(self, pixel_code: str, join_keys: Sequence[tuple[str, str]], digest: str) -> bool:
        if not join_keys:
            return False
        oldest = self.clock() - self.seconds
        with self._lock:
            for kind, value in join_keys:
                entry = self._entries.get((pixel_code, kind, value))
                if entry is None or entry[0] != digest or entry[1] < oldest:
                    return False
        return True

    def remember(self, pixel_code: str, join_keys: Sequence[tuple[str, str]], digest: str) -> None:
        now = self.clock()
        with self._lock:
            for kind, value in join_keys:
                key = (pixel_code, kind, value)
                self._entries[key] = (digest, now)
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, pixel_code: str, join_keys: Sequence[tuple[str, str]]) -> None:
        with self._lock:
            for kind, value in join_keys:
                self._entries.pop((pixel_code, kind, value), None)


# --- the instance's dependencies ----------------------------------------------------------------


class Runtime:
    """One instance's settings; Firestore and Pub/Sub clients made on first use, once."""

    def __init__(
        self,
        tenants: Tenants,
        *,
        max_body_bytes: int = 32_768,
        max_events: int = 20,
        default_region: str | None = "US",
        trusted_hops: int = 0,
        rate_limit_per_minute: int = 0,
        rate_limit_burst: int = 120,
        store_factory: Callable[[], Any] | None = None,
        publisher_factory: Callable[[], Any] | None = None,
        allow_automated_browsers: bool = False,
        max_event_age_days: int = MAX_EVENT_AGE_SECONDS // 86_400,
    ) -> None:
        self.tenants = tenants
        self.max_event_age = max_event_age_days * 86_400
        self.allow_automated_browsers = allow_automated_browsers
        self.max_body_bytes = max_body_bytes
        self.max_events = max_events
        self.default_region = default_region
        self.trusted_hops = trusted_hops
        self.rate_limit = TokenBuckets(rate_limit_per_minute, rate_limit_burst)
        # Any pixel's origins: what a preflight (which carries no body, so no pixel) may be allowed.
        self.origins_by_pixel = {code: pixel_origins(pixel) for code, pixel in tenants.pixels.items()}
        self.origins: frozenset[str] = frozenset().union(*self.origins_by_pixel.values())
        self._store_factory, self._publisher_factory = store_factory, publisher_factory
        self._store: Any = None
        self._publisher: Any = None
        self._committer: GroupCommit[Plan, int] | None = None
        self._lock = threading.Lock()
        self.known_contexts = KnownContexts()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Runtime:
        """Raises :class:`shared.config.ConfigError` naming the variable that is wrong."""
        settings = CollectSettings.from_env(environ)
        log.set_level(settings.log_level)

        return cls(
            settings.tenants(),
            max_body_bytes=settings.max_body_bytes,
            max_events=settings.max_events_per_request,
            default_region=settings.default_phone_region,
            trusted_hops=settings.trusted_proxy_hops,
            rate_limit_per_minute=settings.rate_limit_per_minute,
            rate_limit_burst=settings.rate_limit_burst,
            allow_automated_browsers=settings.allow_automated_browsers,
            max_event_age_days=settings.max_event_age_days,
            # The RPC's own deadline lets an abandoned commit end; the bound in _flush caps the wait.
            store_factory=lambda: store_from_settings(settings, timeout=STORE_TIMEOUT_SECONDS),
            publisher_factory=lambda: publisher_from_settings(settings),
        )

    def _lazy(self, name: str, factory: Callable[[], Any] | None) -> Any:
        if getattr(self, name) is None:
            with self._lock:
                if getattr(self, name) is None:
                    setattr(self, name, factory())  # type: ignore[misc]
        return getattr(self, name)

    @property
    def store(self) -> Any:
        return self._lazy("_store", self._store_factory)

    def accept(self, plan: Plan) -> int:
        """Store the plan's context and publish its events, in one group commit with concurrent requests.

        Returns the click-context documents written; raises :class:`Unavailable`
        naming the part that failed.
        """
        committer = self._lazy("_committer", lambda: GroupCommit(self._flush, max_items=COMMIT_MAX_REQUESTS))
        try:
            return committer.submit(plan)
        except Unavailable:
            raise
        except Exception as exc:  # a timeout waiting for the group, or a bug in the flush: 503, never 500
            raise Unavailable("collect", exc) from exc

    def _flush(self, plans: list[Plan]) -> list[int | Exception]:
        COUNTERS.add("collect.commits")
        COUNTERS.add("collect.requests_committed", len(plans))
        try:
            store = self.store if any(p.join_keys for p in plans) else None
        except Exception as exc:  # the client could not be made (credentials, settings): 503, not 500
            return [Unavailable("firestore", exc)] * len(plans)
        if store is not None:
            # The client library retries an unreachable Firestore for a minute; the page should not wait.
            store = BoundedProxy(store, "firestore", Deadline(STORE_TIMEOUT_SECONDS))
        try:
            publisher = self.publisher
        except Exception as exc:  # as above
            return [Unavailable("pubsub", exc)] * len(plans)
        return commit_plans(plans, store, publisher)

    @property
    def publisher(self) -> Any:
        return self._lazy("_publisher", self._publisher_factory)


# --- the whole request ---------------------------------------------------------------------------


def cors_headers(origin: str | None, runtime: Runtime) -> dict[str, str]:
    headers = {"Vary": "Origin"}
    if origin is not None and origin in runtime.origins:
        headers["Access-Control-Allow-Origin"] = origin
        # Lets a page (the demo, a developer's console) read why a 204 stored nothing.
        headers["Access-Control-Expose-Headers"] = "X-Collect-Outcome, X-Collect-Consent, X-Collect-Ignored"
    return headers


def preflight(request: HttpRequest, runtime: Runtime) -> Reply:
    origin = normalize_origin(request.header("origin"))
    if origin is None or origin not in runtime.origins:
        reason = f"origin {origin or '(none)'} is not an allowed origin"
        return Reply(403, "rejected", {"error": "forbidden", "reason": reason}, {"Vary": "Origin"}, reason)
    headers = {
        **cors_headers(origin, runtime),
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
    }
    return Reply(204, "preflight", None, headers)


def handle(request: HttpRequest, runtime: Runtime) -> Reply:
    """One collect request, start to finish. Never raises for bad input; I/O failures answer 503."""
    method = request.method.upper()
    if method == "OPTIONS":
        return preflight(request, runtime)
    origin = normalize_origin(request.header("origin"))
    cors = cors_headers(origin, runtime)
    try:
        reply = _collect(request, runtime, origin, method)
    except Refused as refused:
        body: dict[str, Any] = {"error": refused.error, "reason": refused.reason}
        if refused.fields:
            body["fields"] = refused.fields
        headers = {"Allow": "POST, OPTIONS"} if refused.status == 405 else {}
        reply = Reply(refused.status, "rejected", body, headers, refused.reason)
    headers = {**cors, **reply.headers, "X-Collect-Outcome": reply.outcome}
    return Reply(reply.status, reply.outcome, reply.body, headers, reply.reason)


def _rate_limited(request: HttpRequest, runtime: Runtime) -> Reply | None:
    """429 when this client address has used up its bucket on this instance (COLLECT_RATE_LIMIT_*)."""
    if not runtime.rate_limit.enabled:
        return None
    address = client_ip(request.headers.get("x-forwarded-for"), request.remote_addr, runtime.trusted_hops)
    verdict = runtime.rate_limit.take(address)
    if verdict.allowed:
        return None
    COUNTERS.add("collect.rate_limited")
    per_minute = round(runtime.rate_limit.per_second * 60)
    reason = f"more than {per_minute} requests per minute from this address (COLLECT_RATE_LIMIT_PER_MINUTE); try later"
    body = {"error": "too many requests", "reason": reason}
    return Reply(429, "rejected_rate_limit", body, {"Retry-After": str(verdict.retry_after)}, reason)


def _collect(request: HttpRequest, runtime: Runtime, origin: str | None, method: str) -> Reply:
    if method != "POST":
        raise Refused(405, "method not allowed", "collect takes POST (and OPTIONS for CORS preflight)")
    limited = _rate_limited(request, runtime)
    if limited is not None:
        return limited
    raw_origin = request.header("origin")
    if raw_origin and raw_origin.lower() != "null" and origin not in runtime.origins:
        shown = origin or "a malformed Origin"
        raise Refused(403, "forbidden", f"origin {shown} is not allowed (COLLECT_ALLOWED_ORIGINS)")
    dropped = drop_reason(request, runtime.allow_automated_browsers)
    if dropped:
        return Reply(204, f"dropped_{dropped}", reason=f"{dropped} traffic is not collected")
    content_type = media_type(request.header("content-type"))
    if content_type not in JSON_TYPES:
        raise Refused(415, "unsupported media type", "send JSON as application/json or text/plain")
    raw = read_request_body(request, runtime.max_body_bytes)
    if not raw:
        raise Refused(400, "invalid body", "the body is empty; send a JSON object")
    body = parse_body(raw, runtime.max_events)
    pixel = admit(body, origin, runtime.tenants, runtime.origins_by_pixel)
    if is_preview_page(body.context.page_url):
        return Reply(204, "dropped_preview", reason="theme preview traffic is not collected")
    bound = bound_keys(body, pixel)
    decision = decide(body.consent_snapshot(), runtime.tenants.policy_for(pixel.pixel_code))
    if not decision.send:
        return _withhold(bound, pixel, decision, runtime)
    plan = build_plan(
        body,
        pixel,
        decision,
        ip=client_ip(request.headers.get("x-forwarded-for"), request.remote_addr, runtime.trusted_hops),
        user_agent=request.header("user-agent"),
        accept_language=request.header("accept-language"),
        default_region=runtime.default_region,
        bound=bound,
        max_event_age=runtime.max_event_age,
    )
    problem = unserialisable(plan)
    if problem:
        raise Refused(400, "invalid request", problem)
    return _execute(plan, runtime, unchanged=body.context.unchanged)


def _ignored_header(bound: BoundKeys) -> dict[str, str]:
    return {"X-Collect-Ignored": ", ".join(i.field for i in bound.ignored)} if bound.ignored else {}


def _withhold(bound: BoundKeys, pixel: PixelConfig, decision: ConsentDecision, runtime: Runtime) -> Reply:
    """No consent: nothing is stored or published. An explicit denial also deletes what an earlier grant stored.

    Only under the keys this request proves it holds: a denial posted with someone
    else's (guessable) key must not delete their context.
    """
    from shared.store import CLICK_CONTEXTS

    withdrawn = decision.reason == "denied" and bool(bound.pairs)
    if withdrawn:
        runtime.known_contexts.forget(pixel.pixel_code, bound.pairs)  # a later grant must be written again
        try:
            for kind, value in bound.pairs:
                runtime.store.release(CLICK_CONTEXTS, (pixel.pixel_code, kind, value))
        except Exception as exc:  # any client failure: the page may retry
            return _unavailable("firestore", exc)
    reason = f"consent {decision.describe()}: nothing stored or sent"
    if withdrawn:
        keys = len(bound.pairs)
        reason = f"consent {decision.describe()}: nothing sent; the click context under its {keys} join keys deleted"
    headers = {"X-Collect-Consent": decision.reason, **_ignored_header(bound)}
    return Reply(204, "withheld_consent", reason=reason, headers=headers)


def _unavailable(what: str, exc: Exception) -> Reply:
    reason = f"{what} unavailable ({type(exc).__name__}); try again"
    return Reply(503, "error_unavailable", {"error": "unavailable", "reason": reason}, {"Retry-After": "5"}, reason)


def _execute(plan: Plan, runtime: Runtime, unchanged: bool = False) -> Reply:
    """Store the context and publish the events (with concurrent requests: see :func:`commit_plans`).

    Both are idempotent (a merge under the same keys; the same event ids, which the
    sender and TikTok deduplicate), so a caller retrying after a 503 does no harm.
    A context this instance already wrote, as it is, is not written again when
    the page says it is ``unchanged`` (see :class:`KnownContexts`).
    """
    pixel_code = plan.pixel.pixel_code
    digest = context_digest(plan.context) if plan.join_keys else ""
    skipped_write = unchanged and runtime.known_contexts.known(pixel_code, plan.join_keys, digest)
    try:
        stored = runtime.accept(replace(plan, join_keys=[]) if skipped_write else plan)
    except Unavailable as exc:
        return _unavailable(exc.what, exc.cause)
    if plan.join_keys and not skipped_write:
        runtime.known_contexts.remember(pixel_code, plan.join_keys, digest)
    body: dict[str, Any] = {
        "outcome": "accepted",
        "published": [e.event_id for e in plan.envelopes],
        "skipped": plan.skipped,
        "click_context": stored,
        "consent": plan.decision.reason,
        "limited_data_use": plan.decision.limited_data_use,
    }
    headers = {}
    if plan.ignored:
        body["ignored"] = plan.ignored
        headers["X-Collect-Ignored"] = ", ".join(i["field"] for i in plan.ignored)
    if plan.retimed:
        body["retimed"] = plan.retimed
    if skipped_write:
        body["click_context_unchanged"] = len(plan.join_keys)
    context_part = f"context unchanged under {len(plan.join_keys)} keys" if skipped_write else (
        f"context under {stored} keys")  # fmt: skip
    reason = (
        f"{len(plan.envelopes)} published, {len(plan.skipped)} skipped, {context_part}, "
        f"consent {plan.decision.describe()}"
    )
    if plan.ignored:
        reason += f", {len(plan.ignored)} join keys ignored"
    if plan.retimed:
        reason += f", {len(plan.retimed)} at the time of receipt (event_time outside the window)"
    return Reply(200, "accepted", body, headers, reason)


def log_reply(reply: Reply, request: HttpRequest) -> None:
    """One line per request: the outcome and ids, never the shopper's data."""
    fields: dict[str, Any] = {"status": reply.status, "origin": normalize_origin(request.header("origin"))}
    if reply.body and reply.outcome == "accepted":
        fields["events"] = len(reply.body["published"])
        fields["event_ids"] = reply.body["published"][:20]
        fields["click_context"] = reply.body["click_context"]
        fields["consent"] = reply.body["consent"]
        fields["limited_data_use"] = reply.body["limited_data_use"]
        if reply.body.get("ignored"):
            fields["ignored"] = [i["field"] for i in reply.body["ignored"]]
        if reply.body.get("retimed"):
            fields["retimed"] = [r["event_id"] for r in reply.body["retimed"]][:20]
    log.outcome(reply.outcome, reply.reason or reply.outcome, **fields)
