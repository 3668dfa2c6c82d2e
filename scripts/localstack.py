"""Start the whole pipeline locally: emulators, topology, functions and the TikTok sandbox.

``make run`` calls ``python scripts/localstack.py run``: everything starts, the
URLs and settings are printed, and Ctrl-C stops everything it started. The
test suite imports the same pieces (:class:`Emulators`, :func:`create_topology`,
:class:`Stack`) so tests run against exactly what users run.

Like Cloud Run, the stack keeps its processes up: a :class:`Supervisor` restarts
a function (its gunicorn master; gunicorn itself respawns a dead worker) or an
emulator that exits, with backoff, says so on the console, and gives up on a
crash loop. Each function is served by functions-framework's own gunicorn
application with one change (``serve``): a worker that buffers each request
before a thread takes it, so slow or half-sent requests cannot hold the threads.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import errno
import fcntl
import functools
import http.server
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

if str(ROOT) not in sys.path:  # run as a script: scripts/ is on the path, the project is not
    sys.path.insert(0, str(ROOT))

from shared.infra import localenv  # noqa: E402

# Logs, the stack's record (stack.json) and its lock: .run/ of the checkout; LOCAL_RUN_DIR moves them
# (a second stack with its own folder and ports, or a test's stack, leaves the first one's files alone).
RUN_DIR = localenv.run_dir()
LOCK_NAME = "stack.lock"
DEMO_PAGE = ROOT / "snippets" / "demo" / "index.html"

from shared.sources import registry  # noqa: E402

# Each source's function (the registry says which, on which port, with which dev settings), Shopify's
# Pub/Sub entry point, and the sender.
_LOCAL_SOURCES = tuple(source for source in registry.SOURCES if source.function and source.local)
FUNCTIONS = (*(str(source.function) for source in _LOCAL_SOURCES), "shopify_pubsub", "sender")
# Entry points served from another function's folder: shopify_pubsub is the push target of the
# Shopify delivery topic (in production a function of its own that only the push identity may invoke).
FUNCTION_FOLDERS = {"shopify_pubsub": "shopify_webhook"}

# Local addresses; each overridable by the environment variable beside it.
DEFAULT_PORTS = {
    **{str(s.function): (s.local.port_variable, s.local.port) for s in _LOCAL_SOURCES if s.local},
    "shopify_pubsub": ("SHOPIFY_PUBSUB_PORT", 8084),
    "sender": ("SENDER_PORT", 8083),
    "sandbox": ("SANDBOX_PORT", 8090),
    # The local shop (sandbox/shop): the platforms' order APIs, delivering its own signed webhooks.
    "shop": ("SHOP_PORT", 8088),
    "pubsub": ("PUBSUB_EMULATOR_PORT", 8085),
    "firestore": ("FIRESTORE_EMULATOR_PORT", 8086),
    # The demo shop page (snippets/), served by `make run` itself; collect allows its origin.
    "demo": ("DEMO_PAGE_PORT", 8000),
}

# Development defaults: printed at start, overridden by the same variables.
DEV_SETTINGS = {
    "GOOGLE_CLOUD_PROJECT": "local-dev",
    "TIKTOK_PIXEL_CODE": "CLOCALPIXEL0001",
    "TIKTOK_ACCESS_TOKEN": "local-sandbox-token",
    **{key: value for source in _LOCAL_SOURCES if source.local for key, value in source.local.settings},
    "CONSENT_POLICY": "opt-in",
    "COLLECT_ALLOWED_ORIGINS": "http://127.0.0.1:8000,http://localhost:8000",
    "COLLECT_KEYS": "local-collect-key",
    "PUBSUB_TOPIC": "tiktok-events",
    "EXPOSE_METRICS": "true",  # GET /metrics on the receivers too (local only; off by default when deployed)
}

DEAD_LETTER_TOPIC_SUFFIX = "-dead-letter"
# The topic Shopify publishes webhooks on (pubsub://PROJECT:TOPIC); SHOPIFY_PUBSUB_TOPIC overrides it.
SHOPIFY_PUBSUB_TOPIC = "shopify-webhooks"
# Production retries with a backoff of 10 s to 10 min over 10 attempts (terraform/pubsub.tf), so a
# message survives hours of TikTok trouble. Locally the emulator cannot back off (see
# create_topology) and redelivers about once a second, so more attempts stand in for the
# backoff: at 33% faults, 20 failures in a row (0.33^20) do not happen; a total outage
# longer than ~20 s still dead-letters, and `make redrive` brings those messages back.
MAX_DELIVERY_ATTEMPTS = 20


def port_of(name: str, environ: Mapping[str, str] = os.environ) -> int:
    variable, default = DEFAULT_PORTS[name]
    return int(environ.get(variable, default))


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def port_holders(port: int) -> list[int] | None:
    """The processes listening on TCP ``port`` ([]: none this user can see; None: the system does not say)."""
    inodes, readable = set(), False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    if not readable:
        return _ss_holders(port)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                pids.append(int(entry.name))
        except OSError:
            continue
    return sorted(pids) or _ss_holders(port) or []


def _ss_holders(port: int) -> list[int] | None:
    """``ss -ltnp``'s answer (where /proc says nothing), or None without ss."""
    try:
        result = subprocess.run(["ss", "-H", "-ltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return sorted({int(pid) for pid in re.findall(r"pid=(\d+)", result.stdout)}) if result.returncode == 0 else None


def busy_ports(ports: Mapping[str, int]) -> str | None:
    """One line naming the ports in use, the processes holding them and the command that frees them; or None."""
    busy = {name: port for name, port in ports.items() if port_is_open(port)}
    if not busy:
        return None
    parts, pids = [], []
    for name, port in busy.items():
        holders = port_holders(port)
        pids += [pid for pid in holders or () if pid not in pids]
        held = f"pid {', '.join(map(str, holders))}" if holders else "a process this user cannot see"
        parts.append(f"{name} {port} ({held})")
    variables = ", ".join(DEFAULT_PORTS[name][0] for name in busy if name in DEFAULT_PORTS)
    other = f", or choose other ports ({variables})" if variables else ""
    free = f"free them with: kill {' '.join(map(str, pids))}" if pids else "find the holder with: sudo ss -ltnp"
    return f"ports already in use: {', '.join(parts)}; {free}{other}"


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


def wait_http(
    url: str, timeout: float = 60.0, process: subprocess.Popen | None = None, until: threading.Event | None = None
) -> None:
    """Wait until ``url`` answers; RuntimeError if ``process`` exits or ``until`` is set first."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        if until is not None and until.is_set():
            raise RuntimeError(f"stopped waiting for {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback only)
                return
        except urllib.error.HTTPError:
            return  # it answers: up (a function whose issue is not done yet answers 501)
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s ({last})")


# ---------------------------------------------------------------------------
# Processes: each in its own group, all remembered, stopped whatever happens meanwhile
# ---------------------------------------------------------------------------

STOP_GRACE_SECONDS = 10.0  # after SIGTERM; then SIGKILL, and at most KILL_WAIT_SECONDS more
KILL_WAIT_SECONDS = 5.0


class _Interrupts:
    """SIGINT and SIGTERM of `run`: the first stops the stack; any later one is noted, never cutting the cleanup.

    A Ctrl-C pressed twice, or `timeout` and make both sending SIGTERM, used to raise a second
    KeyboardInterrupt inside the cleanup and leave functions holding their ports.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self.stopping = False  # the cleanup began: nothing interrupts it any more
        self._deferring = 0
        self._pending = False

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received.append(signum)
        if self.stopping or len(self.received) > 1:
            # os.write, not print: the interrupted code may be in the middle of a print to the same stream.
            with contextlib.suppress(OSError):
                os.write(2, f"{signal.Signals(signum).name} again: already stopping, finishing the cleanup\n".encode())
            return
        if self._deferring:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """In the main thread: an interrupt waits until the block is done (a process started is also remembered)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if not self._deferring and self._pending and not self.stopping:
            self._pending = False
            raise KeyboardInterrupt


INTERRUPTS = _Interrupts()
# Every process group started here, by its leader's pid: the last sweep and the atexit safety net stop
# what the supervisor lost track of (a process started just as Ctrl-C came, a restart during shutdown).
_STARTED: dict[int, subprocess.Popen] = {}
_STARTED_LOCK = threading.Lock()


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time) of a process, from /proc; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[2]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _group_members(groups: Iterable[int]) -> dict[int, list[int]]:
    """The live (not zombie) processes of each group; a group without any is left out."""
    wanted = set(groups)
    members: dict[int, list[int]] = {}
    if not wanted:
        return members
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[1] in wanted and stat[0] != "Z":
            members.setdefault(stat[1], []).append(int(entry.name))
    return members


def _still_ours(process: subprocess.Popen) -> bool:
    """Whether ``process``'s group id still names the group it started (its pid was not reused)."""
    if process.returncode is None:
        return True  # not reaped: the pid cannot have been reused
    stat = _stat(process.pid)
    return stat is None or stat[2] == getattr(process, "started_at", None)


def stop_processes(processes: Iterable[subprocess.Popen], grace: float = STOP_GRACE_SECONDS) -> list[int]:
    """Stop each process's whole group, all at once: SIGTERM, SIGKILL after ``grace`` s; pids that survived."""
    processes = [p for p in processes if p is not None]
    for process in processes:
        process.poll()
    groups = {p.pid: p for p in processes if _still_ours(p)}
    alive = _group_members(groups)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, KILL_WAIT_SECONDS)):
        for group in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            for group in alive:
                groups[group].poll()  # reap the leader, or it stays a zombie in its group
            alive = _group_members(alive)
        if not alive:
            break
    with _STARTED_LOCK:
        for process in processes:
            if process.poll() is not None and not _group_members([process.pid]):
                _STARTED.pop(process.pid, None)
    return sorted(pid for members in alive.values() for pid in members)


def stop_process(process: subprocess.Popen, timeout: float = STOP_GRACE_SECONDS) -> None:
    stop_processes([process], grace=timeout)


def stop_everything_started() -> list[int]:
    """Stop every group this process started and did not see end (idempotent); the pids that survived."""
    with _STARTED_LOCK:
        processes = list(_STARTED.values())
    return stop_processes(processes)


def _start(
    args: list[str], env: Mapping[str, str], log_name: str, cpus: frozenset[int] | None = None
) -> subprocess.Popen:
    """Start ``args`` in its own session, logging to .run/; ``cpus`` pins it and its children (benchmarks)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    log = open(RUN_DIR / f"{log_name}.log", "ab")  # noqa: SIM115 (lives as long as the process)
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    # Own session: the emulators fork Java children that outlive their parent and gunicorn its
    # workers; signalling the whole group is the only reliable way to stop them.
    with INTERRUPTS.deferred(), _STARTED_LOCK:
        process = subprocess.Popen(
            args, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=pin
        )
        stat = _stat(process.pid)
        process.started_at = stat[2] if stat else None  # type: ignore[attr-defined]
        _STARTED[process.pid] = process
    log.close()  # the child has its own copy
    return process


def restore_environ(saved: Mapping[str, str | None]) -> None:
    """Put back environment variables saved as {name: value or None (was unset)}."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# ---------------------------------------------------------------------------
# Serving a function: functions-framework's gunicorn, with requests buffered first
# ---------------------------------------------------------------------------

# In Google Cloud, clients connect to Cloud Run's front end, which terminates
# their connection and proxies each request to the instance. Locally they reach
# gunicorn directly, whose threaded worker gives a connection a thread as soon as
# its first byte arrives; the thread then blocks reading the rest, so as many
# half-sent requests as threads stop the function. The worker below reads each
# request on its event loop first and hands a thread only a complete one (or the
# first BUFFER_BYTES of a large one, whose rest the function reads itself, so body
# limits still refuse a huge body early).
REQUEST_READ_SECONDS = 15.0  # the whole request, headers and body, from its first byte
BUFFER_BYTES = 64 * 1024
_REQUEST_TIMEOUT_ANSWER = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


def request_complete(data: bytes) -> bool:
    """Whether ``data`` holds a whole HTTP/1 request (or as much as should be buffered)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return len(data) >= BUFFER_BYTES  # oversized headers: gunicorn refuses them
    head = data[:end].lower()
    body = len(data) - end - 4
    if b"\nexpect:" in head and b"100-continue" in head:
        return True  # the client sends its body only after gunicorn's 100 Continue
    if body >= BUFFER_BYTES:
        return True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip() == b"transfer-encoding" and b"chunked" in value:
            return data.endswith(b"0\r\n\r\n")  # the last chunk (a false positive only costs a thread's wait)
        if name.strip() == b"content-length":
            try:
                return body >= int(value.strip())
            except ValueError:
                return True  # gunicorn answers 400
    return True


class _DeadlineSocket:
    """A connection whose reads end at the request's deadline, however slowly the client trickles."""

    def __init__(self, sock: socket.socket) -> None:
        self.raw = sock
        self.deadline: float | None = None

    def recv(self, size: int, *flags: int) -> bytes:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the client did not send its request in time")
            self.raw.settimeout(remaining)
        return self.raw.recv(size, *flags)

    def sendall(self, data: Any, *flags: int) -> None:
        self.raw.settimeout(REQUEST_READ_SECONDS)  # a reader that never reads cannot hold the thread either
        self.raw.sendall(data, *flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def buffering_worker_class() -> type:
    """gunicorn's threaded worker, reading each request on its event loop before a thread serves it."""
    import selectors

    from gunicorn.workers import gthread

    class BufferingThreadWorker(gthread.ThreadWorker):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.reading: dict[Any, None] = {}  # connections being buffered, oldest deadline first

        def accept(self, listener: socket.socket) -> None:
            try:
                client, address = listener.accept()
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                    raise
                return
            self.nr_conns += 1
            conn = gthread.TConn(self.cfg, client, address, listener.getsockname())
            conn.sock = _DeadlineSocket(conn.sock)
            self._read(conn)

        def on_client_socket_readable(self, conn: Any, client: Any) -> None:
            self.poller.unregister(client)
            self.keepalived_conns.remove(conn)
            self._read(conn)

        def _read(self, conn: Any) -> None:
            conn.buffered = bytearray()
            conn.sock.deadline = time.monotonic() + REQUEST_READ_SECONDS
            conn.sock.raw.setblocking(False)
            self.reading[conn] = None
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

        def _on_readable(self, conn: Any, _sock: Any) -> None:
            try:
                data = conn.sock.raw.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if data:
                conn.buffered += data
                if not request_complete(bytes(conn.buffered)):
                    return
            self.poller.unregister(conn.sock)
            del self.reading[conn]
            if not data:  # the client went away before finishing
                self.nr_conns -= 1
                conn.close()
                return
            conn.data_ready = True
            self.enqueue_req(conn)

        def handle(self, conn: Any) -> Any:
            pending = getattr(conn, "buffered", None)
            conn.buffered = None
            # The deadline bounds reading, not the wait for a free thread: a complete request that
            # queued behind slow ones (Firestore paused) must not find its connection's time spent.
            conn.sock.deadline = time.monotonic() + REQUEST_READ_SECONDS
            if pending:
                conn.sock.setblocking(True)
                conn.init()
                conn.parser.unreader.unread(bytes(pending))
            return super().handle(conn)

        def murder_pending(self) -> None:
            super().murder_pending()
            now = time.monotonic()
            for conn in list(self.reading):
                if conn.sock.deadline > now:
                    break
                del self.reading[conn]
                with contextlib.suppress(OSError, KeyError, ValueError):
                    self.poller.unregister(conn.sock)
                with contextlib.suppress(OSError):
                    conn.sock.raw.send(_REQUEST_TIMEOUT_ANSWER)
                self.nr_conns -= 1
                conn.close()

    return BufferingThreadWorker


def serve(target: str, source: str, host: str, port: int) -> None:
    """What ``functions-framework --target --source`` does, with :func:`buffering_worker_class` as the worker."""
    from functions_framework import create_app
    from functions_framework._http.gunicorn import GunicornApplication

    app = create_app(target, source, "http")
    GunicornApplication(app, host, port, False, worker_class=buffering_worker_class()).run()


def probe_slow_clients(port: int, connections: int, *, body: bool, host: str = "127.0.0.1") -> float | None:
    """Seconds a normal request takes while ``connections`` half-sent requests stay open (None: no answer in 10 s)."""
    head = b"POST / HTTP/1.1\r\nHost: local\r\nContent-Type: application/json\r\n"
    stalled = head + b"Content-Length: 1000\r\n\r\n{" if body else head + b"X-Half-Sent: "
    sockets = []
    try:
        for _ in range(connections):
            sock = socket.create_connection((host, port), timeout=5)
            sock.sendall(stalled)
            sockets.append(sock)
        time.sleep(0.5)  # let every half-sent request reach the server
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=10):  # noqa: S310 (loopback)
                pass
        except urllib.error.HTTPError:
            pass  # any answer is an answer
        except OSError:
            return None
        return time.monotonic() - started
    finally:
        for sock in sockets:
            sock.close()


# ---------------------------------------------------------------------------
# Supervision: restart what exits, as Cloud Run starts a new instance
# ---------------------------------------------------------------------------

RESTART_LIMIT = 5  # restarts within RESTART_WINDOW_SECONDS; one more exit and the supervisor gives up
RESTART_WINDOW_SECONDS = 120.0
RESTART_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
POLL_SECONDS = 0.25
# An emulator whose port refuses connections for this long is dead even if its
# gcloud wrapper lingers. A paused one (SIGSTOP) still accepts connections.
PORT_DEAD_SECONDS = 2.0


def console(message: str) -> None:
    print(f"[localstack {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped listening"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name} (exit code {code})"
    return f"exited with code {code}"


def port_refuses(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def process_children(pid: int) -> list[int]:
    """Direct children of ``pid`` (a gunicorn master's workers)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(child) for child in path.read_text().split()]
    except (OSError, ValueError):
        return []


@dataclass
class Supervised:
    """One process the supervisor keeps up."""

    name: str
    launch: Callable[[], subprocess.Popen]
    health_url: str
    port: int
    log: Path
    # Emulators keep everything in memory: a restart comes back empty.
    in_memory_state: bool = False
    after_restart: Callable[[], None] | None = None  # e.g. recreate the Pub/Sub topology
    process: subprocess.Popen | None = None
    restarts: int = 0
    worker_restarts: int = 0
    gave_up: bool = False
    retired: bool = False  # stopped on purpose: not to be restarted
    healthy: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    recent_exits: deque[float] = field(default_factory=deque)


class Supervisor:
    """Keeps processes running: restart with backoff, report on the console, give up on a crash loop."""

    def __init__(
        self,
        report: Callable[[str], None] = console,
        limit: int = RESTART_LIMIT,
        window: float = RESTART_WINDOW_SECONDS,
        backoff: tuple[float, ...] = RESTART_BACKOFF_SECONDS,
    ) -> None:
        self.report = report
        self.limit, self.window, self.backoff = limit, window, backoff
        self.services: dict[str, Supervised] = {}
        self.failed = threading.Event()  # set when a service gave up
        self.failures: list[str] = []
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def add(self, service: Supervised) -> None:
        """Launch ``service`` (not yet watched: call :meth:`watch` once it answered)."""
        self.services[service.name] = service
        service.process = service.launch()

    def watch(self, name: str) -> None:
        service = self.services[name]
        service.healthy.set()
        thread = threading.Thread(
            target=self._watch, args=(service, self._stopping), name=f"supervise-{name}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def restart(self, name: str, timeout: float = 90.0) -> None:
        """Start ``name`` again now (stopping it first if it runs) and wait until it answers."""
        service = self.services[name]
        with service.lock:
            old = service.process
            if old is not None:
                _kill_group(old)
            service.healthy.clear()
            service.process = service.launch()
            wait_http(service.health_url, timeout=timeout, process=service.process)
            service.healthy.set()

    def retire(self, name: str) -> None:
        """Stop watching ``name`` (its owner stops it)."""
        service = self.services.pop(name, None)
        if service is not None:
            with service.lock:
                service.retired = True

    def stop(self) -> None:
        """Stop every process and forget it (the supervisor can start a new set afterwards); idempotent.

        All groups at once and bounded (SIGTERM, then SIGKILL), without waiting for a watcher that is
        restarting a service: a process it starts meanwhile sees the stop and is stopped by the watcher.
        """
        stopping, self._stopping = self._stopping, threading.Event()
        stopping.set()
        services = list(self.services.values())
        stop_processes(service.process for service in services)
        deadline = time.monotonic() + 5
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        stop_processes(service.process for service in services)  # what a watcher started before it saw the stop
        self._threads.clear()
        self.services.clear()

    # -- watching --------------------------------------------------------------------------

    def _watch(self, service: Supervised, stopping: threading.Event) -> None:
        workers: set[int] = set(process_children(service.process.pid)) if service.process else set()
        refused_since: float | None = None
        while not stopping.wait(POLL_SECONDS):
            process = service.process
            if process is None:
                return
            code = process.poll()
            if code is None and service.in_memory_state:
                refused = port_refuses(service.port)
                refused_since = (refused_since or time.monotonic()) if refused else None
                if refused_since is None or time.monotonic() - refused_since < PORT_DEAD_SECONDS:
                    continue
            elif code is None:
                workers = self._check_workers(service, process, workers)
                continue
            refused_since = None
            with service.lock:
                if service.retired:
                    return
                if stopping.is_set() or service.process is not process:
                    continue  # stopping, or restarted meanwhile by restart()
                if not self._recover(service, process, code, stopping):
                    return
            workers = set(process_children(service.process.pid))

    def _check_workers(self, service: Supervised, process: subprocess.Popen, known: set[int]) -> set[int]:
        """Report workers gunicorn replaced (it respawns them itself; the exit status is in the log)."""
        current = set(process_children(process.pid))
        if known and current and not (known & current):
            service.worker_restarts += 1
            self.report(
                f"{service.name}: its gunicorn worker {', '.join(map(str, sorted(known)))} died; gunicorn started "
                f"{', '.join(map(str, sorted(current)))} (worker restart {service.worker_restarts}; exit status "
                f"in {service.log})"
            )
        return current or known

    def _recover(
        self, service: Supervised, process: subprocess.Popen, code: int | None, stopping: threading.Event
    ) -> bool:
        """Restart ``service`` after ``process`` ended; False once it gave up."""
        service.healthy.clear()
        now = time.monotonic()
        service.recent_exits.append(now)
        while service.recent_exits and now - service.recent_exits[0] > self.window:
            service.recent_exits.popleft()
        crashes = len(service.recent_exits)
        lost = " Its data was in memory and is gone." if service.in_memory_state else ""
        if crashes > self.limit:
            _kill_group(process)
            line = (
                f"{service.name} {describe_exit(code)} and keeps crashing ({crashes} exits within "
                f"{self.window:.0f} s): gave up, see {service.log}"
            )
            service.gave_up = True
            self.failures.append(line)
            self.report(("!!! " if service.in_memory_state else "") + line)
            self.failed.set()
            return False
        delay = self.backoff[min(crashes, len(self.backoff)) - 1]
        service.restarts += 1
        message = (
            f"{service.name} {describe_exit(code)}; restart {service.restarts} in {delay:g} s "
            f"(log: {service.log}).{lost}"
        )
        self.report(f"!!! EMULATOR DOWN: {message}" if service.in_memory_state else message)
        _kill_group(process)  # what it left behind (gunicorn workers, the emulator's Java child) holds the port
        if stopping.wait(delay):
            return False
        service.process = service.launch()
        try:
            wait_http(service.health_url, timeout=90, process=service.process, until=stopping)
        except (RuntimeError, TimeoutError) as exc:
            if stopping.is_set():
                _kill_group(service.process)
                return False
            self.report(f"{service.name} did not come back: {exc}")
            _kill_group(service.process)
            return True  # the next loop sees the exit and counts it
        if service.after_restart is not None:
            try:
                service.after_restart()
            except Exception as exc:  # noqa: BLE001 (reported; the service itself is up)
                self.report(f"{service.name}: restoring its state failed: {exc!r}")
        service.healthy.set()
        restored = " Restored what the stack creates (topics, subscriptions); data is not." if lost else ""
        self.report(f"{service.name} is back (pid {service.process.pid}) after restart {service.restarts}.{restored}")
        return True


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


@dataclass
class Emulators:
    """The Firestore and Pub/Sub emulators of the Google Cloud CLI."""

    project: str = "local-dev"
    pubsub_port: int = 8085
    firestore_port: int = 8086
    processes: list[subprocess.Popen] = field(default_factory=list)  # Pub/Sub, then Firestore
    # Benchmarks pin the emulators (which stand in for Google's servers) away from the code they measure.
    cpus: frozenset[int] | None = None
    # `make run` supervises them: an emulator that dies is reported and started again, empty.
    supervisor: Supervisor | None = None
    # What to restore after a restart, by emulator ("pubsub": the topology the stack created).
    after_restart: dict[str, Callable[[], None]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{self.pubsub_port}",
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{self.firestore_port}",
            "GOOGLE_CLOUD_PROJECT": self.project,
        }

    @property
    def ports(self) -> dict[str, int]:
        return {"pubsub": self.pubsub_port, "firestore": self.firestore_port}

    def _launch(self, index: int, which: str) -> subprocess.Popen:
        env = {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        project = [f"--project={self.project}"] if which == "pubsub" else []
        process = _start(
            ["gcloud", "beta", "emulators", which, "start", *project,
             f"--host-port=127.0.0.1:{self.ports[which]}", "--quiet"],
            env, f"{which}-emulator", self.cpus,
        )  # fmt: skip
        if index < len(self.processes):
            self.processes[index] = process
        else:
            self.processes.append(process)
        return process

    def start(self) -> None:
        busy = busy_ports({f"{which} emulator": port for which, port in self.ports.items()})
        if busy:
            raise RuntimeError(busy)
        self.processes.clear()
        for index, which in enumerate(self.ports):
            if self.supervisor is None:
                self._launch(index, which)
                continue
            self.supervisor.add(
                Supervised(
                    name=f"{which} emulator",
                    launch=partial(self._launch, index, which),
                    health_url=f"http://127.0.0.1:{self.ports[which]}/",
                    port=self.ports[which],
                    log=RUN_DIR / f"{which}-emulator.log",
                    in_memory_state=True,
                    after_restart=partial(self._restore, which),
                )
            )
        for which, process in zip(self.ports, self.processes, strict=True):
            wait_http(f"http://127.0.0.1:{self.ports[which]}/", timeout=90, process=process)
            if self.supervisor is not None:
                self.supervisor.watch(f"{which} emulator")

    def _restore(self, which: str) -> None:
        restore = self.after_restart.get(which)
        if restore is not None:
            restore()

    def stop(self) -> None:
        if self.supervisor is not None:
            for which in self.ports:
                self.supervisor.retire(f"{which} emulator")
        for process in self.processes:
            stop_process(process)
        self.processes.clear()


def create_topology(
    project: str, topic: str, sender_url: str, max_attempts: int = MAX_DELIVERY_ATTEMPTS, push_suffix: str = "-sender"
) -> dict[str, str]:
    """The production topology, in the emulator: topic, push subscription to the sender, dead letters.

    Needs PUBSUB_EMULATOR_HOST in the environment. Idempotent.
    """
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    names = {
        "topic": publisher.topic_path(project, topic),
        "dead_letter_topic": publisher.topic_path(project, topic + DEAD_LETTER_TOPIC_SUFFIX),
        "push_subscription": subscriber.subscription_path(project, topic + push_suffix),
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
            # No retry_policy here (Terraform sets one): the emulator's backoff scheduling
            # throws on messages that fail together and from then on never retries nor
            # dead-letters a failed message of the subscription (scripts/pubsub_emulator_stall.py).
            # Without one it redelivers a refused push after about a second, up to max_attempts.
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


def create_shopify_topology(project: str, topic: str, push_url: str) -> dict[str, str]:
    """Shopify's delivery topic pushed to the shopify_pubsub entry point, with dead letters (as Terraform builds it)."""
    return create_topology(project, topic, push_url, push_suffix="-push")


@dataclass
class Stack:
    """Every function (served by :func:`serve`) plus the sandbox, against running emulators, supervised."""

    settings: dict[str, str]
    ports: dict[str, int]
    python: str = sys.executable
    supervisor: Supervisor = field(default_factory=Supervisor)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def api_url(self) -> str:
        return self.settings.get("TIKTOK_API_URL") or f"{self.url('sandbox')}/open_api/v1.3/event/track/"

    @property
    def processes(self) -> dict[str, subprocess.Popen]:
        """The process of each function and of the sandbox now (a function's is its gunicorn master)."""
        return {
            name: service.process
            for name, service in self.supervisor.services.items()
            if name in self.ports and service.process is not None
        }

    def function_env(self, name: str) -> dict[str, str]:
        env = {**os.environ, **self.settings, "PYTHONPATH": str(ROOT), "TIKTOK_API_URL": self.api_url}
        env.setdefault("SENDER_THREADS", "80")
        # gunicorn threads: the sender coalesces concurrent pushes into one batch, and a batch can
        # hold at most one event per thread; 80 is the sender's concurrency in terraform/functions.tf.
        env["THREADS"] = env["SENDER_THREADS"] if name == "sender" else env.get("THREADS", "8")
        return env

    def command(self, name: str) -> list[str]:
        if name in ("sandbox", "shop"):
            # Its token (map) comes in TIKTOK_ACCESS_TOKEN, in its environment: a command line is visible in `ps`.
            module = "sandbox" if name == "sandbox" else "sandbox.shop"
            return [self.python, "-m", module, "--host", "127.0.0.1", "--port", str(self.ports[name])]
        return [self.python, str(Path(__file__).resolve()), "serve", "--target", name,
                "--source", str(ROOT / "functions" / FUNCTION_FOLDERS.get(name, name) / "main.py"),
                "--host", "127.0.0.1", "--port", str(self.ports[name])]  # fmt: skip

    def _launch(self, name: str) -> subprocess.Popen:
        if name == "sandbox":
            env = {**os.environ, **self.settings, "PYTHONPATH": str(ROOT)}
            env["TIKTOK_ACCESS_TOKEN"] = self.settings.get("TIKTOK_ACCESS_TOKEN") or DEV_SETTINGS["TIKTOK_ACCESS_TOKEN"]
        elif name == "shop":
            # The shop signs its webhooks with the stack's secrets and delivers them to the stack's webhooks.
            env = {**os.environ, **self.settings, "PYTHONPATH": str(ROOT),
                   "SHOP_SHOPIFY_WEBHOOK_URL": self.url("shopify_webhook") + "/",
                   "SHOP_WOOCOMMERCE_WEBHOOK_URL": self.url("woocommerce_webhook") + "/",
                   **first_tenants(self.settings.get("PIPELINE_TENANTS"))}  # fmt: skip
            env.pop("TIKTOK_ACCESS_TOKEN", None)  # the shop is no client of TikTok's
        else:
            env = self.function_env(name)
        return _start(self.command(name), env, name)

    def health_url(self, name: str) -> str:
        return self.url(name) + ("/" if name in ("sandbox", "shop") else "/healthz")

    def start(self) -> None:
        # The local shop runs when it has a port: `make run` gives it one, most tests and benchmarks do not.
        names = ("sandbox", *FUNCTIONS, *(("shop",) if "shop" in self.ports else ()))
        busy = busy_ports({name: self.ports[name] for name in names})
        if busy:
            raise RuntimeError(busy)
        for name in names:
            self.supervisor.add(
                Supervised(
                    name=name,
                    launch=partial(self._launch, name),
                    health_url=self.health_url(name),
                    port=self.ports[name],
                    log=RUN_DIR / f"{name}.log",
                )
            )
        for name in names:
            wait_http(self.health_url(name), timeout=60, process=self.supervisor.services[name].process)
            self.supervisor.watch(name)

    # -- what tests and operators need to hurt it and see it recover -------------------------

    def pid(self, name: str) -> int:
        """The process the stack started for ``name`` (a function's gunicorn master)."""
        return self.processes[name].pid

    def worker_pids(self, name: str) -> list[int]:
        """The gunicorn workers running the function's code (empty while gunicorn replaces one)."""
        return process_children(self.pid(name))

    def restarts(self, name: str) -> int:
        """How often the supervisor started ``name`` again."""
        return self.supervisor.services[name].restarts

    def wait_healthy(self, name: str, timeout: float = 30.0, *, replacing: int | None = None) -> int:
        """Wait until ``name`` answers (as a new process if ``replacing`` is the pid of one that was killed)."""
        service = self.supervisor.services[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = service.process
            if service.gave_up:
                raise RuntimeError(f"the supervisor gave up on {name}: {self.supervisor.failures[-1]}")
            if (
                process is not None
                and process.pid != replacing
                and service.healthy.wait(max(0.0, min(1.0, deadline - time.monotonic())))
                and process.poll() is None
            ):
                with contextlib.suppress(TimeoutError, RuntimeError):
                    wait_http(service.health_url, timeout=max(0.5, deadline - time.monotonic()), process=process)
                    return process.pid
            time.sleep(0.05)
        raise TimeoutError(f"{name} did not answer again within {timeout:.0f} s (see {RUN_DIR / (name + '.log')})")

    def restart(self, name: str) -> None:
        """Start ``name`` again now and wait until it answers."""
        self.supervisor.restart(name)

    def stop(self) -> None:
        self.supervisor.stop()


# Single-tenant identity: the functions ignore it once PIPELINE_TENANTS is set, so it is not defaulted then.
# A source's secret variable -> the PIPELINE_TENANTS section whose entries it is keyed by.
_TENANT_SECRETS = {
    "TIKTOK_ACCESS_TOKEN": "pixels",
    **{secret: str(s.tenants_key) for s in _LOCAL_SOURCES if s.local and s.tenants_key for secret in s.local.secrets},
}
_SINGLE_TENANT = (
    "TIKTOK_PIXEL_CODE", "CONSENT_POLICY", "COLLECT_ALLOWED_ORIGINS", "COLLECT_KEYS",
    *(key for s in _LOCAL_SOURCES if s.local for key, _ in s.local.settings if key not in _TENANT_SECRETS),
)  # fmt: skip


def _local_tenant_secrets(tenants_json: str, variable: str) -> str | None:
    """A JSON map giving every tenant of the section a local secret (distinct tokens per pixel), or None."""
    try:
        section = json.loads(tenants_json).get(_TENANT_SECRETS[variable])
    except (ValueError, AttributeError):
        return None  # check_settings names the problem
    if not isinstance(section, dict) or not section:
        return None
    default = DEV_SETTINGS[variable]
    if variable == "TIKTOK_ACCESS_TOKEN":
        return json.dumps({code: f"{default}-{code}" for code in section})
    return json.dumps(dict.fromkeys(section, default))


def first_tenants(tenants_json: str | None) -> dict[str, str]:
    """The local shop's shop and site under PIPELINE_TENANTS: its first Shopify shop and WooCommerce site.

    (``make demo`` places its orders there; the single-tenant variables are ignored under tenants.)
    """
    try:
        tenants = json.loads(tenants_json) if tenants_json else {}
    except ValueError:
        return {}  # check_settings names the problem
    found = {}
    for key, variable, field_name in (("shopify_shops", "SHOPIFY_SHOP_DOMAIN", "domain"),
                                      ("woocommerce_sites", "WOOCOMMERCE_SITE_URL", "url")):  # fmt: skip
        entries = tenants.get(key) if isinstance(tenants, dict) else None
        if isinstance(entries, dict) and entries:
            name, entry = next(iter(entries.items()))
            found[variable] = str((entry or {}).get(field_name) or name)
    return found


def dev_settings(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    tenants_json = environ.get("PIPELINE_TENANTS")
    settings = {}
    for key, default in DEV_SETTINGS.items():
        if environ.get(key):
            settings[key] = environ[key]
        elif not tenants_json or key not in (*_SINGLE_TENANT, *_TENANT_SECRETS):
            settings[key] = default
        elif key in _TENANT_SECRETS and (derived := _local_tenant_secrets(tenants_json, key)):
            settings[key] = derived
    for key in ("TIKTOK_API_URL", "PIPELINE_TENANTS", "TIKTOK_TEST_EVENT_CODE", "LOG_LEVEL"):
        if environ.get(key):
            settings[key] = environ[key]
    demo = port_of("demo", environ)
    if settings.get("COLLECT_ALLOWED_ORIGINS") == DEV_SETTINGS["COLLECT_ALLOWED_ORIGINS"] and demo != 8000:
        settings["COLLECT_ALLOWED_ORIGINS"] = f"http://127.0.0.1:{demo},http://localhost:{demo}"  # the demo page's
    return settings


# ---------------------------------------------------------------------------
# Settings checked before anything starts: the functions' own settings classes
# ---------------------------------------------------------------------------

# What to do about a bad value, by variable; any other gets SETTING_FIX_DEFAULT.
SETTING_FIXES = {
    "CONSENT_POLICY": "set opt-in (nothing is sent without the shopper's grant) or opt-out (sent unless denied)",
    "CONSENT_GPC": "set limited (Global Privacy Control sends with limited_data_use) or deny (it withholds)",
    "PIPELINE_TENANTS": "give a JSON object with pixels, shopify_shops and woocommerce_sites "
    "(README, 'Several pixels and shops'), or unset it for one pixel, shop and site",
    "TIKTOK_ACCESS_TOKEN": 'give one token, or a JSON object {"<pixel code>": "<token>"} with a token for every '
    "configured pixel (TIKTOK_PIXEL_CODE, or each of PIPELINE_TENANTS' pixels)",
    "SHOPIFY_WEBHOOK_SECRET": 'give one secret (comma-separated to rotate), or JSON {"<shop>.myshopify.com": '
    '["<secret>"]} for every shop in PIPELINE_TENANTS',
    "WOOCOMMERCE_WEBHOOK_SECRET": 'give one secret, or JSON {"<site host>": "<secret>"} for every site in '
    "PIPELINE_TENANTS",
    "COLLECT_SIGNING_SECRET": 'give one secret (comma-separated to rotate), or JSON {"<pixel code>": ["<secret>"]}',
    "TIKTOK_PIXEL_CODE": "set the pixel code from TikTok Events Manager (letters, digits, - and _), "
    "or set PIPELINE_TENANTS",
    "TIKTOK_API_URL": "give an http(s) URL, or unset it to use the local sandbox",
    "LOG_LEVEL": "set DEBUG, INFO, WARNING or ERROR",
    "DEFAULT_PHONE_REGION": "set a two-letter region code in capitals, such as US or DE",
}
SETTING_FIX_DEFAULT = "correct it or unset it for the default (README, 'Configuration reference')"
# The order webhooks' own PIPELINE_TENANTS entries: how their settings validate them (with their secrets) at the
# first request, and what tenants_in_force lists of them.
_OWN_ENTRIES = {"shopify_webhook": "shops", "woocommerce_webhook": "sites"}
_VARIABLE = re.compile(r"([A-Z][A-Z0-9_]{2,})(?::\s*|\s+)(.*)", re.DOTALL)


def _import_shared() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def _parsed_settings(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Each function's tenants (or tokens), the order webhooks' shops and sites, and the problems found, by variable.

    Exactly what each function does at its first request (``from_env``, then ``tenants()`` and the
    webhook's ``shops()`` or ``sites()``, or ``access_tokens()``), so what passes here starts there.
    Shops and sites are under ``"<function>.<shops or sites>"``.
    """
    _import_shared()
    from pydantic import ValidationError

    from shared.config import ConfigError, SenderSettings, function_settings

    secret_names = set().union(*(cls.SECRET_ENV for cls in function_settings().values()))
    parsed: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, cls in function_settings().items():
        values = {key: environ[key] for key in cls.env_names() if environ.get(key, "") != ""}
        settings = None
        while settings is None:
            try:
                settings = cls.model_validate(values)
            except ValidationError as exc:
                dropped = False
                for error in exc.errors(include_input=False):
                    variable = str(error["loc"][0]) if error["loc"] else "settings"
                    dropped |= variable in values
                    value = values.pop(variable, "")
                    shown = f"{value!r} " if variable not in secret_names and len(value) <= 80 else ""
                    problems.setdefault(variable, f"{shown}is invalid: {error['msg']}")
                if not dropped:
                    break
                # Again without the bad values (their defaults instead), so the variables after them are checked too.
        if settings is None:
            continue
        try:
            if isinstance(settings, SenderSettings):
                parsed[name] = settings.access_tokens()
            elif hasattr(settings, "tenants"):  # every receiver; the reconcile job reads theirs
                parsed[name] = settings.tenants()
                if own := _OWN_ENTRIES.get(name):
                    parsed[f"{name}.{own}"] = getattr(settings, own)(parsed[name])
        except ConfigError as exc:
            match = _VARIABLE.fullmatch(str(exc))
            variable, problem = (match.group(1), match.group(2)) if match else ("settings", str(exc))
            problems.setdefault(variable, problem)
    return parsed, problems


def _pixels_without_token(parsed: Mapping[str, Any]) -> list[str]:
    """The pixels the receivers serve that the sender has no token for (each of their events would die)."""
    tenants, tokens = parsed.get("collect"), parsed.get("sender")
    if tenants is None or tokens is None:
        return []  # a problem of its own was already named
    return sorted(code for code in tenants.pixels if code not in tokens)


def check_settings(environ: Mapping[str, str]) -> list[str]:
    """One line per bad variable: its name, the value's problem and the fix (empty: every function starts)."""
    parsed, problems = _parsed_settings(environ)
    if missing := _pixels_without_token(parsed):
        named = sorted(parsed["sender"])
        problems.setdefault(
            "TIKTOK_ACCESS_TOKEN",
            f"has no token for pixel {', '.join(missing)} (its JSON map names {', '.join(named) or 'no pixel'}); "
            "every event of that pixel would be dead-lettered",
        )
    return [
        f"{variable}: {problem}. Fix: {SETTING_FIXES.get(variable, SETTING_FIX_DEFAULT)}."
        for variable, problem in problems.items()
    ]


def tenants_in_force(environ: Mapping[str, str]) -> list[str]:
    """The pixels, shops and sites the functions will serve, as they will read them."""
    parsed, _ = _parsed_settings(environ)
    collect, shopify, woo, tokens = (
        parsed.get(n) for n in ("collect", "shopify_webhook", "woocommerce_webhook", "sender")
    )
    shops, sites = parsed.get("shopify_webhook.shops") or {}, parsed.get("woocommerce_webhook.sites") or {}
    lines = []
    for code, pixel in sorted(collect.pixels.items()) if collect else ():
        test = f"test events {pixel.test_event_code}" if pixel.test_event_code else "no test event code"
        token = "token set" if tokens and code in tokens else "NO TOKEN (events die)"
        origins = ",".join(pixel.allowed_origins) or "none"
        lines.append(f"  pixel {code}: consent {pixel.consent_policy}, {test}, {token}, origins {origins}, "
                     f"{len(pixel.collect_keys)} collect key(s)")  # fmt: skip
    for domain, shop in sorted(shops.items()) if shopify else ():
        policy = shop.consent_policy or shopify.policy_for(shop.pixel_code)
        test = "test orders sent" if shop.include_test_orders else "test orders skipped"
        lines.append(f"  Shopify shop {domain} -> {shop.pixel_code}: {shop.purchase_topic}, consent {policy}, {test}")
    for site, entry in sorted(sites.items()) if woo else ():
        policy = entry.consent_policy or woo.policy_for(entry.pixel_code)
        lines.append(f"  WooCommerce site {site} -> {entry.pixel_code}: consent {policy}")
    for source in _LOCAL_SOURCES:  # any other source with tenant entries: named as written
        tenants = parsed.get(str(source.function))
        if source.tenants_key and source.function not in _OWN_ENTRIES and tenants is not None:
            for name, raw in sorted(tenants.source_entries(source.tenants_key).items()):
                lines.append(f"  {source.title} {name} -> {raw.get('pixel_code')}")
    return lines


def demo_page_url(demo_port: int, collect_url: str, pixel: str | None = None) -> str:
    """The demo shop page as `make run` serves it, pointed at this stack's collect, with a click id."""
    from urllib.parse import urlencode

    query = {"endpoint": collect_url.rstrip("/") + "/", "ttclid": "E.C.P.demo-click", "transport": "fetch"}
    if pixel and pixel != DEV_SETTINGS["TIKTOK_PIXEL_CODE"]:
        query["pixel"] = pixel
    return f"http://127.0.0.1:{demo_port}/demo/index.html?{urlencode(query, safe=':/')}"


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        pass


def serve_demo_page(port: int) -> http.server.ThreadingHTTPServer:
    """Serve snippets/ (the demo page and collect.js) on loopback ``port``, from a thread of this process."""
    handler = functools.partial(_QuietFiles, directory=str(DEMO_PAGE.parent.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="demo-page", daemon=True).start()
    return server


def _print_banner(
    stack: Stack, emulators: Emulators, topology: dict[str, str], seconds: float, shopify_topic: str
) -> None:
    secret_like = set(_TENANT_SECRETS)
    collect = stack.function_env("collect")
    demo_pixel = None if collect.get("PIPELINE_TENANTS") else collect.get("TIKTOK_PIXEL_CODE")
    lines = [
        f"TikTok Events API pipeline running locally (up in {seconds:.1f}s). Ctrl-C stops everything.",
        "",
        *(f"  {str(s.function):<20} {stack.url(str(s.function))}/   ({s.title})" for s in _LOCAL_SOURCES),
        f"  Shopify over Pub/Sub {stack.url('shopify_pubsub')}/   (push target of topic {shopify_topic})",
        f"  sender (push target) {stack.url('sender')}/",
        f"  TikTok sandbox       {stack.url('sandbox')}/   (open in a browser: what TikTok received, live;"
        f" JSON: /sandbox/events; API: {stack.api_url})",
        *(
            [
                f"  local shop           {stack.url('shop')}/   (Shopify's GraphQL Admin API, WooCommerce's REST API; "
                "`make demo` places its orders there and it delivers their webhooks)"
            ]
            if "shop" in stack.ports
            else []
        ),
        f"  Pub/Sub emulator     127.0.0.1:{emulators.pubsub_port}   topic {topology['topic']}",
        f"  Firestore emulator   127.0.0.1:{emulators.firestore_port}",
        f"  demo shop page       http://127.0.0.1:{stack.ports['demo']}/demo/index.html   (served from snippets/)",
        f"  logs                 {RUN_DIR}/",
        "  counters             GET <function URL>/metrics (Firestore and Pub/Sub operations, outcomes)",
        f"  local commands       make redrive, make demo and the replay read {localenv.stack_file()}",
        "",
        "First event: run `make demo` in another terminal. Or be the shopper: open the demo shop page, press Accept,",
        "then place the order it shows (`make demo ARGS=--cart <its cart token>`):",
        f"  {demo_page_url(stack.ports['demo'], stack.url('collect'), demo_pixel)}",
        "What TikTok received:",
        f"  curl -s {stack.url('sandbox')}/sandbox/events",
        "What was withheld and why (outcome withheld_consent, reason no_consent or denied):",
        f"  grep withheld {RUN_DIR}/shopify_webhook.log {RUN_DIR}/woocommerce_webhook.log {RUN_DIR}/collect.log",
        "",
        "Tenants in force:",
        *tenants_in_force(stack.function_env("collect")),
        "",
        "Settings (override with environment variables):",
    ]
    for key, value in sorted(stack.settings.items()):
        if key in secret_like and value != DEV_SETTINGS.get(key):
            generated = "PIPELINE_TENANTS" in stack.settings and not os.environ.get(key)
            value = value if generated else "(set)"  # the local per-tenant defaults, not the user's secrets
        lines.append(f"  {key}={value}")
    print("\n".join(lines), flush=True)


def _truncate_logs() -> None:
    """Each `make run` starts its logs afresh (restarts within a run append, so a crash's story stays whole)."""
    for log in RUN_DIR.glob("*.log"):
        with contextlib.suppress(OSError):
            log.write_bytes(b"")


def _record_stack(stack: Stack, emulators: Emulators) -> Path | None:
    """Write where the stack is for local commands, unless another live stack holds the file."""
    path = localenv.stack_file()
    holder = localenv.read_stack(path)
    if holder is not None and holder.get("pid") != os.getpid():
        console(f"another stack (pid {holder['pid']}) holds {path}: local commands keep using that one")
        return None
    env = {**stack.settings, **emulators.env, "TIKTOK_API_URL": stack.api_url, **shop_credentials(stack)}
    urls = {name: stack.url(name) for name in stack.ports if name in (*FUNCTIONS, "sandbox", "shop")}
    localenv.write_stack(path, env, urls)
    return path


def shop_credentials(stack: Stack) -> dict[str, str]:
    """What `make reconcile` and `make report --shop-orders` need to read the local shop: its API and its keys.

    The shop's own local values (sandbox/shop/config.py): an admin-created app's token for Shopify, and
    WooCommerce's read/write key, so that ``--repair`` can set a disabled webhook active again.
    """
    if "shop" not in stack.ports:
        return {}
    from sandbox.shop.config import ShopConfig

    local = ShopConfig()
    return {
        "SHOPIFY_ADMIN_URL": stack.url("shop"), "SHOPIFY_ADMIN_TOKEN": local.shopify_admin_token,
        "WOOCOMMERCE_API_URL": stack.url("shop"), "WOOCOMMERCE_API_KEY": local.woocommerce_admin_key,
        "WOOCOMMERCE_API_SECRET": local.woocommerce_admin_secret,
        "RECONCILE_WOOCOMMERCE_WEBHOOK_URL": stack.url("woocommerce_webhook") + "/",
        "RECONCILE_SHOPIFY_WEBHOOK_URL": stack.url("shopify_webhook") + "/",
    }  # fmt: skip


def _lock_holder(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    return None


def _claim_stack() -> tuple[int | None, str | None]:
    """This stack's lock on its record (held while it lives), or the one line saying which stack holds it.

    Checked before anything is written or started: a second `make run` in the same checkout used to
    empty the first one's logs before noticing it.
    """
    record_path = localenv.stack_file()
    record_path.parent.mkdir(parents=True, exist_ok=True)
    lock = record_path.with_name(record_path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _lock_holder(fd)
        os.close(fd)
    else:
        record = localenv.read_stack(record_path)  # a live stack of an older version, which took no lock
        if record is None or record.get("pid") == os.getpid():
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd, None
        holder = record["pid"]
        os.close(fd)
    who = f"pid {holder}" if holder else "another process"
    stop = f"Ctrl-C in its terminal, or `kill {holder}`" if holder else f"see `fuser {lock}`"
    return None, (
        f"another `make run` ({who}) is running from this checkout ({record_path}); nothing was started and its "
        f"files are untouched: stop it first ({stop}), or give this one its own folder and ports "
        "(LOCAL_RUN_DIR=<folder> COLLECT_PORT=... SANDBOX_PORT=...)"
    )


def _share_logs(fresh: bool) -> int:
    """A shared lock on the log folder, held while this stack writes there; ``fresh`` empties it first if alone.

    Stacks that tests start write beside `make run`'s logs (each with its own record): a log folder
    another live stack writes to is never emptied under it.
    """
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(RUN_DIR / "logs.lock", os.O_RDWR | os.O_CREAT, 0o600)
    if fresh:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            console(f"logs not emptied: another stack writes to {RUN_DIR}/ (new lines are appended)")
        else:
            _truncate_logs()
    fcntl.flock(fd, fcntl.LOCK_SH)  # from exclusive, or fresh: shared with other stacks' writers
    return fd


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    settings = dev_settings()
    problems = check_settings({**os.environ, **settings})
    if problems:
        # Stop before anything starts: a function with a bad setting would only ever answer 503.
        print(f"{len(problems)} invalid setting(s); nothing was started:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 2
    lock, held = _claim_stack()
    if held:
        print(held, file=sys.stderr)
        return 2
    ports = {name: port_of(name) for name in DEFAULT_PORTS}
    busy = busy_ports(ports)
    if busy:
        os.close(lock)
        print(f"{busy}; nothing was started", file=sys.stderr)
        return 2
    atexit.register(stop_everything_started)  # the safety net: whatever ends this process, nothing stays behind
    supervisor = Supervisor()
    emulators = Emulators(settings["GOOGLE_CLOUD_PROJECT"], ports["pubsub"], ports["firestore"], supervisor=supervisor)
    stack = Stack(settings=settings, ports=ports, supervisor=supervisor)
    recorded: Path | None = None
    demo_page: http.server.ThreadingHTTPServer | None = None
    logs = _share_logs(fresh=getattr(args, "fresh_logs", False))
    try:
        demo_page = serve_demo_page(ports["demo"])
        emulators.start()
        os.environ.update(emulators.env)
        make_topology = partial(
            create_topology, settings["GOOGLE_CLOUD_PROJECT"], settings["PUBSUB_TOPIC"], stack.url("sender") + "/"
        )
        shopify_topic = os.environ.get("SHOPIFY_PUBSUB_TOPIC") or SHOPIFY_PUBSUB_TOPIC
        make_shopify_topology = partial(
            create_shopify_topology, settings["GOOGLE_CLOUD_PROJECT"], shopify_topic, stack.url("shopify_pubsub") + "/"
        )
        topology = make_topology()
        make_shopify_topology()

        def rebuild_topology() -> None:
            make_topology()
            make_shopify_topology()

        emulators.after_restart["pubsub"] = rebuild_topology
        stack.start()
        recorded = _record_stack(stack, emulators)
        _print_banner(stack, emulators, topology, time.monotonic() - started, shopify_topic)
        if args.smoke:
            print(json.dumps({"startup_seconds": round(time.monotonic() - started, 2)}), flush=True)
            return 0
        supervisor.failed.wait()  # a crash loop: the supervisor said which, in one line
        return 1
    except KeyboardInterrupt:
        return 0
    except (OSError, RuntimeError, TimeoutError) as exc:  # a port taken meanwhile, a process that never answered
        console(f"could not start: {exc} (logs in {RUN_DIR}/)")
        return 1
    finally:
        INTERRUPTS.stopping = True  # from here on, Ctrl-C and SIGTERM are noted, never raised
        _shut_down(supervisor, stack, emulators, recorded, demo_page)
        os.close(logs)
        os.close(lock)


def _shut_down(
    supervisor: Supervisor,
    stack: Stack,
    emulators: Emulators,
    recorded: Path | None,
    demo_page: http.server.ThreadingHTTPServer | None,
) -> None:
    """Stop everything `run` started, each step whatever the one before did; say what survived, if anything."""
    if recorded is not None:
        with contextlib.suppress(OSError):
            recorded.unlink()
    steps: list[Callable[[], Any]] = [supervisor.stop, stack.stop, emulators.stop]
    if demo_page is not None:
        steps.append(demo_page.server_close)
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 (the sweep below still stops what this step left)
            console(f"while stopping: {exc!r}")
    survivors = stop_everything_started()
    if survivors:
        console(f"could not stop pid {', '.join(map(str, survivors))}: `kill -9 {' '.join(map(str, survivors))}`")
    print("stopped.", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="start everything and stay in the foreground")
    run_parser.add_argument("--smoke", action="store_true", help="start, print the startup time, stop")
    # Only `make run` empties .run/*.log: stacks that tests start beside it append, so their logs stay readable.
    run_parser.add_argument("--fresh-logs", action="store_true", help="empty .run/*.log before starting")
    serve_parser = sub.add_parser("serve", help="serve one function as the stack does (buffered requests)")
    serve_parser.add_argument("--target", required=True)
    serve_parser.add_argument("--source", required=True)
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, required=True)
    probe_parser = sub.add_parser(
        "slow-clients", help="time a normal request while N half-sent requests hold connections to a port"
    )
    probe_parser.add_argument("--port", type=int, required=True)
    probe_parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.target, args.source, args.host, args.port)
        return 0
    if args.command == "slow-clients":
        for body in (False, True):
            seconds = probe_slow_clients(args.port, args.connections, body=body)
            shown = "no answer within 10 s" if seconds is None else f"{seconds * 1000:.1f} ms"
            print(f"{args.connections} half-sent {'bodies' if body else 'headers'}: a normal request took {shown}")
        return 0
    INTERRUPTS.install()  # SIGTERM stops the stack as Ctrl-C does; a second one of either never cuts the cleanup
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
