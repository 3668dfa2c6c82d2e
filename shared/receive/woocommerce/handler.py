"""One POST from WooCommerce to its :class:`~shared.infra.http.Reply`: ping, site, signature, then the order.

Whatever a valid signer sends ends as one of: published, skipped with a reason
(``ignored``, ``withheld_consent``), parked, or ``refused`` with a 4xx and a
reason; never a 5xx and never a bare 200 that nobody acts on. The outcome line
is logged once by the function's entry point (``functions/woocommerce_webhook/main.py``).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import flask

from shared.domain.consent import ConsentSnapshot
from shared.domain.untrusted import BodyTooLarge, UnsafeInput, clean_text, parse_json, read_body
from shared.infra.http import Refused, Reply, headers_of
from shared.outcome import Kind, Outcome
from shared.receive.orders import OrderEvent
from shared.receive.signatures import verify_hmac_base64
from shared.receive.woocommerce.flow import deliver
from shared.receive.woocommerce.mapping import (
    UnusableOrder,
    checkout_consent,
    ignore_reason,
    is_ping,
    logged_order_id,
    map_order,
)
from shared.receive.woocommerce.parking import park_order
from shared.receive.woocommerce.runtime import Runtime
from shared.receive.woocommerce.settings import WooCommerceSiteConfig

# Real orders are a few kB; this only stops a body nobody would sign.
MAX_BODY_BYTES = 8 * 1024 * 1024
# Signed JSON: longer integers than the shared default (40 digits), so that an absurd
# total reaches the amount rule (mapping: dropped from value) instead of losing the order;
# still far below the 4300 digits where int() itself refuses.
JSON_MAX_INT_DIGITS = 1000
# Parked: 202, the order is safe in the log. Refused: a signed order we failed on and could not
# even park: a 4xx, so WooCommerce's delivery log shows it.
_STATUS_BY_OUTCOME = {Kind.PARKED: 202, Kind.REFUSED: 422}


def _refused(reason: str, event_id: str | None = None) -> Outcome:
    # An ERROR: the order is lost unless someone acts (terraform/monitoring.tf alerts on it).
    return Outcome(Kind.REFUSED, reason, event_id, severity="ERROR")


def _reply(outcome: Outcome, fields: Mapping[str, Any]) -> Reply:
    """The answer, and the outcome with the delivery's log fields (the entry point logs it)."""
    outcome = replace(outcome, details={**outcome.details, **fields})
    status = _STATUS_BY_OUTCOME.get(outcome.kind, 200)
    body = {"outcome": outcome.kind, "reason": outcome.reason}
    if outcome.event_id:
        body["event_id"] = outcome.event_id
    return Reply(status, body, outcome=outcome)


def handle_request(request: flask.Request, runtime: Callable[[], Runtime]) -> Reply:
    """The function's POST to its reply: the body read first, within :data:`MAX_BODY_BYTES`, then :func:`handle`."""
    try:
        # Read before authentication but never past the limit: a chunked body has no Content-Length to check.
        body = read_body(request.stream.read, MAX_BODY_BYTES, request.content_length)
    except BodyTooLarge as exc:
        return Reply(413, {"error": "too large", "reason": exc.reason})
    return handle(headers_of(request), body, runtime)


def handle(headers: Mapping[str, str], body: bytes, runtime: Callable[[], Runtime], now: float | None = None) -> Reply:
    """One POST from WooCommerce to its reply. The body is parsed only once its signature is valid.

    ``runtime`` is called only past the setup ping, which needs no settings; the
    :class:`~shared.config.ConfigError` it may raise is the entry point's to answer.
    """
    h = {str(k).lower(): str(v) for k, v in headers.items()}
    if is_ping(h, body):
        ping = Outcome(Kind.IGNORED, "webhook setup ping")
        return Reply(200, {"outcome": ping.kind, "reason": ping.reason}, outcome=ping)
    current = runtime()
    source = clean_text(h.get("x-wc-webhook-source", "")[:200])
    topic = clean_text(h.get("x-wc-webhook-topic", "")[:100])
    fields = {"site": source, "topic": topic, "webhook_id": clean_text(h.get("x-wc-webhook-id", "")[:40]),
              "delivery_id": clean_text(h.get("x-wc-webhook-delivery-id", "")[:80])}  # fmt: skip
    try:
        site = _signer(current, source, h.get("x-wc-webhook-signature"), body)
    except Refused as refused:  # the same shape as the Shopify webhook's 401 (docs/woocommerce.md, Answers)
        outcome = Outcome(Kind.REJECTED, refused.reason, details=dict(fields))
        return Reply(refused.status, refused.body(), outcome=outcome)
    fields["site"] = site.site
    try:
        outcome = _signed_delivery(topic, body, site, current, now, fields)
    except Exception as exc:  # a bug of ours before there was an event to park
        outcome = _refused(f"internal error ({type(exc).__name__}) while reading the order; it was not sent")
    return _reply(outcome, fields)


def _signer(runtime: Runtime, source: str, signature: str | None, body: bytes) -> WooCommerceSiteConfig:
    """The configured site ``source`` names, once ``signature`` proves it signed ``body``, or :class:`Refused` (401)."""
    site = runtime.site(source)
    if site is None:
        raise Refused(401, "unauthorized", f"X-WC-Webhook-Source {source!r} is not a configured WooCommerce site")
    secrets = [html.unescape(s.get_secret_value()) for s in site.secrets]
    if not verify_hmac_base64(body, signature, secrets):
        reason = "X-WC-Webhook-Signature is missing or does not match the site's webhook secret"
        raise Refused(401, "unauthorized", reason)
    return site


def _signed_delivery(
    topic: str, body: bytes, site: WooCommerceSiteConfig, runtime: Runtime, now: float | None, fields: dict[str, Any]
) -> Outcome:
    """A delivery whose signature is valid: skipped with a reason, delivered, or parked."""
    try:
        order = parse_json(body, max_int_digits=JSON_MAX_INT_DIGITS, surrogates="replace")
    except UnsafeInput as exc:
        # Skipped, not 4xx: five failed deliveries in a row disable the webhook, and every later order with it.
        return Outcome(Kind.IGNORED, f"body is not a usable v3 order: {exc.reason}")
    if not isinstance(order, dict):
        return Outcome(Kind.IGNORED, "body is JSON but not an object (expected the v3 order)")
    fields["order_id"] = logged_order_id(order)
    if reason := ignore_reason(topic, order):
        return Outcome(Kind.IGNORED, reason)
    try:
        event = map_order(order, site, now)
    except UnusableOrder as exc:
        return Outcome(Kind.IGNORED, str(exc))
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
    return _refused(f"{detail}; could not park it ({type(failure).__name__}); it was not sent", event.event_id)
