"""Pure routing: one authenticated delivery's topic and body -> the action to take, or a final outcome.

The HMAC proves the shop wrote the bytes, not under which topic nor when: so
besides mapping each topic (the ``_plan_*`` planners), a body is checked to be
one of its topic (:func:`shape_problem`) and recent (:func:`stale_delivery`,
:func:`age_problem`). No I/O: :mod:`.flow` carries the action out.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from shared.domain.events import order_event_id, shop_key
from shared.domain.models import Properties
from shared.domain.untrusted import UnsafeInput, money, parse_json, validation_problems
from shared.outcome import Kind, Outcome
from shared.receive.orders import JOIN_CUSTOMER, OrderEvent
from shared.receive.shopify.mapping import (
    as_currency,
    as_dicts,
    as_id,
    as_obj,
    as_text,
    event_seconds,
    identity,
    iso_seconds,
    join_keys,
    properties,
    public_url,
    skip_reason,
)
from shared.receive.shopify.request import (
    CHECKOUTS_CREATE,
    CUSTOMERS_CREATE,
    CUSTOMERS_DATA_REQUEST,
    CUSTOMERS_REDACT,
    ORDERS_CANCELLED,
    ORDERS_CREATE,
    ORDERS_PAID,
    PLATFORM,
    PRIVACY_TOPICS,
    REFUNDS_CREATE,
    SHOP_REDACT,
)
from shared.receive.shopify.settings import ShopifyShopConfig

# Record name of a cancellation (its tombstone on the Purchase is shared.receive.orders.block_purchase).
CANCELLED_RECORD = "cancelled"


@dataclass(frozen=True)
class SendEvent:
    order: OrderEvent


@dataclass(frozen=True)
class RecordOrderChange:
    """A cancellation or refund: recorded in Firestore, never a second Purchase."""

    order_id: str
    record: str  # "cancelled" or "refund-<id>"
    fields: dict[str, Any] = field(default_factory=dict)
    # A cancellation takes the Purchase's claim if nobody did yet: a late
    # orders/paid retry (carrying the pre-cancellation payload) then sends nothing.
    blocks_purchase: bool = False


@dataclass(frozen=True)
class RedactCustomer:
    customer_id: str | None
    order_ids: list[str]


@dataclass(frozen=True)
class RedactShop:
    pass


Action = SendEvent | RecordOrderChange | RedactCustomer | RedactShop | Outcome


def _rejected(reason: str, **details: Any) -> Outcome:
    return Outcome(Kind.REJECTED, reason, details=details)


def _order_event(
    payload: dict[str, Any],
    shop: ShopifyShopConfig,
    event: str,
    record_id: str,
    *,
    received_at: int,
    triggered_at: str | None,
    order_id: str | None,
    event_time_fields: tuple[str, ...],
    identity_customer: dict[str, Any] | None = None,
    keys: list[tuple[str, str]] | None = None,
) -> OrderEvent:
    props = properties(payload, shop, order_id)
    Properties.model_validate(props)  # fail here, as content, never later as an I/O error
    return OrderEvent(
        platform=PLATFORM,
        shop=shop.domain,
        order_id=record_id,
        event=event,
        event_time=event_seconds(*(payload.get(f) for f in event_time_fields), triggered_at, fallback=received_at),
        identity=identity(payload, identity_customer),
        properties=props,
        page_url=public_url(payload.get("landing_site"), shop.domain),
        referrer=public_url(payload.get("referring_site"), shop.domain),
        join_keys=join_keys(payload) if keys is None else keys,
    )


def _plan_order(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig, **when: Any) -> Action:
    order_id = as_id(payload.get("id"))
    if order_id is None:
        return _rejected("order payload without a numeric id (field 'id')")
    event_id = order_event_id(PLATFORM, shop.domain, order_id, "Purchase")
    skipped = skip_reason(payload, shop)
    if skipped:
        return Outcome(Kind.SKIPPED, skipped[1], event_id, {"rule": skipped[0], "order_id": order_id})
    if payload.get("cancelled_at"):
        return Outcome(Kind.SKIPPED, "order already cancelled", event_id, {"rule": "cancelled", "order_id": order_id})
    paid = as_text(payload.get("financial_status")) == "paid"
    if topic == ORDERS_CREATE and shop.purchase_topic != ORDERS_CREATE and not paid:
        return Outcome(
            Kind.IGNORED,
            "orders/create of an unpaid order: the Purchase waits for orders/paid (purchase_topic)",
            event_id,
            {"order_id": order_id},
        )
    order = _order_event(
        payload, shop, "Purchase", order_id, order_id=order_id,
        event_time_fields=("processed_at", "created_at"), **when,
    )  # fmt: skip
    return SendEvent(order)


def _plan_checkout(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig, **when: Any) -> Action:
    # The token, not the numeric id: the storefront's checkout_started event knows the token.
    token = as_text(payload.get("token"), 200)
    if not token:
        return _rejected("checkout payload without a token (field 'token')")
    skipped = skip_reason(payload, shop)
    if skipped:
        return Outcome(Kind.SKIPPED, skipped[1], details={"rule": skipped[0]})
    order = _order_event(
        payload, shop, "InitiateCheckout", f"checkout-{token}", order_id=None,
        event_time_fields=("created_at",), keys=join_keys(payload, "token"), **when,
    )  # fmt: skip
    return SendEvent(order)


def _plan_customer(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig, **when: Any) -> Action:
    customer_id = as_id(payload.get("id"))
    if customer_id is None:
        return _rejected("customer payload without a numeric id (field 'id')")
    order = _order_event(
        payload, shop, "CompleteRegistration", f"customer-{customer_id}", order_id=None,
        event_time_fields=("created_at",), identity_customer=payload,
        keys=[(JOIN_CUSTOMER, customer_id)], **when,
    )  # fmt: skip
    return SendEvent(order)


def _plan_cancelled(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig, **when: Any) -> Action:
    order_id = as_id(payload.get("id"))
    if order_id is None:
        return _rejected("order payload without a numeric id (field 'id')")
    skipped = skip_reason(payload, shop)
    if skipped:
        return Outcome(Kind.SKIPPED, skipped[1], details={"rule": skipped[0], "order_id": order_id})
    fields = {"kind": "cancelled", "cancel_reason": as_text(payload.get("cancel_reason"), 40)}
    return RecordOrderChange(order_id, CANCELLED_RECORD, fields, blocks_purchase=True)


def _plan_refund(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig, **when: Any) -> Action:
    order_id, refund_id = as_id(payload.get("order_id")), as_id(payload.get("id"))
    if order_id is None or refund_id is None:
        return _rejected("refund payload without numeric 'id' and 'order_id'")
    total, currencies = Decimal(0), set()
    for transaction in as_dicts(payload.get("transactions")):
        amount = money(transaction.get("amount"))
        if transaction.get("kind") == "refund" and transaction.get("status") == "success" and amount is not None:
            total += Decimal(str(transaction.get("amount")).strip())
            currencies.add(as_currency(transaction.get("currency")))
    fields = {
        "kind": "refund",
        "refund_id": refund_id,
        "amount": str(total),
        "currency": currencies.pop() if len(currencies) == 1 else None,
    }
    return RecordOrderChange(order_id, f"refund-{refund_id}", fields)


def _plan_data_request(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig, **when: Any) -> Action:
    orders = payload.get("orders_requested")
    return Outcome(
        Kind.RECORDED,
        "customer data request acknowledged: we keep no raw personal data, only hashed identifiers "
        "and click ids in click contexts that expire",
        details={
            "data_request_id": as_id(as_obj(payload.get("data_request")).get("id")),
            "orders_requested": len(orders) if isinstance(orders, list) else 0,
        },
    )


def _plan_customer_redact(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig, **when: Any) -> Action:
    customer_id = as_id(as_obj(payload.get("customer")).get("id"))
    listed = payload.get("orders_to_redact")
    order_ids = [o for item in listed if (o := as_id(item))] if isinstance(listed, list) else []
    if customer_id is None and not order_ids:
        return _rejected("customers/redact without customer.id or orders_to_redact")
    return RedactCustomer(customer_id, order_ids)


def _plan_shop_redact(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig, **when: Any) -> Action:
    return RedactShop()


_PLANNERS: dict[str, Callable[..., Action]] = {
    ORDERS_CREATE: _plan_order,
    ORDERS_PAID: _plan_order,
    ORDERS_CANCELLED: _plan_cancelled,
    REFUNDS_CREATE: _plan_refund,
    CHECKOUTS_CREATE: _plan_checkout,
    CUSTOMERS_CREATE: _plan_customer,
    CUSTOMERS_DATA_REQUEST: _plan_data_request,
    CUSTOMERS_REDACT: _plan_customer_redact,
    SHOP_REDACT: _plan_shop_redact,
}
TOPICS = frozenset(_PLANNERS)
# The resource each topic's body is; genuine bodies of these carry it in admin_graphql_api_id.
_RESOURCE = {
    ORDERS_CREATE: "Order", ORDERS_PAID: "Order", ORDERS_CANCELLED: "Order",
    REFUNDS_CREATE: "Refund", CUSTOMERS_CREATE: "Customer",
}  # fmt: skip
_GID = re.compile(r"^gid://shopify/([A-Za-z]{1,64})/")
# Signed timestamps of a body, in the order a change moves them (updated_at follows every change).
_SIGNED_TIMES = ("updated_at", "processed_at", "created_at")


def parse_payload(body: bytes) -> dict[str, Any] | Outcome:
    """The JSON object in ``body`` (ints stay exact), or the rejection that says why not.

    The body is signed, so Shopify would only retry the same bytes: a lone
    surrogate in a free-text field is replaced rather than losing the order,
    and structurally hostile JSON (deep nesting, giant numbers) is a rejection.
    """
    try:
        payload = parse_json(body, surrogates="replace")
    except UnsafeInput as exc:  # its reason never quotes the input
        return _rejected("body is not valid JSON", detail=exc.reason)
    if not isinstance(payload, dict):
        return _rejected(f"body is JSON {type(payload).__name__}, expected an object")
    return payload


def _resource(payload: dict[str, Any]) -> str | None:
    """The resource type named by ``admin_graphql_api_id`` (``gid://shopify/Order/1`` -> Order)."""
    value = payload.get("admin_graphql_api_id")
    match = _GID.match(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def shape_problem(topic: str, payload: dict[str, Any], shop: ShopifyShopConfig) -> str | None:
    """Why ``payload`` is not a body of ``topic`` for ``shop``, or None.

    The HMAC proves the shop wrote the bytes, not under which topic: the
    ``X-Shopify-Topic`` header is unsigned. So each topic's effect requires a
    body only that topic sends: an order is never a cancellation, a refund or a
    privacy request.
    """
    resource, expected = _resource(payload), _RESOURCE.get(topic)
    if resource and expected and resource != expected:
        return f"a {resource} body is not a {topic} body"
    if topic == CHECKOUTS_CREATE and resource in _RESOURCE.values():
        return f"a {resource} body is not a {topic} body"
    if expected == "Order" and resource is None and "order_number" not in payload:
        return f"{topic} body is not an order (neither an Order admin_graphql_api_id nor an order_number)"
    if topic == ORDERS_CANCELLED and not payload.get("cancelled_at"):
        return "orders/cancelled body without cancelled_at: the order it holds is not cancelled"
    if topic in PRIVACY_TOPICS:
        named = payload.get("shop_domain")
        if not isinstance(named, str) or shop_key(named[:255]) != shop.domain:
            return f"{topic} body does not name this shop in shop_domain"
        if topic == SHOP_REDACT and "customer" in payload:  # a customer's redaction must never erase the shop
            return "shop/redact body names a customer: it is a customer's request, not the shop's"
        if topic != SHOP_REDACT and not isinstance(payload.get("customer"), dict):
            return f"{topic} body without a customer"
        if topic == CUSTOMERS_REDACT and not isinstance(payload.get("orders_to_redact"), list):
            return "customers/redact body without orders_to_redact"
    return None


def signed_time(payload: dict[str, Any]) -> int | None:
    """The newest of the body's own timestamps (unix seconds): when Shopify last wrote it."""
    times = [t for name in _SIGNED_TIMES if (t := iso_seconds(payload.get(name))) is not None]
    return max(times) if times else None


def age_problem(payload: dict[str, Any], received_at: int, max_age: dt.timedelta) -> Outcome | None:
    """The rejection of a body older than ``max_age`` (or with no signed time at all), else None.

    X-Shopify-Triggered-At is not signed and so cannot vouch for a body's age;
    the body's own updated_at/processed_at/created_at can. A genuine delivery,
    retries included, is at most a day or so old; an older one is a replay.
    """
    written = signed_time(payload)
    if written is None:
        return _rejected("body has no signed timestamp (updated_at, processed_at, created_at): may be a replay")
    age = received_at - written
    if age > max_age.total_seconds():
        return _rejected(
            f"body is older than {max_age.days} days (SHOPIFY_MAX_ORDER_AGE_DAYS): refused as a replay",
            age_seconds=age, max_age_seconds=int(max_age.total_seconds()),
        )  # fmt: skip
    return None


def stale_delivery(triggered_at: str | None, received_at: int, max_age: dt.timedelta) -> Outcome | None:
    """The rejection of a delivery whose X-Shopify-Triggered-At is older than ``max_age``, else None.

    Over Pub/Sub the attribute is Shopify's own (only Shopify may publish on the
    topic), and a message can wait there for days while the function fails:
    past TikTok's attribution window such an order would only be counted late.
    Over HTTPS the header is unsigned, so it can only ever refuse a delivery,
    never vouch for one: :func:`age_problem` still checks the body's signed times.
    A missing or unreadable value refuses nothing.
    """
    triggered = iso_seconds(triggered_at)
    if triggered is None:
        return None
    age = received_at - triggered
    if age <= max_age.total_seconds():
        return None
    return _rejected(
        f"delivery triggered more than {max_age.days} days ago (X-Shopify-Triggered-At, SHOPIFY_MAX_ORDER_AGE_DAYS): "
        "refused as stale",
        age_seconds=age, max_age_seconds=int(max_age.total_seconds()),
    )  # fmt: skip


def plan(
    topic: str,
    payload: dict[str, Any],
    shop: ShopifyShopConfig,
    *,
    received_at: int,
    triggered_at: str | None = None,
    max_age: dt.timedelta | None = None,
) -> Action:
    """Pure: what to do with one authenticated delivery.

    ``max_age`` bounds how old a non-privacy delivery may be, by its
    X-Shopify-Triggered-At and by its body's own timestamps (None: unbounded,
    for mapping historic samples); the webhook always passes its setting.
    """
    planner = _PLANNERS.get(topic)
    if planner is None:
        return Outcome(Kind.IGNORED, f"topic {topic or '(none)'!r} is not handled")
    try:
        action = planner(topic, payload, shop, received_at=received_at, triggered_at=triggered_at)
    except Exception as exc:  # content we cannot map: say so (200) rather than have Shopify retry it (5xx)
        return _rejected(f"{topic} payload could not be mapped: {_describe(exc)}", error=type(exc).__name__)
    if isinstance(action, Outcome) and action.kind == Kind.REJECTED:
        return action
    problem = shape_problem(topic, payload, shop)
    if problem:
        return _rejected(problem)
    if max_age is not None and topic not in PRIVACY_TOPICS:
        stale = stale_delivery(triggered_at, received_at, max_age)
        return stale or age_problem(payload, received_at, max_age) or action
    return action


def _describe(exc: Exception) -> str:
    """The failing fields of a validation error, else the error's type (messages may quote shopper data)."""
    if isinstance(exc, ValidationError):
        return "invalid " + ", ".join(".".join(map(str, loc)) for loc, _ in validation_problems(exc))
    return type(exc).__name__
