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
