"""The sandbox's inspector page in a real headless Chromium: rows, duplicates, the chart, and no PII."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from werkzeug.serving import make_server

from sandbox import TRACK_PATH, create_app
from tests.helpers import wait_until

pytestmark = [pytest.mark.browser]

TOKEN = "inspector-token"
PIXEL = "CINSPECTPIXEL01"
RAW_EMAIL = "inspector.shopper@example.com"
EMAIL_HASH = hashlib.sha256(RAW_EMAIL.encode()).hexdigest()
PHONE_HASH = hashlib.sha256(b"+12133734253").hexdigest()
RAW_IP = "203.0.113.77"
RAW_TTCLID = f"E.C.P.{uuid.uuid4().hex}"
# Sent as an event_id (the contract allows any string): the page must show it as text, not run it.
HOSTILE_ID = '<img src=x onerror="window.pwned=1">'


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    server = make_server("127.0.0.1", 0, create_app(TOKEN), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def event(event_id: str, user: dict[str, Any], name: str = "Purchase", **extra: Any) -> dict[str, Any]:
    return {"event": name, "event_time": int(time.time()) - 5, "event_id": event_id, "user": user, **extra}


def track(url: str, events: list[dict[str, Any]], token: str = TOKEN, **body: Any) -> dict[str, Any]:
    sent = {"event_source": "web", "event_source_id": PIXEL, "data": events, **body}
    answer = httpx.post(url + TRACK_PATH, json=sent, headers={"Access-Token": token}, timeout=10)
    return answer.json()


def rows(browser: Any) -> list[dict[str, Any]]:
    return browser.execute_script(
        """return [...document.querySelectorAll('#events tbody tr')].map(tr => ({
             event_id: tr.dataset.eventId, duplicate: tr.dataset.duplicate,
             cells: [...tr.cells].map(td => td.textContent),
             present: [...tr.querySelectorAll('.key[data-present=yes]')].map(k => k.textContent)}))"""
    )


def test_the_page_shows_each_event_with_its_match_keys_and_flags_the_duplicate(browser: Any, sandbox_url: str):
    order_id = f"shopify:shop.myshopify.com:order:{uuid.uuid4().int % 10**12}:Purchase"
    browser_id = f"collect-{uuid.uuid4().hex}"
    full_user = {"email": [EMAIL_HASH], "phone": [PHONE_HASH], "ttclid": RAW_TTCLID, "ip": RAW_IP,
                 "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "country": "us"}  # fmt: skip
    first = track(sandbox_url, [event(order_id, full_user, limited_data_use=False)], test_event_code="TEST123")
    assert first["code"] == 0, first
    assert track(sandbox_url, [event(browser_id, {"ip": RAW_IP}, name="AddToCart")])["code"] == 0
    # Our sender would never send it twice; TikTok would drop this copy, and the page says so.
    assert track(sandbox_url, [event(order_id, full_user, limited_data_use=False)])["code"] == 0
    assert track(sandbox_url, [event(HOSTILE_ID, {"external_id": [EMAIL_HASH]}, name="ViewContent")])["code"] == 0
    assert track(sandbox_url, [event("refused-1", {"ip": RAW_IP})], token="wrong-token")["code"] != 0

    browser.get(sandbox_url + "/")
    wait_until(lambda: len(rows(browser)) == 4, timeout=15)
    shown = rows(browser)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in shown:
        by_id.setdefault(row["event_id"], []).append(row)

    # Newest first: the copy of the order is above the original, and only the copy is flagged.
    copy, original = by_id[order_id]
    assert copy["duplicate"] == "yes" and original["duplicate"] == "no"
    assert "duplicate" in copy["cells"][-1] and original["cells"][-1] == ""
    assert original["cells"][2] == "Purchase" and original["cells"][4] == "shopify" and original["cells"][1] == PIXEL
    assert original["present"] == ["email", "phone", "ttclid", "ip+user_agent", "country"]
    assert original["cells"][6] == "false" and original["cells"][7] == "TEST123"

    (from_browser,) = by_id[browser_id]
    assert from_browser["cells"][4] == "collect" and from_browser["present"] == []  # an IP alone is no match key
    assert from_browser["cells"][6] == "not sent" and from_browser["cells"][7] == "none"

    (hostile,) = by_id[HOSTILE_ID]  # rendered as text, never as markup
    assert hostile["cells"][3] == HOSTILE_ID and hostile["present"] == ["external_id"]
    assert browser.execute_script("return window.pwned === undefined && !document.querySelector('#events img')")

    # The chart: this minute has 4 accepted events and the 1 refused.
    bars = browser.execute_script(
        "return [...document.querySelectorAll('#chart rect')].map(r => r.getAttribute('class'))"
    )
    assert sorted(set(bars)) == ["accepted", "refused"]
    minutes = browser.execute_script("return window.inspected.per_minute")
    assert sum(m["accepted"] for m in minutes) == 4 and sum(m["refused"] for m in minutes) == 1

    # No value the sandbox received is anywhere in the page or the JSON it polls: presence only.
    page = browser.page_source
    inspected = json.dumps(browser.execute_script("return window.inspected"))
    for secret in (RAW_EMAIL, EMAIL_HASH, PHONE_HASH, RAW_IP, RAW_TTCLID):
        assert secret not in page and secret not in inspected


def test_the_page_loads_nothing_from_elsewhere_and_health_checks_still_get_json(browser: Any, sandbox_url: str):
    page = httpx.get(sandbox_url + "/", headers={"Accept": "text/html,*/*;q=0.8"})
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: everything from the sandbox
    assert httpx.get(sandbox_url + "/").json() == {"status": "ok"}  # what `make run` and curl ask for
    browser.get(sandbox_url + "/")
    wait_until(lambda: browser.execute_script("return window.inspected !== undefined"), timeout=15)
    assert browser.find_element("id", "empty").is_displayed()
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []  # a CSP violation or a script error would be logged here
