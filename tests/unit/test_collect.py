"""The collect endpoint's pure domain (shared/receive/collect/): no HTTP, no Firestore, no Pub/Sub."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from shared.config import PixelConfig, Tenants
from shared.domain.consent import ConsentSnapshot, decide
from shared.receive.collect.admission import admit, client_ip, drop_reason, is_preview_page, normalize_origin
from shared.receive.collect.handler import handle
from shared.receive.collect.keys import sign_customer_id
from shared.receive.collect.plan import Plan, build_plan
from shared.receive.collect.request import HttpRequest, Refused
from shared.receive.collect.runtime import Runtime
from shared.receive.collect.schema import CollectBody, parse_body
from shared.receive.orders import JOIN_CUSTOMER, JOIN_SHOPIFY_CART, JOIN_SHOPIFY_CHECKOUT, JOIN_WOO_SESSION

PIXEL = "CTESTPIXEL01"
ORIGIN = "https://shop.example"
KEY = "public-collect-key"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36"
EMAIL_HASH = "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"  # " John.Doe@Example.COM "
PHONE_HASH = "9f7ec22d72092cd3c0b58726ed9c2d91b92e51a3f29837508fb2948bb22dd2fd"  # "+1 (213) 373-4253"
# Join keys shaped like the platforms' random tokens (shared.receive.collect.keys.SHAPES).
CART = "c1-7a2abe0f9c1d4e6b8a3f5c7d9e1b2a4c"
CHECKOUT = "4f0e9c2b7a1d6e3f8b5c0a9d2e7f1b3c"
SIGNING_SECRET = "collect-signing-secret"


def tenants(**pixel: Any) -> Tenants:
    config = {"pixel_code": PIXEL, "allowed_origins": [ORIGIN], "collect_keys": [KEY],
              "signing_secrets": [SIGNING_SECRET], **pixel}  # fmt: skip
    return Tenants(pixels={PIXEL: PixelConfig(**config)})


def body(**changes: Any) -> dict[str, Any]:
    document = {
        "pixel_code": PIXEL,
        "consent": {"ad_storage": "granted", "ad_user_data": "granted"},
        "context": {"ttclid": "E.C.P.click", "ttp": "ttp.1", "join_keys": {"shopify_cart_token": CART}},
        "events": [{"event": "AddToCart", "event_id": "evt-1"}],
    }
    document.update(changes)
    return document


def parse(document: dict[str, Any], max_events: int = 20) -> CollectBody:
    return parse_body(json.dumps(document).encode(), max_events)


class Recorder:
    """Stands in for Store and EventPublisher where a test only needs to see the calls."""

    def __init__(self) -> None:
        self.contexts: list[tuple] = []
        self.released: list[tuple] = []
        self.replaced: list[tuple] = []
        self.published: list = []

    def put_click_contexts(self, writes):
        for pixel_code, join_keys, context, ttl in writes:
            self.contexts.append((pixel_code, list(join_keys), context, ttl))
        return sum(len(list(join_keys)) for _, join_keys, _, _ in writes)

    def release(self, collection, key):
        self.released.append((collection, tuple(key)))

    def replace_click_contexts(self, pixel_code, join_keys, context, ttl):
        self.replaced.append((pixel_code, list(join_keys), context, ttl))
        return len(join_keys)

    def publish_async(self, envelopes, traceparents=None):
        from concurrent.futures import Future

        self.published += envelopes
        future = Future()
        future.set_result([str(i) for i, _ in enumerate(envelopes)])
        return future


def runtime(recorder: Recorder | None = None, **pixel: Any) -> Runtime:
    recorder = recorder or Recorder()
    return Runtime(tenants(**pixel), store_factory=lambda: recorder, publisher_factory=lambda: recorder)


def post(document: Any, *, headers: dict[str, str] | None = None, raw: bytes | None = None) -> HttpRequest:
    data = raw if raw is not None else json.dumps(document).encode()
    sent = {"origin": ORIGIN, "content-type": "text/plain;charset=UTF-8", "user-agent": CHROME}
    sent.update({k.lower(): v for k, v in (headers or {}).items()})
    sent = {k: v for k, v in sent.items() if v is not None}
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]  # short reads, as a socket gives

    def read(_n: int) -> bytes:
        return chunks.pop(0) if chunks else b""

    return HttpRequest("POST", sent, read, "198.51.100.7")


# --- origins and client address -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://Shop.Example", "https://shop.example"),
        ("https://shop.example:443", "https://shop.example"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("https://shop.example/", "https://shop.example"),
        ("null", None),
        ("", None),
        (None, None),
        ("https://shop.example/path", None),
        ("https://user@shop.example", None),
        ("ftp://shop.example", None),
        ("https://shop.example:99999", None),
    ],
)
def test_origins_are_compared_in_one_normal_form(value, expected):
    assert normalize_origin(value) == expected


@pytest.mark.parametrize(
    ("forwarded_for", "hops", "expected"),
    [
        # Directly on a Cloud Run / functions URL: Google's front end appends the client last.
        ("203.0.113.24", 0, "203.0.113.24"),
        ("1.2.3.4, 203.0.113.24", 0, "203.0.113.24"),  # a forged first entry is ignored
        # Behind an external Application Load Balancer: <client>, <forwarding rule address>.
        ("1.2.3.4, 203.0.113.24, 34.120.0.1", 1, "203.0.113.24"),
        ("2001:db8::1", 0, "2001:db8::1"),
        ("unknown", 0, None),
        ("203.0.113.24", 1, None),  # fewer entries than trusted hops: no address rather than a forged one
    ],
)
def test_the_client_address_is_the_entry_googles_front_end_appended(forwarded_for, hops, expected):
    assert client_ip(forwarded_for, "10.0.0.1", hops) == expected


def test_without_forwarded_for_the_peer_address_is_used():
    assert client_ip(None, "127.0.0.1") == "127.0.0.1"


# --- drops ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "user_agent",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/150.0.0.0 Safari/537.36",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 "
        "(compatible; Bytespider; spider-feedback@bytedance.com)",
        "Mozilla/5.0 (X11; Linux x86_64) Chrome-Lighthouse",
        "curl/8.5.0",
        "python-httpx/0.28.1",
        "",
    ],
)
def test_obvious_bots_are_dropped(user_agent):
    assert drop_reason(post({}, headers={"User-Agent": user_agent})) == "bot"


@pytest.mark.parametrize(
    "user_agent",
    [
        CHROME,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.0 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 9; CUBOT X19) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ],
)
def test_browsers_are_not_bots(user_agent):
    assert drop_reason(post({}, headers={"User-Agent": user_agent})) is None


@pytest.mark.parametrize(
    ("header", "value"),
    [("Sec-Purpose", "prefetch"), ("Sec-Purpose", "prefetch;prerender"), ("Purpose", "prefetch"),
     ("X-Moz", "prefetch"), ("X-Purpose", "preview")],
)  # fmt: skip
def test_prefetch_and_prerender_requests_are_dropped(header, value):
    assert drop_reason(post({}, headers={header: value})) == "prefetch"


def test_shopify_theme_preview_pages_are_recognized():
    assert is_preview_page("https://shop.example/products/x?preview_theme_id=1234")
    assert not is_preview_page("https://shop.example/products/x?ttclid=E.C.P.1")


# --- parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (body(pixel_code="bad code!"), "pixel_code"),
        (body(consent={"ad_storage": "yes"}), "consent.ad_storage"),
        (body(consent="granted"), "consent"),
        (body(consent={"marketingAllowed": "true"}), "consent.marketingAllowed"),
        (body(events=[{"event": "AddToCart"}]), "events[0].event_id"),
        (body(events=[{"event": "Add To Cart!", "event_id": "e"}]), "events[0].event"),
        (body(events=[{"event": "AddToCart", "event_id": "e", "event_time": "now"}]), "events[0].event_time"),
        (body(events=[{"event": "AddToCart", "event_id": "e", "event_time": True}]), "events[0].event_time"),
        (body(events=[{"event": "AddToCart", "event_id": "e", "properties": {"currency": "US$"}}]),
         "events[0].properties.currency"),
        (body(events=[{"event": "AddToCart", "event_id": "e", "properties": {"note": "x" * 10_000}}]),
         "events[0].properties"),
        (body(context={"page_url": "x" * 10_000}), "context.page_url"),
        (body(context={"ttclid": "x" * 10_000}), "context.ttclid"),
        (body(context={"user": {"email": ["x" * 10_000]}}), "context.user.email[0]"),
        (body(context={"join_keys": {"shopify_cart_token": "x" * 10_000}}), "context.join_keys.shopify_cart_token"),
        (body(context={"join_keys": {"basket": "1"}}), "context.join_keys.basket"),
        (body(events=[{"event": "AddToCart", "event_id": "x" * 10_000}]), "events[0].event_id"),
        (body(extra=1), "extra"),
    ],
)  # fmt: skip
def test_invalid_fields_are_refused_with_400_naming_the_field(document, field):
    with pytest.raises(Refused) as refused:
        parse(document)
    assert refused.value.status == 400
    assert field in [problem["field"] for problem in refused.value.fields]
    assert field in refused.value.reason


def test_error_messages_never_echo_the_values_sent():
    secret = "jane.doe@example.com"
    documents = [
        body(events=[{"event": secret, "event_id": "e"}]),
        body(context={"join_keys": {secret: "1"}}),
        body(consent={"ad_storage": secret}),
        body(context={"user": {"email": [secret * 20]}}),
    ]
    for document in documents:
        with pytest.raises(Refused) as refused:
            parse(document)
        assert "jane" not in json.dumps({"reason": refused.value.reason, "fields": refused.value.fields})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"{not json", "not valid JSON"), (b"[1, 2]", "JSON object"), (b"\xff\xfe", "not UTF-8"),
     (b"[" * 50_000 + b"]" * 50_000, "nested deeper than")],
)  # fmt: skip
def test_bodies_that_are_not_a_json_object_are_refused(raw, reason):
    with pytest.raises(Refused) as refused:
        parse_body(raw, 20)
    assert refused.value.status == 400 and reason in refused.value.reason


def test_more_events_than_allowed_are_refused():
    events = [{"event": "ViewContent", "event_id": f"e{i}"} for i in range(4)]
    with pytest.raises(Refused) as refused:
        parse(body(events=events), max_events=3)
    assert "at most 3 events" in refused.value.reason


@pytest.mark.parametrize(
    ("consent", "expected"),
    [
        (True, ConsentSnapshot(granted=True)),
        (False, ConsentSnapshot(granted=False)),
        ({"ad_storage": "granted", "ad_user_data": "granted", "ad_personalization": "denied"},
         ConsentSnapshot(ad_storage="granted", ad_user_data="granted", ad_personalization="denied")),
        ({"marketingAllowed": True, "saleOfDataAllowed": False, "analyticsProcessingAllowed": True},
         ConsentSnapshot(marketing_allowed=True, sale_of_data_allowed=False)),
        ({"marketing_allowed": False}, ConsentSnapshot(marketing_allowed=False)),
        (None, None),
    ],
)  # fmt: skip
def test_every_consent_vocabulary_becomes_one_snapshot(consent, expected):
    assert parse(body(consent=consent)).consent_snapshot() == expected


def test_a_shopify_cart_token_is_joined_without_its_key_parameter():
    keys = {"shopify_cart_token": "c1-7a2abe?key=824bdj", "customer_id": 42, "woocommerce_session": "s1"}
    pairs = parse(body(context={"join_keys": keys})).context.join_keys.pairs()
    assert pairs == [(JOIN_SHOPIFY_CART, "c1-7a2abe"), (JOIN_WOO_SESSION, "s1"), (JOIN_CUSTOMER, "42")]


# --- admission ------------------------------------------------------------------------------------


def test_an_unknown_pixel_is_refused():
    with pytest.raises(Refused) as refused:
        admit(parse(body(pixel_code="COTHER")), ORIGIN, tenants())
    assert refused.value.status == 403 and "COTHER" in refused.value.reason


def test_an_origin_of_another_pixel_is_refused():
    other = Tenants(
        pixels={
            PIXEL: PixelConfig(pixel_code=PIXEL, allowed_origins=[ORIGIN]),
            "COTHER": PixelConfig(pixel_code="COTHER", allowed_origins=["https://other.example"]),
        }
    )
    with pytest.raises(Refused) as refused:
        admit(parse(body()), "https://other.example", other)
    assert "not allowed for pixel" in refused.value.reason


def test_a_key_admits_a_request_without_origin_but_never_a_foreign_origin():
    assert admit(parse(body(key=KEY)), None, tenants()).pixel_code == PIXEL
    with pytest.raises(Refused):
        admit(parse(body(key=KEY)), "https://evil.example", tenants())
    with pytest.raises(Refused) as refused:
        admit(parse(body()), None, tenants())
    assert "collect key" in refused.value.reason
    with pytest.raises(Refused) as refused:
        admit(parse(body(key="wrong")), None, tenants())
    assert refused.value.reason.startswith("key:")


def test_a_wrong_key_is_refused_even_from_an_allowed_origin():
    with pytest.raises(Refused):
        admit(parse(body(key="wrong")), ORIGIN, tenants())


# --- the plan: context and envelopes ---------------------------------------------------------------


def plan_for(document: dict[str, Any], policy: str = "opt-in", received: int | None = None) -> Plan:
    parsed = parse(document)
    decision = decide(parsed.consent_snapshot(), policy)
    return build_plan(
        parsed, tenants().pixel(PIXEL), decision, ip="203.0.113.24", user_agent=CHROME,
        accept_language="fr-FR,fr;q=0.9", received=received,
    )  # fmt: skip


def test_the_context_holds_click_ids_consent_and_only_hashed_identifiers():
    document = body(
        context={
            "ttclid": "E.C.P.click",
            "ttp": "ttp.1",
            "page_url": "https://shop.example/p?ttclid=E.C.P.click",
            "join_keys": {
                "shopify_checkout_token": CHECKOUT,
                "customer_id": "7",
                "customer_id_signature": sign_customer_id("7", SIGNING_SECRET),
            },
            "user": {"email": " John.Doe@Example.COM ", "phone": ["+1 (213) 373-4253"], "external_id": "user_123"},
        }
    )
    plan = plan_for(document)
    assert plan.join_keys == [(JOIN_SHOPIFY_CHECKOUT, CHECKOUT), (JOIN_CUSTOMER, "7")]
    assert plan.context == {
        "ttclid": "E.C.P.click",
        "ttp": "ttp.1",
        "consent": ConsentSnapshot(ad_storage="granted", ad_user_data="granted").model_dump(),
        "page_url": "https://shop.example/p?ttclid=E.C.P.click",
        "ip": "203.0.113.24",
        "user_agent": CHROME,
        "locale": "fr-FR",
        "user": {
            "email": [EMAIL_HASH],
            "phone": [PHONE_HASH],
            "external_id": ["80fba0ae1c48e3978e43e4efc365e14e12ea0c830ba8ba5b9a2dafc7e3f2ab8b"],
        },
        "customer_key": hashlib.sha256(b"7").hexdigest(),
    }
    assert "john" not in json.dumps(plan.context).lower()


def test_envelopes_carry_the_pages_event_id_and_the_hashed_user():
    document = body(
        context={"ttclid": "E.C.P.click", "page_url": "https://shop.example/p", "user": {"email": "a@b.example"}},
        events=[
            {"event": "AddToCart", "event_id": "evt-1", "properties": {"currency": "EUR", "value": 12.5}},
            {"event": "SubmitForm", "event_id": "evt-2", "page": {"url": "https://shop.example/thanks"}},
        ],
    )
    envelopes = plan_for(document).envelopes
    assert [(e.event, e.event_id, e.source) for e in envelopes] == [
        ("AddToCart", "evt-1", "collect"),
        ("Lead", "evt-2", "collect"),  # legacy name mapped (a browser Purchase: test_collect_purchases.py)
    ]
    first = envelopes[0]
    assert first.user.email == [hashlib.sha256(b"a@b.example").hexdigest()]
    assert (first.user.ttclid, first.user.ip, first.page.url) == (
        "E.C.P.click",
        "203.0.113.24",
        "https://shop.example/p",
    )
    assert envelopes[1].page.url == "https://shop.example/thanks"
    assert (first.properties.currency, first.properties.value, first.consent) == ("EUR", 12.5, "granted")


def test_order_event_ids_are_left_to_the_order_webhook():
    order_id = "shopify:shop.myshopify.com:order:820982911946154508:Purchase"
    document = body(events=[{"event": "Purchase", "event_id": order_id}, {"event": "ViewContent", "event_id": "v1"}])
    plan = plan_for(document)
    assert [e.event_id for e in plan.envelopes] == ["v1"]
    assert plan.skipped == [{"event_id": order_id, "reason": "order events are sent by the order webhook"}]


def test_an_event_repeated_in_one_request_is_published_once():
    events = [{"event": "ViewContent", "event_id": "v1"}] * 3
    plan = plan_for(body(events=events))
    assert len(plan.envelopes) == 1 and len(plan.skipped) == 2


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (1_780_000_000, 1_780_000_000),  # seconds
        (1_780_000_000_123, 1_780_000_000),  # Date.now() milliseconds
        (1_780_000_000.9, 1_780_000_000),
        (1_780_000_000 - 3 * 86_400, 1_780_000_000 - 3 * 86_400),  # days back, inside COLLECT_MAX_EVENT_AGE_DAYS
        (1_780_000_000 - 8 * 86_400, 1_780_000_100),  # a page clock more than 7 days behind: time of receipt
        (1_780_000_000 + 3_600, 1_780_000_100),  # an hour ahead: time of receipt
        (None, 1_780_000_100),
    ],
)
def test_event_time_is_unix_seconds_from_seconds_or_milliseconds(sent, expected):
    event = {"event": "ViewContent", "event_id": "v1"} | ({} if sent is None else {"event_time": sent})
    plan = plan_for(body(events=[event]), received=1_780_000_100)
    assert plan.envelopes[0].event_time == expected


def test_a_sale_of_data_opt_out_publishes_with_limited_data_use():
    plan = plan_for(body(consent={"marketingAllowed": True, "saleOfDataAllowed": False}))
    assert plan.envelopes[0].limited_data_use is True and plan.decision.reason == "granted"


# --- the whole request, with recording stand-ins ------------------------------------------------------


def test_a_consented_request_stores_the_context_under_its_join_keys_and_publishes():
    recorder = Recorder()
    reply = handle(post(body()), runtime(recorder, click_ttl_days=14))
    assert (reply.status, reply.outcome.kind) == (200, "accepted")
    assert reply.headers["Access-Control-Allow-Origin"] == ORIGIN
    [(pixel, keys, context, ttl)] = recorder.contexts
    assert (pixel, keys, ttl.days) == (PIXEL, [(JOIN_SHOPIFY_CART, CART)], 14)
    assert context["ip"] == "198.51.100.7"  # no X-Forwarded-For: the peer
    assert [e.event_id for e in recorder.published] == ["evt-1"]


@pytest.mark.parametrize("consent", [None, {"ad_storage": "granted"}, {"analyticsProcessingAllowed": True}])
def test_without_a_grant_under_opt_in_nothing_is_stored_or_published(consent):
    recorder = Recorder()
    reply = handle(post(body(consent=consent)), runtime(recorder))
    assert (reply.status, reply.outcome.kind, reply.body) == (204, "withheld_consent", None)
    assert recorder.contexts == recorder.published == recorder.released == []


def test_an_explicit_denial_replaces_the_context_with_the_denial_alone_and_publishes_nothing():
    recorder = Recorder()
    reply = handle(post(body(consent={"marketingAllowed": False})), runtime(recorder, click_ttl_days=14))
    assert reply.status == 204 and reply.headers["X-Collect-Consent"] == "denied"
    [(pixel, keys, context, ttl)] = recorder.replaced
    assert (pixel, keys, ttl.days) == (PIXEL, [(JOIN_SHOPIFY_CART, CART)], 14)
    # The answer alone: no ttclid, ttp, ip, user agent, URL or identifier of the request is kept.
    assert list(context) == ["consent"] and context["consent"]["marketing_allowed"] is False
    assert decide(ConsentSnapshot.model_validate(context["consent"]), "opt-out").reason == "denied"
    assert recorder.contexts == recorder.published == recorder.released == []


def test_a_denial_repeated_by_the_page_is_written_once_per_instance_and_a_later_grant_again():
    recorder = Recorder()
    collect = runtime(recorder)
    denial = body(consent={"granted": False}, events=[])
    for _ in range(3):
        unchanged = {**denial, "context": {**denial["context"], "unchanged": True}}
        assert handle(post(unchanged), collect).status == 204
    assert len(recorder.replaced) == 1  # the first is written (this instance had not), the repeats are not
    grant = body(consent={"granted": True}, events=[])
    grant["context"]["unchanged"] = True  # even a (wrong) unchanged hint cannot skip the grant after a denial
    assert handle(post(grant), collect).status == 200
    assert len(recorder.contexts) == 1 and recorder.contexts[0][2]["consent"]["granted"] is True


def test_a_denial_under_unproven_keys_stores_nothing():
    recorder = Recorder()
    guessed = body(consent={"granted": False}, context={"join_keys": {"customer_id": "7", "woocommerce_session": "1"}})
    reply = handle(post(guessed), runtime(recorder))
    assert reply.status == 204 and "customer_id" in reply.headers["X-Collect-Ignored"]
    assert recorder.replaced == recorder.contexts == recorder.released == []


@pytest.mark.parametrize("policy", ["opt-in", "opt-out"])
def test_sec_gpc_flags_the_events_limited_data_use_and_is_stored_with_the_context(policy):
    recorder = Recorder()
    consent = {"granted": True} if policy == "opt-in" else None
    reply = handle(post(body(consent=consent), headers={"Sec-GPC": "1"}), runtime(recorder, consent_policy=policy))
    assert reply.status == 200 and reply.body["limited_data_use"] is True
    assert recorder.published[0].limited_data_use is True
    assert recorder.contexts[0][2]["consent"]["gpc"] is True


def test_sec_gpc_under_a_pixel_set_to_deny_is_a_stored_denial():
    recorder = Recorder()
    reply = handle(post(body(), headers={"Sec-GPC": "1"}), runtime(recorder, consent_policy="opt-out", gpc="deny"))
    assert reply.status == 204 and reply.headers["X-Collect-Consent"] == "denied"
    assert recorder.published == recorder.contexts == []
    [(_, _, context, _)] = recorder.replaced
    assert context == {"consent": {**ConsentSnapshot().model_dump(), "ad_storage": "granted",
                                   "ad_user_data": "granted", "gpc": True}}  # fmt: skip


def test_opt_out_policy_sends_without_a_consent_signal():
    recorder = Recorder()
    reply = handle(post(body(consent=None)), runtime(recorder, consent_policy="opt-out"))
    assert reply.status == 200 and recorder.published[0].consent == "policy_opt_out"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Content-Type": None}, 415),
        ({"Content-Length": "999999"}, 413),
        ({"Content-Length": "abc"}, 413),
        ({"Origin": "https://evil.example"}, 403),
        ({"Origin": "not an origin"}, 403),
        ({"Origin": None}, 403),  # no Origin and no key
    ],
)
def test_bad_requests_get_a_clear_4xx_and_touch_nothing(headers, status):
    recorder = Recorder()
    reply = handle(post(body(), headers=headers), runtime(recorder))
    assert reply.status == status and reply.body["reason"]
    assert recorder.contexts == recorder.published == recorder.released == []


def test_the_body_limit_holds_on_bytes_read_even_when_content_length_lies():
    big = json.dumps(body(context={"page_url": "https://shop.example/?" + "a" * 1500})).encode()
    request = post(None, raw=big, headers={"Content-Length": "10"})
    small = Runtime(tenants(), max_body_bytes=1024)
    reply = handle(request, small)
    assert reply.status == 413 and "1024 bytes" in reply.body["reason"]


def test_preflight_answers_allowed_origins_only():
    allowed = handle(HttpRequest("OPTIONS", {"origin": ORIGIN}), runtime())
    assert allowed.status == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert allowed.headers["Access-Control-Allow-Headers"] == "Content-Type"
    refused = handle(HttpRequest("OPTIONS", {"origin": "https://evil.example"}), runtime())
    assert refused.status == 403 and "Access-Control-Allow-Origin" not in refused.headers


def test_a_keyed_request_from_shopifys_sandbox_is_admitted_with_origin_null():
    recorder = Recorder()
    reply = handle(post(body(key=KEY), headers={"Origin": "null"}), runtime(recorder))
    # Its answer is readable by the sandbox (the opaque origin "null", never "*"), which retries a non-2xx.
    assert reply.status == 200 and reply.headers["Access-Control-Allow-Origin"] == "null"
    assert "Access-Control-Allow-Credentials" not in reply.headers
    assert len(recorder.published) == 1


def test_a_null_origin_request_with_a_wrong_key_gets_no_readable_answer():
    reply = handle(post(body(key="wrong-key"), headers={"Origin": "null"}), runtime())
    assert reply.status == 403 and "Access-Control-Allow-Origin" not in reply.headers


def test_other_methods_are_refused():
    reply = handle(HttpRequest("PUT", {"origin": ORIGIN}), runtime())
    assert reply.status == 405 and reply.headers["Allow"] == "POST, OPTIONS"


@pytest.mark.parametrize("broken", ["put_click_contexts", "publish_async", "publish_result"])
def test_a_failing_store_or_publisher_answers_503_naming_it_never_500(broken):
    from concurrent.futures import Future

    class Broken(Recorder):
        pass

    def fail(*args, **kwargs):
        raise RuntimeError("unavailable")

    def failed_future(*args, **kwargs):
        future = Future()
        future.set_exception(RuntimeError("deadline exceeded"))
        return future

    if broken == "publish_result":
        Broken.publish_async = failed_future
    else:
        setattr(Broken, broken, fail)
    reply = handle(post(body()), runtime(Broken()))
    assert reply.status == 503 and reply.headers["Retry-After"]
    assert ("firestore" if broken == "put_click_contexts" else "pubsub") in reply.body["reason"]


def test_preview_pages_are_dropped_after_admission():
    recorder = Recorder()
    document = body(context={"page_url": "https://shop.example/?preview_theme_id=1", "join_keys": {"customer_id": 1}})
    reply = handle(post(document), runtime(recorder))
    assert (reply.status, reply.outcome.kind) == (204, "dropped_preview")
    assert recorder.contexts == recorder.published == []


def test_clients_are_made_once_per_instance_on_first_use_even_under_concurrent_requests():
    from concurrent.futures import ThreadPoolExecutor

    made: list[str] = []
    recorder = Recorder()

    def factory(name: str):
        def make():
            made.append(name)
            return recorder

        return make

    shared_runtime = Runtime(tenants(), store_factory=factory("store"), publisher_factory=factory("publisher"))
    assert made == []  # nothing at start: a health check or a refused request never builds a client
    handle(post(body(), headers={"Origin": "https://evil.example"}), shared_runtime)
    assert made == []
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda _: handle(post(body()), shared_runtime), range(16)))
    assert {r.status for r in replies} == {200}
    assert sorted(made) == ["publisher", "store"]


@pytest.mark.parametrize("broken", ["store", "publisher"])
def test_a_client_that_cannot_be_made_answers_503_naming_it(broken):
    def cannot_make():
        raise RuntimeError("no credentials")

    recorder = Recorder()
    factories = {"store_factory": lambda: recorder, "publisher_factory": lambda: recorder}
    factories[f"{broken}_factory"] = cannot_make
    reply = handle(post(body()), Runtime(tenants(), **factories))
    assert reply.status == 503
    assert ("firestore" if broken == "store" else "pubsub") in reply.body["reason"]
