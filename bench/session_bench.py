"""Firestore documents per delivered browser event over a realistic session, receiver plus sender.

A session is what collect.js sends for one shopper: a landing with a ttclid
(the context is new), then five more events on other pages whose context has
not changed (the snippet says ``unchanged``, as it does once it has sent that
context in this tab). Every request goes through the real collect function
(functions-framework's test client, in this process) to the Firestore and
Pub/Sub emulators; the events it published are pulled from the topic and
handled by the sender's real :class:`shared.send.process.Processor` against the
sandbox TikTok API, in batches as the sender would. Firestore operations are
the functions' own counters (shared.infra.metrics), so this is what they would be
billed for, not an estimate.

    python -m bench.session_bench [--sessions 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import localstack  # noqa: E402

PIXEL = "CBENCHPIXEL01"
ORIGIN = "https://shop.example"
TOKEN = "bench-token"  # noqa: S105 (the sandbox's, not a secret)
EVENTS_PER_SESSION = 6
HEADERS = {
    "Origin": ORIGIN,
    "Content-Type": "text/plain;charset=UTF-8",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0 Safari/537.36",
    "X-Forwarded-For": "203.0.113.24",
}
OPERATIONS = ("firestore.reads", "firestore.writes", "firestore.deletes", "firestore.rpcs")


def session(index: int, run: str, flag: bool = True) -> list[bytes]:
    """One shopper's requests, in order, as collect.js sends them (``flag``: as it does since issue 14)."""
    cart = uuid.uuid4().hex
    ttclid = f"E.C.P.bench-{run}-{index}"
    pages = ["/?ttclid=" + ttclid, "/products/blue-shirt", "/products/blue-shirt", "/products/red-shirt",
             "/collections/all", "/cart"]  # fmt: skip
    events = ["ViewContent", "ViewContent", "AddToCart", "ViewContent", "ViewContent", "AddToCart"]
    bodies = []
    for step, (page, event) in enumerate(zip(pages, events, strict=True)):
        context: dict[str, Any] = {
            "ttclid": ttclid,
            "ttp": f"bench.ttp.{run}.{index}",
            "page_url": "https://shop.example" + page,
            "locale": "en-US",
            "join_keys": {"shopify_cart_token": cart},
        }
        if step and flag:  # the snippet sent this very context on the landing
            context["unchanged"] = True
        properties = {"currency": "USD", "value": 25.0, "content_type": "product",
                      "contents": [{"content_id": "4242", "price": 25.0, "quantity": 1}]}  # fmt: skip
        document = {
            "pixel_code": PIXEL,
            "consent": {"ad_storage": "granted", "ad_user_data": "granted", "ad_personalization": "granted"},
            "context": context,
            "events": [{"event": event, "event_id": f"bench-{run}-{index}-{step}",
                        "event_time": int(time.time() * 1000), "properties": properties}],
        }  # fmt: skip
        bodies.append(json.dumps(document).encode())
    return bodies


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after.get(name, 0) - before.get(name, 0) for name in OPERATIONS}


def run(sessions: int = 40, concurrency: int = 8, before_issue_14: bool = False) -> dict[str, Any]:
    """``before_issue_14``: no ``unchanged`` flag and browser events claimed, as every path was before."""
    emulators = localstack.Emulators("bench-project", localstack.free_port(), localstack.free_port())
    topic = f"bench-session-{uuid.uuid4().hex[:8]}"
    prefix = f"bench{uuid.uuid4().hex[:8]}_"
    names = (*emulators.env, "TIKTOK_PIXEL_CODE", "CONSENT_POLICY", "COLLECT_ALLOWED_ORIGINS",
             "COLLECT_RATE_LIMIT_PER_MINUTE", "PUBSUB_TOPIC", "FIRESTORE_COLLECTION_PREFIX", "LOG_LEVEL")  # fmt: skip
    saved_env = {name: os.environ.get(name) for name in names}
    try:
        emulators.start()
        os.environ.update(emulators.env)
        os.environ.update({"TIKTOK_PIXEL_CODE": PIXEL, "CONSENT_POLICY": "opt-in", "COLLECT_ALLOWED_ORIGINS": ORIGIN,
                           "COLLECT_RATE_LIMIT_PER_MINUTE": "0", "PUBSUB_TOPIC": topic,
                           "FIRESTORE_COLLECTION_PREFIX": prefix, "LOG_LEVEL": "WARNING"})  # fmt: skip
        import functions_framework
        import httpx
        from google.cloud import pubsub_v1

        from sandbox.app import create_app
        from shared.destinations.tiktok import DESTINATION as TIKTOK
        from shared.domain.models import Envelope
        from shared.infra.metrics import COUNTERS, Counters
        from shared.infra.store import Store, make_client
        from shared.send.claims import ClaimStore
        from shared.send.process import Processor
        from shared.tiktok.api import TikTokClient

        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        topic_path = publisher.topic_path(emulators.project, topic)
        subscription = subscriber.subscription_path(emulators.project, topic + "-pull")
        publisher.create_topic(name=topic_path)
        subscriber.create_subscription(name=subscription, topic=topic_path)

        app = functions_framework.create_app(target="collect", source=str(ROOT / "functions" / "collect" / "main.py"))
        client = app.test_client()
        run_id = uuid.uuid4().hex[:8]
        plans = [session(index, run_id, flag=not before_issue_14) for index in range(sessions)]

        def shopper(bodies: list[bytes]) -> list[int]:
            return [client.post("/", data=body, headers=HEADERS).status_code for body in bodies]

        before = COUNTERS.snapshot()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            statuses = [status for answers in pool.map(shopper, plans) for status in answers]
        receiver = _delta(before, COUNTERS.snapshot())
        expected = sessions * EVENTS_PER_SESSION
        if statuses.count(200) != expected:
            raise RuntimeError(f"collect answered {sorted(set(statuses))}; expected 200 for every request")

        envelopes: list[Envelope] = []
        deadline = time.monotonic() + 60
        while len(envelopes) < expected and time.monotonic() < deadline:
            pulled = subscriber.pull(subscription=subscription, max_messages=500, timeout=10)
            if pulled.received_messages:
                envelopes += [Envelope.model_validate_json(m.message.data) for m in pulled.received_messages]
                subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in pulled.received_messages])
        if len(envelopes) != expected:
            raise RuntimeError(f"{len(envelopes)} events on the topic, expected {expected}")

        counters = Counters()
        claims = ClaimStore(Store(make_client(emulators.project), prefix), dt.timedelta(seconds=60),
                            dt.timedelta(days=8), dt.timedelta(days=30), counters=counters)  # fmt: skip
        api = TikTokClient("http://sandbox" + "/open_api/v1.3/event/track/", 10,
                           transport=httpx.WSGITransport(app=create_app(TOKEN)))  # fmt: skip
        processor = Processor(
            claims, TIKTOK, api, {PIXEL: TOKEN}, counters=counters, claim_browser_events=before_issue_14
        )
        outcomes = []
        for start in range(0, len(envelopes), 25):  # batches of the size the sender makes under load
            outcomes += processor.process([(e, None) for e in envelopes[start : start + 25]])
        sent = sum(1 for o in outcomes if o.kind == "sent")
        if sent != expected:
            raise RuntimeError(f"{sent} of {expected} events sent: {sorted({o.kind for o in outcomes})}")
        sender = _delta({}, counters.snapshot())
        per_event = {
            "receiver": {name: round(value / expected, 3) for name, value in receiver.items()},
            "sender": {name: round(value / expected, 3) for name, value in sender.items()},
        }
        per_event["total"] = {name: round(per_event["receiver"][name] + per_event["sender"][name], 3)
                              for name in OPERATIONS}  # fmt: skip
        return {"sessions": sessions, "events_per_session": EVENTS_PER_SESSION, "events": expected,
                "before_issue_14": before_issue_14, "per_event": per_event}  # fmt: skip
    finally:
        emulators.stop()
        localstack.restore_environ(saved_env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument(
        "--before-issue-14",
        action="store_true",
        help="measure the previous design: no unchanged flag, browser events claimed",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    result = run(sessions=args.sessions, before_issue_14=args.before_issue_14)
    total = result["per_event"]["total"]
    print(f"browser session ({result['events_per_session']} events: a landing with a ttclid, then "
          f"{result['events_per_session'] - 1} more), {result['sessions']} sessions: per delivered event "
          f"{total['firestore.writes']} Firestore writes, {total['firestore.reads']} reads "
          f"(collect {result['per_event']['receiver']['firestore.writes']} writes, "
          f"sender {result['per_event']['sender']['firestore.writes']})")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
