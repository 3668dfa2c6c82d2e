"""Start the whole pipeline locally: emulators, topology, functions and the TikTok sandbox.

``make run`` calls ``python scripts/localstack.py run``: everything starts, the
URLs and settings are printed, and Ctrl-C stops everything it started. The
test suite imports the same pieces (:class:`Emulators`, :func:`create_topology`,
:class:`Stack`) so tests run against exactly what users run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"

FUNCTIONS = ("collect", "shopify_webhook", "woocommerce_webhook", "sender")

# Local addresses; each overridable by the environment variable beside it.
DEFAULT_PORTS = {
    "collect": ("COLLECT_PORT", 8080),
    "shopify_webhook": ("SHOPIFY_WEBHOOK_PORT", 8081),
    "woocommerce_webhook": ("WOOCOMMERCE_WEBHOOK_PORT", 8082),
    "sender": ("SENDER_PORT", 8083),
    "sandbox": ("SANDBOX_PORT", 8090),
    "pubsub": ("PUBSUB_EMULATOR_PORT", 8085),
    "firestore": ("FIRESTORE_EMULATOR_PORT", 8086),
}

# Development defaults: printed at start, overridden by the same variables.
DEV_SETTINGS = {
    "GOOGLE_CLOUD_PROJECT": "local-dev",
    "TIKTOK_PIXEL_CODE": "CLOCALPIXEL0001",
    "TIKTOK_ACCESS_TOKEN": "local-sandbox-token",
    "SHOPIFY_SHOP_DOMAIN": "local-shop.myshopify.com",
    "SHOPIFY_WEBHOOK_SECRET": "local-shopify-secret",
    "WOOCOMMERCE_SITE_URL": "https://woo.local.test",
    "WOOCOMMERCE_WEBHOOK_SECRET": "local-woocommerce-secret",
    "CONSENT_POLICY": "opt-in",
    "COLLECT_ALLOWED_ORIGINS": "http://127.0.0.1:8000,http://localhost:8000",
    "COLLECT_KEYS": "local-collect-key",
    "PUBSUB_TOPIC": "tiktok-events",
    "EXPOSE_METRICS": "true",  # GET /metrics on the receivers too (local only; off by default when deployed)
}

DEAD_LETTER_TOPIC_SUFFIX = "-dead-letter"
MAX_DELIVERY_ATTEMPTS = 5


def port_of(name: str, environ: Mapping[str, str] = os.environ) -> int:
    variable, default = DEFAULT_PORTS[name]
    return int(environ.get(variable, default))


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free TCP port below the ephemeral range.

    A port the kernel hands out for bind(0) comes from the ephemeral range, where
    the many outgoing connections of a run (gRPC to the emulators, HTTP between
    the functions) also take theirs: between choosing it and a server binding it,
    one of them could take it. Below that range only listeners live.
    """
    floor = _ephemeral_floor()
    for _ in range(100):
        port = random.randrange(max(1024, floor - 12_000), floor)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback only)
                return
        except urllib.error.HTTPError:
            return  # it answers: up (a function whose issue is not done yet answers 501)
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s ({last})")


def _start(
    args: list[str], env: Mapping[str, str], log_name: str, cpus: frozenset[int] | None = None
) -> subprocess.Popen:
    """Start ``args`` in its own session, logging to .run/; ``cpus`` pins it and its children (benchmarks)."""
    RUN_DIR.mkdir(exist_ok=True)
    log = open(RUN_DIR / f"{log_name}.log", "ab")  # noqa: SIM115 (lives as long as the process)
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    # Own session: the emulators fork Java children that outlive their parent;
    # signalling the whole group is the only reliable way to stop them.
    return subprocess.Popen(
        args, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=pin
    )


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def restore_environ(saved: Mapping[str, str | None]) -> None:
    """Put back environment variables saved as {name: value or None (was unset)}."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@dataclass
class Emulators:
    """The Firestore and Pub/Sub emulators of the Google Cloud CLI."""

    project: str = "local-dev"
    pubsub_port: int = 8085
    firestore_port: int = 8086
    processes: list[subprocess.Popen] = field(default_factory=list)
    # Benchmarks pin the emulators (which stand in for Google's servers) away from the code they measure.
    cpus: frozenset[int] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {
            "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{self.pubsub_port}",
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{self.firestore_port}",
            "GOOGLE_CLOUD_PROJECT": self.project,
        }

    def start(self) -> None:
        for port in (self.pubsub_port, self.firestore_port):
            if port_is_open(port):
                raise RuntimeError(f"port {port} is already in use: stop what holds it or choose another port")
        env = {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        gcloud = ["gcloud", "beta", "emulators", "--quiet"]
        self.processes.append(
            _start(
                gcloud[:3] + ["pubsub", "start", f"--project={self.project}",
                              f"--host-port=127.0.0.1:{self.pubsub_port}", "--quiet"],
                env, "pubsub-emulator", self.cpus,
            )
        )  # fmt: skip
        self.processes.append(
            _start(
                gcloud[:3] + ["firestore", "start", f"--host-port=127.0.0.1:{self.firestore_port}", "--quiet"],
                env, "firestore-emulator", self.cpus,
            )
        )  # fmt: skip
        for port, process in zip((self.pubsub_port, self.firestore_port), self.processes, strict=True):
            wait_http(f"http://127.0.0.1:{port}/", timeout=90, process=process)

    def stop(self) -> None:
        for process in self.processes:
            stop_process(process)
        self.processes.clear()


def create_topology(
    project: str, topic: str, sender_url: str, max_attempts: int = MAX_DELIVERY_ATTEMPTS
) -> dict[str, str]:
    """The production topology, in the emulator: topic, push subscription to the sender, dead letters.

    Needs PUBSUB_EMULATOR_HOST in the environment. Idempotent.
    """
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1
    from google.protobuf import duration_pb2

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    names = {
        "topic": publisher.topic_path(project, topic),
        "dead_letter_topic": publisher.topic_path(project, topic + DEAD_LETTER_TOPIC_SUFFIX),
        "push_subscription": subscriber.subscription_path(project, topic + "-sender"),
        "dead_letter_subscription": subscriber.subscription_path(project, topic + DEAD_LETTER_TOPIC_SUFFIX),
    }
    for name in (names["topic"], names["dead_letter_topic"]):
        with contextlib.suppress(gexc.AlreadyExists):
            publisher.create_topic(name=name)
    requests = [
        {
            "name": names["push_subscription"],
            "topic": names["topic"],
            "push_config": {"push_endpoint": sender_url},
            "ack_deadline_seconds": 60,
            "retry_policy": {
                "minimum_backoff": duration_pb2.Duration(seconds=1),
                "maximum_backoff": duration_pb2.Duration(seconds=10),
            },
            "dead_letter_policy": {
                "dead_letter_topic": names["dead_letter_topic"],
                "max_delivery_attempts": max_attempts,
            },
        },
        {"name": names["dead_letter_subscription"], "topic": names["dead_letter_topic"], "ack_deadline_seconds": 60},
    ]
    for request in requests:
        with contextlib.suppress(gexc.AlreadyExists):
            subscriber.create_subscription(request=request)
    return names


@dataclass
class Stack:
    """Every function under functions-framework plus the sandbox, against running emulators."""

    settings: dict[str, str]
    ports: dict[str, int]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    python: str = sys.executable

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def api_url(self) -> str:
        return self.settings.get("TIKTOK_API_URL") or f"{self.url('sandbox')}/open_api/v1.3/event/track/"

    def function_env(self, name: str) -> dict[str, str]:
        env = {**os.environ, **self.settings, "PYTHONPATH": str(ROOT), "TIKTOK_API_URL": self.api_url}
        env.setdefault("SENDER_THREADS", "32")
        # gunicorn threads: the sender coalesces concurrent pushes into one batch.
        env["THREADS"] = env["SENDER_THREADS"] if name == "sender" else env.get("THREADS", "8")
        return env

    def start(self) -> None:
        busy = [f"{n}:{p}" for n, p in self.ports.items() if n in (*FUNCTIONS, "sandbox") and port_is_open(p)]
        if busy:
            raise RuntimeError(f"ports already in use: {', '.join(busy)}")
        sandbox_env = {**os.environ, **self.settings, "PYTHONPATH": str(ROOT)}
        self.processes["sandbox"] = _start(
            [self.python, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(self.ports["sandbox"]),
             "--token", self.settings["TIKTOK_ACCESS_TOKEN"]],
            sandbox_env, "sandbox",
        )  # fmt: skip
        for name in FUNCTIONS:
            self.processes[name] = _start(
                [self.python, "-m", "functions_framework", "--target", name,
                 "--source", str(ROOT / "functions" / name / "main.py"),
                 "--host", "127.0.0.1", "--port", str(self.ports[name])],
                self.function_env(name), name,
            )  # fmt: skip
        for name, process in self.processes.items():
            wait_http(self.url(name) + ("/" if name == "sandbox" else "/healthz"), timeout=60, process=process)

    def stop(self) -> None:
        for process in self.processes.values():
            stop_process(process)
        self.processes.clear()


def dev_settings(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    settings = {key: environ.get(key) or default for key, default in DEV_SETTINGS.items()}
    for key in ("TIKTOK_API_URL", "PIPELINE_TENANTS", "TIKTOK_TEST_EVENT_CODE", "LOG_LEVEL"):
        if environ.get(key):
            settings[key] = environ[key]
    return settings


def _print_banner(stack: Stack, emulators: Emulators, topology: dict[str, str], seconds: float) -> None:
    secret_like = {"TIKTOK_ACCESS_TOKEN", "SHOPIFY_WEBHOOK_SECRET", "WOOCOMMERCE_WEBHOOK_SECRET"}
    lines = [
        f"TikTok Events API pipeline running locally (up in {seconds:.1f}s). Ctrl-C stops everything.",
        "",
        f"  collect              {stack.url('collect')}/",
        f"  Shopify webhook      {stack.url('shopify_webhook')}/",
        f"  WooCommerce webhook  {stack.url('woocommerce_webhook')}/",
        f"  sender (push target) {stack.url('sender')}/",
        f"  TikTok sandbox       {stack.url('sandbox')}/sandbox/events   (API: {stack.api_url})",
        f"  Pub/Sub emulator     127.0.0.1:{emulators.pubsub_port}   topic {topology['topic']}",
        f"  Firestore emulator   127.0.0.1:{emulators.firestore_port}",
        f"  logs                 {RUN_DIR}/",
        "  counters             GET <function URL>/metrics (Firestore and Pub/Sub operations, outcomes)",
        "",
        "Settings (override with environment variables):",
    ]
    for key, value in sorted(stack.settings.items()):
        shown = value if key not in secret_like or value == DEV_SETTINGS.get(key) else "(set)"
        lines.append(f"  {key}={shown}")
    print("\n".join(lines), flush=True)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    settings = dev_settings()
    ports = {name: port_of(name) for name in DEFAULT_PORTS}
    emulators = Emulators(settings["GOOGLE_CLOUD_PROJECT"], ports["pubsub"], ports["firestore"])
    stack = Stack(settings=settings, ports=ports)
    try:
        emulators.start()
        os.environ.update(emulators.env)
        topology = create_topology(
            settings["GOOGLE_CLOUD_PROJECT"], settings["PUBSUB_TOPIC"], stack.url("sender") + "/"
        )
        stack.start()
        _print_banner(stack, emulators, topology, time.monotonic() - started)
        if args.smoke:
            print(json.dumps({"startup_seconds": round(time.monotonic() - started, 2)}), flush=True)
            return 0
        while True:
            for name, process in stack.processes.items():
                if process.poll() is not None:
                    print(f"{name} exited with {process.returncode}; see {RUN_DIR / (name + '.log')}", file=sys.stderr)
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()
        emulators.stop()
        print("stopped.", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="start everything and stay in the foreground")
    run_parser.add_argument("--smoke", action="store_true", help="start, print the startup time, stop")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
