"""One Shopify delivery from request to :class:`~shared.infra.http.Reply`: read, authenticate, plan, execute.

The steps live in their modules (:mod:`.request`, :mod:`.routing`, :mod:`.flow`);
this one orders them and decides the answer (see :func:`handle`). The outcome
travels in the Reply: the entry point logs it, once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import flask

from shared.domain.untrusted import BodyTooLarge, read_body
from shared.infra import log
from shared.infra.deadline import Deadline
from shared.infra.http import Refused, Reply, headers_of
from shared.outcome import Kind, Outcome
from shared.receive.orders import record_outcome
from shared.receive.shopify.flow import DeliveryStore, execute, order_ref
from shared.receive.shopify.request import Delivery, find_shop
from shared.receive.shopify.routing import Action, parse_payload, plan
from shared.receive.shopify.runtime import Runtime
from shared.receive.shopify.settings import ShopifyShopConfig


def handle_request(request: flask.Request, runtime: Callable[[], Runtime]) -> Reply:
    """The HTTPS function's request to its reply (see :func:`receive`)."""
    return receive(headers_of(request), request.stream.read, request.content_length, runtime())


def receive(
    headers: Mapping[str, str], read: Callable[[int], bytes], declared_length: int | None, runtime: Runtime
) -> Reply:
    """One HTTPS request: its body read up to SHOPIFY_MAX_BODY_BYTES first, since the HMAC needs all of it.

    The limit is what bounds an unsigned request's memory: 413 without reading further, chunked or not.
    """
    delivery = Delivery.from_headers(headers)
    try:
        body = read_body(read, runtime.max_body_bytes, declared_length)
    except BodyTooLarge as exc:
        outcome = Outcome(Kind.REJECTED, exc.reason, details={"status": 413, **delivery.log_fields()})
        return Reply(413, {"error": "payload too large", "reason": exc.reason}, outcome=outcome)
    return handle(delivery, body, runtime)


def handle(delivery: Delivery, body: bytes, runtime: Runtime, now: Callable[[], float] = time.time) -> Reply:
    """One HTTPS delivery, start to finish. Never raises: failures are 503s, bad content a 200 with its reason.

    Reply rule: 401 when the sender is not proven to be the shop; 200 for every
    authenticated delivery, even one we cannot use (any other answer only makes
    Shopify retry the same bytes eight times and then delete the subscription);
    503 only when our own Firestore or Pub/Sub failed, so the retry can succeed.
    """
    try:
        shop = find_shop(delivery, body, runtime.shops)
    except Refused as refused:
        outcome = Outcome(Kind.REJECTED, refused.reason, details={"status": refused.status, **delivery.log_fields()})
        return Reply(refused.status, refused.body(), outcome=outcome)
    return handle_verified(delivery, shop, body, runtime, now)


def handle_verified(
    delivery: Delivery,
    shop: ShopifyShopConfig,
    body: bytes,
    runtime: Runtime,
    now: Callable[[], float] = time.time,
    **log_fields: Any,
) -> Reply:
    """A delivery whose sender is proven to be ``shop`` (HMAC over HTTPS, IAM over Pub/Sub), to its reply.

    Both delivery methods end here, so topics, claims, click join, consent and
    privacy webhooks behave the same whichever way Shopify sent the body.
    """
    fields = {**delivery.log_fields(), **log_fields}
    runtime.api_versions.observe(delivery.api_version)  # only authenticated deliveries: nobody else can fill the log
    payload = parse_payload(body)
    if isinstance(payload, Outcome):
        action: Action = payload
    else:
        action = plan(delivery.topic, payload, shop, received_at=int(now()), triggered_at=delivery.triggered_at,
                      max_age=runtime.max_order_age)  # fmt: skip
    if isinstance(action, Outcome):  # decided without any I/O
        if action.kind == Kind.SKIPPED:
            _record_skipped(action, shop, runtime)
        return _reply(action, fields)
    try:
        outcome = execute(action, shop=shop, runtime=runtime, deadline=Deadline(runtime.io_seconds))
    except Exception as exc:
        # The exception's type only: messages of some errors quote the data they refused. Whatever
        # part of the work landed is idempotent, so Shopify's retry completes it (shared.receive.orders).
        failed = Outcome(Kind.ERROR_UNAVAILABLE, "processing failed; Shopify will retry", severity="ERROR",
                         details={"error": type(exc).__name__, **fields})  # fmt: skip
        answer = {"error": "temporarily unavailable", "reason": "processing failed, retry later"}
        return Reply(503, answer, outcome=failed)
    return _reply(outcome, fields)


def _reply(outcome: Outcome, fields: Mapping[str, Any]) -> Reply:
    """The 200 of a settled delivery; its outcome line carries the delivery's fields."""
    body = {"outcome": outcome.kind, "reason": outcome.reason}
    if outcome.event_id:
        body["event_id"] = outcome.event_id
    return Reply(200, body, outcome=replace(outcome, details={**outcome.details, **fields}))


def _record_skipped(outcome: Outcome, shop: ShopifyShopConfig, runtime: Runtime) -> None:
    """A test, POS, draft or cancelled order's Purchase, remembered for the report; never fails the delivery."""
    order_id = outcome.details.get("order_id")
    if not outcome.event_id or not order_id:
        return
    try:
        store = DeliveryStore(runtime.bounded_store(Deadline(runtime.io_seconds)))
    except Exception as exc:
        log.warning("could not record the skipped order", error=type(exc).__name__, event_id=outcome.event_id)
        return
    record_outcome(store.tagged(shop=shop.domain, order_ref=order_ref(shop.domain, order_id)), outcome,
                   rule=outcome.details.get("rule"))  # fmt: skip
