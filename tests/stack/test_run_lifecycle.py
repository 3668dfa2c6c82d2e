"""`make run` starts only when it can and always stops whole: interrupts, a second run, bad tokens, busy ports.

Each stack here is started as `make run` starts it, on free ports, with its own run folder
(``LOCAL_RUN_DIR``: logs, stack.json and its lock), so a developer's own stack and the tests of
others are never touched. Every process a stack starts inherits that folder in its environment,
which is how these tests find all of them (gunicorn workers and the emulators' Java included),
whatever process group they ended up in.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import localstack
import pytest

from tests.helpers import ROOT, wait_until
from tests.stack.test_first_run import clean_env
from tests.stack.test_localstack import Output

pytestmark = [
    pytest.mark.stack,
    pytest.mark.starts_own_processes(
        reason="drives `make run` and the local commands as processes of their own, as a user does"
    ),
]

STARTUP_SECONDS = 180


@dataclass
class Run:
    """A `make run` (or `localstack.py run`) process, its output, ports and run folder."""

    process: subprocess.Popen
    output: Output
    ports: dict[str, int]
    run_dir: Path
    env: dict[str, str]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"


# What `make run` runs: the stack's own command, without make in between.
RUN = [sys.executable, str(ROOT / "scripts" / "localstack.py"), "run", "--fresh-logs"]


def run_once(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A `localstack.py run` that is expected to refuse and exit: its whole output."""
    return subprocess.run(RUN, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def run_env(run_dir: Path, **extra: str) -> tuple[dict[str, str], dict[str, int]]:
    ports = {name: localstack.free_port() for name in localstack.DEFAULT_PORTS}
    env = clean_env(LOCAL_RUN_DIR=str(run_dir), **extra)
    env.update({variable: str(ports[name]) for name, (variable, _) in localstack.DEFAULT_PORTS.items()})
    return env, ports


def start(run_dir: Path, *, via_make: bool = False, wait: bool = True, **extra: str) -> Run:
    env, ports = run_env(run_dir, **extra)
    command = ["make", "-s", "--no-print-directory", "run"] if via_make else RUN
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    output = Output(process.stdout)
    output.start()
    running = Run(process, output, ports, run_dir, env)
    if wait:
        try:
            output.wait_for("Settings (override", timeout=STARTUP_SECONDS)
        except BaseException:
            kill_everything(running)
            raise
    return running


def stack_processes(run_dir: Path) -> list[int]:
    """Every live process whose environment names this run folder: what the stack started, however deep."""
    marker = f"LOCAL_RUN_DIR={run_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def still_running(running: Run) -> str:
    """What a stack that did not stop left: each process's command line, and the stack's last output."""
    lines = []
    for pid in stack_processes(running.run_dir):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            lines.append(f"{pid}: {command[:200]}")
    return "processes:\n" + "\n".join(lines) + "\noutput:\n" + running.output.text[-3000:]


def kill_everything(running: Run) -> None:
    """The tests' own safety net: whatever the code under test left, by pid."""
    for pid in stack_processes(running.run_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if running.process.poll() is None:
        running.process.kill()
    running.process.wait(timeout=10)
    running.output.join(timeout=5)


def assert_nothing_left(running: Run) -> None:
    try:
        wait_until(lambda: not stack_processes(running.run_dir), timeout=5)
    except TimeoutError:
        left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120] for pid in
                stack_processes(running.run_dir)}  # fmt: skip
        raise AssertionError(f"processes left behind: {left}") from None
    assert not [name for name, port in running.ports.items() if localstack.port_is_open(port)]
    assert "Traceback" not in running.output.text, running.output.text[-3000:]
    assert "KeyboardInterrupt" not in running.output.text


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("make: ")]
    assert len(lines) == 1, text
    return lines[0]


# --- stopping --------------------------------------------------------------------------------


def test_ctrl_c_twice_during_shutdown_still_stops_every_process_and_frees_every_port(tmp_path):
    running = start(tmp_path / "run")
    try:
        started = stack_processes(running.run_dir)
        assert len(started) >= 8, started  # emulators (with Java), the sandbox, five gunicorn masters and workers
        running.process.send_signal(signal.SIGINT)
        time.sleep(0.3)  # inside the shutdown
        running.process.send_signal(signal.SIGINT)
        time.sleep(0.2)
        running.process.send_signal(signal.SIGINT)
        assert running.process.wait(timeout=60) == 0
        running.output.join(timeout=5)
        assert_nothing_left(running)
        assert "already stopping" in running.output.text and running.output.text.rstrip().endswith("stopped.")
    finally:
        kill_everything(running)


def test_sigterm_to_make_run_as_timeout_sends_it_stops_everything(tmp_path):
    # `timeout 60 make run` signals make's whole process group: make and the stack each get SIGTERM,
    # and make passes its own on to the stack, which so gets two.
    running = start(tmp_path / "run", via_make=True)
    try:
        os.killpg(running.process.pid, signal.SIGTERM)
        try:
            running.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make run still running 60 s after SIGTERM; {still_running(running)}")
        wait_until(lambda: not stack_processes(running.run_dir), timeout=30)
        running.output.join(timeout=5)
        assert_nothing_left(running)
    finally:
        kill_everything(running)


# --- one stack per checkout -------------------------------------------------------------------


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    running = start(
        tmp_path_factory.mktemp("lifecycle") / "run",
        TIKTOK_ACCESS_TOKEN=json.dumps({"CLOCALPIXEL0001": "tok-never-on-a-command-line"}),
        SHOPIFY_WEBHOOK_SECRET="shopify-secret-never-on-a-command-line",
    )
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.send_signal(signal.SIGINT)
            running.process.wait(timeout=60)
        kill_everything(running)


def test_a_second_run_in_the_same_folder_is_refused_in_one_line_and_leaves_the_first_whole(first):
    # Something in the first stack's logs to keep: a request that collect logs.
    httpx.post(first.url("collect") + "/", content=b"{", headers={"Content-Type": "text/plain"}, timeout=10)
    logs = {path: path.read_bytes() for path in first.run_dir.glob("*.log")}
    assert logs and any(logs.values()), "the first stack wrote no logs"
    record = (first.run_dir / "stack.json").read_bytes()

    env = {**first.env}  # the same folder; other ports would not matter: the folder is checked first
    second = run_once(env)
    assert second.returncode != 0
    line = one_line(second.stderr + second.stdout)
    assert f"pid {first.process.pid}" in line and f"kill {first.process.pid}" in line and "Ctrl-C" in line
    for path, before in logs.items():
        after = path.read_bytes()
        assert after.startswith(before), f"{path.name} was emptied or rewritten by the refused run"
    assert (first.run_dir / "stack.json").read_bytes() == record
    assert first.process.poll() is None
    assert httpx.get(first.url("collect") + "/healthz", timeout=5).status_code == 200


def test_no_process_of_the_stack_gets_a_secret_on_its_command_line(first):
    pids = stack_processes(first.run_dir)
    command_lines = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in pids}
    sandbox = [pid for pid, line in command_lines.items() if b"-m\0sandbox\0" in line]  # not sandbox.shop
    assert sandbox, command_lines
    for line in command_lines.values():
        assert b"never-on-a-command-line" not in line and b"--token" not in line, line
    # The sandbox got the token map all the same: it accepts the stack's token.
    (pid,) = sandbox
    assert b"tok-never-on-a-command-line" in Path(f"/proc/{pid}/environ").read_bytes()
    # The local shop is no client of TikTok's: it does not get the token at all.
    shops = [pid for pid, line in command_lines.items() if b"-m\0sandbox.shop\0" in line]
    assert shops, command_lines
    assert all(b"tok-never-on-a-command-line" not in Path(f"/proc/{pid}/environ").read_bytes() for pid in shops)


def test_the_banner_prints_the_demo_page_with_this_stacks_collect_endpoint_and_serves_it(first):
    demo = first.url("demo")
    collect = first.url("collect") + "/"
    (url,) = [line.strip() for line in first.output.lines if line.strip().startswith(f"{demo}/demo/index.html?")]
    assert f"endpoint={collect}" in url and "ttclid=" in url
    page = httpx.get(url, timeout=5)
    assert page.status_code == 200 and "ttCollectConfig" in page.text
    assert httpx.get(f"{demo}/collect.js", timeout=5).status_code == 200  # the page's ../collect.js
    # collect admits the page's origin (the demo port is not the default 8000 here).
    preflight = httpx.options(collect, headers={"Origin": demo, "Access-Control-Request-Method": "POST"}, timeout=5)
    assert preflight.headers.get("Access-Control-Allow-Origin") == demo


# --- refused before anything starts -----------------------------------------------------------


def test_a_token_map_without_the_configured_pixel_is_refused_in_one_line_before_anything_starts(tmp_path):
    env, ports = run_env(tmp_path / "run", TIKTOK_ACCESS_TOKEN='{"COTHER":"abc"}')
    started = time.monotonic()
    result = subprocess.run(["make", "-s", "--no-print-directory", "run"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode != 0
    assert time.monotonic() - started < 15
    (line,) = [line for line in result.stderr.splitlines() if "TIKTOK_ACCESS_TOKEN" in line]
    assert "CLOCALPIXEL0001" in line and "COTHER" in line and "Fix:" in line
    assert "abc" not in result.stderr  # the token itself is never echoed
    assert "running locally" not in result.stdout and "Traceback" not in result.stderr
    assert not any(localstack.port_is_open(port) for port in ports.values())
    assert not (tmp_path / "run" / "stack.json").exists()


def test_a_port_in_use_names_the_process_holding_it_and_the_command_that_frees_it(tmp_path):
    env, ports = run_env(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import socket, sys, time\n"
         "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); print('up', flush=True)\n"
         "time.sleep(120)", str(ports["collect"])],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "up"
        result = run_once(env)
        assert result.returncode != 0
        line = one_line(result.stderr + result.stdout)
        assert f"collect {ports['collect']} (pid {holder.pid})" in line
        assert f"kill {holder.pid}" in line and "COLLECT_PORT" in line
        assert not [n for n, p in ports.items() if n != "collect" and localstack.port_is_open(p)], "nothing may start"
        assert not stack_processes(tmp_path / "run")
    finally:
        holder.kill()
        holder.wait(timeout=10)
