"""A click context is written when it changed, not on every event; the page's word never decides consent.

Through the real collect function on the Firestore and Pub/Sub emulators: a
session (a landing with a ttclid, then five more events that say their context
is ``unchanged``) writes its context once, while every change the flag could
hide (consent, click, a key this instance never wrote, a context deleted by a
denial) is written all the same.
"""

from __future__ import annotations

import uuid
from typing import Any

from shared.receive.collect.commit import KnownContexts, context_digest
from shared.receive.orders import JOIN_SHOPIFY_CART
from tests.emulator.test_collect_function import PIXEL, Collect, make_collect, request_body  # noqa: F401 (fixtures)

GRANT = {"marketingAllowed": True, "saleOfDataAllowed": True}
LIMITED = {"marketingAllowed": True, "saleOfDataAllowed": False}
DENY = {"marketingAllowed": False, "saleOfDataAllowed": False}


def session_post(collect: Collect, cart: str, *, unchanged: bool, consent: Any = GRANT, **context: Any):
    document = request_body(cart, consent=consent)
    document["context"].update(context)
    if unchanged:
        document["context"]["unchanged"] = True
    return collect.post(document)


def stored(collect: Collect, cart: str) -> dict[str, Any] | None:
    return collect.store.find_click_context(PIXEL, [(JOIN_SHOPIFY_CART, cart)])


def test_a_session_writes_its_context_once_and_publishes_every_event(make_collect):  # noqa: F811
    collect = make_collect()
    cart = uuid.uuid4().hex
    landing = session_post(collect, cart, unchanged=False)
    assert landing.status_code == 200 and landing.get_json()["click_context"] == 1
    written = stored(collect, cart)["updated_at"]
    for _ in range(5):
        answer = session_post(collect, cart, unchanged=True, page_url=f"https://shop.example/p/{uuid.uuid4().hex}")
        assert answer.status_code == 200
        assert answer.get_json()["click_context"] == 0 and answer.get_json()["click_context_unchanged"] == 1
    assert stored(collect, cart)["updated_at"] == written  # not written again
    assert len(collect.published(6)) == 6 and collect.nothing_published()


def test_a_new_consent_is_written_whatever_the_page_says(make_collect):  # noqa: F811
    collect = make_collect()
    cart = uuid.uuid4().hex
    session_post(collect, cart, unchanged=False)
    answer = session_post(collect, cart, unchanged=True, consent=LIMITED)
    assert answer.get_json()["click_context"] == 1
    assert stored(collect, cart)["consent"]["sale_of_data_allowed"] is False


def test_a_new_click_is_written_whatever_the_page_says(make_collect):  # noqa: F811
    collect = make_collect()
    cart = uuid.uuid4().hex
    session_post(collect, cart, unchanged=False)
    assert session_post(collect, cart, unchanged=True, ttclid="E.C.P.second").get_json()["click_context"] == 1
    assert stored(collect, cart)["ttclid"] == "E.C.P.second"


def test_a_context_this_instance_never_wrote_is_written_whatever_the_page_says(make_collect):  # noqa: F811
    collect = make_collect()
    cart = uuid.uuid4().hex
    answer = session_post(collect, cart, unchanged=True)
    assert answer.get_json()["click_context"] == 1 and stored(collect, cart)["consent"]["marketing_allowed"] is True


def test_a_grant_after_a_denial_is_written_again_though_the_page_says_unchanged(make_collect):  # noqa: F811
    collect = make_collect()
    cart = uuid.uuid4().hex
    session_post(collect, cart, unchanged=False)
    assert session_post(collect, cart, unchanged=True, consent=DENY).status_code == 204
    denial = stored(collect, cart)  # the denial alone replaced the grant's context
    assert "ttclid" not in denial and "user" not in denial and denial["consent"]["marketing_allowed"] is False
    assert session_post(collect, cart, unchanged=True).get_json()["click_context"] == 1
    assert stored(collect, cart)["consent"]["marketing_allowed"] is True


def test_a_denial_repeated_on_each_page_is_written_once_and_the_grant_after_it_again(make_collect):  # noqa: F811
    collect = make_collect()
    cart = uuid.uuid4().hex
    assert session_post(collect, cart, unchanged=False, consent=DENY).status_code == 204
    first = stored(collect, cart)["updated_at"]
    for _ in range(3):  # the next pages: the same denial, which this instance already wrote
        assert session_post(collect, cart, unchanged=True, consent=DENY).status_code == 204
    assert stored(collect, cart)["updated_at"] == first
    # Without the page's hint the denial is written again (it may have been replaced elsewhere since).
    assert session_post(collect, cart, unchanged=False, consent=DENY).status_code == 204
    assert stored(collect, cart)["updated_at"] > first
    assert session_post(collect, cart, unchanged=True).get_json()["click_context"] == 1
    assert stored(collect, cart)["consent"]["marketing_allowed"] is True


def test_without_the_flag_every_request_writes_as_before(make_collect):  # noqa: F811
    collect = make_collect()
    cart = uuid.uuid4().hex
    for _ in range(3):
        assert session_post(collect, cart, unchanged=False).get_json()["click_context"] == 1


def test_the_flag_must_be_a_boolean(make_collect):  # noqa: F811
    collect = make_collect()
    document = request_body(uuid.uuid4().hex)
    document["context"]["unchanged"] = "yes"
    answer = collect.post(document)
    assert answer.status_code == 400 and "context.unchanged" in answer.get_data(as_text=True)


# --- the instance's memory, pure ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_known_contexts_need_every_key_with_the_same_digest_and_expire():
    clock = Clock()
    known = KnownContexts(max_entries=10, seconds=60, clock=clock)
    keys = [("shopify_cart_token", "a" * 32), ("customer_id", "7001")]
    known.remember("P", keys, "d1")
    assert known.known("P", keys, "d1")
    assert not known.known("P", keys, "d2")  # something changed
    assert not known.known("Q", keys, "d1")  # another pixel
    assert not known.known("P", [*keys, ("shopify_checkout_token", "b" * 32)], "d1")  # a key not written here
    assert not known.known("P", [], "d1")
    clock.now += 61
    assert not known.known("P", keys, "d1")


def test_known_contexts_stay_bounded_and_forget_on_denial():
    known = KnownContexts(max_entries=3, seconds=60, clock=Clock())
    for index in range(5):
        known.remember("P", [("k", str(index))], "d")
    assert not known.known("P", [("k", "0")], "d") and known.known("P", [("k", "4")], "d")
    known.forget("P", [("k", "4")])
    assert not known.known("P", [("k", "4")], "d")


def test_the_digest_ignores_the_page_and_what_a_merge_keeps_but_not_consent_or_clicks():
    base = {"ttclid": "E.C.P.1", "consent": {"granted": True}, "page_url": "https://a.example/1", "ip": None}
    assert context_digest(base) == context_digest({**base, "page_url": "https://a.example/2"})
    assert context_digest(base) == context_digest({k: v for k, v in base.items() if k != "ip"})
    assert context_digest(base) != context_digest({**base, "consent": {"granted": False}})
    assert context_digest(base) != context_digest({**base, "ttclid": "E.C.P.2"})
