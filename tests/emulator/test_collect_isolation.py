"""One bad collect request fails only itself, against the real function and emulators.

Concurrent requests of an instance share one Pub/Sub publish and one Firestore
batch (shared.infra.group_commit.GroupCommit). A request whose data cannot be serialised
(a lone UTF-16 surrogate, ``"\\ud800"``, is valid JSON but not text) used to
pass validation and then fail the whole group's publish: everyone got 503.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.receive.orders import JOIN_SHOPIFY_CART
from tests.conftest import decode_message
from tests.emulator.test_collect_function import (  # noqa: F401 (fixtures)
    PIXEL,
    Collect,
    collect,
    make_collect,
    request_body,
)

# Escaped in the JSON text, as an attacker's script would send it: json.dumps writes "\ud800" as is.
POISON = '"\\ud800"'


def poison_body(kind: str) -> bytes:
    document = request_body(f"cart-{uuid.uuid4().hex}")
    marker = "__POISON__"
    if kind == "custom property":
        document["events"][0]["properties"]["note"] = marker
    elif kind == "custom property name":
        document["events"][0]["properties"][marker] = 1
    elif kind == "ttclid":
        document["context"]["ttclid"] = marker
    elif kind == "page url":
        document["context"]["page_url"] = marker
    else:
        document["events"][0]["event_id"] = marker
    return json.dumps(document).replace(f'"{marker}"', POISON).encode()


def test_concurrent_poison_requests_fail_alone_and_every_legitimate_one_is_accepted(collect):  # noqa: F811
    kinds = ["custom property", "custom property name", "ttclid", "page url", "event id"]
    legitimate = [request_body(f"cart-{uuid.uuid4().hex}") for _ in range(60)]
    poison = [poison_body(kinds[i % len(kinds)]) for i in range(30)]
    work: list[tuple[str, Any]] = []
    for index, document in enumerate(legitimate):  # interleaved, so most group commits hold both kinds
        work.append(("ok", document))
        if index % 2 == 0:
            work.append(("bad", poison[index // 2]))

    def send(item: tuple[str, Any]) -> tuple[str, Any]:
        kind, payload = item
        if kind == "ok":
            return kind, collect.post(payload)
        return kind, collect.post(None, raw=payload)

    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(send, work))
    ok = [r for k, r in answers if k == "ok"]
    bad = [r for k, r in answers if k == "bad"]
    assert len(ok) == 60 and len(bad) == 30
    assert [r.status_code for r in ok] == [200] * 60, [r.get_data(as_text=True) for r in ok if r.status_code != 200]
    assert [r.status_code for r in bad] == [400] * 30
    assert all("surrogate" in r.get_json()["reason"] for r in bad)
    published = {decode_message(m)["event_id"] for m in collect.topic.pull_all(60)}
    assert published == {d["events"][0]["event_id"] for d in legitimate}
    assert len(collect.contexts()) == 60


def _plan(token: str, note: str):
    from shared.config import PixelConfig
    from shared.domain.consent import ConsentDecision
    from shared.domain.models import Envelope, Properties
    from shared.receive.collect.plan import Plan

    envelope = Envelope(source="collect", pixel_code=PIXEL, event="AddToCart", event_id=f"evt-{token}",
                        event_time=int(time.time()), consent="granted",
                        properties=Properties.model_validate({"note": note}))  # fmt: skip
    return Plan(PixelConfig(pixel_code=PIXEL), [(JOIN_SHOPIFY_CART, token)], {"ttp": f"ttp-{token}"}, [envelope], [],
                ConsentDecision(True, False, "granted"))  # fmt: skip


def test_if_the_group_publish_still_fails_on_one_message_the_others_are_published_alone(store, event_publisher, topic):
    """Belt and braces: a plan that slipped past the checks fails its own request, not the group's."""
    from shared.config import PixelConfig, Tenants
    from shared.receive.collect.commit import Unavailable
    from shared.receive.collect.runtime import Runtime

    tokens = [uuid.uuid4().hex for _ in range(4)]
    plans = [_plan(tokens[0], "fine"), _plan(tokens[1], "\ud800"), _plan(tokens[2], "fine"), _plan(tokens[3], "ok")]
    runtime = Runtime(Tenants(pixels={PIXEL: PixelConfig(pixel_code=PIXEL)}),
                      store_factory=lambda: store, publisher_factory=lambda: event_publisher)  # fmt: skip
    outcomes = runtime._flush(plans)  # what one group commit of these four requests runs
    assert [o for i, o in enumerate(outcomes) if i != 1] == [1, 1, 1]
    assert isinstance(outcomes[1], Unavailable) and outcomes[1].what == "pubsub"
    published = sorted(decode_message(m)["event_id"] for m in topic.pull_all(3))
    assert published == sorted(f"evt-{t}" for i, t in enumerate(tokens) if i != 1)


def test_an_outage_still_fails_the_group_at_once_without_a_retry_per_request(store, topic):
    """Only a request error (bad data) is retried plan by plan; an outage is not multiplied."""
    from concurrent.futures import Future

    from shared.config import PixelConfig, Tenants
    from shared.receive.collect.commit import Unavailable
    from shared.receive.collect.runtime import Runtime

    class Down:
        calls = 0

        def publish_async(self, envelopes, traceparents=None):
            Down.calls += 1
            future: Future = Future()
            future.set_exception(TimeoutError("deadline"))
            return future

    plans = [_plan(uuid.uuid4().hex, "fine") for _ in range(3)]
    runtime = Runtime(Tenants(pixels={PIXEL: PixelConfig(pixel_code=PIXEL)}),
                      store_factory=lambda: store, publisher_factory=Down)  # fmt: skip
    outcomes = runtime._flush(plans)
    assert all(isinstance(o, Unavailable) and o.what == "pubsub" for o in outcomes) and Down.calls == 1
