"""The match keys of an event: named when present, scored by coverage, counted by name and never by value."""

from __future__ import annotations

from shared.domain import match_keys
from shared.domain.models import UserData
from shared.infra.metrics import Counters, delivered_counts

H = "a" * 64


RAW = {"ip": "203.0.113.9", "user_agent": "Mozilla/5.0 (Keys)", "ttclid": "E.C.P.secret-click", "ttp": "ttp.secret"}


def test_every_key_is_named_when_present_and_only_then():
    full = UserData(email=[H], phone=[H], external_id=[H], first_name=H, last_name=H, zip_code=H,
                    city="paris", state="idf", country="fr", **RAW)  # fmt: skip
    assert match_keys.present(full) == match_keys.KEYS
    assert match_keys.present(UserData()) == ()
    assert match_keys.present(UserData(email=[H], ttclid="E.C.P.x")) == ("email", "ttclid")


def test_an_ip_without_its_user_agent_is_not_the_ip_user_agent_key():
    assert match_keys.present(UserData(ip="203.0.113.9")) == ()
    assert match_keys.present(UserData(user_agent="Mozilla/5.0")) == ()
    assert match_keys.present(UserData(ip="203.0.113.9", user_agent="Mozilla/5.0")) == ("ip_user_agent",)


def test_the_coverage_score_weighs_click_and_contact_keys_out_of_ten():
    assert match_keys.MAX_SCORE == 10
    assert match_keys.score(match_keys.KEYS) == 10
    assert match_keys.score(()) == 0
    assert match_keys.score(("ttclid", "email")) == 5
    # Name and address parts are reported but add nothing on their own.
    assert match_keys.score(("first_name", "last_name", "zip_code", "city", "state", "country")) == 0


def test_counts_name_pixel_source_event_and_key_never_a_value():
    counters = Counters()
    counters.add_many(delivered_counts("CPIX", "shopify", "Purchase", ("email", "ttclid"), 5))
    counters.add_many(delivered_counts("CPIX", "shopify", "Purchase", ("email",), 2))
    assert counters.snapshot() == {
        "delivered.CPIX.shopify.Purchase": 2,
        "match_key.email.CPIX.shopify.Purchase": 2,
        "match_key.ttclid.CPIX.shopify.Purchase": 1,
        "match_score.CPIX.shopify.Purchase": 7,
    }
