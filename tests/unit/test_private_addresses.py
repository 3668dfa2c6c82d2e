"""Private, loopback, link-local and reserved addresses are never sent as a shopper's IP; public ones are kept."""

from __future__ import annotations

import json

import pytest

from shared.domain.identity import RawIdentity, build_user, valid_ip
from shared.domain.models import Envelope, UserData
from shared.receive import orders
from shared.receive.collect.handler import handle
from shared.receive.collect.request import HttpRequest
from tests.unit import test_collect as tc

NOW = 1_790_000_000


@pytest.mark.parametrize(
    "address",
    ["192.168.0.1", "10.1.2.3", "172.16.5.4", "100.64.0.1", "127.0.0.1", "::1", "169.254.1.1", "fe80::1",
     "fd12:3456::1", "240.0.0.1", "224.0.0.1", "255.255.255.255", "::ffff:192.168.1.1", "::ffff:127.0.0.1"],
)  # fmt: skip
def test_an_address_no_shopper_is_reached_at_is_dropped(address):
    assert valid_ip(address) is None
    assert build_user(RawIdentity(ip=address)).ip is None


@pytest.mark.parametrize(
    ("address", "kept"),
    [("8.8.8.8", "8.8.8.8"), ("2a00:1450:4001::1", "2a00:1450:4001::1"), ("::ffff:8.8.4.4", "8.8.4.4"),
     ("203.0.113.24", "203.0.113.24"), ("2001:db8::1", "2001:db8::1")],
)  # fmt: skip
def test_public_addresses_are_kept(address, kept):
    assert valid_ip(address) == kept


def test_collect_does_not_forward_a_private_client_address():
    recorder = tc.Recorder()
    request = tc.post(tc.body())
    private = HttpRequest(request.method, request.headers, request.read, "192.168.1.20")
    assert handle(private, tc.runtime(recorder)).status == 200
    assert recorder.contexts[0][2]["ip"] is None and recorder.published[0].user.ip is None


def test_a_private_address_in_an_older_click_context_or_envelope_is_not_sent():
    merged = orders._merge_context(UserData(), {"ip": "10.0.0.8", "user_agent": "UA"})
    assert (merged.ip, merged.user_agent) == (None, "UA")
    # What the sender decodes from Pub/Sub: an envelope published before the receivers dropped them.
    document = {
        "source": "collect",
        "pixel_code": "CPIXEL",
        "event": "ViewContent",
        "event_id": "e1",
        "event_time": NOW,
        "consent": "granted",
        "user": {"ip": "192.168.0.1", "ttclid": "E.C.P.x"},
    }
    envelope = Envelope.model_validate_json(json.dumps(document))
    assert envelope.user.ip is None and envelope.user.ttclid == "E.C.P.x"
