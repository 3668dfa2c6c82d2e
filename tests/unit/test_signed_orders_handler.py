"""One signed order through the handler with in-memory Firestore and Pub/Sub: every answer, and what it leaves.

The emulator tests (tests/emulator/test_signed_orders_function.py) run the same through the real
function and the real emulators; these prove the rules fast, and the outages exactly.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from shared.config import ConfigError
from shared.infra.deadline import DependencyUnavailable
from shared.infra.store import CLICK_CONTEXTS, EVENT_CLAIMS, ORDER_EVENTS
from shared.sources.signed_orders.flow import replay_ttl
from shared.sources.signed_orders.handler import handle
from shared.sources.signed_orders.runtime import Runtime
from shared.sources.signed_orders.settings import SignedOrdersSettings
from shared.sources.signed_orders.signature import sign
from tests.unit.memory import MemoryPublisher, MemoryStore
from tests.unit.test_signed_orders_schema import RAW_PII, signed_order

SITE, SECRET, PIXEL = "shop.example.com", "unit-secret", "CSIGNEDPIXEL01"
CHECKOUT = "chk_4f9a2c7e1b8d4e6f9a0c"


def make_runtime(store: MemoryStore, publisher: MemoryPublisher, **env: str) -> Runtime:
    base = {"TIKTOK_PIXEL_CODE": PIXEL, "SIGNED_ORDERS_SITE": f"https://www.{SITE}/", "SIGNED_ORDERS_SECRET": SECRET,
            "CONSENT_POLICY": "opt-in"}  # fmt: skip
    settings = SignedOrdersSettings.from_env({**base, **env})
    tenants = settings.tenants()
    return Runtime(tenants, settings.sites(tenants), store=store, publisher=publisher, io_seconds=2)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
def runtime(store, publisher) -> Runtime:
    return make_runtime(store, publisher)


def post(runtime: Runtime, order: dict[str, Any] | bytes, *, secret: str = SECRET, at: int | None = None,
         site: str | None = SITE, header: str | None = None):  # fmt: skip
    body = order if isinstance(order, bytes) else json.dumps(order).encode()
    headers = {"Content-Type": "application/json"}
    if site is not None:
        headers["Pipeline-Site"] = site
    signature = header if header is not None else sign(body, secret, int(time.time()) if at is None else at)
    headers["Pipeline-Signature"] = signature
    return handle(headers, body, runtime)


def test_a_signed_order_is_published_with_its_deterministic_event_id(runtime, publisher):
    reply = post(runtime, signed_order())
    assert reply.status == 200
    assert reply.body == {"outcome": "published", "event_id": f"signed_orders:{SITE}:order:A-1001:Purchase",
                          "reason": "Purchase published"}  # fmt: skip
    (envelope,) = publisher.envelopes
    assert envelope.source == "signed_orders" and envelope.pixel_code == PIXEL and envelope.consent == "granted"
    assert envelope.properties.value == 59.9 and envelope.properties.currency == "EUR"
    published = envelope.model_dump_json()
    for raw in RAW_PII[:5]:  # email, phone, names, external id: hashed
        assert raw not in published and raw.lower() not in published


def test_the_same_order_signed_again_is_published_again_for_the_sender_to_deduplicate(runtime, publisher):
    order = signed_order()
    assert post(runtime, order).body["outcome"] == "published"
    time.sleep(1.01)  # a fresh signing: a new t
    assert post(runtime, order).body["outcome"] == "published"
    assert len({e.event_id for e in publisher.envelopes}) == 1 and len(publisher.envelopes) == 2


def test_the_same_request_twice_is_a_replay_409(runtime, publisher, store):
    body = json.dumps(signed_order()).encode()
    header = sign(body, SECRET, int(time.time()))
    assert post(runtime, body, header=header).status == 200
    replayed = post(runtime, body, header=header)
    assert replayed.status == 409 and replayed.body["error"] == "replayed"
    assert "sign each attempt anew" in replayed.body["reason"]
    assert len(publisher.envelopes) == 1
    (record,) = [d for d in store.live(ORDER_EVENTS) if d.get("site") == SITE]
    assert "event_id" not in record  # the report counts records that name an event: this one names none
    assert record["expire_at"] - record["created_at"] == replay_ttl(runtime.tolerance_seconds)


def test_a_replay_keeping_one_of_a_rotations_two_signatures_is_still_a_replay(store, publisher):
    runtime = make_runtime(store, publisher, SIGNED_ORDERS_SECRET=f"{SECRET},older-secret")
    body = json.dumps(signed_order()).encode()
    now = int(time.time())
    both = sign(body, SECRET, now) + "," + sign(body, "older-secret", now).split(",")[1]
    assert post(runtime, body, header=both).status == 200
    assert post(runtime, body, header=sign(body, "older-secret", now)).status == 409


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"site": None}, "Pipeline-Site is missing"), ({"site": "other.example.com"}, "not a configured site"),
     ({"secret": "wrong"}, "matches"), ({"header": "t=1,v1=zz"}, "Pipeline-Signature"),
     ({"at": int(time.time()) - 301}, "timestamp outside the tolerance")],
)  # fmt: skip
def test_unproven_requests_are_401s_that_leave_nothing(runtime, publisher, store, kwargs, words):
    reply = post(runtime, signed_order(), **kwargs)
    assert reply.status == 401 and reply.body["error"] == "unauthorized" and words in reply.body["reason"]
    assert publisher.envelopes == [] and store.calls == []


def test_the_site_header_may_be_a_url(runtime):
    assert post(runtime, signed_order(), site=f"https://WWW.{SITE}/checkout").status == 200


def test_an_invalid_order_is_a_400_naming_the_field_and_uses_nothing(runtime, publisher, store):
    reply = post(runtime, signed_order(customer={"email": RAW_PII[0], "fax": "1"}, value="12"))
    assert reply.status == 400 and reply.body["error"] == "invalid order"
    assert [f["field"] for f in reply.body["fields"]] == ["value", "customer.fax"]
    assert RAW_PII[0] not in json.dumps(reply.body)
    assert publisher.envelopes == [] and store.calls == []  # not even the signature is remembered


def test_a_test_order_is_skipped_unless_the_site_includes_them(store, publisher):
    runtime = make_runtime(store, publisher)
    reply = post(runtime, signed_order(test=True))
    assert reply.body["outcome"] == "skipped" and "include_test_orders" in reply.body["reason"]
    assert publisher.envelopes == []
    assert [d["rule"] for d in store.live(ORDER_EVENTS) if "rule" in d] == ["test_order"]
    tenants = {"pixels": {PIXEL: {"pixel_code": PIXEL}},
               "signed_order_sites": {SITE: {"pixel_code": PIXEL, "include_test_orders": True}}}  # fmt: skip
    including = make_runtime(MemoryStore(), MemoryPublisher(), PIPELINE_TENANTS=json.dumps(tenants))
    assert post(including, signed_order(test=True)).body["outcome"] == "published"


def test_a_cancelled_order_blocks_its_purchase(runtime, publisher, store):
    cancelled = post(runtime, signed_order(status="cancelled"))
    assert cancelled.status == 200 and cancelled.body["outcome"] == "skipped"
    assert cancelled.body["reason"] == "order cancelled: no Purchase will be sent for it"
    purchase_id = f"signed_orders:{SITE}:order:A-1001:Purchase"
    assert store.get(EVENT_CLAIMS, (PIXEL, "Purchase", purchase_id))["state"] == "cancelled"
    # The Purchase still goes out from the receiver; the sender finds its claim taken by the tombstone.
    assert post(runtime, signed_order()).body["outcome"] == "published"


def test_a_cancellation_after_the_purchase_was_sent_says_so(runtime, store):
    purchase_id = f"signed_orders:{SITE}:order:A-1001:Purchase"
    store.claim_once(EVENT_CLAIMS, (PIXEL, "Purchase", purchase_id), replay_ttl(300), state="sent")
    reply = post(runtime, signed_order(status="cancelled"))
    assert reply.body["outcome"] == "skipped" and "TikTok has no way to take it back" in reply.body["reason"]


def test_without_consent_under_opt_in_the_order_is_withheld_and_recorded(runtime, publisher, store):
    reply = post(runtime, signed_order(consent=None))
    assert reply.body["outcome"] == "withheld_consent" and reply.body["reason"] == "consent no_consent"
    assert publisher.envelopes == []
    assert [d["outcome"] for d in store.live(ORDER_EVENTS) if "outcome" in d] == ["withheld_consent"]


def test_the_stored_click_context_is_joined_and_the_checkout_answer_wins(runtime, publisher, store):
    context = {"consent": {"granted": True}, "ttclid": "E.C.P.joined-click", "ttp": "ttp-from-collect"}
    store.put_click_context(PIXEL, [("signed_orders_checkout", CHECKOUT)], context, replay_ttl(3600))
    assert post(runtime, signed_order(consent=None)).body["outcome"] == "published"
    assert publisher.envelopes[0].user.ttclid == "E.C.P.joined-click"
    denied = post(runtime, signed_order(order_id="A-1002", consent={"marketing": "denied"}))
    assert denied.body["outcome"] == "withheld_consent" and len(publisher.envelopes) == 1
    assert store.calls.count("find_click_context") == 2 and len(store.live(CLICK_CONTEXTS)) == 1


def test_an_order_outside_its_window_is_skipped(runtime, publisher):
    reply = post(runtime, signed_order(paid_at=int(time.time()) - 30 * 86_400))
    assert reply.body["outcome"] == "skipped" and publisher.envelopes == []


@pytest.mark.parametrize("failing", ["store", "publisher"])
def test_firestore_or_pubsub_down_is_a_503_with_retry_after(runtime, store, publisher, failing):
    (store if failing == "store" else publisher).fail = RuntimeError("connection refused")
    reply = post(runtime, signed_order())
    assert reply.status == 503 and reply.headers["Retry-After"] == "5"
    dependency = "firestore" if failing == "store" else "pubsub"
    assert reply.body["reason"].startswith(f"{dependency} unavailable") and "sign it again" in reply.body["reason"]
    assert reply.outcome is not None and reply.outcome.kind == "error_unavailable"
    # Signed again once it is back: published.
    (store if failing == "store" else publisher).fail = None
    time.sleep(1.01)
    assert post(runtime, signed_order()).body["outcome"] == "published"


def test_a_slow_dependency_is_a_503_within_the_deadline(store, publisher):
    runtime = make_runtime(store, publisher)
    runtime.io_seconds = 0.3
    original = store.claim_once
    store.claim_once = lambda *a, **k: (time.sleep(2), original(*a, **k))[1]  # type: ignore[method-assign]
    started = time.monotonic()
    reply = post(runtime, signed_order())
    assert reply.status == 503 and time.monotonic() - started < 1.5


def test_a_bug_of_ours_is_a_503_naming_only_the_error_type(runtime, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError(RAW_PII[0])

    monkeypatch.setattr("shared.sources.signed_orders.handler.deliver", broken)
    reply = post(runtime, signed_order())
    assert reply.status == 503 and reply.outcome is not None and reply.outcome.details["error"] == "KeyError"
    assert RAW_PII[0] not in json.dumps(reply.body) + json.dumps(reply.outcome.details)


def test_no_outcome_line_carries_shopper_data(runtime, capsys, store):
    store.put_click_context(PIXEL, [("signed_orders_checkout", CHECKOUT)], {"consent": {"granted": True}},
                            replay_ttl(3600))  # fmt: skip
    replies = [post(runtime, signed_order()), post(runtime, signed_order(consent={"marketing": "denied"})),
               post(runtime, signed_order(status="cancelled")), post(runtime, signed_order(test=True)),
               post(runtime, signed_order(fax=RAW_PII[1])), post(runtime, signed_order(), secret="wrong")]  # fmt: skip
    for reply in replies:
        reply.answer()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len([line for line in lines if "outcome" in line]) == len(replies)
    text = json.dumps(lines) + json.dumps([r.body for r in replies])
    for raw in (*RAW_PII, RAW_PII[0].lower(), "203.0.113.9", "London"):
        assert raw not in text
    assert {line["outcome"] for line in lines if "outcome" in line} >= {"published", "skipped", "rejected"}


def test_dependency_failures_are_not_raised_past_the_handler(runtime, store):
    store.fail = DependencyUnavailable("firestore", "test")
    assert post(runtime, signed_order()).status == 503


def test_an_order_without_join_keys_is_decided_by_its_checkout_consent_alone(runtime, publisher, store):
    granted = post(runtime, signed_order(join_keys={}, consent={"marketing": "granted"}))
    assert granted.body["outcome"] == "published" and publisher.envelopes[0].consent == "granted"
    assert "find_click_context" not in store.calls  # no key: nothing to read
    without = post(runtime, signed_order(order_id="A-1002", join_keys={}, consent=None))
    assert without.body["outcome"] == "withheld_consent" and len(publisher.envelopes) == 1
    denied = post(runtime, signed_order(order_id="A-1003", join_keys={}, consent={"marketing": "denied"}))
    assert denied.body["outcome"] == "withheld_consent" and len(publisher.envelopes) == 1


def test_a_site_entry_takes_its_name_as_its_site_and_a_bad_field_is_named_by_its_path():
    tenants_json = json.dumps({"pixels": {PIXEL: {"pixel_code": PIXEL}},
                               "signed_order_sites": {"Shop.Example.com": {"pixel_code": PIXEL}}})  # fmt: skip
    environ = {"PIPELINE_TENANTS": tenants_json, "SIGNED_ORDERS_SECRET": '{"shop.example.com": "s"}'}
    settings = SignedOrdersSettings.from_env(environ)
    sites = settings.sites(settings.tenants())
    assert list(sites) == ["shop.example.com"] and sites["shop.example.com"].site == "shop.example.com"
    bad = json.dumps({"pixels": {PIXEL: {"pixel_code": PIXEL}},
                      "signed_order_sites": {SITE: {"pixel_code": PIXEL, "include_test_orders": "often"}}})  # fmt: skip
    settings = SignedOrdersSettings.from_env({"PIPELINE_TENANTS": bad, "SIGNED_ORDERS_SECRET": SECRET})
    path = rf"PIPELINE_TENANTS: signed_order_sites\.{re.escape(SITE)}\.include_test_orders"
    with pytest.raises(ConfigError, match=path):
        settings.sites(settings.tenants())
