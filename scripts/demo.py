"""Send a first event through the running local stack and say what happened to it (``make demo``).

Against the stack ``make run`` started (found through ``.run/stack.json``):

1. a shopper's consent grant, sent to collect as the browser snippet sends it,
   for a fresh Shopify cart token (with a TikTok click id);
2. a Shopify ``orders/paid`` webhook for that cart, signed with the local secret:
   joined to the grant and the click, it is published and reaches the sandbox;
3. a WooCommerce ``order.updated`` webhook, signed with the local secret, for an
   order nobody granted consent for: under ``CONSENT_POLICY=opt-in`` it is
   withheld, and the answer says why.

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
import base64
import copy
import datetime as dt
import hashlib
import hmac
import json
import random
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

from shared.config import DEFAULT_SHOPIFY_API_VERSION  # noqa: E402
from shared.domain.events import shop_key  # noqa: E402
from shared.infra import localenv  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
# collect drops HTTP libraries and headless browsers as bots: the demo speaks as the shopper's browser does.
BROWSER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Target:
    """What the demo sends to: one pixel, its Shopify shop and WooCommerce site, their secrets and URLs."""

    urls: dict[str, str]
    pixel: str
    shop: str
    shop_secret: str
    site: str
    site_secret: str
    collect_key: str | None
    origin: str | None


def _secret_for(raw: str, key: str) -> str:
    """One secret of a variable holding one value (comma-separated: the first) or a JSON map."""
    text = raw.strip()
    if text.startswith("{"):
        entries = {k.lower().removeprefix("https://").removeprefix("http://").rstrip("/"): v
                   for k, v in json.loads(text).items()}  # fmt: skip
        value = entries[key.lower().removeprefix("https://").removeprefix("http://").rstrip("/")]
        return value[0] if isinstance(value, list) else value
    return text.split(",")[0].strip()


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
        shop_secret=_secret_for(env["SHOPIFY_WEBHOOK_SECRET"], shop_domain),
        site=site_url,
        site_secret=_secret_for(env["WOOCOMMERCE_WEBHOOK_SECRET"], site_url),
        collect_key=keys[0].strip() if keys else None,
        origin=None if keys else (origins[0].strip() if origins else None),
    )


def _now(minutes_ago: float = 0) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=minutes_ago)


def shopify_order(cart_token: str) -> dict[str, Any]:
    """Shopify's documented order as a fresh, paid, real (non-test) order for ``cart_token``."""
    order = copy.deepcopy(json.loads((FIXTURES / "shopify" / "orders_create_2026-04_documented.json").read_text()))
    order = order["response"]
    order_id = random.randrange(2**60, 2**62)  # beyond 2^53, as real Shopify ids are
    stamp = _now(2).isoformat(timespec="seconds")
    order.update(
        id=order_id, admin_graphql_api_id=f"gid://shopify/Order/{order_id}", cart_token=cart_token,
        checkout_token=uuid.uuid4().hex, created_at=stamp, processed_at=stamp,
        updated_at=_now().isoformat(timespec="seconds"),
        test=False, cancelled_at=None, cancel_reason=None, financial_status="paid",
    )  # fmt: skip
    return order


def woocommerce_order() -> dict[str, Any]:
    """WooCommerce's documented order 727 as a fresh guest order paid now."""
    order = json.loads((FIXTURES / "woocommerce" / "order_727_processing_documented.json").read_text())
    tag = uuid.uuid4().hex[:12]
    order.update(
        id=random.randrange(10**6, 10**12), order_key=f"wc_order_{tag}", status="processing", customer_id=0,
        date_created_gmt=_now(3).strftime("%Y-%m-%dT%H:%M:%S"), date_paid_gmt=_now().strftime("%Y-%m-%dT%H:%M:%S"),
    )  # fmt: skip
    return order


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


def send_shopify(http: httpx.Client, to: Target, order: dict[str, Any]) -> httpx.Response:
    raw = json.dumps(order).encode()
    signature = base64.b64encode(hmac.new(to.shop_secret.encode(), raw, hashlib.sha256).digest()).decode()
    headers = {
        "Content-Type": "application/json", "X-Shopify-Topic": "orders/paid", "X-Shopify-Shop-Domain": to.shop,
        "X-Shopify-API-Version": DEFAULT_SHOPIFY_API_VERSION, "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-Hmac-Sha256": signature,
    }  # fmt: skip
    return http.post(to.urls["shopify_webhook"] + "/", content=raw, headers=headers)


def send_woocommerce(http: httpx.Client, to: Target, order: dict[str, Any]) -> httpx.Response:
    raw = json.dumps(order).encode()
    signature = base64.b64encode(hmac.new(to.site_secret.encode(), raw, hashlib.sha256).digest()).decode()
    source = to.site if "://" in to.site else f"https://{to.site}"
    headers = {
        "Content-Type": "application/json", "X-WC-Webhook-Source": source.rstrip("/") + "/",
        "X-WC-Webhook-Topic": "order.updated", "X-WC-Webhook-Resource": "order", "X-WC-Webhook-Event": "updated",
        "X-WC-Webhook-ID": "1", "X-WC-Webhook-Delivery-ID": uuid.uuid4().hex, "X-WC-Webhook-Signature": signature,
    }  # fmt: skip
    return http.post(to.urls["woocommerce_webhook"] + "/", content=raw, headers=headers)


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
    shopify = shopify_order(cart_token)
    woo = woocommerce_order()
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

        say(f"2. Shopify orders/paid for order {shopify['id']} (shop {to.shop}, cart {cart_token}), signed with "
            "the local secret")  # fmt: skip
        answer = _answer(send_shopify(http, to, shopify))
        say(f"   -> {json.dumps(answer)}")
        ok &= answer.get("outcome") == "published"
        if cart is not None and answer.get("outcome") == "withheld_consent":
            say("   withheld: collect holds no grant for that cart token; press Accept on the demo page first "
                "and copy the cart token it shows")  # fmt: skip

        if cart is None:
            say(f"3. WooCommerce order.updated for order {woo['id']} (site {to.site}), no consent given for it")
            woo_answer = _answer(send_woocommerce(http, to, woo))
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
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--cart", metavar="TOKEN", help="only place the Shopify order for this cart token "
                        "(its consent granted by the demo shop page)")  # fmt: skip
    args = parser.parse_args(argv)
    record = localenv.read_stack(localenv.stack_file())
    if record is None:
        print(f"demo: no local stack is running ({localenv.stack_file()} is missing): start `make run` first, "
              "then run `make demo` in another terminal", file=sys.stderr)  # fmt: skip
        return 2
    return demo(record["env"], record["urls"], cart=args.cart)  # what the stack runs with, not what this shell exports


if __name__ == "__main__":
    sys.exit(main())
