"""The inspector's rows and chart: sources, match keys by presence, TikTok's duplicates, outcomes per minute."""

from __future__ import annotations

import json

from sandbox import TRACK_PATH, create_app
from sandbox.inspector import DEDUP_SECONDS, event_source, match_keys, per_minute, rows
from tests.unit.test_sandbox import EMAIL_HASH, PIXEL, TOKEN, make_body, make_event


def stored(event_id: str, at: float, event: str = "Purchase", pixel: str = PIXEL, **user: object) -> dict:
    return {"event": event, "event_id": event_id, "event_source_id": pixel, "received_at": at, "user": user}


def test_the_source_comes_from_the_event_id_scheme() -> None:
    assert event_source("shopify:shop.myshopify.com:order:1:Purchase") == "shopify"
    assert event_source("woocommerce:shop.example:order:7:Purchase") == "woocommerce"
    # collect refuses order-shaped ids from browsers, so every other shape came through it.
    assert event_source("5f1c-browser-uuid") == "collect"
    assert event_source("shopify-lookalike:order:1") == "collect"
    assert event_source(None) == "unknown"


def test_match_keys_are_names_of_what_is_present_never_values() -> None:
    user = {"email": [EMAIL_HASH], "phone": [], "ip": "203.0.113.1", "first_name": "abc", "country": "us"}
    assert match_keys(user) == ["email", "names", "country"]  # an empty list is absent; ip needs a user agent
    assert match_keys({**user, "user_agent": "UA"}) == ["email", "ip+user_agent", "names", "country"]
    assert match_keys("not an object") == []


def test_a_second_event_with_the_same_pixel_event_and_id_within_48_hours_is_a_duplicate() -> None:
    events = [
        stored("a", 0),
        stored("a", 10),  # duplicate
        stored("a", 20, event="AddToCart"),  # another event name: TikTok keeps it
        stored("a", 30, pixel="COTHER"),  # another pixel: kept
        stored("a", DEDUP_SECONDS + 1),  # past the window: counts again
        stored("a", DEDUP_SECONDS + 2),  # and starts a new window
    ]
    assert [r["duplicate"] for r in rows(events)][::-1] == [False, True, False, False, False, True]


def test_rows_are_newest_first_and_bounded() -> None:
    built = rows([stored(str(i), i) for i in range(5)], limit=3)
    assert [r["event_id"] for r in built] == ["4", "3", "2"]


def test_events_per_minute_split_accepted_from_refused_and_keep_empty_minutes() -> None:
    now = 60 * 1000 + 30
    requests = [
        {"received_at": now - 5, "http_status": 200, "code": 0, "event_count": 3},
        {"received_at": now - 5, "http_status": 200, "code": 40002, "event_count": 2},
        {"received_at": now - 65, "http_status": 503, "code": 50002, "event_count": 1},
        {"received_at": now - 3600, "http_status": 200, "code": 0, "event_count": 9},  # older than the chart
    ]
    minutes = per_minute(requests, now, minutes=3)
    assert [(m["accepted"], m["refused"]) for m in minutes] == [(0, 0), (0, 1), (3, 2)]
    assert minutes[-1]["minute"] == 60 * 1000


def test_the_inspect_json_holds_no_value_of_any_user_field() -> None:
    client = create_app(TOKEN).test_client()
    event = make_event()
    assert client.post(TRACK_PATH, json=make_body(event), headers={"Access-Token": TOKEN}).json["code"] == 0
    snapshot = client.get("/sandbox/inspect").json
    (row,) = snapshot["rows"]
    assert row["source"] == "collect" and row["limited_data_use"] is False and not row["duplicate"]
    text = json.dumps(snapshot)
    values = [v for value in event["user"].values() for v in (value if isinstance(value, list) else [value])]
    # Two-letter codes ("us", "ny") are substrings of ordinary words; every longer value is checked.
    checked = [v for v in values if len(v) > 2]
    assert len(checked) >= 10 and not [v for v in checked if v in text]


def test_a_browser_gets_the_page_and_anyone_else_the_health_json() -> None:
    client = create_app(TOKEN).test_client()
    assert client.get("/").json == {"status": "ok"}
    assert client.get("/", headers={"Accept": "*/*"}).json == {"status": "ok"}
    page = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.content_type.startswith("text/html") and b"/sandbox/inspector.js" in page.data
    assert client.get("/sandbox/inspector.js").content_type.startswith("text/javascript")
    assert client.get("/sandbox/inspector.css").content_type.startswith("text/css")
