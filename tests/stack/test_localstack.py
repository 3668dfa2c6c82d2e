"""The README's first command: the stack comes up, prints its URLs, stays up like Cloud Run; Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import localstack
import pytest

from tests.helpers import ROOT, wait_until


def listening_pids(port: int) -> list[int]:
    """The processes holding a listening TCP socket on ``port`` (the emulator's Java child, not its gcloud wrapper)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(fields[9])
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            pids.append(int(entry.name))
    return pids


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


class Output(threading.Thread):
    """Collects a child's merged output as it comes, so the test can wait for a line."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream, self.lines = stream, []

    def run(self) -> None:
        for line in self.stream:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> str:
        try:
            return wait_until(lambda: next((line for line in self.lines if text in line), None), timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"no line with {text!r} within {timeout} s; output:\n{self.text[-4000:]}") from None

    @property
    def text(self) -> str:
        return "".join(self.lines)


@pytest.mark.starts_own_processes(reason="starts `localstack.py run` itself and kills what it started")
def test_run_starts_everything_restarts_what_dies_and_ctrl_c_stops_everything(tmp_path):
    ports = {name: localstack.free_port() for name in localstack.DEFAULT_PORTS}
    env = {**os.environ, **{variable: str(ports[name]) for name, (variable, _) in localstack.DEFAULT_PORTS.items()}}
    env["LOCAL_STACK_FILE"] = str(tmp_path / "stack.json")  # a developer's own `make run` holds .run/stack.json
    env["TIKTOK_PIXEL_CODE"] = "CSMOKETEST01"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "localstack.py"), "run"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    output = Output(process.stdout)
    output.start()
    try:
        output.wait_for("Settings", timeout=150)
        text = output.text
        for name in localstack.FUNCTIONS:
            assert f"http://127.0.0.1:{ports[name]}/" in text
        assert f"127.0.0.1:{ports['pubsub']}" in text and f"127.0.0.1:{ports['firestore']}" in text
        for name in ("pubsub", "firestore", "sandbox", *localstack.FUNCTIONS):
            assert localstack.port_is_open(ports[name]), f"{name} is not listening"

        # Killing the sender's gunicorn master used to stop the whole stack.
        # The master and its worker share the listening socket: the master is the one whose parent is neither.
        holders = listening_pids(ports["sender"])
        (master,) = [pid for pid in holders if parent_of(pid) not in holders]
        os.kill(master, signal.SIGKILL)
        output.wait_for("sender was killed by SIGKILL", timeout=10)
        output.wait_for("sender is back", timeout=60)
        assert httpx.get(f"http://127.0.0.1:{ports['sender']}/healthz", timeout=5).status_code < 500

        # A dead emulator is reported loudly, with what was lost, and started again.
        for pid in listening_pids(ports["firestore"]):
            os.kill(pid, signal.SIGKILL)
        report = output.wait_for("EMULATOR DOWN", timeout=20)
        assert "firestore emulator" in report and "data was in memory and is gone" in report
        output.wait_for("firestore emulator is back", timeout=120)
        assert process.poll() is None, "the stack must survive what it can restart"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        output.join(timeout=5)
    assert process.returncode == 0, output.text
    # Nothing it started may keep a port (the emulators' Java children included).
    wait_until(lambda: not any(localstack.port_is_open(p) for p in ports.values()), timeout=20)
    time.sleep(0.5)
    assert not any(localstack.port_is_open(p) for p in ports.values())


# --- the stack the tests use is supervised the same way --------------------------------------


def test_a_killed_function_answers_again_within_seconds(stack, capfd):
    running = stack.stack
    before = running.restarts("collect")
    master = running.pid("collect")
    os.kill(master, signal.SIGKILL)
    started = time.monotonic()
    new = running.wait_healthy("collect", timeout=30, replacing=master)
    assert new != master
    assert time.monotonic() - started < 15
    assert running.restarts("collect") == before + 1
    assert httpx.get(stack.url("collect") + "/healthz", timeout=5).status_code == 200
    console = capfd.readouterr().err
    assert "collect was killed by SIGKILL (exit code -9); restart" in console


def test_a_killed_gunicorn_worker_is_replaced_and_reported(stack, capfd):
    running = stack.stack
    master = running.pid("shopify_webhook")
    (worker,) = wait_until(lambda: running.worker_pids("shopify_webhook"), timeout=10)
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: (w := running.worker_pids("shopify_webhook")) and worker not in w, timeout=15)
    assert running.wait_healthy("shopify_webhook", timeout=15) == master  # gunicorn's own respawn
    wait_until(lambda: "shopify_webhook: its gunicorn worker" in (capfd.readouterr().err), timeout=5)


@pytest.mark.parametrize("name", ["collect", "shopify_webhook"])
@pytest.mark.parametrize("body", [False, True], ids=["headers", "body"])
def test_sixteen_half_sent_requests_do_not_block_a_normal_request(stack, name, body):
    # Before the buffering worker, 8 of them (one per gunicorn thread) left it unanswered.
    seconds = localstack.probe_slow_clients(stack.stack.ports[name], 16, body=body)
    assert seconds is not None and seconds < 2.0, seconds


def test_a_request_never_finished_is_cut_at_its_deadline(stack, monkeypatch):
    import socket

    with socket.create_connection(("127.0.0.1", stack.stack.ports["collect"])) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: local\r\nContent-Length: 100\r\n\r\n{")
        sock.settimeout(localstack.REQUEST_READ_SECONDS + 5)
        started = time.monotonic()
        answer = sock.recv(200)
    assert answer.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started <= localstack.REQUEST_READ_SECONDS + 2
