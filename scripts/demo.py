"""Send a first event through the running local stack and say what happened to it (``make demo``).

Against the stack ``make run`` started (found through ``.run/stack.json``):

1. a shopper's consent grant, sent to collect as the browser snippet sends it,
   for a fresh Shopify cart token (with a TikTok click id);
2. a paid Shopify order for that cart, placed in the local shop (``sandbox/shop``), which
   delivers its signed ``orders/create`` and ``orders/paid`` webhooks as Shopify does:
   joined to the grant and the click, it is published and reaches the sandbox;
3. a paid WooCommerce order placed in the local shop, whose ``order.created`` webhook
   is for an order nobody granted consent for: under ``CONSENT_POLICY=opt-in`` it is
   withheld, and the webhook's answer says why.

The orders stay in the shop, so ``make reconcile`` right after shows them beside what was sent.

Then it waits for the sandbox to receive the events and prints where to look.

``make demo ARGS="--cart TOKEN"`` only places the Shopify order for a cart whose consent
was granted elsewhere: the demo shop page's Accept (the URL is in `make run`'s banner)
grants it for a fresh cart token and shows this command with it.
The sample orders are the platforms' documented examples (tests/fixtures) with
fresh ids, tokens and times. Exit status: 0 when every step went as the
settings say it should, 1 otherwise, 2 when no local stack is running.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.domain.events import shop_key  # noqa: E402
from shared.infra import localenv  # noqa: E402

# collect drops HTTP libraries and headless browsers as bots: the demo speaks as the shopper's browser does.
BROWSER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Target:
    """What the demo sends to: one pixel, its Shopify shop and WooCommerce site, and the stack's URLs."""

    urls: dict[str, str]
    pixel: str
    shop: str
    site: str
    collect_key: str | None
    origin: str | None


def target(env: dict[str, str], urls: dict[str, str]) -> Target:
    """The stack's default tenant, or the first Shopify shop (and a WooCommerce site) of PIPELINE_TENANTS."""
    if env.get("PIPELINE_TENANTS"):
        tenants = json.loads(env["PIPELINE_TENANTS"])
        shop_name, shop = next(iter(tenants.get("shopify_shops", {}).items()))
        site_name, site = next(iter(tenants.get("woocommerce_sites", {}).items()))
        pixel = tenants["pixels"][shop["pixel_code"]]
        keys, origins = pixel.get("collect_keys") or [], pixel.get("allowed_origins") or []
        shop_domain, site_url, pixel_code = (
            shop.get("domain", shop_name),
            site.get("url", site_name),
            shop["pixel_code"],
        )
    else:
        keys = [k for k in env.get("COLLECT_KEYS", "").split(",") if k.strip()]
        origins = [o for o in env.get("COLLECT_ALLOWED_ORIGINS", "").split(",") if o.strip()]
        shop_domain, site_url, pixel_code = (
            env["SHOPIFY_SHOP_DOMAIN"],
            env["WOOCOMMERCE_SITE_URL"],
            env["TIKTOK_PIXEL_CODE"],
        )
    return Target(
        urls=urls,
        pixel=pixel_code,
        shop=shop_domain,
        site=site_url,
        collect_key=keys[0].strip() if keys else None,
        origin=None if keys else (origins[0].strip() if origins else None),
    )


def send_consent(http: httpx.Client, to: Target, cart_token: str, ttclid: str) -> httpx.Response:
    body = {
        "pixel_code": to.pixel,
        "consent": {"ad_storage": "granted", "ad_user_data": "granted", "ad_personalization": "granted"},
        "context": {"ttclid": ttclid, "page_url": f"https://{to.shop}/cart?ttclid={ttclid}",
                    "join_keys": {"shopify_cart_token": cart_token}},
    }  # fmt: skip
    if to.collect_key:
        body["key"] = to.collect_key
    headers = {"Content-Type": "text/plain", "User-Agent": BROWSER_AGENT}
    if to.origin:
        headers["Origin"] = to.origin
    return http.post(to.urls["collect"] + "/", content=json.dumps(body), headers=headers)


def place_order(http: httpx.Client, shop: str, platform: str, **fields: Any) -> dict[str, Any]:
    """Place a paid order in the local shop (``sandbox/shop``); it delivers the order's webhooks itself."""
    response = http.post(f"{shop}/_shop/{platform}/orders", json={"paid": True, **fields})
    response.raise_for_status()
    placed: dict[str, Any] = response.json()["order"]
    return placed


def delivered(http: httpx.Client, shop: str, platform: str, order_id: int, topic: str) -> dict[str, Any] | None:
    """The webhook function's answer to the shop's delivery of ``topic`` for the order, once it came (or None)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        deliveries = http.get(f"{shop}/_shop/deliveries", params={"platform": platform, "order_id": order_id,
                                                                  "topic": topic}).json()["deliveries"]  # fmt: skip
        attempts = [attempt for delivery in deliveries for attempt in delivery["attempts"]]
        if attempts:
            last = attempts[-1]
            try:
                answer = json.loads(last.get("answer") or "{}")
            except ValueError:
                answer = {}
            return {"status": last.get("status"), **(answer if isinstance(answer, dict) else {})}
        time.sleep(0.2)
    return None


def _answer(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {}
    return body if isinstance(body, dict) else {}


def wait_for_event(http: httpx.Client, sandbox: str, event_id: str, timeout: float = WAIT_SECONDS) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = http.get(f"{sandbox}/sandbox/events", params={"event_id": event_id}).json()["events"]
        if events:
            return events[0]
        time.sleep(0.25)
    return None


# Why an order is withheld, by the reason the webhook answers, in words a newcomer can act on.
WITHHELD_EXPLAINED = {
    "consent no_consent": "the policy is opt-in and no consent grant was stored for this order's join keys "
    "(collect stores one when the shopper accepts: collect.js at checkout sends the order key or tt_session), "
    "so nothing was sent. CONSENT_POLICY=opt-out sends unless the shopper denied.",
    "consent denied": "the shopper denied consent, so nothing was sent, whatever the policy.",
}


def demo(env: dict[str, str], urls: dict[str, str], out: Any = sys.stdout, cart: str | None = None) -> int:
    """The three steps; with ``cart`` (granted by the demo page) only the Shopify order joining it."""
    to = target(env, urls)
    ok = True

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    cart_token, ttclid = cart or uuid.uuid4().hex, f"E.C.P.demo-{uuid.uuid4().hex[:12]}"
    shop = to.urls["shop"]
    woo_answer: dict[str, Any] = {}
    with httpx.Client(timeout=15) as http:
        if cart is None:
            say(f"1. consent grant through collect for Shopify cart {cart_token} (pixel {to.pixel})")
            granted = send_consent(http, to, cart_token, ttclid)
            outcome = granted.headers.get("X-Collect-Outcome")
            say(f"   -> {granted.status_code} {outcome}: {granted.text.strip() or '(no body)'}")
            ok &= outcome == "accepted"
        else:
            say(f"1. consent for Shopify cart {cart_token}: granted on the demo page (not sent again here)")

        shopify = place_order(http, shop, "shopify", cart_token=cart_token, checkout_token=uuid.uuid4().hex)
        say(f"2. Shopify orders/paid for order {shopify['id']} (shop {to.shop}, cart {cart_token}), placed in the "
            f"local shop ({shop}), which signs and delivers its webhooks")  # fmt: skip
        answer = delivered(http, shop, "shopify", shopify["id"], "orders/paid") or {}
        say(f"   -> {json.dumps(answer)}")
        ok &= answer.get("outcome") == "published"
        if cart is not None and answer.get("outcome") == "withheld_consent":
            say("   withheld: collect holds no grant for that cart token; press Accept on the demo page first "
                "and copy the cart token it shows")  # fmt: skip

        if cart is None:
            woo = place_order(http, shop, "woocommerce")
            say(f"3. WooCommerce order.created for order {woo['id']} (site {to.site}), placed in the local shop, "
                "no consent given for it")  # fmt: skip
            woo_answer = delivered(http, shop, "woocommerce", woo["id"], "order.created") or {}
            say(f"   -> {json.dumps(woo_answer)}")
            if woo_answer.get("outcome") == "withheld_consent":
                reason = str(woo_answer.get("reason"))
                say(f"   withheld ({reason}): {WITHHELD_EXPLAINED.get(reason, 'see the function log')}")
            else:
                ok &= woo_answer.get("outcome") == "published"

        sandbox = to.urls["sandbox"]
        shop_event = f"shopify:{shop_key(to.shop)}:order:{shopify['id']}:Purchase"
        say(f"4. waiting for the sandbox (TikTok's stand-in) to receive {shop_event}")
        received = wait_for_event(http, sandbox, shop_event) if answer.get("outcome") == "published" else None
        if received is None and answer.get("outcome") != "published":
            say("   nothing to wait for: the order was not published")
        elif received is None:
            say(f"   not received within {WAIT_SECONDS:.0f} s: see .run/sender.log and {sandbox}/sandbox/requests")
            ok = False
        else:
            user, properties = received.get("user", {}), received.get("properties", {})
            clicked = "with" if user.get("ttclid") and (cart or user.get("ttclid") == ttclid) else "WITHOUT"
            say(
                f"   received: {received['event']} for pixel {received['event_source_id']}, value "
                f"{properties.get('value')} {properties.get('currency')}, {clicked} the click id, "
                f"email sent hashed ({str(user.get('email'))[:20]}...)"
            )
        if woo_answer.get("outcome") == "published":
            woo_event = f"woocommerce:{shop_key(to.site)}:order:{woo['id']}:Purchase"
            ok &= wait_for_event(http, sandbox, woo_event) is not None
    say()
    say(f"Everything TikTok received:  curl -s {sandbox}/sandbox/events")
    say(f"Every request it answered:   curl -s {sandbox}/sandbox/requests")
    say("What was withheld and why:   grep withheld .run/*.log")
    say("The shop's orders vs sent:   make reconcile")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--cart", metavar="TOKEN", help="only place the Shopify order for this cart token "
                        "(its consent granted by the demo shop page)")  # fmt: skip
    args = parser.parse_args(argv)
    record = localenv.read_stack(localenv.stack_file())
    if record is not None and "shop" not in record["urls"]:
        print("demo: the running stack has no local shop (started before it existed): stop `make run` and start "
              "it again", file=sys.stderr)  # fmt: skip
        return 2
    if record is None:
        print(f"demo: no local stack is running ({localenv.stack_file()} is missing): start `make run` first, "
              "then run `make demo` in another terminal", file=sys.stderr)  # fmt: skip
        return 2
    return demo(record["env"], record["urls"], cart=args.cart)  # what the stack runs with, not what this shell exports


if __name__ == "__main__":
    sys.exit(main())
