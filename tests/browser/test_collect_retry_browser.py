"""collect.js in headless Chromium: a context that got no 2xx is sent again; WordPress's WP Consent API is read.

The retry tests point the demo page at a small local stand-in for collect that
answers 503 first (as collect does while Firestore is unavailable) and then
forwards to the real collect process (``demo_collect``), so what is stored is
read from the stack's Firestore and what is sent from its sandbox.
"""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.receive.orders import JOIN_SHOPIFY_CART, JOIN_WOO_SESSION
from tests.browser.test_collect_browser import add_to_cart, click, cookie
from tests.helpers import sandbox_events, wait_for_sandbox_events, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.stack]


class FlakyCollect:
    """Answers the first ``failures`` POSTs 503 (``Retry-After: 1``), forwards the rest to collect."""

    def __init__(self, target: str) -> None:
        self.target, self.failures = target, 0
        self.received: list[bytes] = []
        self.forwarded: list[tuple[bytes, int]] = []
        self.lock = threading.Lock()
        flaky = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
                pass

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                origin = self.headers.get("Origin") or ""
                with flaky.lock:
                    flaky.received.append(body)
                    failing = flaky.failures > 0
                    flaky.failures -= 1 if failing else 0
                if failing:
                    status, headers, content = 503, {"Retry-After": "1"}, b'{"error": "unavailable"}'
                else:
                    forwarded = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                    answer = httpx.post(flaky.target, content=body, headers=forwarded, timeout=10)
                    with flaky.lock:
                        flaky.forwarded.append((body, answer.status_code))
                    status, content = answer.status_code, answer.content
                    headers = {"X-Collect-Outcome": answer.headers.get("X-Collect-Outcome", "")}
                self.send_response(status)
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Access-Control-Expose-Headers", "X-Collect-Outcome, Retry-After")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky(demo_collect: str) -> Iterator[FlakyCollect]:
    server = FlakyCollect(demo_collect)
    try:
        yield server
    finally:
        server.close()


def pending(browser: Any) -> Any:
    return browser.execute_script("return JSON.parse(localStorage.getItem('tt_collect_pending') || '[]')")


def test_a_grant_answered_503_is_sent_again_and_its_context_stored_once(browser, demo_site, flaky, stack, stack_store):
    pixel, cart = stack.settings["TIKTOK_PIXEL_CODE"], uuid.uuid4().hex
    flaky.failures = 1
    browser.get(demo_site.page(endpoint=flaky.url, pixel=pixel, cart=cart, transport="fetch"))
    click(browser, "grant")
    # (A fresh collect's first Firestore call may itself answer 503 on a loaded machine: that is retried too.)
    [retried] = wait_until(lambda: [body for body, status in flaky.forwarded if status == 200], timeout=15)
    first = flaky.received[0]
    assert b'"consent":true' in first and b'"consent":true' in retried
    assert cart.encode() in retried and b'"unchanged"' not in retried
    context = stack_store.find_click_context(pixel, [(JOIN_SHOPIFY_CART, cart)])
    assert context["consent"]["granted"] is True
    wait_until(lambda: pending(browser) == [])
    statuses = [s.get("status") for s in browser.execute_script("return window.sent")]
    assert statuses[0] == 503 and statuses[-1] == 200 and statuses.count(200) == 1

    # The next event goes once; the retried context is not sent a third time.
    event_id = add_to_cart(browser)
    [event] = wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=event_id)
    assert event["event"] == "AddToCart"
    assert sum(1 for _, status in flaky.forwarded if status == 200) == 2  # the grant once, the event once
    copies = [status for body, status in flaky.forwarded if body == retried]
    assert copies[-1] == 200 and copies.count(200) == 1  # never sent again once acknowledged


def test_an_event_that_never_got_a_2xx_is_sent_on_the_next_page_once(browser, demo_site, flaky, stack, stack_store):
    pixel, cart = stack.settings["TIKTOK_PIXEL_CODE"], uuid.uuid4().hex
    page = demo_site.page(endpoint=flaky.url, pixel=pixel, cart=cart, transport="fetch")
    flaky.failures = 100  # collect is down for the whole page: the first try and both retries fail
    browser.get(page)
    click(browser, "grant")
    event_id = add_to_cart(browser)
    wait_until(lambda: len(flaky.received) >= 6, timeout=20)  # (the grant, the event) x (1 try + 2 retries)
    wait_until(lambda: len(pending(browser)) == 2)
    assert flaky.forwarded == [] and sandbox_events(stack.url("sandbox"), event_id=event_id) == []

    flaky.failures = 0  # collect is back; the shopper opens another page and the banner gives the same answer
    browser.get(page)
    browser.execute_script("ttCollect.consent(true)")
    [event] = wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=event_id)
    assert event["event"] == "AddToCart"
    wait_until(lambda: pending(browser) == [])
    carrying = [body for body, _ in flaky.forwarded if event_id.encode() in body]
    assert len(carrying) == 1  # the event was re-sent once, with its context
    assert stack_store.find_click_context(pixel, [(JOIN_SHOPIFY_CART, cart)])["consent"]["granted"] is True


def test_a_pending_grant_is_dropped_when_the_shopper_has_denied_since(browser, demo_site, flaky, stack, stack_store):
    pixel, cart = stack.settings["TIKTOK_PIXEL_CODE"], uuid.uuid4().hex
    page = demo_site.page(endpoint=flaky.url, pixel=pixel, cart=cart, transport="fetch")
    flaky.failures = 100
    browser.get(page)
    click(browser, "grant")
    wait_until(lambda: len(flaky.received) >= 3 and len(pending(browser)) == 1, timeout=20)  # all 3 tries
    flaky.failures = 0
    browser.get(page)
    browser.execute_script("ttCollect.consent(false)")
    wait_until(lambda: pending(browser) == [])
    wait_until(lambda: flaky.forwarded)
    assert all(b'"consent":true' not in body for body, _ in flaky.forwarded)
    stored = stack_store.find_click_context(pixel, [(JOIN_SHOPIFY_CART, cart)])
    assert stored is None or stored["consent"]["granted"] is False


def test_a_page_never_resends_its_own_pending_request_only_the_next_page_does(browser, demo_site, flaky, stack):
    # A flush on the page that kept the request (an event, pagehide) must not send it again: the next page would
    # too (the unloading page never reads the answer), and the page's own timers already retry it.
    pixel, cart = stack.settings["TIKTOK_PIXEL_CODE"], uuid.uuid4().hex
    flaky.failures = 100
    browser.get(demo_site.page(endpoint=flaky.url, pixel=pixel, cart=cart, transport="fetch"))
    click(browser, "grant")
    wait_until(lambda: len(flaky.received) >= 3 and len(pending(browser)) == 1, timeout=20)  # all 3 tries
    [kept] = [p["b"].encode() for p in pending(browser)]
    flaky.failures = 0
    event_id = add_to_cart(browser)  # a flush on the same page
    wait_for_sandbox_events(stack.url("sandbox"), 1, event_id=event_id)
    browser.execute_script("window.dispatchEvent(new Event('pagehide'))")  # what leaving the page does
    time.sleep(1.5)
    assert [body for body, _ in flaky.forwarded if body == kept] == []
    assert [p["b"].encode() for p in pending(browser)] == [kept]

    browser.get(demo_site.page(endpoint=flaky.url, pixel=pixel, cart=cart, transport="fetch", step="2"))
    browser.execute_script("ttCollect.consent(true)")
    wait_until(lambda: pending(browser) == [])
    time.sleep(1)
    assert [status for body, status in flaky.forwarded if body == kept] == [200]


def test_a_request_sent_before_any_answer_is_not_resent_after_a_denial(browser, demo_site, flaky, stack):
    # No answer (no "consent") and a later "no" are different answers: the pending event is dropped.
    pixel, cart = stack.settings["TIKTOK_PIXEL_CODE"], uuid.uuid4().hex
    flaky.failures = 100
    browser.get(demo_site.page(endpoint=flaky.url, pixel=pixel, cart=cart, transport="fetch",
                               ttclid=f"E.C.P.{uuid.uuid4().hex}"))  # fmt: skip
    event_id = add_to_cart(browser)  # before the banner is answered
    wait_until(lambda: any(event_id in p["b"] for p in pending(browser)), timeout=20)
    wait_until(lambda: sum(event_id.encode() in body for body in flaky.received) >= 3, timeout=20)
    assert all('"consent"' not in p["b"] for p in pending(browser))
    flaky.failures = 0
    browser.get(demo_site.page(endpoint=flaky.url, pixel=pixel, cart=cart, transport="fetch", step="2"))
    browser.execute_script("ttCollect.consent(false)")
    wait_until(lambda: pending(browser) == [])
    wait_until(lambda: any(b'"consent":false' in body for body, _ in flaky.forwarded))
    time.sleep(1)
    assert [body for body, _ in flaky.forwarded if event_id.encode() in body] == []


BLOCKED_STORAGE = """
window.pageErrors = [];
window.addEventListener('error', function (e) { window.pageErrors.push(String(e.message)); });
window.addEventListener('unhandledrejection', function (e) { window.pageErrors.push(String(e.reason)); });
['localStorage', 'sessionStorage'].forEach(function (name) {
  Object.defineProperty(window, name, {get: function () { throw new DOMException('blocked', 'SecurityError'); }});
});
"""


def test_without_storage_a_request_is_still_retried_on_its_page(browser, demo_site, flaky, stack, stack_store):
    # Storage blocked (a privacy mode, a sandbox): no next-page resend, but the page's own retries, and no error.
    pixel, cart = stack.settings["TIKTOK_PIXEL_CODE"], uuid.uuid4().hex
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": BLOCKED_STORAGE})
    flaky.failures = 1
    browser.get(demo_site.page(endpoint=flaky.url, pixel=pixel, cart=cart, transport="fetch"))
    assert browser.execute_script("try { localStorage; return false; } catch (e) { return true; }")
    click(browser, "grant")
    [retried] = wait_until(lambda: [body for body, status in flaky.forwarded if status == 200], timeout=15)
    assert b'"consent":true' in retried and b'"unchanged"' not in retried
    assert stack_store.find_click_context(pixel, [(JOIN_SHOPIFY_CART, cart)])["consent"]["granted"] is True
    statuses = [s.get("status") for s in browser.execute_script("return window.sent")]
    assert statuses == [503, 200]
    assert browser.execute_script("return window.pageErrors") == []


# --- WordPress: the WP Consent API as the consent source ----------------------------------------------------

WP_CONSENT_API = """
window.wpMarketing = arguments[0];
window.wp_has_consent = function (category) { return category === 'marketing' && window.wpMarketing === 'allow'; };
document.dispatchEvent(new CustomEvent('wp_listen_for_consent_change', {detail: {marketing: arguments[0]}}));
"""


def test_wp_consent_api_grant_and_denial_are_read_and_stored(browser, demo_site, demo_collect, stack, stack_store):
    pixel, click_id = stack.settings["TIKTOK_PIXEL_CODE"], f"E.C.P.{uuid.uuid4().hex}"
    browser.get(demo_site.page(endpoint=demo_collect, pixel=pixel, platform="woocommerce", consent="wp_consent_api",
                               ttclid=click_id, transport="fetch"))  # fmt: skip
    browser.execute_script("window.wp_has_consent = function () { return false; }")
    assert cookie(browser, "ttclid") is None  # not answered yet: nothing written

    browser.execute_script(WP_CONSENT_API, "allow")
    session = wait_until(lambda: cookie(browser, "tt_session"))
    assert cookie(browser, "tt_consent") == "granted" and cookie(browser, "ttclid") == click_id
    context = wait_until(lambda: stack_store.find_click_context(pixel, [(JOIN_WOO_SESSION, session)]))
    assert context["consent"]["granted"] is True and context["ttclid"] == click_id

    browser.execute_script(WP_CONSENT_API, "deny")
    wait_until(lambda: cookie(browser, "tt_consent") == "denied")
    denied = wait_until(lambda: (c := stack_store.find_click_context(pixel, [(JOIN_WOO_SESSION, session)]))
                        and c["consent"]["granted"] is False and c)  # fmt: skip
    assert "ttclid" not in denied and "user" not in denied
