"""WooCommerce's own Order Attribution (8.5+) joins the click without our PHP snippet.

Orders carry the ``_wc_order_attribution_*`` meta entries as WooCommerce's
webhooks send them (``meta_data: [{id, key, value}]``, values as strings).
Only the ``ttclid`` of the landing URL may leave: the rest of that URL can
carry what a shopper typed and must never be logged or published.
"""

from __future__ import annotations

import json

import pytest

from tests.emulator.test_woocommerce_webhook import PIXEL, Webhook, make_app, woo_env
from tests.unit.test_woocommerce_attribution import WC_UA, attributed_order


@pytest.fixture
def opt_out(monkeypatch, emulators, topic, store, collection_prefix) -> Webhook:
    """A site with nothing of ours installed on WordPress: no snippet meta, no collect, opt-out consent."""
    env = woo_env(emulators, topic, collection_prefix, CONSENT_POLICY="opt-out")
    return Webhook(make_app(monkeypatch, env), store, topic)


def test_an_order_with_only_woocommerces_attribution_sends_the_ttclid_of_the_landing_url(opt_out, capsys):
    order = attributed_order()
    response = opt_out.post(order)
    assert (response.status_code, response.get_json()["outcome"]) == (200, "published")
    envelope = opt_out.exactly_one_published()
    assert envelope["pixel_code"] == PIXEL and envelope["event"] == "Purchase"
    assert envelope["user"]["ttclid"] == "E.C.P.wc-attribution"
    assert envelope["user"]["user_agent"] == WC_UA, "the order had no customer_user_agent"
    # Nothing else of the landing URL travels or is logged.
    published, logs = json.dumps(envelope), capsys.readouterr().out
    for leaked in ("john.doe", "%40example", "555%200100", "hoodie", "utm_medium", "/product/"):
        assert leaked not in published and leaked not in logs, leaked


def test_the_snippets_ttclid_wins_over_woocommerces_landing_url(opt_out):
    opt_out.post(attributed_order(snippet_ttclid="E.C.P.snippet"))
    assert opt_out.exactly_one_published()["user"]["ttclid"] == "E.C.P.snippet"


def test_woocommerces_landing_url_wins_over_the_collect_join(opt_out):
    order = attributed_order()
    opt_out.grant(order, ttclid="E.C.P.collect")
    opt_out.post(order)
    assert opt_out.exactly_one_published()["user"]["ttclid"] == "E.C.P.wc-attribution"


def test_an_empty_attribution_blocked_by_the_consent_tool_falls_back_to_the_collect_join(opt_out):
    order = attributed_order(session_entry="", user_agent="")
    opt_out.grant(order, ttclid="E.C.P.collect", user_agent="UA-collect")
    opt_out.post(order)
    user = opt_out.exactly_one_published()["user"]
    assert (user["ttclid"], user["user_agent"]) == ("E.C.P.collect", "UA-collect")


def test_the_orders_own_user_agent_wins_over_the_attributions(opt_out):
    order = attributed_order()
    order["customer_user_agent"] = "Mozilla/5.0 Checkout"
    opt_out.post(order)
    assert opt_out.exactly_one_published()["user"]["user_agent"] == "Mozilla/5.0 Checkout"


# --- the landing URL, pure --------------------------------------------------------------------
