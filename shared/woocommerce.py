"""WooCommerce order webhooks -> one TikTok Purchase per paid order.

Pure part (no I/O): :func:`is_ping` (the setup ping), :func:`ignore_reason`
(topic and status rules), :func:`map_order` (the v3 order -> :class:`OrderEvent`)
and :func:`checkout_consent` (the ``_tt_consent`` order meta).

Delivery part: :func:`handle` verifies a delivery and runs the shared order flow
(:func:`shared.receive.orders.process_order_event`) with bounded waits on Firestore and
Pub/Sub. WooCommerce never retries a delivery, so when either stays unavailable
the event is not dropped: it is published without the stored click context
when Firestore is down but the checkout's consent decides, otherwise *parked*: an ERROR log line with
``outcome="parked"`` and a ``replay`` record (what the envelope holds: hashes,
ip, user agent, click ids, and city/state/country normalized but unhashed, as
TikTok takes them), which :func:`replay` (``python -m
functions.woocommerce_webhook.replay``) publishes later. See docs/woocommerce.md.

Whatever a valid signer sends ends as one of: published, skipped with a reason
(``ignored``, ``withheld_consent``), parked, or ``refused`` with
a 4xx and a reason; never a 5xx and never a bare 200 that nobody acts on.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shared.config import ConfigError, ConsentPolicy, PixelConfig, Tenants, WooCommerceSettings, WooCommerceSiteConfig
from shared.domain.consent import ConsentSnapshot
from shared.domain.events import order_event_id
from shared.domain.identity import RawIdentity, build_user
from shared.domain.models import Envelope, UserData
from shared.domain.scrub import looks_like_pii, scrub_text
from shared.domain.untrusted import UnsafeInput, ascii_int, clean_text, parse_json
from shared.infra import log
from shared.infra.deadline import DependencyUnavailable
from shared.infra.deadline import bounded as _bounded
from shared.infra.pubsub import publisher_from_settings
from shared.infra.store import store_from_settings
from shared.outcome import Outcome
from shared.receive.orders import (
    JOIN_CUSTOMER,
    JOIN_WOO_ORDER_KEY,
    JOIN_WOO_SESSION,
    MAX_EVENT_AGE,
    OrderEvent,
    build_envelope,
    process_order_event,
)
from shared.receive.signatures import verify_hmac_base64

PLATFORM = "woocommerce"
ORDER_TOPICS = frozenset({"order.created", "order.updated"})
# wc_get_is_paid_statuses(); date_paid_gmt covers sites that add their own paid statuses.
PAID_STATUSES = frozenset({"processing", "completed"})
# A refunded order still has date_paid_gmt: these statuses win over it.
NEVER_PURCHASE_STATUSES = frozenset({"refunded", "failed", "cancelled", "trash"})

# Order meta written at checkout by the PHP snippet in docs/woocommerce.md.
META_TTCLID = "_ttclid"
META_TTP = "_ttp"
META_SESSION = "_tt_session"
META_CONSENT = "_tt_consent"
# WooCommerce's own Order Attribution (8.5+), empty when the site's consent tool blocks its tracking.
# Only the ttclid is read from the landing URL: the rest of it (other parameters, the path) may
# carry what a shopper typed and is never logged or forwarded.
META_WC_SESSION_ENTRY = "_wc_order_attribution_session_entry"
META_WC_USER_AGENT = "_wc_order_attribution_user_agent"
_CLICK_ID = re.compile(r"[\x21-\x7e]{1,500}")  # printable ASCII, no spaces
_MAX_URL = 65_536

# Real orders are a few kB; this only stops a body nobody would sign.
MAX_BODY_BYTES = 8 * 1024 * 1024
# Signed JSON: longer integers than the shared default (40 digits), so that an absurd
# total reaches the amount rule below (dropped from value) instead of losing the order;
# still far below the 4300 digits where int() itself refuses.
JSON_MAX_INT_DIGITS = 1000
# Ids are 64-bit at most; a line of a million units is beyond any real order.
_MAX_ID_DIGITS = 19
_MAX_QUANTITY_DIGITS = 6
# Amounts: plain ASCII decimals below a trillion. float() alone would take "1_0",
# Arabic-Indic digits and "1e400"; a 310-digit integer makes it raise OverflowError.
_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,12})?")
_MAX_AMOUNT = 1e12
# Bounded waits: WooCommerce gives up after 60 s, the function's own timeout may be the same.
FIRESTORE_SECONDS = 5.0
PUBLISH_SECONDS = 10.0

PARKED = "parked"
# A signed order we failed on and could not even park: a 4xx, so WooCommerce's delivery log shows it.
REFUSED = "refused"
_STATUS_BY_OUTCOME = {PARKED: 202, "rejected": 401, REFUSED: 422}
_PING_BODY = re.compile(rb"webhook_id=\d{1,20}")
_CURRENCY = re.compile(r"[A-Z]{3}")
# The sandbox (like TikTok) refuses older event times as a unit or clock bug.
_EARLIEST_EVENT_TIME = 1_420_070_400  # 2015-01-01
_MAX_FUTURE_SECONDS = 86_400
# A log field value is cut at 2000 characters and a list at 50 items (shared.infra.log).
_REPLAY_CHUNK = 1800
_REPLAY_MAX_CHUNKS = 50


class UnusableOrder(ValueError):
    """A signed order we can not turn into an event; the message names the field."""


# --- pure rules ---------------------------------------------------------------


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def is_ping(headers: Mapping[str, str], body: bytes) -> bool:
    """WooCommerce's setup ping: form body ``webhook_id=<id>``, no signature, no X-WC headers."""
    if len(body) > 64 or not _PING_BODY.fullmatch(body.strip()):
        return False
    return not any(name.startswith("x-wc-webhook-") for name in _lower_headers(headers))


def order_status(order: Mapping[str, Any]) -> str:
    status = order.get("status")
    return status.strip().lower().removeprefix("wc-") if isinstance(status, str) else ""


def ignore_reason(topic: str, order: Mapping[str, Any]) -> str | None:
    """Why this delivery sends no Purchase, or None when the order is paid (first sight claims it)."""
    if topic not in ORDER_TOPICS:
        return f"topic {topic[:60]!r} is not handled (subscribe order.created and order.updated)"
    status = order_status(order)
    if status in NEVER_PURCHASE_STATUSES:
        return f"status {status} never produces a Purchase"
    if status in PAID_STATUSES or _text(order.get("date_paid_gmt")):
        return None
    return f"order not paid yet (status {status or 'missing'}, no date_paid_gmt)"


def _text(value: Any, limit: int = 500) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    if isinstance(value, int) and value.bit_length() > 1024:
        return None  # str() of a huge int is slow, and no text field is a 300-digit number
    text = clean_text(str(value)[: limit * 2]).strip()
    return text[:limit] if text else None


def _positive_int(value: Any, max_digits: int = _MAX_ID_DIGITS) -> int | None:
    """ASCII digits only: "²".isdigit() is True, and int() then refuses it."""
    number = ascii_int(value, max_digits=max_digits)
    return number if number else None


def _amount(value: Any) -> float | None:
    """A non-negative finite amount below a trillion from WooCommerce's strings ("29.35") or numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if 0 <= value < _MAX_AMOUNT else None
    if isinstance(value, float):
        return value if math.isfinite(value) and 0 <= value < _MAX_AMOUNT else None
    if isinstance(value, str) and _DECIMAL.fullmatch(text := value.strip()):
        return float(text)
    return None


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def meta_value(order: Mapping[str, Any], key: str, limit: int = 500) -> str | None:
    """The first non-empty value of order meta ``key`` (``meta_data: [{id, key, value}]``)."""
    items = order.get("meta_data")
    for item in items if isinstance(items, list) else ():
        if isinstance(item, Mapping) and item.get("key") == key and (value := _text(item.get("value"), limit)):
            return value
    return None


def landing_ttclid(order: Mapping[str, Any]) -> str | None:
    """The ``ttclid`` of the landing URL WooCommerce's attribution recorded, and nothing else of that URL."""
    # Whole: landing URLs with many utm_* parameters are long, and a cut ttclid would be a wrong one.
    url = meta_value(order, META_WC_SESSION_ENTRY, limit=_MAX_URL)
    if not url:
        return None
    try:
        values = parse_qs(urlsplit(url).query).get("ttclid", [])
    except ValueError:
        return None
    return next((v for raw in values if _CLICK_ID.fullmatch(v := raw.strip()) and not looks_like_pii(v)), None)


def click_id(order: Mapping[str, Any]) -> str | None:
    """The order's ttclid: our snippet's ``_ttclid`` meta, else WooCommerce's attribution landing URL.

    A click context the collect endpoint stored fills it only when both are
    empty (shared.receive.orders), so the order's own record of the click wins.
    """
    return meta_value(order, META_TTCLID) or landing_ttclid(order)


def checkout_consent(order: Mapping[str, Any]) -> ConsentSnapshot | None:
    """The consent the checkout saw (``_tt_consent``: granted or denied); None when absent or unknown."""
    value = (meta_value(order, META_CONSENT) or "").lower()
    if value == "granted":
        return ConsentSnapshot(granted=True)
    if value == "denied":
        return ConsentSnapshot(granted=False)
    return None


def _gmt_timestamp(value: Any) -> int | None:
    """WooCommerce's ``*_gmt`` dates are UTC without a suffix ("2017-03-22T19:28:08")."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        return int(parsed.timestamp())
    except (ValueError, OverflowError):
        return None


def event_time(order: Mapping[str, Any], now: float) -> int:
    """When it was paid, else created, else now (dates TikTok would refuse are skipped)."""
    for name in ("date_paid_gmt", "date_created_gmt"):
        stamp = _gmt_timestamp(order.get(name))
        if stamp is not None and _EARLIEST_EVENT_TIME <= stamp <= now + _MAX_FUTURE_SECONDS:
            return stamp
    return int(now)


def _content_id(item: Mapping[str, Any], choice: str) -> str | None:
    product = _positive_int(item.get("product_id"))
    if choice == "sku":
        return _text(item.get("sku"), 256)
    if choice == "variation_id":
        product = _positive_int(item.get("variation_id")) or product
    return str(product) if product else None


def _contents(order: Mapping[str, Any], choice: str) -> list[dict[str, Any]]:
    items = order.get("line_items")
    contents = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping):
            continue
        quantity = _positive_int(item.get("quantity"), _MAX_QUANTITY_DIGITS)
        # Free text forwarded to Pub/Sub and TikTok: a name can carry what a shopper typed.
        name = scrub_text(html.unescape(_text(item.get("name"), 2000) or ""))[:512].strip()
        content = {
            "content_id": _content_id(item, choice),
            "content_name": name or None,
            "price": _amount(item.get("price")),
            "quantity": quantity,
        }
        contents.append({k: v for k, v in content.items() if v is not None})
    return [c for c in contents if c][:500]


def _identity(order: Mapping[str, Any], customer_id: int | None) -> RawIdentity:
    billing, shipping = _object(order.get("billing")), _object(order.get("shipping"))
    fields = ("first_name", "last_name", "postcode", "city", "state", "country")
    # Name, zip and place from one address (billing, which guests fill in too), so they agree.
    address = billing if any(_text(billing.get(f)) for f in fields) else shipping
    return RawIdentity(
        emails=[_text(billing.get("email"))],
        phones=[
            (_text(billing.get("phone"), 64), _text(billing.get("country"))),
            (_text(shipping.get("phone"), 64), _text(shipping.get("country"))),
        ],
        external_ids=[str(customer_id)] if customer_id else [],
        first_name=_text(address.get("first_name")),
        last_name=_text(address.get("last_name")),
        zip_code=_text(address.get("postcode"), 32),
        city=_text(address.get("city")),
        state=_text(address.get("state")),
        country=_text(address.get("country")),
        ttclid=click_id(order),
        ttp=meta_value(order, META_TTP),
        ip=_text(order.get("customer_ip_address"), 64),
        user_agent=_text(order.get("customer_user_agent"), 1024) or _text(meta_value(order, META_WC_USER_AGENT), 1024),
    )


def map_order(order: Mapping[str, Any], site: WooCommerceSiteConfig, now: float | None = None) -> OrderEvent:
    """The v3 order as a Purchase :class:`OrderEvent`; :class:`UnusableOrder` names what is missing."""
    order_id = _positive_int(order.get("id"))
    if order_id is None:
        raise UnusableOrder("field id: the order id is missing or not a positive integer")
    now = time.time() if now is None else now
    customer_id = _positive_int(order.get("customer_id"))
    currency = (_text(order.get("currency"), 10) or "").upper()
    contents = _contents(order, site.content_id)
    properties = {
        "currency": currency if _CURRENCY.fullmatch(currency) else None,
        "value": _amount(order.get("total")),
        "content_type": "product" if contents else None,
        "contents": contents,
        "num_items": sum(c.get("quantity", 0) for c in contents) or None,
        "order_id": str(order_id),
        "shop_id": site.site,
    }
    join_keys = [
        (JOIN_WOO_ORDER_KEY, _text(order.get("order_key"), 200)),
        (JOIN_WOO_SESSION, meta_value(order, META_SESSION)),
        (JOIN_CUSTOMER, str(customer_id) if customer_id else None),
    ]
    return OrderEvent(
        platform=PLATFORM,
        shop=site.site,
        order_id=str(order_id),
        event="Purchase",
        event_time=event_time(order, now),
        identity=_identity(order, customer_id),
        properties={k: v for k, v in properties.items() if v not in (None, [])},
        join_keys=[(kind, value) for kind, value in join_keys if value],
    )


def with_checkout_consent(context: dict[str, Any] | None, consent: ConsentSnapshot | None) -> dict[str, Any] | None:
    """The click context as the consent decision should see it: the checkout's answer replaces the stored one.

    The checkout happens after the click, so its answer is the shopper's latest.
    """
    if consent is None:
        return context
    return {**(context or {}), "consent": consent.model_dump(exclude_none=True)}


# --- bounded waits ---------------------------------------------------------------


class _GuardedStore:
    """The store as the order flow sees it: bounded, the checkout's consent laid over, and observed."""

    def __init__(self, runtime: Runtime, consent: ConsentSnapshot | None) -> None:
        self._runtime = runtime
        self._consent = consent
        self.context_read = False
        self.context: dict[str, Any] | None = None

    def _call(self, call: Callable[[Any], Any]) -> Any:
        return _bounded("firestore", self._runtime.firestore_seconds, lambda: call(self._runtime.store))

    def find_click_context(self, pixel_code: str, join_keys: Iterable[tuple[str, str]]) -> dict[str, Any] | None:
        keys = list(join_keys)
        self.context = self._call(lambda store: store.find_click_context(pixel_code, keys))
        self.context_read = True
        return with_checkout_consent(self.context, self._consent)

    def claim_once(self, collection: str, key: Any, ttl: dt.timedelta, **fields: Any) -> bool:
        return self._call(lambda store: store.claim_once(collection, key, ttl, **fields))


class _GuardedPublisher:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.envelopes: list[Envelope] = []

    def publish(self, envelopes: list[Envelope]) -> list[str]:
        self.envelopes = list(envelopes)
        runtime = self._runtime
        return _bounded("pubsub", runtime.publish_seconds, lambda: runtime.publisher.publish(self.envelopes))


# --- the instance's dependencies -------------------------------------------------


class Runtime:
    """One instance's dependencies: tenants now, Firestore and Pub/Sub clients on first use."""

    def __init__(
        self,
        tenants: Tenants | None,
        *,
        default_region: str | None = "US",
        store: Any = None,
        publisher: Any = None,
        store_factory: Callable[[], Any] | None = None,
        publisher_factory: Callable[[], Any] | None = None,
        firestore_seconds: float = FIRESTORE_SECONDS,
        publish_seconds: float = PUBLISH_SECONDS,
        max_event_age: dt.timedelta = MAX_EVENT_AGE,
    ) -> None:
        self.tenants = tenants
        self.default_region = default_region
        self.max_event_age = max_event_age
        self.firestore_seconds = firestore_seconds
        self.publish_seconds = publish_seconds
        self._store, self._publisher = store, publisher
        self._store_factory, self._publisher_factory = store_factory, publisher_factory
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, require_tenants: bool = True) -> Runtime:
        """Raises :class:`ConfigError` naming the variable that is wrong.

        ``require_tenants=False`` (the replay tool) tolerates missing site settings:
        parked envelopes only need the project and the topic.
        """
        settings = WooCommerceSettings.from_env(environ)
        log.set_level(settings.log_level)
        try:
            tenants: Tenants | None = settings.tenants()
        except ConfigError:
            if require_tenants:
                raise
            tenants = None

        return cls(
            tenants,
            default_region=settings.default_phone_region,
            store_factory=lambda: store_from_settings(settings),
            publisher_factory=lambda: publisher_from_settings(settings),
            max_event_age=dt.timedelta(days=settings.max_event_age_days),
        )

    @property
    def store(self) -> Any:
        if self._store is None:
            with self._lock:
                if self._store is None and self._store_factory is not None:
                    self._store = self._store_factory()
        return self._store

    @property
    def publisher(self) -> Any:
        if self._publisher is None:
            with self._lock:
                if self._publisher is None and self._publisher_factory is not None:
                    self._publisher = self._publisher_factory()
        return self._publisher

    def site(self, source: str | None) -> WooCommerceSiteConfig | None:
        return self.tenants.woocommerce_site(source) if self.tenants and source else None

    def pixel_and_policy(self, site: WooCommerceSiteConfig) -> tuple[PixelConfig, ConsentPolicy]:
        assert self.tenants is not None
        pixel = self.tenants.pixel(site.pixel_code)
        assert pixel is not None  # Tenants validates every site's pixel_code
        return pixel, self.tenants.policy_for(site.pixel_code, site.consent_policy)


# --- delivering one order --------------------------------------------------------


def deliver(
    order: OrderEvent, consent: ConsentSnapshot | None, site: WooCommerceSiteConfig, runtime: Runtime
) -> Outcome:
    """The shared order flow with bounded waits; never loses the event when Firestore or Pub/Sub is down."""
    pixel, policy = runtime.pixel_and_policy(site)
    store, publisher = _GuardedStore(runtime, consent), _GuardedPublisher(runtime)
    try:
        outcome = process_order_event(
            order, pixel=pixel, policy=policy, store=store, publisher=publisher, default_region=runtime.default_region,
            max_event_age=runtime.max_event_age,
        )  # fmt: skip
    except DependencyUnavailable as exc:
        failure = exc
    else:
        return outcome
    if publisher.envelopes:  # consent decided, publishing failed
        return park_envelope(publisher.envelopes[0], f"pubsub unavailable ({failure.detail})")
    if not store.context_read and consent is None:
        reason = f"firestore unavailable ({failure.detail}): consent unknown until the click context is read"
        return park_order(order, consent, runtime.default_region, reason)
    return _publish_without_context(order, pixel, policy, store.context, consent, runtime,
                                  f"firestore unavailable ({failure.detail})")  # fmt: skip


def _publish_without_context(
    order: OrderEvent,
    pixel: PixelConfig,
    policy: ConsentPolicy,
    context: dict[str, Any] | None,
    consent: ConsentSnapshot | None,
    runtime: Runtime,
    why: str,
) -> Outcome:
    """Firestore is down but the checkout's answer decides consent: publish without the stored click context.

    The sender claims each event_id, so a later update of this order can not
    make a second Purchase.
    """
    envelope, withheld = build_envelope(order, pixel, with_checkout_consent(context, consent), policy,
                                        runtime.default_region)  # fmt: skip
    if envelope is None:
        return withheld  # type: ignore[return-value]
    try:
        _bounded("pubsub", runtime.publish_seconds, lambda: runtime.publisher.publish([envelope]))
    except DependencyUnavailable as exc:
        return park_envelope(envelope, f"{why}; pubsub unavailable ({exc.detail})")
    details = {"click": envelope.user.has_click(), "click_context": False, "why": why}
    return Outcome("published", f"{envelope.event} published without the stored click context", envelope.event_id,
                   details)  # fmt: skip


# --- parking and replay ----------------------------------------------------------


def _parked(record: dict[str, Any], reason: str, event_id: str) -> Outcome:
    text = json.dumps(record, separators=(",", ":"))
    if len(text) > _REPLAY_CHUNK * _REPLAY_MAX_CHUNKS:
        # Hundreds of line items: keep what matters for attribution (value, currency, ids).
        properties = record.get("envelope", record.get("order", {})).get("properties", {})
        properties["contents"] = []
        text = json.dumps(record, separators=(",", ":"))
        reason += " (contents dropped to fit one log entry)"
    chunks = [text[i : i + _REPLAY_CHUNK] for i in range(0, len(text), _REPLAY_CHUNK)]
    return Outcome(PARKED, reason, event_id, {"replay_kind": record["kind"], "replay": chunks})


def park_envelope(envelope: Envelope, reason: str) -> Outcome:
    """The envelope (consent already decided) as a replay record: publishing it is all that is left."""
    record = {"v": 1, "kind": "envelope", "envelope": json.loads(envelope.to_json_bytes())}
    return _parked(record, reason, envelope.event_id)


def park_order(
    order: OrderEvent,
    consent: ConsentSnapshot | None,
    default_region: str | None,
    reason: str,
    *,
    with_identity: bool = True,
) -> Outcome:
    """The order with its identifiers hashed; replay runs the whole flow (join, consent, claim, publish).

    ``with_identity=False`` parks it without the shopper's identifiers, for when
    hashing them is what failed: the join keys still find the click context.
    """
    user = build_user(order.identity, default_region) if with_identity else UserData()
    record = {
        "v": 1,
        "kind": "order",
        "site": order.shop,
        "consent": consent.model_dump(exclude_none=True) if consent else None,
        "order": {
            "platform": order.platform,
            "shop": order.shop,
            "order_id": order.order_id,
            "event": order.event,
            "event_time": order.event_time,
            "user": user.model_dump(exclude_none=True, exclude_defaults=True),
            "properties": order.properties,
            "page_url": order.page_url,
            "referrer": order.referrer,
            "join_keys": [list(pair) for pair in order.join_keys],
        },
    }
    return _parked(record, reason, order.event_id)


def _identity_from_user(user: UserData) -> RawIdentity:
    """Hashed values pass through build_user unchanged (64 hex characters are never hashed again)."""
    return RawIdentity(
        emails=list(user.email),
        phones=[(phone, None) for phone in user.phone],
        external_ids=list(user.external_id),
        first_name=user.first_name,
        last_name=user.last_name,
        zip_code=user.zip_code,
        city=user.city,
        state=user.state,
        country=user.country,
        ttclid=user.ttclid,
        ttp=user.ttp,
        ip=user.ip,
        user_agent=user.user_agent,
        locale=user.locale,
    )


def _order_from_record(data: Mapping[str, Any]) -> OrderEvent:
    return OrderEvent(
        platform=data["platform"],
        shop=data["shop"],
        order_id=str(data["order_id"]),
        event=data["event"],
        event_time=int(data["event_time"]),
        identity=_identity_from_user(UserData.model_validate(data.get("user") or {})),
        properties=dict(data.get("properties") or {}),
        page_url=data.get("page_url"),
        referrer=data.get("referrer"),
        join_keys=[(str(kind), str(value)) for kind, value in data.get("join_keys") or []],
    )


def parked_records(text: str) -> Iterator[dict[str, Any]]:
    """Every parked record in log output: our JSON lines, or Cloud Logging entries (lines or one JSON array)."""
    text = text.strip()
    if text.startswith("["):
        try:
            entries: list[Any] = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"input starts with '[' but is not a JSON array of log entries ({exc})") from None
    else:
        entries = []
        for line in text.splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue  # not a log record (a shell prompt, a blank line...)
    for entry in entries:
        payload = entry.get("jsonPayload", entry) if isinstance(entry, Mapping) else None
        if not isinstance(payload, Mapping) or payload.get("outcome") != PARKED:
            continue
        try:
            yield json.loads("".join(payload["replay"]))
        except (TypeError, ValueError):
            # Cut or edited on the way: reported (and counted as failed) by replay().
            yield {"kind": "unreadable", "event_id": payload.get("event_id")}


def record_event_id(record: Mapping[str, Any]) -> str | None:
    """The event_id a parked record stands for (to report on it without replaying)."""
    try:
        if record.get("kind") == "unreadable":
            return record.get("event_id")
        if record.get("kind") == "envelope":
            return str(record["envelope"]["event_id"])
        order = record["order"]
        return order_event_id(order["platform"], order["shop"], order["order_id"], order["event"])
    except (KeyError, TypeError, ValueError):
        return None


def replay(record: Mapping[str, Any], runtime: Runtime) -> Outcome:
    """Publish a parked envelope, or run a parked order through the flow again. Safe to repeat."""
    if record.get("kind") == "envelope":
        envelope = Envelope.model_validate(record["envelope"])
        _bounded("pubsub", runtime.publish_seconds, lambda: runtime.publisher.publish([envelope]))
        return Outcome("published", f"parked {envelope.event} replayed", envelope.event_id)
    if record.get("kind") == "order":
        site = runtime.site(record.get("site"))
        if site is None:
            raise ConfigError(f"site {record.get('site')!r} is not configured: set the webhook's settings to replay it")
        consent = ConsentSnapshot.model_validate(record["consent"]) if record.get("consent") else None
        return deliver(_order_from_record(record["order"]), consent, site, runtime)
    raise ValueError(f"unknown parked record kind {record.get('kind')!r}")


def log_outcome(outcome: Outcome, **fields: Any) -> None:
    """Outcomes through shared.infra.log; parked (needs a replay) and refused (lost) are ERRORs."""
    if outcome.kind in (PARKED, REFUSED):
        log.error(outcome.reason, outcome=outcome.kind, event_id=outcome.event_id, **outcome.details, **fields)
    else:
        outcome.log(**fields)


# --- one HTTP delivery -----------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


def _reply(outcome: Outcome, **fields: Any) -> Reply:
    log_outcome(outcome, **fields)
    status = _STATUS_BY_OUTCOME.get(outcome.kind, 200)
    if status == 401:  # the same shape as the Shopify webhook's 401 (docs/woocommerce.md, Answers)
        return Reply(status, {"error": "unauthorized", "reason": outcome.reason})
    body = {"outcome": outcome.kind, "reason": outcome.reason}
    if outcome.event_id:
        body["event_id"] = outcome.event_id
    return Reply(status, body)


def handle(headers: Mapping[str, str], body: bytes, runtime: Callable[[], Runtime], now: float | None = None) -> Reply:
    """One POST from WooCommerce to its reply. The body is parsed only once its signature is valid."""
    h = _lower_headers(headers)
    if is_ping(h, body):
        log.outcome("ignored", "webhook setup ping")
        return Reply(200, {"outcome": "ignored", "reason": "webhook setup ping"})
    try:
        current = runtime()
    except ConfigError as exc:
        log.error("woocommerce_webhook is misconfigured", reason=str(exc))
        return Reply(503, {"error": "misconfigured", "reason": "the webhook's settings are invalid; see its logs"})
    source = clean_text(h.get("x-wc-webhook-source", "")[:200])
    topic = clean_text(h.get("x-wc-webhook-topic", "")[:100])
    fields = {"site": source, "topic": topic, "webhook_id": clean_text(h.get("x-wc-webhook-id", "")[:40]),
              "delivery_id": clean_text(h.get("x-wc-webhook-delivery-id", "")[:80])}  # fmt: skip
    site = current.site(source)
    if site is None:
        reason = f"X-WC-Webhook-Source {source!r} is not a configured WooCommerce site"
        return _reply(Outcome("rejected", reason), **fields)
    secrets = [html.unescape(s.get_secret_value()) for s in site.secrets]
    if not verify_hmac_base64(body, h.get("x-wc-webhook-signature"), secrets):
        reason = "X-WC-Webhook-Signature is missing or does not match the site's webhook secret"
        return _reply(Outcome("rejected", reason), **fields)
    fields["site"] = site.site
    try:
        outcome = _signed_delivery(topic, body, site, current, now, fields)
    except Exception as exc:  # a bug of ours before there was an event to park
        reason = f"internal error ({type(exc).__name__}) while reading the order; it was not sent"
        outcome = Outcome(REFUSED, reason)
    return _reply(outcome, **fields)


def _signed_delivery(
    topic: str, body: bytes, site: WooCommerceSiteConfig, runtime: Runtime, now: float | None, fields: dict[str, Any]
) -> Outcome:
    """A delivery whose signature is valid: skipped with a reason, delivered, or parked."""
    try:
        order = parse_json(body, max_int_digits=JSON_MAX_INT_DIGITS, surrogates="replace")
    except UnsafeInput as exc:
        # Skipped, not 4xx: five failed deliveries in a row disable the webhook, and every later order with it.
        return Outcome("ignored", f"body is not a usable v3 order: {exc.reason}")
    if not isinstance(order, dict):
        return Outcome("ignored", "body is JSON but not an object (expected the v3 order)")
    fields["order_id"] = _text(order.get("id"), 40)
    if reason := ignore_reason(topic, order):
        return Outcome("ignored", reason)
    try:
        event = map_order(order, site, now)
    except UnusableOrder as exc:
        return Outcome("ignored", str(exc))
    consent = checkout_consent(order)
    try:
        return deliver(event, consent, site, runtime)
    except Exception as exc:  # a bug of ours must not lose a signed order: park it for a replay after the fix
        return _park_after_error(event, consent, runtime, exc)


def _park_after_error(event: OrderEvent, consent: ConsentSnapshot | None, runtime: Runtime, exc: Exception) -> Outcome:
    detail = f"internal error ({type(exc).__name__})"  # its message might quote the order: not logged
    attempts = [
        (True, detail + "; replay it after the fix"),
        # Hashing the identity may be what failed: the join keys still find the click context.
        (False, detail + "; parked without the shopper's identifiers (hashing them failed); replay it after the fix"),
    ]
    failure: Exception | None = None
    for with_identity, reason in attempts:
        try:
            return park_order(event, consent, runtime.default_region, reason, with_identity=with_identity)
        except Exception as second:
            failure = second
    return Outcome(REFUSED, f"{detail}; could not park it ({type(failure).__name__}); it was not sent", event.event_id)
