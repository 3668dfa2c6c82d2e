"""WooCommerce's own Order Attribution (8.5+), pure: only a plausible ttclid leaves the landing URL, and the
order's own values win.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.receive.woocommerce import mapping as woocommerce
from shared.receive.woocommerce.settings import WooCommerceSiteConfig
from tests.emulator.test_woocommerce_webhook import PIXEL, SITE_URL, new_order

LANDING = (
    "https://woo.test.example/product/hoodie/?utm_source=tiktok&utm_medium=paid&ttclid=E.C.P.wc-attribution"
    "&email=john.doe%40example.com&ref=+1%20415%20555%200100"
)


WC_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) WooAttribution/1"


def _ttclid(session_entry: Any) -> str | None:
    return woocommerce.landing_ttclid({"meta_data": [{"id": 1, "key": "_wc_order_attribution_session_entry",
                                                      "value": session_entry}]})  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (LANDING, "E.C.P.wc-attribution"),
        ("https://shop.example/?ttclid=%20E.C.P.spaced%20", "E.C.P.spaced"),
        ("/relative/path?ttclid=E.C.P.rel", "E.C.P.rel"),
        ("https://shop.example/?utm_source=tiktok", None),
        ("https://shop.example/?ttclid=", None),
        ("https://shop.example/?ttclid=john.doe%40example.com", None),  # an email is no click id
        ("https://shop.example/?ttclid=%2B14155550100", None),  # nor a phone number
        ("https://shop.example/?ttclid=has%20a%20space", None),
        ("https://shop.example/?ttclid=" + "x" * 501, None),
        ("http://[::1/?ttclid=E.C.P.broken", None),  # unparseable URL
        ("(none)", None),
        (12345, None),
        (None, None),
    ],
)
def test_only_a_plausible_ttclid_is_read_from_the_landing_url(entry, expected):
    assert _ttclid(entry) == expected


def test_a_long_landing_url_keeps_its_ttclid_whole():
    entry = "https://shop.example/?" + "&".join(f"utm_term{i}=x" for i in range(200)) + "&ttclid=E.C.P.at-the-end"
    assert len(entry) > 1000 and _ttclid(entry) == "E.C.P.at-the-end"


def test_the_mapped_order_carries_the_attribution_only_where_the_order_has_nothing():
    site = WooCommerceSiteConfig(url=SITE_URL, pixel_code=PIXEL)
    event = woocommerce.map_order(attributed_order(), site)
    assert (event.identity.ttclid, event.identity.user_agent) == ("E.C.P.wc-attribution", WC_UA)
    assert (event.page_url, event.referrer) == (None, None), "the landing URL itself is never forwarded"


def attribution(session_entry: str = LANDING, user_agent: str = WC_UA) -> list[dict[str, Any]]:
    """The meta entries WooCommerce's Order Attribution adds to an order, in its order and spelling."""
    values = {
        "_wc_order_attribution_source_type": "utm",
        "_wc_order_attribution_referrer": "https://www.tiktok.com/",
        "_wc_order_attribution_utm_campaign": "spring",
        "_wc_order_attribution_utm_source": "tiktok",
        "_wc_order_attribution_utm_medium": "paid",
        "_wc_order_attribution_session_entry": session_entry,
        "_wc_order_attribution_session_start_time": "2026-11-30 10:01:02",
        "_wc_order_attribution_session_pages": "4",
        "_wc_order_attribution_session_count": "1",
        "_wc_order_attribution_user_agent": user_agent,
        "_wc_order_attribution_device_type": "Mobile",
    }
    return [{"id": 7100 + i, "key": key, "value": value} for i, (key, value) in enumerate(values.items())]


def attributed_order(*, snippet_ttclid: str | None = None, **meta_changes: str) -> dict[str, Any]:
    order = new_order(customer_user_agent="")
    order["meta_data"] = [
        *order.get("meta_data", []), *attribution(**meta_changes),
        *([{"id": 7200, "key": "_ttclid", "value": snippet_ttclid}] if snippet_ttclid else []),
    ]  # fmt: skip
    return order
