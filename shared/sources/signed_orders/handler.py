"""One POST from a backend to its :class:`~shared.infra.http.Reply`: read, authenticate, read the order, carry it out.

Answers (docs/signed-orders.md, "Answers"): 200 with the outcome (``published``, ``skipped``,
``withheld_consent``) for every order we settled; 400 naming the field for a body that is not a
documented order; 401 when the signature does not prove the site; 409 for a signature used
before; 413 for a body over the limit; 503 (``Retry-After``) when our Firestore or Pub/Sub
failed, after which nothing is lost as long as the backend signs again and retries. Never a 500
for anything a request holds. The outcome line is logged once by the entry point.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import flask

from shared.domain.untrusted import BodyTooLarge, clean_text, read_body
from shared.infra.deadline import Deadline, DependencyUnavailable
from shared.infra.http import Refused, Reply, headers_of
from shared.outcome import Kind, Outcome
from shared.sources.signed_orders.flow import claim_signature, deliver
from shared.sources.signed_orders.runtime import Runtime
from shared.sources.signed_orders.schema import InvalidOrder, log_fields, read_order, to_order_event
from shared.sources.signed_orders.settings import SiteConfig
from shared.sources.signed_orders.signature import SIGNATURE_HEADER, SITE_HEADER, SignatureError, Verified, verify

# Seconds a backend waits before signing again after a 503: long enough for a blip to pass.
RETRY_AFTER_SECONDS = 5
REPLAYED = "replayed: sign each attempt anew (a new t and signature); this exact signature was already used"


def handle_request(request: flask.Request, runtime: Callable[[], Runtime]) -> Reply:
    """The function's POST to its reply: the body read within SIGNED_ORDERS_MAX_BODY_BYTES, then :func:`handle`."""
    current = runtime()
    try:
        # Read before authentication but never past the limit: a chunked body has no Content-Length to check.
        body = read_body(request.stream.read, current.max_body_bytes, request.content_length)
    except BodyTooLarge as exc:
        return _refusal(Refused(413, "payload too large", exc.reason), {})
    return handle(headers_of(request), body, current)


def handle(headers: Mapping[str, str], body: bytes, runtime: Runtime, now: Callable[[], float] = time.time) -> Reply:
    """One signed order, start to finish. Never raises."""
    h = {str(name).lower(): str(value) for name, value in headers.items()}
    named = clean_text(h.get(SITE_HEADER.lower(), "")[:200]).strip()
    signature = h.get(SIGNATURE_HEADER.lower())
    fields: dict[str, Any] = {"site": named}
    try:
        site, verified = _authenticate(named, signature, body, runtime, now())
        fields["site"] = site.site
        order = read_order(body)
        fields.update(log_fields(order))
        event = to_order_event(order, site.site)
    except InvalidOrder as invalid:
        return _refusal(Refused(400, "invalid order", invalid.reason, invalid.fields or None), fields)
    except Refused as refused:
        return _refusal(refused, fields)
    deadline = Deadline(runtime.io_seconds)
    store, publisher = runtime.bounded_store(deadline), runtime.bounded_publisher(deadline)
    try:
        if not claim_signature(store, site.site, verified, runtime.tolerance_seconds):
            return _refusal(Refused(409, "replayed", REPLAYED), fields)
        outcome = deliver(order, event, site, runtime, store, publisher, now)
    except DependencyUnavailable as exc:
        reason = f"{exc.dependency} unavailable: the order was not taken; sign it again and retry"
        return _unavailable(reason, {"dependency": exc.dependency, "detail": exc.detail, **fields})
    except Exception as exc:  # a bug of ours: the type only, a message may quote the order
        reason = "processing failed: the order was not taken; sign it again and retry later"
        return _unavailable(reason, {"error": type(exc).__name__, **fields})
    return _settled(outcome, fields)


def _authenticate(
    named: str, signature: str | None, body: bytes, runtime: Runtime, now: float
) -> tuple[SiteConfig, Verified]:
    """The site the request names, once its signature proves it; :class:`Refused` (401) otherwise."""
    if not named:
        raise Refused(401, "unauthorized", f"{SITE_HEADER} is missing: send your site's host, e.g. shop.example.com")
    site = runtime.site(named)
    if site is None:
        raise Refused(401, "unauthorized", f"{SITE_HEADER} {named!r} is not a configured site")
    secrets = [secret.get_secret_value() for secret in site.secrets]
    try:
        return site, verify(body, signature, secrets, tolerance=runtime.tolerance_seconds, now=now)
    except SignatureError as exc:
        raise Refused(401, "unauthorized", exc.reason) from None


def _refusal(refused: Refused, fields: Mapping[str, Any]) -> Reply:
    """A 4xx with nothing done; its outcome line says why (and the site, never the body)."""
    outcome = Outcome(Kind.REJECTED, refused.reason, details={"status": refused.status, **fields})
    return Reply(refused.status, refused.body(), outcome=outcome)


def _unavailable(reason: str, details: dict[str, Any]) -> Reply:
    outcome = Outcome(Kind.ERROR_UNAVAILABLE, reason, severity="ERROR", details=details)
    body = {"error": "temporarily unavailable", "reason": reason}
    return Reply(503, body, {"Retry-After": str(RETRY_AFTER_SECONDS)}, outcome=outcome)


def _settled(outcome: Outcome, fields: Mapping[str, Any]) -> Reply:
    """The 200 of an order we settled: published, skipped with its reason, or withheld for consent."""
    body: dict[str, Any] = {"outcome": outcome.kind, "event_id": outcome.event_id, "reason": outcome.reason}
    return Reply(200, body, outcome=replace(outcome, details={**outcome.details, **fields}))
