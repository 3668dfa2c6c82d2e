"""An instance's memory of the click contexts it wrote: every key with the same digest, bounded, forgotten on a
denial.
"""

from __future__ import annotations

from shared.receive.collect.commit import KnownContexts, context_digest

GRANT = {"marketingAllowed": True, "saleOfDataAllowed": True}


LIMITED = {"marketingAllowed": True, "saleOfDataAllowed": False}


DENY = {"marketingAllowed": False, "saleOfDataAllowed": False}


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
