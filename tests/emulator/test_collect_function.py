"""The collect function in-process, against the real Firestore and Pub/Sub emulators.

Each test gets its own collection prefix and topic (conftest's ``store`` and
``topic``), runs the real ``functions/collect/main.py`` through
functions-framework's test client, and proves what was (or was not) written to
Firestore and published to Pub/Sub.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import functions_framework
import pytest

from shared.domain.consent import ConsentSnapshot, decide
from shared.infra.store import CLICK_CONTEXTS, COLLECTIONS, TTL_FIELD
from shared.receive.collect.keys import sign_customer_id
from shared.receive.orders import JOIN_CUSTOMER, JOIN_SHOPIFY_CART, JOIN_SHOPIFY_CHECKOUT
from tests.conftest import decode_message
from tests.helpers import ROOT

PIXEL = "CTESTPIXEL01"
ORIGIN = "https://shop.example"
KEY = "test-collect-key"
SIGNING_SECRET = "test-signing-secret"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36"
GRANTED = {"ad_storage": "granted", "ad_user_data": "granted", "ad_personalization": "granted"}


def source() -> str:
    return str(ROOT / "functions" / "collect" / "main.py")


def request_body(token: str, **changes: Any) -> dict[str, Any]:
    document = {
        "pixel_code": PIXEL,
        "consent": GRANTED,
        "context": {
            "ttclid": "E.C.P.test-click",
            "ttp": "ttp-cookie-value",
            "page_url": "https://shop.example/products/shirt?ttclid=E.C.P.test-click",
            "locale": "en-US",
            "join_keys": {"shopify_cart_token": token},
            "user": {"email": "Jane.Doe@Example.com"},
        },
        "events": [
            {
                "event": "AddToCart",
                "event_id": f"evt-{uuid.uuid4().hex}",
                "event_time": int(time.time() * 1000),  # Date.now()
                "properties": {"currency": "USD", "value": 25.0, "contents": [{"content_id": "SKU1", "quantity": 1}]},
            }
        ],
    }
    document.update(changes)
    return document


@dataclass
class Collect:
    client: Any
    store: Any
    topic: Any

    def post(self, payload: Any, *, headers: dict[str, str | None] | None = None, raw: bytes | None = None):
        data = raw if raw is not None else json.dumps(payload).encode()
        sent = {"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8", "User-Agent": CHROME, **(headers or {})}
        return self.client.post("/", data=data, headers={k: v for k, v in sent.items() if v is not None})

    def contexts(self) -> dict[str, dict]:
        return {d.id: d.to_dict() for d in self.store.collection(CLICK_CONTEXTS).stream()}

    def published(self, expected: int = 1) -> list[dict]:
        return [decode_message(m) for m in self.topic.pull_all(expected)]

    def nothing_published(self) -> bool:
        return self.topic.pull(timeout=1.0) == []

    def no_trace(self) -> bool:
        empty = all(not list(self.store.collection(name).limit(1).stream()) for name in COLLECTIONS)
        return empty and self.nothing_published()


def settings_env(emulators, collection_prefix: str, topic_name: str, **extra: str) -> dict[str, str]:
    return {
        **emulators.env,
        "TIKTOK_PIXEL_CODE": PIXEL,
        "CONSENT_POLICY": "opt-in",
        "COLLECT_ALLOWED_ORIGINS": f"{ORIGIN},http://localhost:8000",
        "COLLECT_KEYS": KEY,
        "COLLECT_SIGNING_SECRET": SIGNING_SECRET,
        "CLICK_TTL_DAYS": "7",
        "COLLECT_MAX_BODY_BYTES": "16384",
        "COLLECT_MAX_EVENTS": "5",
        "FIRESTORE_COLLECTION_PREFIX": collection_prefix,
        "PUBSUB_TOPIC": topic_name,
        **extra,
    }


@pytest.fixture
def make_collect(monkeypatch, emulators, collection_prefix, topic, store):
    def make(**extra: str) -> Collect:
        for name, value in settings_env(emulators, collection_prefix, topic.topic, **extra).items():
            monkeypatch.setenv(name, value)
        app = functions_framework.create_app(target="collect", source=source())
        return Collect(app.test_client(), store, topic)

    return make


@pytest.fixture
def collect(make_collect) -> Collect:
    return make_collect()


# --- health and configuration ------------------------------------------------------------------


def test_a_misconfigured_function_answers_503_with_a_logged_reason_not_500(collect, monkeypatch, capsys):
    monkeypatch.delenv("TIKTOK_PIXEL_CODE")
    response = collect.post(request_body("cart-x"))
    assert response.status_code == 503
    assert "TIKTOK_PIXEL_CODE" in capsys.readouterr().out


# --- consent granted: stored and published -----------------------------------------------------------


def test_a_consented_add_to_cart_stores_the_click_context_and_publishes_the_pages_event_id(collect, capsys):
    token = f"cart-{uuid.uuid4().hex}"
    document = request_body(token)
    event_id = document["events"][0]["event_id"]
    response = collect.post(document, headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.24"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["published"] == [event_id]
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN

    [(doc_id, context)] = collect.contexts().items()
    assert doc_id == f"{PIXEL}|{JOIN_SHOPIFY_CART}|{token}"
    assert context["ttclid"] == "E.C.P.test-click" and context["ttp"] == "ttp-cookie-value"
    assert context["ip"] == "203.0.113.24" and context["user_agent"] == CHROME
    assert context["consent"] == ConsentSnapshot(**GRANTED).model_dump()
    assert context["user"] == {"email": [hashlib.sha256(b"jane.doe@example.com").hexdigest()]}
    lifetime = context[TTL_FIELD] - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(days=6, hours=23) < lifetime <= dt.timedelta(days=7)

    [envelope] = collect.published()
    assert (envelope["source"], envelope["event"], envelope["event_id"]) == ("collect", "AddToCart", event_id)
    assert envelope["event_time"] == document["events"][0]["event_time"] // 1000
    assert envelope["user"]["email"] == context["user"]["email"]
    assert envelope["user"]["ip"] == "203.0.113.24"
    assert envelope["properties"]["value"] == 25.0

    logged = capsys.readouterr().out
    assert "jane" not in logged.lower() and event_id in logged


def test_what_collect_stores_is_what_the_order_flow_reads(collect):
    """The webhooks' shared.receive.orders.build_envelope joins on exactly these fields."""
    from shared.config import PixelConfig
    from shared.domain.identity import RawIdentity
    from shared.receive.orders import OrderEvent, build_envelope

    token = f"chk-{uuid.uuid4().hex}"
    document = request_body(
        "unused", context={"ttclid": "E.C.P.joined", "join_keys": {"shopify_checkout_token": token}}
    )
    assert collect.post(document).status_code == 200
    context = collect.store.find_click_context(PIXEL, [(JOIN_SHOPIFY_CHECKOUT, token)])
    order = OrderEvent("shopify", "s.myshopify.com", "1", "Purchase", 1_780_000_000, RawIdentity(), {})
    envelope, outcome = build_envelope(order, PixelConfig(pixel_code=PIXEL), context, "opt-in", "US",
                                       received_at=int(time.time()))  # fmt: skip
    assert outcome is None and envelope.user.ttclid == "E.C.P.joined" and envelope.consent == "granted"


def test_a_later_page_without_ttclid_keeps_the_stored_one_and_the_latest_consent(collect):
    token = f"cart-{uuid.uuid4().hex}"
    assert collect.post(request_body(token)).status_code == 200
    later = request_body(token, consent={"marketingAllowed": True, "saleOfDataAllowed": False})
    del later["context"]["ttclid"]
    assert collect.post(later).status_code == 200
    [context] = collect.contexts().values()
    assert context["ttclid"] == "E.C.P.test-click"
    assert context["consent"] == ConsentSnapshot(marketing_allowed=True, sale_of_data_allowed=False).model_dump()
    assert [m["limited_data_use"] for m in collect.published(2)] == [False, True]


def test_a_customer_id_join_key_carries_the_customer_key_for_privacy_deletion(collect):
    customer = str(uuid.uuid4().int % 10**12)
    signature = sign_customer_id(customer, SIGNING_SECRET)
    document = request_body(
        "cart-c", context={"join_keys": {"customer_id": customer, "customer_id_signature": signature}}
    )
    assert collect.post(document).status_code == 200
    [context] = collect.contexts().values()
    assert context["customer_key"] == hashlib.sha256(customer.encode()).hexdigest()
    assert context["join_kind"] == JOIN_CUSTOMER
    assert collect.store.delete_where(CLICK_CONTEXTS, "customer_key", context["customer_key"]) == 1


def test_a_shopify_custom_pixel_without_origin_is_admitted_by_its_key(collect):
    document = request_body(f"cart-{uuid.uuid4().hex}", key=KEY)
    response = collect.post(document, headers={"Origin": "null"})
    assert response.status_code == 200
    assert len(collect.published()) == 1


def test_opt_out_policy_sends_without_any_consent_signal(make_collect):
    collect = make_collect(CONSENT_POLICY="opt-out")
    response = collect.post(request_body(f"cart-{uuid.uuid4().hex}", consent=None))
    assert response.status_code == 200
    [envelope] = collect.published()
    assert envelope["consent"] == "policy_opt_out"


def test_a_failed_publish_answers_503_and_the_retry_succeeds(make_collect, topic, pubsub_clients):
    publisher = pubsub_clients[0]
    missing = f"t-{uuid.uuid4().hex[:12]}"
    collect = make_collect(PUBSUB_TOPIC=missing)
    document = request_body(f"cart-{uuid.uuid4().hex}")
    response = collect.post(document)
    assert response.status_code == 503 and "pubsub" in response.get_json()["reason"]
    publisher.create_topic(name=publisher.topic_path(topic.project, missing))
    assert collect.post(document).status_code == 200


# --- no consent: nothing stored, nothing published ----------------------------------------------------


@pytest.mark.parametrize("consent", [None, {"ad_storage": "granted"}, {"analytics_storage": "granted"}])
def test_without_consent_the_answer_is_204_and_nothing_is_stored_or_published(collect, consent):
    response = collect.post(request_body(f"cart-{uuid.uuid4().hex}", consent=consent))
    assert (response.status_code, response.get_data()) == (204, b"")
    assert response.headers["X-Collect-Outcome"] == "withheld_consent"
    assert collect.no_trace()


DENIAL_ONLY = {"consent", "pixel_code", "join_kind", "updated_at", "expire_at"}


@pytest.mark.parametrize(
    "consent",
    [False, {"ad_storage": "denied"}, {"ad_storage": "granted", "ad_user_data": "denied"},
     {"marketingAllowed": False, "saleOfDataAllowed": True}],
)  # fmt: skip
def test_an_explicit_denial_is_204_publishes_nothing_and_stores_the_denial_alone(collect, consent):
    token = f"cart-{uuid.uuid4().hex}"
    response = collect.post(request_body(token, consent=consent))
    assert (response.status_code, response.get_data()) == (204, b"")
    assert response.headers["X-Collect-Outcome"] == "withheld_consent"
    assert response.headers["X-Collect-Consent"] == "denied"
    [context] = collect.contexts().values()
    assert set(context) == DENIAL_ONLY and context["join_kind"] == JOIN_SHOPIFY_CART
    assert decide(ConsentSnapshot.model_validate(context["consent"]), "opt-out").reason == "denied"
    assert collect.nothing_published()


def test_a_denial_after_a_grant_replaces_the_stored_click_context_with_the_denial_alone(collect):
    token = f"cart-{uuid.uuid4().hex}"
    assert collect.post(request_body(token)).status_code == 200
    assert len(collect.published()) == 1 and len(collect.contexts()) == 1
    assert collect.post(request_body(token, consent={"ad_storage": "denied"})).status_code == 204
    [context] = collect.contexts().values()
    # Nothing of the grant's context is left: no click ids, address, user agent, page, identifiers.
    assert set(context) == DENIAL_ONLY and context["consent"]["ad_storage"] == "denied"
    assert collect.nothing_published()
    # A grant after it writes the whole answer again: no field of the denial survives the merge.
    assert collect.post(request_body(token)).status_code == 200
    [context] = collect.contexts().values()
    assert context["consent"] == {**ConsentSnapshot().model_dump(), **request_body(token)["consent"]}
    assert decide(ConsentSnapshot.model_validate(context["consent"]), "opt-in").reason == "granted"


# --- bad input: a clear 4xx and no trace -------------------------------------------------------------


BAD_REQUESTS = {
    "wrong content type": ({"headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415, "JSON"),
    "invalid JSON": ({"raw": b'{"pixel_code": '}, 400, "not valid JSON"),
    "not an object": ({"raw": b'["AddToCart"]'}, 400, "JSON object"),
    "empty body": ({"raw": b""}, 400, "empty"),
    "oversized body": ({"raw": b'{"pixel_code": "' + b"x" * 20_000 + b'"}'}, 413, "16384 bytes"),
    "unknown pixel": ({"changes": {"pixel_code": "CUNKNOWN"}}, 403, "CUNKNOWN"),
    "foreign origin": ({"headers": {"Origin": "https://evil.example"}}, 403, "https://evil.example"),
    "no origin and no key": ({"headers": {"Origin": None}}, 403, "collect key"),
    "foreign origin with the key": ({"headers": {"Origin": "https://evil.example"}, "changes": {"key": KEY}}, 403,
                                    "evil.example"),
    "wrong key": ({"headers": {"Origin": None}, "changes": {"key": "guess"}}, 403, "key"),
    "malformed consent": ({"changes": {"consent": {"ad_storage": "yes please"}}}, 400, "consent.ad_storage"),
    "consent of the wrong type": ({"changes": {"consent": "granted"}}, 400, "consent"),
    "10,000-character page_url": ({"context": {"page_url": "https://shop.example/?" + "q" * 10_000}}, 400,
                                  "context.page_url"),
    "10,000-character ttclid": ({"context": {"ttclid": "E" * 10_000}}, 400, "context.ttclid"),
    "10,000-character event_id": ({"event": {"event_id": "e" * 10_000}}, 400, "events[0].event_id"),
    "10,000-character email": ({"context": {"user": {"email": "a" * 10_000 + "@x.example"}}}, 400,
                               "context.user.email[0]"),
    "10,000-character custom property": ({"event": {"properties": {"note": "n" * 10_000}}}, 400,
                                         "events[0].properties"),
    "unknown event name": ({"event": {"event": "Add to cart!"}}, 400, "events[0].event"),
    "event time as text": ({"event": {"event_time": "yesterday"}}, 400, "events[0].event_time"),
    "too many events": ({"changes": {"events": [{"event": "ViewContent", "event_id": f"v{i}"} for i in range(6)]}},
                        400, "at most 5 events"),
    "unknown field": ({"changes": {"tracking": True}}, 400, "tracking"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_input_gets_a_clear_4xx_naming_the_problem_and_leaves_no_trace(collect, case):
    spec, status, reason = BAD_REQUESTS[case]
    document = request_body(f"cart-{uuid.uuid4().hex}", **spec.get("changes", {}))
    document["context"].update(spec.get("context", {}))
    document["events"][0].update(spec.get("event", {}))
    response = collect.post(document, headers=spec.get("headers"), raw=spec.get("raw"))
    assert response.status_code == status, response.get_data(as_text=True)
    assert reason in response.get_json()["reason"]
    assert collect.no_trace()


# --- dropped traffic ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"},
        {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/150.0.0.0 Safari/537.36"},
        {"Sec-Purpose": "prefetch;prerender"},
        {"Purpose": "prefetch"},
        {"X-Moz": "prefetch"},
    ],
)
def test_bots_and_prefetches_are_dropped_with_204_and_leave_no_trace(collect, headers):
    response = collect.post(request_body(f"cart-{uuid.uuid4().hex}"), headers=headers)
    assert response.status_code == 204 and response.headers["X-Collect-Outcome"].startswith("dropped_")
    assert collect.no_trace()


def test_shopify_theme_preview_traffic_is_dropped(collect):
    document = request_body(f"cart-{uuid.uuid4().hex}")
    document["context"]["page_url"] = "https://shop.example/?preview_theme_id=123456"
    response = collect.post(document)
    assert (response.status_code, response.headers["X-Collect-Outcome"]) == (204, "dropped_preview")
    assert collect.no_trace()


# --- CORS --------------------------------------------------------------------------------------------------


def test_preflight_from_an_allowed_origin_allows_a_json_post(collect):
    response = collect.client.options(
        "/", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                      "Access-Control-Request-Headers": "content-type"},
    )  # fmt: skip
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Vary"] == "Origin"
    document = request_body(f"cart-{uuid.uuid4().hex}")
    assert collect.post(document, headers={"Content-Type": "application/json"}).status_code == 200
    assert len(collect.published()) == 1


def test_preflight_from_a_foreign_origin_is_refused(collect):
    response = collect.client.options("/", headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers


# --- concurrent requests share their round trips -------------------------------------------------


def _plan(token: str, **context: Any):
    from shared.config import PixelConfig
    from shared.domain.consent import ConsentDecision
    from shared.domain.models import Envelope
    from shared.receive.collect.plan import Plan

    envelope = Envelope(source="collect", pixel_code=PIXEL, event="AddToCart", event_id=f"evt-{token}",
                        event_time=int(time.time()), consent="granted")  # fmt: skip
    return Plan(PixelConfig(pixel_code=PIXEL), [(JOIN_SHOPIFY_CART, token)], {"ttp": f"ttp-{token}", **context},
                [envelope], [], ConsentDecision(True, "granted", False))  # fmt: skip


def test_one_requests_bad_document_fails_that_request_alone(store, event_publisher, topic):
    from shared.config import PixelConfig, Tenants
    from shared.receive.collect.commit import Unavailable
    from shared.receive.collect.runtime import Runtime

    tokens = [f"cart-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    plans = [_plan(tokens[0]), _plan(tokens[1], __reserved__="Firestore refuses this field"), _plan(tokens[2])]
    runtime = Runtime(Tenants(pixels={PIXEL: PixelConfig(pixel_code=PIXEL)}),
                      store_factory=lambda: store, publisher_factory=lambda: event_publisher)  # fmt: skip
    outcomes = runtime._flush(plans)  # what one group commit of these three requests runs
    assert outcomes[0] == outcomes[2] == 1
    assert isinstance(outcomes[1], Unavailable) and outcomes[1].what == "firestore"
    assert store.find_click_context(PIXEL, [(JOIN_SHOPIFY_CART, tokens[0])])["ttp"] == f"ttp-{tokens[0]}"
    assert store.find_click_context(PIXEL, [(JOIN_SHOPIFY_CART, tokens[2])])["ttp"] == f"ttp-{tokens[2]}"
    assert store.find_click_context(PIXEL, [(JOIN_SHOPIFY_CART, tokens[1])]) is None
    # Its event was published anyway (the page retries; the sender and TikTok deduplicate the id).
    assert sorted(decode_message(m)["event_id"] for m in topic.pull_all(3)) == sorted(f"evt-{t}" for t in tokens)


def test_concurrent_requests_share_commits_and_each_gets_its_own_answer(collect):
    import sys
    from concurrent.futures import ThreadPoolExecutor

    tokens = [f"cart-{uuid.uuid4().hex}" for _ in range(40)]
    documents = [request_body(token) for token in tokens]
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(collect.post, documents))
    assert [r.status_code for r in responses] == [200] * 40
    for document, response in zip(documents, responses, strict=True):
        assert response.get_json()["published"] == [document["events"][0]["event_id"]]
    stored = collect.contexts()
    assert sorted(d["ttp"] for d in stored.values()) == ["ttp-cookie-value"] * 40
    assert {key.rsplit("|", 1)[-1] for key in stored} == set(tokens)
    published = collect.published(40)
    assert sorted(e["event_id"] for e in published) == sorted(d["events"][0]["event_id"] for d in documents)
    module = next(m for m in sys.modules.values() if getattr(m, "collect", None) is not None
                  and getattr(m, "_runtime", None) is not None)  # fmt: skip
    committer = module._runtime.peek()._committer.peek()
    assert committer.items_flushed == 40 and committer.flushes < 40


def test_an_unreachable_firestore_answers_503_within_the_bound(
    emulators, collection_prefix, event_publisher, monkeypatch
):
    from shared.config import PixelConfig, Tenants
    from shared.infra.store import Store, make_client
    from shared.receive.collect import handler as domain
    from shared.receive.collect import runtime as clients
    from shared.receive.collect.request import HttpRequest
    from tests.emulator.test_woocommerce_webhook import emulator_host_pointing_nowhere

    monkeypatch.setattr(clients, "STORE_TIMEOUT_SECONDS", 0.5)
    with emulator_host_pointing_nowhere("FIRESTORE_EMULATOR_HOST"):
        unreachable = Store(make_client(emulators.project), collection_prefix)
    runtime = clients.Runtime(Tenants(pixels={PIXEL: PixelConfig(pixel_code=PIXEL, allowed_origins=[ORIGIN])}),
                             store_factory=lambda: unreachable, publisher_factory=lambda: event_publisher)  # fmt: skip
    raw = json.dumps(request_body(f"cart-{uuid.uuid4().hex}")).encode()
    headers = {"origin": ORIGIN, "content-type": "text/plain", "user-agent": CHROME}
    started = time.monotonic()
    reply = domain.handle(HttpRequest("POST", headers, io.BytesIO(raw).read, "203.0.113.9"), runtime)
    assert reply.status == 503 and "firestore" in reply.body["reason"]
    assert time.monotonic() - started < 3.0
