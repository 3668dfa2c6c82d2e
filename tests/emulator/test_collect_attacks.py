"""Consent and clicks bound to the shopper: four attacks on them, each failing.

Each test posts through the real collect function (functions-framework's test
client, Firestore and Pub/Sub emulators), as a third party would: a forged
``Origin`` or the public collect key, a guessed customer id. Then the order
webhook's join runs as the webhooks run it (:func:`shared.receive.orders.process_order_event`
on the same Firestore, publishing to the same topic), and the test reads what
reached the topic.

The order events are built with the join keys the platform mappings give
(``shared.receive.shopify.mapping.join_keys``: checkout token, cart token, customer id;
``shared.receive.woocommerce``: order key, session, customer id).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import pytest

from shared.config import PixelConfig
from shared.domain.identity import RawIdentity
from shared.outcome import Outcome
from shared.receive.collect.keys import sign_customer_id
from shared.receive.orders import (
    JOIN_CUSTOMER,
    JOIN_SHOPIFY_CART,
    JOIN_SHOPIFY_CHECKOUT,
    JOIN_WOO_ORDER_KEY,
    JOIN_WOO_SESSION,
    OrderEvent,
    process_order_event,
)
from tests.conftest import decode_message
from tests.emulator.test_collect_function import (  # noqa: F401 (fixtures)
    KEY,
    ORIGIN,
    PIXEL,
    SIGNING_SECRET,
    Collect,
    make_collect,
    request_body,
)

SHOP = "victim-shop.myshopify.com"
SITE = "woo.victim.example"
VICTIM_EMAIL = "victim@example.com"
ATTACKER_EMAIL = "attacker@example.net"
ATTACKER_CLICK = "E.C.P.attacker-click"


@pytest.fixture
def collect(make_collect) -> Collect:  # noqa: F811
    return make_collect()


def shopper_post(collect: Collect, *, consent: Any, ttclid: str | None, join_keys: dict[str, str], **extra: Any):
    """What a browser page sends: only the context (the Purchase belongs to the webhook)."""
    context = {"ttclid": ttclid, "ttp": "ttp.shopper", "join_keys": join_keys, **extra}
    document = request_body("unused", consent=consent, context={k: v for k, v in context.items() if v is not None},
                            events=[])  # fmt: skip
    return collect.post(document)


def attacker_post(collect: Collect, *, consent: Any, join_keys: dict[str, str], forged_origin: bool = True):
    """A script, not a browser: a forged allowed Origin, or no Origin and the public collect key."""
    context = {"ttclid": ATTACKER_CLICK, "ttp": "ttp.attacker", "join_keys": join_keys,
               "user": {"email": ATTACKER_EMAIL}}  # fmt: skip
    document = request_body("unused", consent=consent, context=context, events=[])
    if forged_origin:
        return collect.post(document, headers={"Origin": ORIGIN})
    document["key"] = KEY
    return collect.post(document, headers={"Origin": None})


def order(platform: str, order_id: str, keys: list[tuple[str, str]], email: str = VICTIM_EMAIL) -> OrderEvent:
    shop = SHOP if platform == "shopify" else SITE
    identity = RawIdentity(emails=[email], ip="198.51.100.20", user_agent="Mozilla/5.0 victim")
    return OrderEvent(platform, shop, order_id, "Purchase", int(time.time()), identity,
                      {"currency": "USD", "value": 80.0, "order_id": order_id}, join_keys=keys)  # fmt: skip


def webhook(collect: Collect, event: OrderEvent) -> tuple[Outcome, list[dict]]:
    """The order webhook's join and publish, then what reached the topic."""
    from shared.infra.pubsub import EventPublisher, make_publisher_client

    publisher = EventPublisher(make_publisher_client(), collect.topic.project, collect.topic.topic)
    outcome = process_order_event(event, pixel=PixelConfig(pixel_code=PIXEL), policy="opt-in", store=collect.store,
                                  publisher=publisher, default_region="US")  # fmt: skip
    published = (
        [decode_message(m) for m in collect.topic.pull_all(1, timeout=3.0)] if outcome.kind == "published" else []
    )
    return outcome, published


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def shopify_id() -> str:
    return str(uuid.uuid4().int % 10**13)


def token() -> str:
    return uuid.uuid4().hex


GRANT = {"marketingAllowed": True, "saleOfDataAllowed": True}
DENY = {"marketingAllowed": False, "saleOfDataAllowed": False}


# --- (a) consent granted for a shopper who never consented ------------------------------------------------


@pytest.mark.parametrize("forged_origin", [True, False], ids=["forged origin", "public collect key"])
def test_a_third_party_cannot_grant_consent_for_a_customer_id(collect, forged_origin):
    victim = shopify_id()
    answer = attacker_post(collect, consent=GRANT, join_keys={"customer_id": victim}, forged_origin=forged_origin)
    assert answer.status_code == 200
    [ignored] = answer.get_json()["ignored"]
    assert ignored["field"] == "context.join_keys.customer_id" and "customer_id_signature" in ignored["reason"]
    assert answer.headers["X-Collect-Ignored"] == "context.join_keys.customer_id"
    assert collect.store.find_click_context(PIXEL, [(JOIN_CUSTOMER, victim)]) is None

    # The victim never consented: under opt-in their order must not be published at all.
    keys = [(JOIN_SHOPIFY_CHECKOUT, token()), (JOIN_SHOPIFY_CART, token()), (JOIN_CUSTOMER, victim)]
    outcome, published = webhook(collect, order("shopify", shopify_id(), keys))
    assert outcome.kind == "withheld_consent" and published == []


def test_a_forged_signature_or_one_under_another_secret_is_no_better_than_none(collect):
    victim = shopify_id()
    for forged in (
        "0" * 64,
        sign_customer_id(victim, "a-guessed-secret"),
        sign_customer_id(shopify_id(), SIGNING_SECRET),
    ):
        keys = {"customer_id": victim, "customer_id_signature": forged}
        answer = attacker_post(collect, consent=GRANT, join_keys=keys)
        assert answer.status_code == 200
        assert "not HMAC-SHA256" in answer.get_json()["ignored"][0]["reason"]
    assert collect.store.find_click_context(PIXEL, [(JOIN_CUSTOMER, victim)]) is None


# --- (b) a consented shopper's click id overwritten ------------------------------------------------------


def test_a_third_party_cannot_overwrite_a_consented_shoppers_click(collect):
    victim, checkout = shopify_id(), token()
    signed = {"customer_id": victim, "customer_id_signature": sign_customer_id(victim, SIGNING_SECRET)}
    answer = shopper_post(collect, consent=GRANT, ttclid="E.C.P.victim-click",
                          join_keys={"shopify_checkout_token": checkout, **signed})  # fmt: skip
    assert answer.status_code == 200 and answer.get_json()["click_context"] == 2

    # Guessing the customer id, or a short "token", gets the attacker nothing stored.
    assert attacker_post(collect, consent=GRANT, join_keys={"customer_id": victim}).status_code == 200
    assert attacker_post(collect, consent=GRANT, join_keys={"shopify_checkout_token": "1001"}).status_code == 200
    for kind, value in ((JOIN_CUSTOMER, victim), (JOIN_SHOPIFY_CHECKOUT, checkout)):
        stored = collect.store.find_click_context(PIXEL, [(kind, value)])
        assert stored["ttclid"] == "E.C.P.victim-click" and "user" not in stored

    keys = [(JOIN_SHOPIFY_CHECKOUT, checkout), (JOIN_SHOPIFY_CART, token()), (JOIN_CUSTOMER, victim)]
    outcome, [envelope] = webhook(collect, order("shopify", shopify_id(), keys))
    assert outcome.kind == "published"
    assert envelope["user"]["ttclid"] == "E.C.P.victim-click"
    assert envelope["user"]["email"] == [sha(VICTIM_EMAIL)]  # no second email hash rides along

    # The customer id alone (another device, say) joins too, because the store's server signed it.
    outcome, [envelope] = webhook(collect, order("shopify", shopify_id(), [(JOIN_CUSTOMER, victim)]))
    assert envelope["user"]["ttclid"] == "E.C.P.victim-click" and envelope["consent"] == "granted"


# --- (c) a posted withdrawal deletes a shopper's context ------------------------------------------------


def test_a_third_party_cannot_withdraw_a_shoppers_consent(collect):
    victim, checkout, own_cart = shopify_id(), token(), token()
    signed = {"customer_id": victim, "customer_id_signature": sign_customer_id(victim, SIGNING_SECRET)}
    assert shopper_post(collect, consent=GRANT, ttclid="E.C.P.victim-click",
                        join_keys={"shopify_checkout_token": checkout, **signed}).status_code == 200  # fmt: skip

    # A denial with the victim's (unsigned) customer id next to the attacker's own, valid cart token:
    # consent posted for one key never changes the consent stored under another.
    answer = attacker_post(collect, consent=DENY, join_keys={"customer_id": victim, "shopify_cart_token": own_cart})
    assert answer.status_code == 204 and answer.headers["X-Collect-Ignored"] == "context.join_keys.customer_id"
    stored = collect.store.find_click_context(PIXEL, [(JOIN_CUSTOMER, victim)])
    assert stored["consent"]["marketing_allowed"] is True

    outcome, [envelope] = webhook(collect, order("shopify", shopify_id(), [(JOIN_CUSTOMER, victim)]))
    assert outcome.kind == "published" and envelope["user"]["ttclid"] == "E.C.P.victim-click"


def test_the_shopper_can_still_withdraw_their_own_consent(collect):
    victim, checkout = shopify_id(), token()
    signed = {"customer_id": victim, "customer_id_signature": sign_customer_id(victim, SIGNING_SECRET)}
    keys = {"shopify_checkout_token": checkout, **signed}
    assert shopper_post(collect, consent=GRANT, ttclid="E.C.P.mine", join_keys=keys).status_code == 200
    assert shopper_post(collect, consent=DENY, ttclid=None, join_keys=keys).status_code == 204
    # The withdrawal replaces the context under both keys with the "no" alone: no click id, no identifier.
    for key in ((JOIN_CUSTOMER, victim), (JOIN_SHOPIFY_CHECKOUT, checkout)):
        stored = collect.store.find_click_context(PIXEL, [key])
        assert set(stored) == {"consent", "pixel_code", "join_kind", "updated_at", "expire_at"}
        assert stored["consent"]["marketing_allowed"] is False
    outcome, published = webhook(collect, order("shopify", shopify_id(), [(JOIN_CUSTOMER, victim)]))
    assert outcome.kind == "withheld_consent" and published == []


# --- (d) the same on WooCommerce, whose customer ids are small sequential integers --------------------


def test_woocommerce_customer_ids_cannot_be_used_to_grant_overwrite_or_withdraw(collect):
    customer = str(uuid.uuid4().int % 90 + 10)  # 10..99: what a small shop's ids look like
    session, order_key = token(), "wc_order_" + uuid.uuid4().hex[:13]
    # The never-consented shopper's order: a third party grants with their customer id.
    attacker_post(collect, consent=GRANT, join_keys={"customer_id": customer})
    keys = [(JOIN_WOO_ORDER_KEY, "wc_order_" + uuid.uuid4().hex[:13]), (JOIN_CUSTOMER, customer)]
    outcome, published = webhook(collect, order("woocommerce", str(uuid.uuid4().int % 10**6), keys))
    assert outcome.kind == "withheld_consent" and published == []

    # The shopper consents on the site (session cookie + the id the PHP snippet signed).
    signed = {"customer_id": customer, "customer_id_signature": sign_customer_id(customer, SIGNING_SECRET)}
    assert shopper_post(collect, consent={"granted": True}, ttclid="E.C.P.woo-shopper",
                        join_keys={"woocommerce_session": session, **signed}).status_code == 200  # fmt: skip
    # Overwrite and withdraw, by customer id and by guessable session and order-key values.
    for guess in ({"customer_id": customer}, {"woocommerce_session": "1"}, {"woocommerce_order_key": "wc_order_1"}):
        assert attacker_post(collect, consent={"granted": True}, join_keys=guess).status_code == 200
        assert attacker_post(collect, consent={"granted": False}, join_keys=guess).status_code == 204

    keys = [(JOIN_WOO_ORDER_KEY, order_key), (JOIN_WOO_SESSION, session), (JOIN_CUSTOMER, customer)]
    outcome, [envelope] = webhook(collect, order("woocommerce", str(uuid.uuid4().int % 10**6), keys))
    assert outcome.kind == "published"
    assert envelope["user"]["ttclid"] == "E.C.P.woo-shopper" and envelope["user"]["email"] == [sha(VICTIM_EMAIL)]


# --- the signing secret -----------------------------------------------------------------------------------


def test_comma_separated_signing_secrets_accept_either_during_rotation(make_collect):  # noqa: F811
    collect = make_collect(COLLECT_SIGNING_SECRET=f"new-secret,{SIGNING_SECRET}")
    for secret in ("new-secret", SIGNING_SECRET):
        customer = shopify_id()
        signed = {"customer_id": customer, "customer_id_signature": sign_customer_id(customer, secret)}
        answer = shopper_post(collect, consent=GRANT, ttclid="E.C.P.rotated", join_keys=signed)
        assert answer.status_code == 200 and "ignored" not in answer.get_json()
        assert collect.store.find_click_context(PIXEL, [(JOIN_CUSTOMER, customer)])["ttclid"] == "E.C.P.rotated"


def test_without_a_signing_secret_no_customer_id_is_a_join_key(make_collect):  # noqa: F811
    collect = make_collect(COLLECT_SIGNING_SECRET="")
    customer = shopify_id()
    signed = {"customer_id": customer, "customer_id_signature": sign_customer_id(customer, SIGNING_SECRET)}
    answer = shopper_post(collect, consent=GRANT, ttclid="E.C.P.x", join_keys=signed)
    assert "COLLECT_SIGNING_SECRET is not set" in answer.get_json()["ignored"][0]["reason"]
    assert collect.store.find_click_context(PIXEL, [(JOIN_CUSTOMER, customer)]) is None
