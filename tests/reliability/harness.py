"""What the reliability suite and ``bench/adversarial.py`` share: traffic as the platforms send it, counting at TikTok.

- Order builders with fresh ids and timestamps (Shopify, WooCommerce, collect).
- Deliverers that behave like the platforms: Shopify retries every non-2xx (and
  every timeout or cut connection) with the same ``X-Shopify-Webhook-Id`` until
  a 2xx; WooCommerce posts once and never retries.
- :class:`Tally`: lost and duplicated events, counted at the TikTok sandbox.
- Process helpers: the PIDs of a function (gunicorn master and workers), RSS
  from /proc, pausing a process group.
- :func:`send_oversized`: a raw-socket client that sends a huge body and notes
  whether the server answered (or closed) before the body was sent.

Pure where it can be; everything that talks to the stack takes its URLs.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import hmac
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shared.config import DEFAULT_SHOPIFY_API_VERSION

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
RUN_DIR = ROOT / ".run"

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36"
COLLECT_ORIGIN = "http://127.0.0.1:8000"  # in localstack.DEV_SETTINGS' COLLECT_ALLOWED_ORIGINS
# Shopify waits 5 s for an answer; anything slower counts as a failed delivery that it retries.
SHOPIFY_TIMEOUT_SECONDS = 5.0
WOOCOMMERCE_TIMEOUT_SECONDS = 60.0


def _fixture(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text())


_SHOPIFY_ORDER = _fixture("shopify/orders_create_2026-04_documented.json")["response"]
_WOO_ORDER = _fixture("woocommerce/order_727_processing_documented.json")


# --- orders --------------------------------------------------------------------------------


def _iso_now(seconds_ago: int = 0) -> str:
    moment = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds_ago)
    return moment.isoformat(timespec="seconds")


def shopify_order(rng: random.Random | None = None) -> dict[str, Any]:
    """Shopify's documented order, paid, real (not a test order), with fresh ids, tokens and timestamps."""
    rng = rng or random.Random()
    order = copy.deepcopy(_SHOPIFY_ORDER)
    order["id"] = rng.randrange(2**60, 2**62)  # beyond 2^53, as real ids are
    order["customer"]["id"] = rng.randrange(2**50, 2**52)
    now = _iso_now()
    order.update(
        test=False, cancelled_at=None, cancel_reason=None, financial_status="paid",
        checkout_token=f"chk-{uuid.uuid4().hex}", cart_token=f"cart-{uuid.uuid4().hex}",
        created_at=_iso_now(120), processed_at=now, updated_at=now,
    )  # fmt: skip
    return order


def woocommerce_order(rng: random.Random | None = None) -> dict[str, Any]:
    """The documented v3 order as a guest's paid order with its own id, key and email."""
    rng = rng or random.Random()
    order = copy.deepcopy(_WOO_ORDER)
    tag = uuid.uuid4().hex[:10]
    gmt = dt.datetime.now(dt.timezone.utc)
    order.update(
        id=rng.randrange(10**6, 10**12), order_key=f"wc_order_{tag}", status="processing", customer_id=0,
        date_created_gmt=(gmt - dt.timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%S"),
        date_paid_gmt=gmt.strftime("%Y-%m-%dT%H:%M:%S"),
        customer_ip_address="198.51.100.7", customer_user_agent="Mozilla/5.0 (Reliability Test)",
    )  # fmt: skip
    order["billing"] = {**order["billing"], "email": f"guest.{tag}@example.com"}
    return order


def shopify_purchase_id(shop: str, order: dict[str, Any]) -> str:
    return f"shopify:{shop}:order:{order['id']}:Purchase"


def woocommerce_purchase_id(site_url: str, order: dict[str, Any]) -> str:
    site = site_url.split("://", 1)[1].rstrip("/").removeprefix("www.")
    return f"woocommerce:{site}:order:{order['id']}:Purchase"


def collect_document(pixel_code: str, event_id: str, **properties: Any) -> dict[str, Any]:
    """A consented browser beacon: one AddToCart under a fresh (secret) cart token."""
    token = f"cart-{uuid.uuid4().hex}"
    return {
        "pixel_code": pixel_code,
        "consent": {"ad_storage": "granted", "ad_user_data": "granted"},
        "context": {"ttclid": f"E.C.P.{token}", "page_url": f"{COLLECT_ORIGIN}/products/shirt",
                    "join_keys": {"shopify_cart_token": token}},
        "events": [{"event": "AddToCart", "event_id": event_id, "event_time": int(time.time() * 1000),
                    "properties": {"currency": "USD", "value": 25, **properties}}],
    }  # fmt: skip


LOAD_BALANCER_IP = "203.0.113.250"


def collect_headers(client_ip: str | None = None) -> dict[str, str]:
    headers = {"Origin": COLLECT_ORIGIN, "Content-Type": "text/plain;charset=UTF-8", "User-Agent": CHROME}
    if client_ip:
        # As the stack's one trusted hop (an external load balancer) delivers it: the shopper, then the
        # balancer's own forwarding-rule address. A lone entry names no client, and is limited as one.
        headers["X-Forwarded-For"] = f"{client_ip}, {LOAD_BALANCER_IP}"
    return headers


def shopper_ip(index: int) -> str:
    """A distinct documentation-range address per shopper, so a per-client rate limit sees many clients."""
    return f"198.18.{(index // 250) % 250}.{index % 250 + 1}"


# --- signing and posting ------------------------------------------------------------------


def shopify_signature(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def woocommerce_signature(body: bytes, secret: str) -> str:
    import html

    return base64.b64encode(hmac.new(html.unescape(secret).encode(), body, hashlib.sha256).digest()).decode()


def shopify_headers(body: bytes, settings: dict[str, str], topic: str, webhook_id: str, *, signed: bool = True
                    ) -> dict[str, str]:  # fmt: skip
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": settings["SHOPIFY_SHOP_DOMAIN"],
        "X-Shopify-API-Version": DEFAULT_SHOPIFY_API_VERSION,
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Triggered-At": _iso_now(),
    }
    if signed:
        headers["X-Shopify-Hmac-Sha256"] = shopify_signature(body, settings["SHOPIFY_WEBHOOK_SECRET"].split(",")[0])
    return headers


def woocommerce_headers(body: bytes, settings: dict[str, str], topic: str = "order.updated", *, signed: bool = True
                        ) -> dict[str, str]:  # fmt: skip
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Source": settings["WOOCOMMERCE_SITE_URL"] + "/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": "order",
        "X-WC-Webhook-Event": topic.rsplit(".", 1)[-1],
        "X-WC-Webhook-ID": "3",
        "X-WC-Webhook-Delivery-ID": uuid.uuid4().hex,
    }
    if signed:
        headers["X-WC-Webhook-Signature"] = woocommerce_signature(body, settings["WOOCOMMERCE_WEBHOOK_SECRET"])
    return headers


@dataclass
class Attempt:
    """One HTTP attempt as the platform saw it: a status, or the transport error's type."""

    status: int | None
    outcome: str | None = None
    error: str | None = None
    at: float = field(default_factory=time.time)


def _attempt(client: httpx.Client, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Attempt:
    try:
        response = client.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return Attempt(None, error=type(exc).__name__)
    try:
        outcome = response.json().get("outcome")
    except (ValueError, AttributeError):
        outcome = None
    return Attempt(response.status_code, outcome)


@dataclass
class Delivery:
    """One webhook delivery and every attempt at it."""

    key: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def final(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def delivered(self) -> bool:
        return self.final is not None and self.final.status is not None and 200 <= self.final.status < 300

    def statuses(self) -> list[str]:
        return [str(a.status) if a.status is not None else a.error or "?" for a in self.attempts]


def deliver_like_shopify(client: httpx.Client, url: str, settings: dict[str, str], order: dict[str, Any],
                         topic: str = "orders/paid", *, webhook_id: str | None = None, retry_for: float = 60.0,
                         retry_every: float = 1.0) -> Delivery:  # fmt: skip
    """Shopify's at-least-once delivery, compressed: the same bytes and webhook id until a 2xx or ``retry_for``."""
    body = json.dumps(order).encode()
    webhook_id = webhook_id or str(uuid.uuid4())
    delivery = Delivery(f"{topic} {webhook_id}")
    deadline = time.monotonic() + retry_for
    while True:
        headers = shopify_headers(body, settings, topic, webhook_id)
        delivery.attempts.append(_attempt(client, url, body, headers, SHOPIFY_TIMEOUT_SECONDS))
        if delivery.delivered or time.monotonic() + retry_every > deadline:
            return delivery
        time.sleep(retry_every * random.uniform(0.8, 1.2))


def deliver_like_woocommerce(client: httpx.Client, url: str, settings: dict[str, str], order: dict[str, Any],
                             topic: str = "order.updated") -> Delivery:  # fmt: skip
    """WooCommerce posts once: whatever the answer, it never retries.

    Each delivery is its own connection, as WordPress makes it (a new cURL handle per
    request): a pooled keep-alive connection can be closed by the server as idle at the
    moment it is reused, a client-side race that would count as a failed delivery.
    ``client`` is unused and kept for the callers' symmetry with :func:`deliver_like_shopify`.
    """
    body = json.dumps(order).encode()
    delivery = Delivery(f"{topic} {order['id']}")
    with httpx.Client() as own:
        delivery.attempts.append(
            _attempt(own, url, body, woocommerce_headers(body, settings, topic), WOOCOMMERCE_TIMEOUT_SECONDS)
        )
    return delivery


# --- counting at TikTok -------------------------------------------------------------------


@dataclass
class Tally:
    """Expected event ids against what the sandbox holds: the issue's "lost" and "duplicated"."""

    expected: set[str]
    counts: Counter[str]

    @property
    def lost(self) -> list[str]:
        return sorted(i for i in self.expected if self.counts[i] == 0)

    @property
    def duplicated(self) -> dict[str, int]:
        return {i: n for i, n in self.counts.items() if i in self.expected and n > 1}

    def summary(self) -> dict[str, Any]:
        return {"expected": len(self.expected), "lost": len(self.lost), "duplicated": sum(
            n - 1 for n in self.duplicated.values()), "lost_ids": self.lost[:10],
            "duplicated_ids": dict(list(self.duplicated.items())[:10])}  # fmt: skip


def sandbox_counts(sandbox_url: str) -> Counter[str]:
    response = httpx.get(f"{sandbox_url}/sandbox/events", timeout=30)
    response.raise_for_status()
    return Counter(event.get("event_id") for event in response.json()["events"])


def sandbox_events(sandbox_url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{sandbox_url}/sandbox/events", timeout=30)
    response.raise_for_status()
    return response.json()["events"]


def sandbox_requests(sandbox_url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{sandbox_url}/sandbox/requests", timeout=30)
    response.raise_for_status()
    return response.json()["requests"]


def settle(sandbox_url: str, expected: Iterable[str], timeout: float = 60.0, quiet: float = 6.0) -> Tally:
    """Wait until every expected event arrived (or ``timeout``), then ``quiet`` more seconds for late copies."""
    wanted = set(expected)
    deadline = time.monotonic() + timeout
    counts = sandbox_counts(sandbox_url)
    while any(counts[i] == 0 for i in wanted) and time.monotonic() < deadline:
        time.sleep(0.5)
        counts = sandbox_counts(sandbox_url)
    # Past a claim lease (CLAIM_LEASE_SECONDS) a wrongly released event would be sent again: give it the time.
    time.sleep(quiet)
    return Tally(wanted, sandbox_counts(sandbox_url))


# --- processes ----------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn's workers under its master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: split after the last ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def proc_status(pid: int, name: str) -> int:
    """A ``/proc/<pid>/status`` line in kB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


def reset_peak_rss(pid: int) -> None:
    """Make VmHWM start again from the current RSS (Linux: ``5`` to clear_refs)."""
    with open(f"/proc/{pid}/clear_refs", "w") as handle:
        handle.write("5")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): check its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@contextmanager
def paused_group(pgid: int) -> Iterator[None]:
    """SIGSTOP a whole process group (an emulator and its Java child); always SIGCONT it again."""
    os.killpg(pgid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pgid, signal.SIGCONT)


def wait_http_ok(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


# --- WooCommerce parked orders ------------------------------------------------------------


def parked_lines(event_ids: set[str], log_path: Path = RUN_DIR / "woocommerce_webhook.log") -> list[str]:
    """The function's log lines parking one of ``event_ids`` (other sessions append to the same file)."""
    lines = []
    for line in log_path.read_text(errors="replace").splitlines():
        if '"parked"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("outcome") == "parked" and record.get("event_id") in event_ids:
            lines.append(line)
    return lines


def replay_parked(lines: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The operator's replay command (docs/woocommerce.md) over those log lines."""
    return subprocess.run(
        [sys.executable, "-m", "functions.woocommerce_webhook.replay"],
        input="\n".join(lines) + "\n", env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


# --- a body too large to read -------------------------------------------------------------


@dataclass
class OversizedResult:
    """How the server treated a huge body: its status (if it answered) and how much we got to send."""

    status: int | None
    sent_bytes: int
    total_bytes: int
    closed: bool
    seconds: float
    head: bytes = b""

    @property
    def refused_early(self) -> bool:
        """Answered or hung up before the whole body was on the wire: it did not wait to read it all."""
        return self.sent_bytes < self.total_bytes and (self.status is not None or self.closed)


def _chunk_frames(total: int, piece: int) -> Iterator[bytes]:
    """The body as chunked transfer-coding frames, made as they are sent (never all in memory)."""
    block = b"x" * piece
    left = total
    while left > 0:
        size = min(piece, left)
        yield f"{size:x}\r\n".encode() + block[:size] + b"\r\n"
        left -= size
    yield b"0\r\n\r\n"


def _plain_pieces(total: int, piece: int) -> Iterator[bytes]:
    block = b"x" * piece
    left = total
    while left > 0:
        yield block[: min(piece, left)]
        left -= piece


def send_oversized(host: str, port: int, headers: dict[str, str], total: int, *, chunked: bool,
                   piece: int = 64 * 1024, stall_seconds: float = 15.0) -> OversizedResult:  # fmt: skip
    """POST ``total`` bytes, watching for an answer between pieces; stop at the first answer or hang-up."""
    lines = [f"POST / HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]  # noqa: F541
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    frames = _chunk_frames(total, piece) if chunked else _plain_pieces(total, piece)
    started = time.monotonic()
    sent_body = 0
    closed = False
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        pending = b""
        last_progress = time.monotonic()
        while True:
            if not pending:
                pending = next(frames, b"")
                if not pending:
                    break
            readable, writable, _ = select.select([sock], [sock], [], 0.5)
            if readable:
                break
            if writable:
                try:
                    n = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                except BlockingIOError:
                    n = 0
                pending = pending[n:]
                sent_body += n
                if n:
                    last_progress = time.monotonic()
            if time.monotonic() - last_progress > stall_seconds:
                break  # the server neither reads nor answers: a half-sent request holding a worker
        answer = _read_answer(sock)
    payload_sent = _payload_bytes(sent_body, total, piece, chunked)
    status = _status_of(answer)
    return OversizedResult(status, payload_sent, total, closed or (status is None and payload_sent < total),
                           time.monotonic() - started, answer[:300])  # fmt: skip


def _read_answer(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.setblocking(True)
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, TimeoutError, OSError):
        pass
    return data


def _status_of(answer: bytes) -> int | None:
    first = answer.split(b"\r\n", 1)[0].split()
    if len(first) >= 2 and first[0].startswith(b"HTTP/") and first[1].isdigit():
        return int(first[1])
    return None


def _payload_bytes(wire_bytes: int, total: int, piece: int, chunked: bool) -> int:
    """Body bytes sent, not counting chunk framing (close enough: framing is ~10 bytes per 64 kB)."""
    if not chunked:
        return wire_bytes
    overhead = len(f"{piece:x}\r\n\r\n")
    return min(total, wire_bytes * piece // (piece + overhead))


# --- pacing -------------------------------------------------------------------------------


def paced(rate_per_second: float, seconds: float, job: Callable[[int], Any], workers: int = 32) -> list[Any]:
    """Run ``job(i)`` at ``rate_per_second`` for ``seconds`` on a thread pool; results in start order."""
    from concurrent.futures import ThreadPoolExecutor

    count = max(1, int(rate_per_second * seconds))
    started = time.monotonic()
    futures = []
    with ThreadPoolExecutor(workers) as pool:
        for index in range(count):
            delay = started + index / rate_per_second - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(job, index))
        return [f.result() for f in futures]


class Stopwatch(threading.Thread):
    """Calls ``action`` at given offsets (seconds from start) in the background; records when it did."""

    def __init__(self, schedule: list[tuple[float, Callable[[], Any]]]) -> None:
        super().__init__(daemon=True)
        self.schedule = sorted(schedule, key=lambda item: item[0])
        self.done: list[tuple[float, Any]] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        started = time.monotonic()
        for offset, action in self.schedule:
            delay = started + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                self.done.append((time.time(), action()))
            except BaseException as exc:  # reported by the test, not lost in a thread
                self.errors.append(exc)
