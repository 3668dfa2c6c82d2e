"""One collect request, start to finish (the instance's dependencies are :class:`~.runtime.Runtime`).

A request goes through these steps, each of which can end it (see docs/collect.md):

1. method: ``OPTIONS`` is a CORS preflight, ``POST`` is a collect request;
2. rate limit: a token bucket per client address and instance (429, :mod:`.ratelimit`);
3. origin: an ``Origin`` header must be one of the configured origins (any pixel's);
4. drops (204, nothing read): prefetch/prerender requests, obvious bots (:mod:`.admission`);
5. body: ``application/json`` or ``text/plain`` (what ``navigator.sendBeacon``
   sends without a preflight), at most ``COLLECT_MAX_BODY_BYTES`` declared and read,
   parsed by :func:`shared.domain.untrusted.parse_json` (bounded depth, numbers, no lone surrogates);
6. admission: a configured pixel, from one of *its* origins; without an Origin
   (Shopify's pixel sandbox) only with one of its collect keys (:mod:`.admission`);
7. validation (pydantic): a 400 that names the field (:mod:`.schema`);
8. join keys: only those the request proves it holds (:mod:`.keys`);
9. consent: :func:`shared.domain.consent.decide` with the pixel's policy and GPC mode
   (``Sec-GPC: 1`` counts as the page's ``consent.gpc``); without consent the answer
   is 204 and nothing is published; an explicit denial is stored, alone, under the
   proven join keys, replacing any earlier context (:func:`denial_context`);
10. the click context is stored under those join keys and the events are
    published as envelopes carrying the page's event ids, with URLs and free
    text scrubbed of personal data (:mod:`.plan`); a plan that would not
    serialise is refused alone (400) before it joins a group commit (:mod:`.commit`).

Everything up to step 10 is pure; step 10 goes through the :class:`~.runtime.Runtime`'s
store and publisher. Raw identifiers are hashed by :func:`shared.domain.identity.build_user`
and never logged, echoed or published.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import flask

from shared.config import PixelConfig
from shared.domain.consent import ConsentDecision, ConsentSnapshot, decide
from shared.infra.http import Reply, headers_of
from shared.infra.metrics import COUNTERS
from shared.outcome import Kind, Outcome
from shared.receive.collect.admission import (
    JSON_TYPES,
    admit,
    client_ip,
    drop_reason,
    is_preview_page,
    media_type,
    normalize_origin,
    read_request_body,
)
from shared.receive.collect.commit import Unavailable, context_digest
from shared.receive.collect.keys import BoundKeys
from shared.receive.collect.plan import Plan, bound_keys, build_plan, unserialisable
from shared.receive.collect.request import HttpRequest, Refused
from shared.receive.collect.runtime import Runtime
from shared.receive.collect.schema import CollectBody, ConsentInput, parse_body

# What a page may read of an answer: why a 204 stored nothing, and when to retry a 429 or 503.
EXPOSED_HEADERS = "X-Collect-Outcome, X-Collect-Consent, X-Collect-Ignored, Retry-After"
# Browsers cache a preflight for at most 2 h (Chromium's cap), so longer is pointless.
PREFLIGHT_MAX_AGE_SECONDS = 7200


# --- the whole request ---------------------------------------------------------------------------


def _reply(
    status: int, kind: Kind, reason: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> Reply:
    return Reply(status, body, headers or {}, Outcome(kind, reason))


def cors_headers(origin: str | None, runtime: Runtime) -> dict[str, str]:
    headers = {"Vary": "Origin"}
    if origin is not None and origin in runtime.origins:
        headers["Access-Control-Allow-Origin"] = origin
        # Lets a page (the demo, a developer's console) read why a 204 stored nothing.
        headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return headers


def preflight(request: HttpRequest, runtime: Runtime) -> Reply:
    origin = normalize_origin(request.header("origin"))
    if origin is None or origin not in runtime.origins:
        reason = f"origin {origin or '(none)'} is not an allowed origin"
        return _reply(403, Kind.REJECTED, reason, {"error": "forbidden", "reason": reason}, {"Vary": "Origin"})
    headers = {
        **cors_headers(origin, runtime),
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
    }
    return _reply(204, Kind.PREFLIGHT, "", None, headers)


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
        headers = {"Allow": "POST, OPTIONS"} if refused.status == 405 else {}
        reply = _reply(refused.status, Kind.REJECTED, refused.reason, refused.body(), headers)
    assert reply.outcome is not None  # every reply of this module says what happened
    if (request.header("origin") or "").strip().lower() == "null" and reply.status != 403:
        # Shopify's pixel sandbox (an opaque origin) reads whether its keyed request got a 2xx, to retry it.
        # Never "*"; no credentials are allowed, and the answer holds nothing the request did not send.
        cors = {**cors, "Access-Control-Allow-Origin": "null", "Access-Control-Expose-Headers": EXPOSED_HEADERS}
    headers = {**cors, **reply.headers, "X-Collect-Outcome": reply.outcome.kind}
    return Reply(reply.status, reply.body, headers, reply.outcome)


def _rate_limited(request: HttpRequest, runtime: Runtime) -> Reply | None:
    """429 when this client address has used up its bucket on this instance (COLLECT_RATE_LIMIT_*)."""
    if not runtime.rate_limit.enabled:
        return None
    # An X-Forwarded-For that names no address ("unknown", garbage) must not buy an unlimited bucket:
    # such a client is limited under the connection's own address (the front end's, when deployed).
    address = client_ip(request.headers.get("x-forwarded-for"), request.remote_addr, runtime.trusted_hops)
    verdict = runtime.rate_limit.take(address or request.remote_addr)
    if verdict.allowed:
        return None
    COUNTERS.add("collect.rate_limited")
    per_minute = round(runtime.rate_limit.per_second * 60)
    reason = f"more than {per_minute} requests per minute from this address (COLLECT_RATE_LIMIT_PER_MINUTE); try later"
    body = {"error": "too many requests", "reason": reason}
    return _reply(429, Kind.REJECTED_RATE_LIMIT, reason, body, {"Retry-After": str(verdict.retry_after)})


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
        return _reply(204, Kind(f"dropped_{dropped}"), f"{dropped} traffic is not collected")
    content_type = media_type(request.header("content-type"))
    if content_type not in JSON_TYPES:
        raise Refused(415, "unsupported media type", "send JSON as application/json or text/plain")
    raw = read_request_body(request, runtime.max_body_bytes)
    if not raw:
        raise Refused(400, "invalid body", "the body is empty; send a JSON object")
    body = parse_body(raw, runtime.max_events)
    pixel = admit(body, origin, runtime.tenants, runtime.origins_by_pixel)
    if is_preview_page(body.context.page_url):
        return _reply(204, Kind.DROPPED_PREVIEW, "theme preview traffic is not collected")
    body = with_gpc_header(body, request.header("sec-gpc"))
    bound = bound_keys(body, pixel)
    decision = decide(body.consent_snapshot(), runtime.tenants.policy_for(pixel.pixel_code), pixel.gpc)
    if not decision.send:
        return _withhold(bound, pixel, decision, runtime, body.consent_snapshot(), unchanged=body.context.unchanged)
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


def with_gpc_header(body: CollectBody, sec_gpc: str | None) -> CollectBody:
    """Pure: ``Sec-GPC: 1`` (the browser's Global Privacy Control) counts as the page's ``consent.gpc: true``."""
    if (sec_gpc or "").strip() != "1" or (body.consent is not None and body.consent.gpc):
        return body
    consent = (body.consent or ConsentInput()).model_copy(update={"gpc": True})
    return body.model_copy(update={"consent": consent})


def denial_context(snapshot: ConsentSnapshot | None) -> dict[str, Any]:
    """Pure: what a denial stores: the consent answer alone (its time is the document's ``updated_at``).

    No click id, cookie, address, user agent, URL or identifier: a denial keeps
    nothing of the shopper but their "no". Every consent key is written (Nones
    included), so a later grant's merge replaces the whole answer.
    """
    return {"consent": (snapshot or ConsentSnapshot(granted=False)).model_dump()}


def _withhold(
    bound: BoundKeys,
    pixel: PixelConfig,
    decision: ConsentDecision,
    runtime: Runtime,
    snapshot: ConsentSnapshot | None = None,
    *,
    unchanged: bool = False,
) -> Reply:
    """No consent: nothing is published. An explicit denial is remembered: stored, alone, under the proven keys.

    The denial replaces whatever an earlier grant stored there (its click ids and
    identifiers are gone), and the order webhooks read it and withhold under
    either policy (docs/collect.md, Consent). Only under the keys this request
    proves it holds: a denial posted with someone else's (guessable) key must
    not touch their context. A page repeating a denial its instance already
    wrote (``unchanged``) costs no write, as with grants (:class:`KnownContexts`);
    and because a denial is remembered there, a later grant is written again.
    """
    denied = decision.reason == "denied" and bool(bound.pairs)
    skipped_write = False
    if denied:
        context = denial_context(snapshot)
        digest = context_digest(context)
        skipped_write = unchanged and runtime.known_contexts.known(pixel.pixel_code, bound.pairs, digest)
        if not skipped_write:
            runtime.known_contexts.forget(pixel.pixel_code, bound.pairs)  # until the denial is surely written
            ttl = dt.timedelta(days=pixel.click_ttl_days)
            try:
                store = runtime.store_for_commit()
                store.replace_click_contexts(pixel.pixel_code, bound.pairs, context, ttl)
            except Exception as exc:  # any client failure: the page may retry
                return _unavailable("firestore", exc)
            runtime.known_contexts.remember(pixel.pixel_code, bound.pairs, digest)
    reason = f"consent {decision.describe()}: nothing stored or sent"
    if denied:
        keys = len(bound.pairs)
        stored = "already stored" if skipped_write else "stored, replacing any earlier context,"
        reason = f"consent {decision.describe()}: nothing sent; the denial alone {stored} under its {keys} join keys"
    headers = {"X-Collect-Consent": decision.reason, **_ignored_header(bound)}
    return _reply(204, Kind.WITHHELD_CONSENT, reason, None, headers)


def _unavailable(what: str, exc: BaseException) -> Reply:
    reason = f"{what} unavailable ({type(exc).__name__}); try again"
    return _reply(503, Kind.ERROR_UNAVAILABLE, reason, {"error": "unavailable", "reason": reason}, {"Retry-After": "5"})


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
    if plan.skipped_counts:  # purchases and order events refused (collect.skipped.purchase, ...order_event)
        COUNTERS.add_many({f"collect.skipped.{kind}": count for kind, count in plan.skipped_counts.items()})
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
    return _reply(200, Kind.ACCEPTED, reason, body, headers)


def handle_request(request: flask.Request, runtime: Callable[[], Runtime]) -> Reply:
    """The function's request to its reply, carrying the fields of its one outcome line (see :func:`logged`)."""
    current = runtime()
    incoming = HttpRequest(
        method=request.method,
        # werkzeug's headers look names up case-insensitively, without copying them all per request.
        headers=headers_of(request),
        read=request.stream.read,
        remote_addr=request.remote_addr,
    )
    # A 4xx may come before the body was read (413, 429, 403): the reply keeps it unread.
    return logged(handle(incoming, current), incoming)


def logged(reply: Reply, request: HttpRequest) -> Reply:
    """The reply with its outcome line's fields: the outcome and ids, never the shopper's data."""
    assert reply.outcome is not None
    fields: dict[str, Any] = {"status": reply.status, "origin": normalize_origin(request.header("origin"))}
    if reply.body and reply.outcome.kind == Kind.ACCEPTED:
        fields["events"] = len(reply.body["published"])
        fields["event_ids"] = reply.body["published"][:20]
        fields["click_context"] = reply.body["click_context"]
        fields["consent"] = reply.body["consent"]
        fields["limited_data_use"] = reply.body["limited_data_use"]
        if reply.body.get("ignored"):
            fields["ignored"] = [i["field"] for i in reply.body["ignored"]]
        if reply.body.get("retimed"):
            fields["retimed"] = [r["event_id"] for r in reply.body["retimed"]][:20]
    return replace(reply, outcome=replace(reply.outcome, details={**reply.outcome.details, **fields}))
