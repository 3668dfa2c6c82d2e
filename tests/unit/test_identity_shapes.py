"""Identifiers are checked against their shape where every source hashes them, never trusted to be what they claim.

ttclid, ``_ttp``, locale, city, state, zip and country: a value without its
field's shape (an email in a click id's meta field, a phone number typed as
the city) is dropped by :func:`shared.domain.identity.build_user`, which
collect, Shopify and WooCommerce all go through, and counted
(``identity.dropped.<field>``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from shared.config import PixelConfig, Tenants
from shared.domain import shapes
from shared.domain.consent import decide
from shared.domain.identity import RawIdentity, build_user
from shared.infra.metrics import COUNTERS
from shared.receive.collect.plan import build_plan
from shared.receive.collect.schema import parse_body
from shared.receive.shopify.mapping import click_ids
from shared.receive.shopify.mapping import identity as shopify_identity
from shared.receive.shopify.mapping import properties as shopify_properties
from shared.receive.shopify.settings import ShopifyShopConfig
from shared.receive.woocommerce.mapping import click_id, map_order
from shared.receive.woocommerce.settings import WooCommerceSiteConfig
from tests.helpers import load_fixture

EMAILS = ["jo@example.com", "jo@exämple.de", "jo@例え.jp", "jo＠example.com", "jo﹫example.com", "jo%40example.com"]
PHONES = ["+12133734253", "2133734253", "+１ ２１３ ３７３ ４２５３", "%2B1%20213%20373%204253", "0049301234567"]


# --- the validators, pure ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["E.C.P.CqgBrV2hMwzP9kXo-abc_DEF~1", "E.C.P.v3fQ8kzLmN2pRtY7", "E_C_P_CtEBWnZ0aXQ", "E.C.P.x" + "A" * 490]
)
def test_click_ids_of_tiktoks_shape_are_kept(value: str) -> None:
    assert shapes.ttclid(value) == value


@pytest.mark.parametrize("value", [*EMAILS, *PHONES, "has a space", "x", "E.C.P." + "a" * 500, "E.C.P.<script>",
                                   "E.C.P.ü", "Ｅ.Ｃ.Ｐ.fullwidth"])  # fmt: skip
def test_anything_else_is_no_click_id(value: str) -> None:
    assert shapes.ttclid(value) is None


@pytest.mark.parametrize("value", ["2ZkYxqWl0aBcDeFgHiJk.tt.1", "01HX7Q2V8K3M4N5P6R7S8T9V0W", "ttp-cookie-value"])
def test_ttp_cookies_are_kept(value: str) -> None:
    assert shapes.ttp(value) == value


@pytest.mark.parametrize("value", [*EMAILS, *PHONES, "ab", "a b c d e", "x" * 201, ".leading-dot"])
def test_anything_else_is_no_ttp(value: str) -> None:
    assert shapes.ttp(value) is None


@pytest.mark.parametrize("value", ["en", "en-US", "pt_BR", "zh-Hant-TW", "fil"])
def test_language_tags_are_locales(value: str) -> None:
    assert shapes.locale(value) == value


@pytest.mark.parametrize("value", ["example string", "*", "en-US,en;q=0.9", "jo@example.com", "2133734253", "e"])
def test_anything_else_is_no_locale(value: str) -> None:
    assert shapes.locale(value) is None


@pytest.mark.parametrize(("value", "expected"), [("US", "US"), ("de", "de"), ("ＵＳ", "US")])
def test_countries_are_two_letters(value: str, expected: str) -> None:
    assert shapes.country(value) == expected


@pytest.mark.parametrize("value", ["USA", "U1", "jo@example.com", "12"])
def test_anything_else_is_no_country(value: str) -> None:
    assert shapes.country(value) is None


@pytest.mark.parametrize("value", ["94107", "94107-1234", "SW1A 1AA", "10115", "D02 X285", "1010", "H3Z 2Y7"])
def test_postal_codes_are_zips(value: str) -> None:
    assert shapes.zip_code(value) == value


@pytest.mark.parametrize("value", ["N/A", "none", "jo@example.com", "+12133734253", "1", "12345678901", "ABC-DEF"])
def test_anything_else_is_no_zip(value: str) -> None:
    assert shapes.zip_code(value) is None


@pytest.mark.parametrize("value", ["New York", "São Paulo", "St. John's", "Saint-Denis", "東京", "Paris 15",
                                   "Frankfurt (Oder)", "Київ", "newyork"])  # fmt: skip
def test_city_names_in_any_script_are_cities(value: str) -> None:
    assert shapes.city(value) == value


@pytest.mark.parametrize("value", [*EMAILS, *PHONES, "555-1234", "call 2133734253", "x" * 101, "!!!", "12"])
def test_a_phone_number_or_an_email_is_no_city(value: str) -> None:
    assert shapes.city(value) is None


@pytest.mark.parametrize("value", ["CA", "NY", "NSW", "Bayern", "Île-de-France", "JP13", "13", "ny"])
def test_region_codes_and_names_are_states(value: str) -> None:
    assert shapes.state(value) == value


@pytest.mark.parametrize("value", [*EMAILS, *PHONES, "1234", "x" * 61])
def test_anything_else_is_no_state(value: str) -> None:
    assert shapes.state(value) is None


# --- build_user: the one place, dropped and counted -----------------------------------------------


def test_build_user_drops_what_has_not_its_shape_and_says_which() -> None:
    raw = RawIdentity(ttclid="jo@example.com", ttp="+1 213 373 4253", locale="example string",
                      city="+1 213 373 4253", state="jo@example.com", zip_code="N/A", country="USA")  # fmt: skip
    dropped: list[str] = []
    user = build_user(raw, on_drop=dropped.append)
    assert (user.ttclid, user.ttp, user.locale, user.city, user.state, user.zip_code, user.country) == (None,) * 7
    assert sorted(dropped) == ["city", "country", "locale", "state", "ttclid", "ttp", "zip_code"]


def test_build_user_keeps_what_has_its_shape_and_drops_nothing_empty() -> None:
    raw = RawIdentity(ttclid=" E.C.P.ok-click ", ttp="2ZkYxqWl0aBcDeFgHiJk.tt.1", locale="en-US", city="New York",
                      state="NY", zip_code="94107-1234", country="US")  # fmt: skip
    dropped: list[str] = []
    user = build_user(raw, on_drop=dropped.append)
    assert (user.ttclid, user.ttp, user.locale, user.city, user.state, user.country) == (
        "E.C.P.ok-click", "2ZkYxqWl0aBcDeFgHiJk.tt.1", "en-US", "newyork", "ny", "us")  # fmt: skip
    assert user.zip_code is not None and dropped == []
    build_user(RawIdentity(ttclid="  ", city=""), on_drop=dropped.append)
    assert dropped == [], "an empty value is absent, not dropped"


def test_a_hashed_identity_passes_build_user_again_unchanged() -> None:
    """A parked WooCommerce order is replayed from its hashed identity (shared.receive.woocommerce.parking)."""
    from shared.receive.woocommerce.parking import _identity_from_user

    user = build_user(RawIdentity(zip_code="94107", city="New York", state="NY", country="US", locale="en-US",
                                  ttclid="E.C.P.parked", ttp="ttp-parked"))  # fmt: skip
    dropped: list[str] = []
    assert build_user(_identity_from_user(user), on_drop=dropped.append) == user and dropped == []


# --- collect: dropped, counted, named in the answer without the value -------------------------------

PIXEL = "CSHAPEPIXEL01"


def _collect_plan(context: dict[str, Any], accept_language: str | None = None):
    document = {"pixel_code": PIXEL, "consent": {"granted": True},
                "context": {"join_keys": {"shopify_cart_token": "c1-7a2abe0f9c1d4e6b8a3f5c7d9e1b2a4c"}, **context},
                "events": [{"event": "AddToCart", "event_id": "evt-shape"}]}  # fmt: skip
    body = parse_body(json.dumps(document).encode(), 20)
    pixel = Tenants(pixels={PIXEL: PixelConfig(pixel_code=PIXEL)}).pixel(PIXEL)
    return build_plan(body, pixel, decide(body.consent_snapshot(), "opt-in"), ip="203.0.113.24",
                      user_agent="Mozilla/5.0", accept_language=accept_language)  # fmt: skip


def test_collect_drops_and_counts_click_ids_and_locales_of_the_wrong_shape() -> None:
    before = COUNTERS.snapshot()
    plan = _collect_plan({"ttclid": "jo＠example.com", "ttp": "+1 213 373 4253", "locale": "jo@例え.jp"})
    (envelope,) = plan.envelopes
    assert (envelope.user.ttclid, envelope.user.ttp, envelope.user.locale) == (None, None, None)
    assert (plan.context["ttclid"], plan.context["ttp"], plan.context["locale"]) == (None, None, None)
    answer = json.dumps(plan.ignored, ensure_ascii=False)
    assert [i["field"] for i in plan.ignored] == ["context.ttclid", "context.ttp", "context.locale"]
    assert "example" not in answer and "213" not in answer, "the answer names the field, never its value"
    after = COUNTERS.snapshot()
    for name in ("ttclid", "ttp", "locale"):
        key = f"identity.dropped.{name}"
        assert after.get(key, 0) == before.get(key, 0) + 1


def test_a_locale_from_accept_language_is_checked_too() -> None:
    assert _collect_plan({}, accept_language="fr-FR,fr;q=0.9").envelopes[0].user.locale == "fr-FR"
    plan = _collect_plan({}, accept_language="2133734253")
    assert plan.envelopes[0].user.locale is None
    assert plan.ignored[-1]["field"] == "Accept-Language"


# --- the platforms' free-form places --------------------------------------------------------------


def _woo_order(**meta: str) -> dict[str, Any]:
    order = copy.deepcopy(load_fixture("woocommerce/order_727_processing_documented.json"))
    order["meta_data"] = [{"id": 9000 + i, "key": k, "value": v} for i, (k, v) in enumerate(meta.items())]
    return order


@pytest.mark.parametrize("raw", [*EMAILS, *PHONES])
def test_a_woocommerce_ttclid_meta_of_the_wrong_shape_never_becomes_the_ttclid(raw: str) -> None:
    order = _woo_order(_ttclid=raw)
    site = WooCommerceSiteConfig(url="https://www.Shop.example/", pixel_code="CPIX")
    dropped: list[str] = []
    assert build_user(map_order(order, site, 1_800_000_000.0).identity, on_drop=dropped.append).ttclid is None
    assert dropped == ["ttclid"]


def test_a_woocommerce_landing_ttclid_of_its_shape_wins_over_a_wrong_meta() -> None:
    landing = "https://shop.example/?utm_source=tiktok&ttclid=E.C.P.from-landing"
    order = _woo_order(_ttclid="jo@exämple.de", _wc_order_attribution_session_entry=landing)
    assert click_id(order) == "E.C.P.from-landing"
    order = _woo_order(_wc_order_attribution_session_entry="https://shop.example/?ttclid=jo%EF%BC%A0example.com")
    assert build_user(RawIdentity(ttclid=click_id(order))).ttclid is None


def test_a_woocommerce_phone_typed_as_the_city_is_dropped() -> None:
    order = _woo_order()
    order["billing"] = {**order["billing"], "city": "+1 213 373 4253", "postcode": "jo@example.com"}
    site = WooCommerceSiteConfig(url="https://www.Shop.example/", pixel_code="CPIX")
    dropped: list[str] = []
    user = build_user(map_order(order, site, 1_800_000_000.0).identity, on_drop=dropped.append)
    assert (user.city, user.zip_code) == (None, None) and sorted(dropped) == ["city", "zip_code"]


def _shopify_order(**changes: Any) -> dict[str, Any]:
    order = copy.deepcopy(load_fixture("shopify/orders_create_2026-04_documented.json")["response"])
    order.update(changes)
    return order


@pytest.mark.parametrize("raw", [*EMAILS, *PHONES])
def test_shopify_note_attributes_of_the_wrong_shape_never_become_click_ids(raw: str) -> None:
    order = _shopify_order(note_attributes=[{"name": "_ttclid", "value": raw}, {"name": "_ttp", "value": raw}],
                           landing_site="/products/x")  # fmt: skip
    dropped: list[str] = []
    user = build_user(shopify_identity(order), on_drop=dropped.append)
    assert (user.ttclid, user.ttp) == (None, None) and {"ttclid", "ttp"} <= set(dropped)


def test_shopify_prefers_the_landing_pages_click_id_to_a_note_of_the_wrong_shape() -> None:
    order = _shopify_order(note_attributes=[{"name": "_ttclid", "value": "jo@example.com"}],
                           landing_site="/products/x?ttclid=E.C.P.from-landing")  # fmt: skip
    assert click_ids(order)[0] == "E.C.P.from-landing"
    order["landing_site"] = "/products/x?ttclid=%2B12133734253"
    assert build_user(shopify_identity(order)).ttclid is None


def test_a_shopify_phone_typed_as_the_city_is_dropped_and_a_typed_title_scrubbed() -> None:
    order = _shopify_order()
    order["billing_address"] = {**order["billing_address"], "city": "２１３ ３７３ ４２５３"}
    order["shipping_address"] = order["billing_address"]
    assert build_user(shopify_identity(order)).city is None
    order["line_items"][0]["title"] = "Engraving for jo@exämple.de"
    shop = ShopifyShopConfig(domain="shop.myshopify.com", pixel_code="CPIX")
    content = shopify_properties(order, shop, "1")["contents"][0]
    assert content["content_name"] == "Engraving for [redacted]"
