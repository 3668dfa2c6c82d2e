"""A WooCommerce order parked for replay holds only hashes, the raw values TikTok takes as sent and the location,
and replays to the same event.
"""

from __future__ import annotations

import json
import re

from shared.domain.consent import ConsentSnapshot
from shared.receive.woocommerce.mapping import map_order
from shared.receive.woocommerce.parking import park_order
from tests.emulator.test_woocommerce_webhook import (
    RAW_PII,
    sha,
)
from tests.unit.test_woocommerce import SITE as DOMAIN_SITE
from tests.unit.test_woocommerce import documented_order, with_meta


def test_a_parked_order_holds_only_what_the_docs_say_and_replays_to_the_same_event():
    order = with_meta(documented_order(customer_id=8, customer_ip_address="203.0.113.9"), _ttclid="E.C.P.z")
    order["billing"]["address_1"] = "969 Market"
    order["billing"]["phone"] = "(415) 555-0142"
    event = map_order(order, DOMAIN_SITE, 1_800_000_000.0)
    outcome = park_order(event, ConsentSnapshot(granted=True), "US", "firestore unavailable")
    text = "".join(outcome.details["replay"])
    assert not [pii for pii in (*RAW_PII, "555-0142", "5550142", "Market", "john") if pii.lower() in text.lower()]
    user = json.loads(text)["order"]["user"]
    assert set(user) <= HASHED | RAW_AS_SENT | LOCATION
    for name in HASHED & set(user):
        values = user[name] if isinstance(user[name], list) else [user[name]]
        assert all(HEX64.fullmatch(v) for v in values), name
    # Location as TikTok takes it (lowercase letters and digits), never the street or the zip.
    assert {k: user[k] for k in LOCATION & set(user)} == {"city": "sanfrancisco", "state": "ca", "country": "us"}
    assert user["zip_code"] == sha("94103")


HEX64 = re.compile(r"[0-9a-f]{64}")


# docs/woocommerce.md: hashes; ip, user agent, click ids; city, state and country normalized
# (TikTok takes those three unhashed, so the envelope carries them so and the replay needs them).
HASHED = {"email", "phone", "external_id", "first_name", "last_name", "zip_code"}


RAW_AS_SENT = {"ip", "user_agent", "ttclid", "ttp", "locale"}


LOCATION = {"city", "state", "country"}
