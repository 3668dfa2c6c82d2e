"""Reconciliation end to end: orders sold while both webhooks were down, found and sent once, counted at TikTok.

A stack of its own runs the local shop (``running_stack(with_shop=True)``), which delivers its own
signed webhooks to the stack's functions with Shopify's and WooCommerce's rules (sandbox/shop/README.md),
Shopify's 4 hours of retries scaled to about 3 seconds (knob ``time_factor``). Shoppers grant consent
through collect under the cart token / order key their order then carries. With the two webhook
functions stopped (and kept stopped: the supervisor no longer watches them), the shop sells paid, test,
cancelled, 10-day-old and unconsented orders; Shopify gives up and removes its subscriptions, WooCommerce
disables both webhooks on their 7th consecutive failure. Then, the functions back, ``scripts/reconcile.py``
runs as ``make reconcile`` does (a process of its own, ``--json``, the stack's settings and
``localstack.shop_credentials``):

1. compare only: every order missing, named by id, the disabled webhooks and the removed subscriptions
   reported, exit 1, nothing sent;
2. ``--backfill``: each paid consented order reaches the TikTok sandbox exactly once; the test and
   cancelled ones are skipped with their reason, the old one recorded ``outside_window``, the
   unconsented one withheld, none of them sent;
3. ``--repair``: both WooCommerce webhooks active again in the shop; Shopify's subscriptions cannot be
   repaired through the API (the operator registers them again, as this test then does);
4. late deliveries of backfilled orders (the shop's own ``order.updated`` through the repaired webhook,
   Shopify's orders/paid of the stored order) reach the sender and add nothing at the sandbox;
5. a last run: nothing missing, every webhook healthy, exit 0.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import localstack
import pytest

from tests.conftest import RunningStack, running_stack
from tests.helpers import ROOT, sandbox_events, shopify_signature, wait_for_sandbox_events, wait_until
from tests.stack.test_collect_stack import CHROME, ORIGIN

pytestmark = pytest.mark.stack

WEBHOOKS = ("shopify_webhook", "woocommerce_webhook")
# Shopify's retry schedule (1 min .. 2 h, 4 hours in all) times this: about 2.9 s.
TIME_FACTOR = 0.0002
SHOPIFY_TOPICS = ("orders/create", "orders/paid", "orders/cancelled")  # what reconcile checks by default
WINDOW = "12d"  # reaches the order dated 10 days ago
OLD = dt.timedelta(days=10)  # past the attribution window (ORDER_MAX_EVENT_AGE_DAYS, 7)
PHASE_SECONDS = 60.0  # the bound on every wait of the test
RECONCILE_SECONDS = 180.0


@pytest.fixture(scope="module")
def shop_stack(emulators: Any) -> Iterator[RunningStack]:
    """A stack of this module's own with the local shop: it counts everything its sandbox and shop hold."""
    with running_stack(emulators, with_shop=True) as running:
        yield running


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


# --- the shop's control API -------------------------------------------------------------------------


def control(http: httpx.Client, stack: RunningStack, method: str, path: str, body: Any = None) -> Any:
    response = http.request(method, stack.url("shop") + "/_shop" + path, json=body)
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:500]}"
    return response.json()


def place(http: httpx.Client, stack: RunningStack, platform: str, **params: Any) -> dict[str, Any]:
    return control(http, stack, "POST", f"/{platform}/orders", params)["order"]


def change(http: httpx.Client, stack: RunningStack, platform: str, order: dict, action: str, **params: Any) -> dict:
    return control(http, stack, "POST", f"/{platform}/orders/{order['id']}/{action}", params)["order"]


def deliveries(http: httpx.Client, stack: RunningStack, platform: str) -> list[dict[str, Any]]:
    return control(http, stack, "GET", f"/deliveries?platform={platform}")["deliveries"]


def subscriptions(http: httpx.Client, stack: RunningStack) -> list[dict[str, Any]]:
    return control(http, stack, "GET", "/shopify/subscriptions")["subscriptions"]


def woo_webhooks(http: httpx.Client, stack: RunningStack) -> list[dict[str, Any]]:
    return control(http, stack, "GET", "/woocommerce/webhooks")["webhooks"]


# --- consent, as the shopper's browser gives it ----------------------------------------------------------


def grant(http: httpx.Client, stack: RunningStack, join_keys: dict[str, str]) -> str:
    """The shopper accepts on the shop's page: collect stores the grant under the cart token / order key; the ttclid."""
    ttclid = f"E.C.P.{uuid.uuid4().hex[:16]}"
    body = {
        "pixel_code": stack.settings["TIKTOK_PIXEL_CODE"],
        "consent": {"ad_storage": "granted", "ad_user_data": "granted"},
        "context": {"ttclid": ttclid, "ttp": "reconcile-ttp", "join_keys": join_keys,
                    "page_url": "http://127.0.0.1:8000/products/shirt"},
        "events": [],
    }  # fmt: skip
    headers = {"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8", "User-Agent": CHROME}
    for _ in range(3):  # a cold instance's first Firestore write on a busy machine may answer 503
        response = http.post(stack.url("collect") + "/", content=json.dumps(body).encode(), headers=headers)
        if response.status_code != 503:
            break
        time.sleep(1)
    assert response.status_code == 200 and response.json()["consent"] == "granted", response.text
    assert not response.headers.get("X-Collect-Ignored"), response.headers["X-Collect-Ignored"]
    return ttclid


def cart_token() -> str:
    return f"cart-{uuid.uuid4().hex}"


def order_key() -> str:
    return f"wc_order_{uuid.uuid4().hex[:16]}"


# --- the functions, down and back ------------------------------------------------------------------------


def take_down(stack: RunningStack, names: tuple[str, ...]) -> dict[str, localstack.Supervised]:
    """Stop the functions and keep them stopped: the supervisor stops watching them first (no restart)."""
    supervisor = stack.stack.supervisor
    services = {name: supervisor.services[name] for name in names}
    for name in names:
        supervisor.retire(name)
    survivors = localstack.stop_processes([service.process for service in services.values()])
    assert survivors == [], survivors
    for name in names:
        wait_until(lambda name=name: localstack.port_refuses(stack.stack.ports[name]), timeout=PHASE_SECONDS)
    return services


def bring_back(stack: RunningStack, services: dict[str, localstack.Supervised]) -> None:
    """Start them again as the stack started them, supervised again."""
    supervisor = stack.stack.supervisor
    for name, old in services.items():
        supervisor.add(localstack.Supervised(name=name, launch=old.launch, health_url=old.health_url, port=old.port,
                                             log=old.log))  # fmt: skip
    for name in services:
        localstack.wait_http(supervisor.services[name].health_url, timeout=90,
                             process=supervisor.services[name].process)  # fmt: skip
        supervisor.watch(name)


# --- reconcile, as `make reconcile` runs it ----------------------------------------------------------------


def reconcile_env(stack: RunningStack) -> dict[str, str]:
    """What `make run` records for local commands (.run/stack.json): the stack's settings, emulators, shop."""
    inherited = {k: v for k, v in os.environ.items() if k not in stack.settings}
    return {**inherited, **stack.settings, **stack.emulators.env, "TIKTOK_API_URL": stack.stack.api_url,
            **localstack.shop_credentials(stack.stack), "PYTHONPATH": str(ROOT)}  # fmt: skip


@dataclass
class Report:
    status: int
    document: dict[str, Any]
    stderr: str
    shops: dict[str, dict[str, Any]] = field(default_factory=dict)

    def lines(self, source: str) -> dict[str, dict[str, Any]]:
        """The orders the run acted on (or would have), by order id."""
        return {line["order_id"]: line for line in self.shops[source]["orders_acted_on"]}

    def webhooks(self, source: str) -> dict[str, str]:
        return {hook["topic"]: hook["status"] for hook in self.shops[source]["webhooks"]}


def reconcile(stack: RunningStack, *flags: str) -> Report:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reconcile.py"), "--since", WINDOW, "--json", *flags],
        env=reconcile_env(stack), cwd=ROOT, capture_output=True, text=True, timeout=RECONCILE_SECONDS,
    )  # fmt: skip
    assert result.stdout.strip(), f"reconcile {flags} printed nothing (exit {result.returncode}): {result.stderr}"
    document = json.loads(result.stdout)
    report = Report(result.returncode, document, result.stderr)
    report.shops = {shop["source"]: shop for shop in document["shops_detail"]}
    assert set(report.shops) == {"shopify", "woocommerce"}, document
    for shop in report.shops.values():
        assert shop["error"] is None, shop["error"]
    return report


# --- what TikTok received --------------------------------------------------------------------------------


def shopify_event_id(stack: RunningStack, order: dict) -> str:
    return f"shopify:{stack.settings['SHOPIFY_SHOP_DOMAIN']}:order:{order['id']}:Purchase"


def woo_event_id(stack: RunningStack, order: dict) -> str:
    site = stack.settings["WOOCOMMERCE_SITE_URL"].split("://", 1)[1]
    return f"woocommerce:{site}:order:{order['id']}:Purchase"


def at_tiktok(stack: RunningStack, event_id: str) -> list[dict[str, Any]]:
    return sandbox_events(stack.url("sandbox"), event_id=event_id)


def sender_counter(stack: RunningStack, name: str) -> int:
    return int(httpx.get(stack.url("sender") + "/metrics", timeout=5).json()["counters"].get(name, 0))


def deliver_shopify_late(http: httpx.Client, stack: RunningStack, order: dict, missed: dict) -> httpx.Response:
    """Shopify's orders/paid of ``order`` arriving after all: the stored order, signed, the missed webhook's ids."""
    body = json.dumps(control(http, stack, "GET", f"/shopify/orders/{order['id']}")["order"]).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/paid",
        "X-Shopify-Shop-Domain": stack.settings["SHOPIFY_SHOP_DOMAIN"],
        "X-Shopify-API-Version": control(http, stack, "GET", "/config")["shopify_api_version"],
        "X-Shopify-Webhook-Id": missed["webhook_id"],
        "X-Shopify-Event-Id": missed["event_id"],
        "X-Shopify-Triggered-At": missed["triggered_at"],
        "X-Shopify-Hmac-Sha256": shopify_signature(body, stack.settings["SHOPIFY_WEBHOOK_SECRET"]),
    }
    return http.post(stack.url("shopify_webhook") + "/", content=body, headers=headers)


# --- the test ----------------------------------------------------------------------------------------------


def test_orders_sold_while_the_webhooks_were_down_are_reconciled_sent_once_and_the_webhooks_repaired(shop_stack, http):
    stack = shop_stack
    knobs = control(http, stack, "POST", "/config", {"time_factor": TIME_FACTOR})["knobs"]
    # Shopify's own rules (8 retries; a subscription removed after 8 consecutive failures) and WooCommerce's
    # (disabled when more than 5 failures are counted: on the 7th in a row), only Shopify's clock faster.
    assert (knobs["shopify_retries"], knobs["shopify_remove_after"], knobs["woocommerce_max_failures"]) == (8, 8, 5)
    assert {s["topic"] for s in subscriptions(http, stack) if not s["removed_at"]} >= set(SHOPIFY_TOPICS)
    assert {(w["topic"], w["status"]) for w in woo_webhooks(http, stack)} == {
        ("order.created", "active"), ("order.updated", "active")}  # fmt: skip
    old = (dt.datetime.now(dt.timezone.utc) - OLD).strftime("%Y-%m-%dT%H:%M:%SZ")

    # Shoppers accept on the shop's pages before checking out (collect is up all along).
    carts = {name: cart_token() for name in ("paid1", "paid2", "test", "cancelled", "old", "unconsented")}
    keys = {name: order_key() for name in ("paid1", "paid2", "paid3", "paid4", "cancelled", "old", "unconsented")}
    clicks = {f"shopify.{name}": grant(http, stack, {"shopify_cart_token": cart})
              for name, cart in carts.items() if name != "unconsented"}  # fmt: skip
    clicks |= {f"woo.{name}": grant(http, stack, {"woocommerce_order_key": key})
               for name, key in keys.items() if name != "unconsented"}  # fmt: skip

    # -- 1. the shop sells while both webhook functions are down ------------------------------------------
    down = take_down(stack, WEBHOOKS)
    shopify = {
        "paid1": place(http, stack, "shopify", cart_token=carts["paid1"]),
        "paid2": place(http, stack, "shopify", cart_token=carts["paid2"]),
        "test": place(http, stack, "shopify", cart_token=carts["test"], test=True),
        "cancelled": place(http, stack, "shopify", cart_token=carts["cancelled"]),
        "old": place(http, stack, "shopify", cart_token=carts["old"], created_at=old),
        "unconsented": place(http, stack, "shopify", cart_token=carts["unconsented"]),
    }
    shopify["cancelled"] = change(http, stack, "shopify", shopify["cancelled"], "cancel")
    # WooCommerce: each order created pending, then paid (or cancelled): order.created and order.updated each
    # fail 7 times in a row, the 7th disables each webhook.
    woo = {name: place(http, stack, "woocommerce", order_key=key, paid=False,
                       **({"created_at": old} if name == "old" else {}))
           for name, key in keys.items()}  # fmt: skip
    for name, order in woo.items():
        action, when = ("cancel", {}) if name == "cancelled" else ("pay", {"at": old} if name == "old" else {})
        woo[name] = change(http, stack, "woocommerce", order, action, **when)
    assert len(woo) == 7 and woo["old"]["date_paid_gmt"] == old[:-1] and woo["cancelled"]["status"] == "cancelled"

    def shopify_settled() -> list[dict] | None:
        found = deliveries(http, stack, "shopify")
        removed = {s["topic"] for s in subscriptions(http, stack) if s["removed_at"]}
        settled = all(d["state"] in ("gave_up", "dropped") for d in found)
        return found if settled and removed >= set(SHOPIFY_TOPICS) else None

    def woo_settled() -> list[dict] | None:
        found = deliveries(http, stack, "woocommerce")
        hooks = woo_webhooks(http, stack)
        settled = all(d["state"] in ("failed", "skipped") for d in found) and len(found) == 14
        return found if settled and all(w["status"] == "disabled" for w in hooks) else None

    shopify_deliveries = wait_until(shopify_settled, timeout=PHASE_SECONDS, interval=0.5)
    woo_deliveries = wait_until(woo_settled, timeout=PHASE_SECONDS, interval=0.5)
    # Shopify gave up on each topic's webhook after its 8 retries and removed the subscription.
    given_up = [d for d in shopify_deliveries if d["state"] == "gave_up"]
    assert {d["topic"] for d in given_up} == set(SHOPIFY_TOPICS), shopify_deliveries
    assert all(len(d["attempts"]) == 9 and all(a["status"] is None for a in d["attempts"]) for d in given_up)
    assert {d["topic"] for d in given_up if "subscription removed" in (d["reason"] or "")} == set(SHOPIFY_TOPICS)
    # WooCommerce: 6 failures counted, the 7th disabled the webhook, nothing delivered.
    assert all(w["failure_count"] == 6 for w in woo_webhooks(http, stack))
    for topic in ("order.created", "order.updated"):
        failed = [d for d in woo_deliveries if d["topic"] == topic and d["state"] == "failed"]
        assert len(failed) == 7 and sum(d["reason"] == "this failure disabled the webhook" for d in failed) == 1

    # -- 2. the functions are back; nothing of these orders reached TikTok --------------------------------------
    bring_back(stack, down)
    sent_ids = [shopify_event_id(stack, shopify[n]) for n in ("paid1", "paid2")] + [
        woo_event_id(stack, woo[n]) for n in ("paid1", "paid2", "paid3", "paid4")
    ]
    never_ids = [shopify_event_id(stack, shopify[n]) for n in ("test", "cancelled", "old", "unconsented")] + [
        woo_event_id(stack, woo[n]) for n in ("cancelled", "old", "unconsented")
    ]
    assert all(at_tiktok(stack, event_id) == [] for event_id in sent_ids + never_ids)
    ids = {f"shopify.{n}": str(o["id"]) for n, o in shopify.items()} | {
        f"woo.{n}": str(o["id"]) for n, o in woo.items()
    }

    # -- 3. compare only: every order missing or ignored, the broken webhooks reported, exit 1 -------------
    compared = reconcile(stack)
    assert compared.status == 1, compared.stderr
    assert compared.document["backfill"] is False and compared.document["missing_unsent"] == 10
    paid = ("paid1", "paid2", "old", "unconsented")
    shop_lines, woo_lines = compared.lines("shopify"), compared.lines("woocommerce")
    assert {i for i, line in shop_lines.items() if line["state"] == "missing"} == {ids[f"shopify.{n}"] for n in paid}
    assert {i for i, line in woo_lines.items() if line["state"] == "missing"} == {
        ids[f"woo.{n}"] for n in ("paid1", "paid2", "paid3", "paid4", "old", "unconsented")}  # fmt: skip
    assert (shop_lines[ids["shopify.test"]]["kind"], shop_lines[ids["shopify.test"]]["state"]) == ("test", "ignored")
    assert shop_lines[ids["shopify.cancelled"]]["kind"] == woo_lines[ids["woo.cancelled"]]["kind"] == "cancelled"
    assert all("outcome" not in line for line in [*shop_lines.values(), *woo_lines.values()])  # nothing sent
    assert compared.shops["shopify"]["states"]["missing"] == 4 and compared.shops["shopify"]["orders"] == 6
    assert compared.shops["woocommerce"]["states"]["missing"] == 6 and compared.shops["woocommerce"]["orders"] == 7
    assert compared.webhooks("woocommerce") == {"order.created": "disabled", "order.updated": "disabled"}
    # Shopify removed the three that failed; refunds/create (nothing to deliver meanwhile) is still there.
    assert compared.webhooks("shopify") == {**dict.fromkeys(SHOPIFY_TOPICS, "missing"), "refunds/create": "active"}
    assert compared.document["unhealthy_webhooks"] == 5
    assert all(at_tiktok(stack, event_id) == [] for event_id in sent_ids)  # comparing sends nothing

    # -- 4. --backfill: each paid consented order sent, the rest recorded with its reason -----------------------
    backfilled = reconcile(stack, "--backfill")
    assert backfilled.status == 1, backfilled.stderr  # the webhooks are still broken
    assert backfilled.document["missing_unsent"] == 0 and backfilled.document["backfilled"] == 6
    outcomes = {f"shopify.{n}": backfilled.lines("shopify")[ids[f"shopify.{n}"]] for n in shopify} | {
        f"woo.{n}": backfilled.lines("woocommerce")[ids[f"woo.{n}"]] for n in woo}  # fmt: skip
    assert {name: line["outcome"] for name, line in outcomes.items()} == {
        "shopify.paid1": "published", "shopify.paid2": "published", "shopify.test": "skipped",
        "shopify.cancelled": "skipped", "shopify.old": "skipped", "shopify.unconsented": "withheld_consent",
        "woo.paid1": "published", "woo.paid2": "published", "woo.paid3": "published", "woo.paid4": "published",
        "woo.cancelled": "ignored", "woo.old": "skipped", "woo.unconsented": "withheld_consent",
    }, outcomes  # fmt: skip
    assert outcomes["shopify.test"]["reason"].startswith("test order"), outcomes["shopify.test"]
    assert "cancelled" in outcomes["shopify.cancelled"]["reason"] and "cancelled" in outcomes["woo.cancelled"]["reason"]
    for name in ("shopify.old", "woo.old"):
        assert "ORDER_MAX_EVENT_AGE_DAYS" in outcomes[name]["reason"], outcomes[name]
    for name in ("shopify.unconsented", "woo.unconsented"):
        assert "no_consent" in outcomes[name]["reason"], outcomes[name]  # opt-in, and no grant stored

    sandbox = stack.url("sandbox")
    for name, event_id in zip(("shopify.paid1", "shopify.paid2", "woo.paid1", "woo.paid2", "woo.paid3",
                               "woo.paid4"), sent_ids, strict=True):  # fmt: skip
        [event] = wait_for_sandbox_events(sandbox, 1, timeout=PHASE_SECONDS, event_id=event_id)
        assert event["event"] == "Purchase" and event["user"]["ttclid"] == clicks[name], (name, event)

    # -- 5. --repair: WooCommerce's webhooks active again; Shopify's subscriptions are the operator's ----------
    repaired = reconcile(stack, "--repair")
    assert repaired.status == 1, repaired.stderr  # Shopify's subscriptions are still missing
    assert repaired.document["missing_unsent"] == 0 and repaired.shops["shopify"]["states"]["missing"] == 0
    assert repaired.webhooks("woocommerce") == {"order.created": "active", "order.updated": "active"}
    assert sorted(line.split(" (")[0] for line in repaired.shops["woocommerce"]["repaired"]) == [
        "order.created", "order.updated"]  # fmt: skip
    assert all(line.endswith("disabled -> active") for line in repaired.shops["woocommerce"]["repaired"])
    assert all("not repaired" in line for line in repaired.shops["shopify"]["repaired"])
    assert {(w["topic"], w["status"]) for w in woo_webhooks(http, stack)} == {
        ("order.created", "active"), ("order.updated", "active")}  # fmt: skip
    for topic in SHOPIFY_TOPICS:  # deploy the app's webhooks again (docs/deploy.md, step 7)
        control(
            http, stack, "POST", "/shopify/subscriptions", {"topic": topic, "uri": stack.url("shopify_webhook") + "/"}
        )

    # -- 6. late deliveries of backfilled orders add nothing at TikTok -------------------------------------------
    duplicates = sender_counter(stack, "outcome.duplicate")
    late_woo = change(http, stack, "woocommerce", woo["paid1"], "refund", amount="1.00", reason="late update")
    assert late_woo["status"] == "processing"  # still a paid order: its order.updated is a Purchase again

    def late_woo_delivered() -> dict | None:
        found = deliveries(http, stack, "woocommerce")
        late = [d for d in found if d["order_id"] == woo["paid1"]["id"] and d["topic"] == "order.updated"]
        return late[-1] if late[-1]["state"] == "delivered" else None

    woo_late = wait_until(late_woo_delivered, timeout=PHASE_SECONDS, interval=0.2)
    assert json.loads(woo_late["attempts"][-1]["answer"])["outcome"] == "published", woo_late
    # Shopify's orders/paid of paid1, which it gave up on (or dropped with the subscription), arriving after all.
    [missed] = [
        d for d in shopify_deliveries if d["order_id"] == shopify["paid1"]["id"] and d["topic"] == "orders/paid"
    ]
    late_shop = deliver_shopify_late(http, stack, shopify["paid1"], missed)
    assert late_shop.status_code == 200 and late_shop.json()["outcome"] == "published", late_shop.text
    # Both copies reached the sender, which answered them duplicate.
    wait_until(lambda: sender_counter(stack, "outcome.duplicate") >= duplicates + 2, timeout=PHASE_SECONDS)
    # And a barrier: new consented orders through the repaired webhook and the registered subscriptions arrive.
    barrier_cart, barrier_key = cart_token(), order_key()
    grant(http, stack, {"shopify_cart_token": barrier_cart})
    grant(http, stack, {"woocommerce_order_key": barrier_key})
    barriers = [shopify_event_id(stack, place(http, stack, "shopify", cart_token=barrier_cart)),
                woo_event_id(stack, place(http, stack, "woocommerce", order_key=barrier_key))]  # fmt: skip
    for event_id in barriers:
        wait_for_sandbox_events(sandbox, 1, timeout=PHASE_SECONDS, event_id=event_id)
    assert {event_id: len(at_tiktok(stack, event_id)) for event_id in sent_ids} == dict.fromkeys(sent_ids, 1)
    assert {event_id: at_tiktok(stack, event_id) for event_id in never_ids} == dict.fromkeys(never_ids, [])

    # -- 7. a second run: nothing missing, every webhook healthy, exit 0 -------------------------------------------
    final = reconcile(stack)
    assert final.status == 0, (final.stderr, final.document)
    assert final.document["missing"] == 0 and final.document["missing_unsent"] == 0
    assert final.document["unhealthy_webhooks"] == 0 and final.document["orders"] == 15
    shop_states, woo_states = final.shops["shopify"]["states"], final.shops["woocommerce"]["states"]
    assert shop_states["sent"] + shop_states["pending"] == 3 and woo_states["sent"] + woo_states["pending"] == 5
    assert shop_states["withheld_consent"] == woo_states["withheld_consent"] == 1
    assert final.shops["shopify"]["skipped_by_rule"] == {"cancelled": 1, "outside_window": 1, "test_order": 1}
    assert final.shops["woocommerce"]["skipped_by_rule"] == {"outside_window": 1}
    assert {event_id: len(at_tiktok(stack, event_id)) for event_id in sent_ids} == dict.fromkeys(sent_ids, 1)
