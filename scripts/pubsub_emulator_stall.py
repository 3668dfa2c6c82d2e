"""Minimal reproduction: the Pub/Sub emulator stops retrying a push subscription that has a retry policy.

No project code is involved: a plain HTTP server answers every push 503, and
the emulator of the Google Cloud CLI (cloud-pubsub-emulator 0.8.20) pushes
a few messages to it through a subscription with a dead-letter policy (5
attempts), once with a retry policy (exponential backoff) and once without.

    python scripts/pubsub_emulator_stall.py        # about 2 minutes

Expected from Pub/Sub: every message is pushed 5 times, then moved to the
dead-letter topic. What the emulator does with a retry policy: when two
failed messages are scheduled in the same millisecond (the backoff is whole
seconds, so messages failing together collide), they share one entry of its
``delayedMessagesByTime`` map; its duplicate check compares that entry with a
one-element set, misses, and re-schedules both on every 100 ms tick. The
first entry redelivers them; the next one calls ``nackMessage`` on ack ids
that are gone and throws a NullPointerException, which its
``ExpireOutstandingMessagesRunnable`` does not catch (it catches only
``StatusException``). ``ScheduledExecutorService.scheduleAtFixedRate`` then
silently cancels the task: from that moment no failed message of the
subscription is ever pushed again, no ack deadline expires, and nothing is
dead-lettered. New messages are still pushed, which hides the stall.

Without a retry policy the emulator redelivers a failed push after one
second and the dead-letter policy works. ``scripts/localstack.py`` therefore
creates the local push subscription without one (see ``create_topology``).
Exit status 0 when the defect shows and the workaround holds.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import localstack  # noqa: E402

MESSAGES = 6
ATTEMPTS = 5


class _Refuser(BaseHTTPRequestHandler):
    """Answers 503 to every push and counts the attempts per message."""

    protocol_version = "HTTP/1.1"
    attempts: dict[str, int] = {}
    lock = threading.Lock()

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name = base64.b64decode(body["message"]["data"]).decode()
        with self.lock:
            self.attempts[name] = self.attempts.get(name, 0) + 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _topology(project: str, name: str, endpoint: str, backoff: bool) -> tuple[str, str]:
    from google.cloud import pubsub_v1
    from google.protobuf import duration_pb2

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic, dead_topic = publisher.topic_path(project, name), publisher.topic_path(project, name + "-dead")
    publisher.create_topic(name=topic)
    publisher.create_topic(name=dead_topic)
    dead_subscription = subscriber.subscription_path(project, name + "-dead")
    subscriber.create_subscription(request={"name": dead_subscription, "topic": dead_topic})
    request: dict[str, Any] = {
        "name": subscriber.subscription_path(project, name + "-push"),
        "topic": topic,
        "push_config": {"push_endpoint": endpoint},
        "ack_deadline_seconds": 60,
        "dead_letter_policy": {"dead_letter_topic": dead_topic, "max_delivery_attempts": ATTEMPTS},
    }
    if backoff:
        request["retry_policy"] = {
            "minimum_backoff": duration_pb2.Duration(seconds=1),
            "maximum_backoff": duration_pb2.Duration(seconds=10),
        }
    subscriber.create_subscription(request=request)
    return topic, dead_subscription


def run_case(project: str, backoff: bool, wait: float) -> dict[str, Any]:
    """Publish MESSAGES messages to a refusing endpoint; attempts per message and how many were dead-lettered."""
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1

    _Refuser.attempts = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refuser)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    name = "stall-" + ("backoff" if backoff else "immediate")
    try:
        topic, dead_subscription = _topology(project, name, f"http://127.0.0.1:{server.server_address[1]}/", backoff)
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        for index in range(MESSAGES):
            publisher.publish(topic, f"m{index}".encode()).result(timeout=10)
        dead: set[str] = set()
        deadline = time.monotonic() + wait
        while len(dead) < MESSAGES and time.monotonic() < deadline:
            try:
                response = subscriber.pull(request={"subscription": dead_subscription, "max_messages": 50}, timeout=3)
            except gexc.DeadlineExceeded:  # nothing there yet
                continue
            if response.received_messages:
                dead |= {m.message.data.decode() for m in response.received_messages}
                ack_ids = [m.ack_id for m in response.received_messages]
                subscriber.acknowledge(request={"subscription": dead_subscription, "ack_ids": ack_ids})
        attempts = dict(sorted(_Refuser.attempts.items()))
        return {"retry_policy": backoff, "attempts": attempts, "dead_lettered": len(dead)}
    finally:
        server.shutdown()
        server.server_close()


def main() -> int:
    emulators = localstack.Emulators(
        project="stall-repro", pubsub_port=localstack.free_port(), firestore_port=localstack.free_port()
    )
    emulators.start()
    saved = {key: os.environ.get(key) for key in emulators.env}
    os.environ.update(emulators.env)
    try:
        # With backoff 1 s to 10 s, 5 attempts take about 15 s when Pub/Sub behaves.
        with_backoff = run_case(emulators.project, backoff=True, wait=60)
        immediate = run_case(emulators.project, backoff=False, wait=40)
    finally:
        emulators.stop()
        localstack.restore_environ(saved)
    for case in (with_backoff, immediate):
        print(json.dumps(case))
    stalled = with_backoff["dead_lettered"] < MESSAGES
    healthy = immediate["dead_lettered"] == MESSAGES and all(n == ATTEMPTS for n in immediate["attempts"].values())
    print(f"with a retry policy: {'stalled (emulator defect reproduced)' if stalled else 'no stall this time'}")
    print(f"without a retry policy: {'every message dead-lettered after 5 attempts' if healthy else 'UNEXPECTED'}")
    return 0 if stalled and healthy else 1


if __name__ == "__main__":
    sys.exit(main())
