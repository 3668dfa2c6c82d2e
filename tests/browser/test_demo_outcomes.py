"""The demo page shows what collect answered each call, so a developer sees why nothing arrived."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.stack]


def outcomes(browser) -> list[dict]:
    return browser.execute_script("return window.outcomes")


def test_each_collect_call_shows_its_outcome_on_the_page(browser, demo_site, demo_collect, stack):
    page = demo_site.page(endpoint=demo_collect, pixel=stack.settings["TIKTOK_PIXEL_CODE"], transport="fetch",
                          cart=f"cart-{uuid.uuid4().hex}", ttclid=f"E.C.P.{uuid.uuid4().hex}")  # fmt: skip
    browser.get(page)
    browser.find_element("id", "deny").click()
    # A 204 has no body: the outcome comes from the X-Collect-Outcome header collect exposes to the page.
    denied = wait_until(lambda: outcomes(browser) or None)
    assert {(o["status"], o["outcome"]) for o in denied} == {(204, "withheld_consent")}
    browser.execute_script("answer(true)")
    browser.find_element("id", "add-to-cart").click()
    wait_until(lambda: any(o["outcome"] == "accepted" for o in outcomes(browser)))
    log = browser.find_element("id", "log").text
    assert "collect answered" in log and "withheld_consent" in log and "accepted" in log


def test_beacons_say_where_to_see_outcomes(browser, demo_site, demo_collect, stack):
    browser.get(demo_site.page(endpoint=demo_collect, pixel=stack.settings["TIKTOK_PIXEL_CODE"],
                               ttclid=f"E.C.P.{uuid.uuid4().hex}"))  # fmt: skip
    browser.find_element("id", "grant").click()
    browser.find_element("id", "add-to-cart").click()
    wait_until(lambda: browser.execute_script("return window.sent.length") > 0)
    assert "transport=fetch" in browser.find_element("id", "log").text
