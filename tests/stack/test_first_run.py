"""A newcomer's first run: bad settings stop `make run` at once, local commands find the running stack by themselves.

The stack here is started as `make run` starts it (``scripts/localstack.py run``),
on free ports, with ``LOCAL_STACK_FILE`` pointing into a temporary folder so
that a developer's own running stack (and the tests of others) are never touched.
The commands are run through ``make`` with the emulator variables removed from
their environment, as a user's second terminal has them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import localstack
import pytest

from tests.helpers import ROOT
from tests.stack.test_localstack import Output

pytestmark = [
    pytest.mark.stack,
    pytest.mark.starts_own_processes(
        reason="drives `make run` and the local commands as processes of their own, as a user does"
    ),
]

# Everything a developer's shell or this test process could leak into a command.
LEAKY = {
    *localstack.DEV_SETTINGS,
    "PUBSUB_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "PIPELINE_TENANTS",
    "TIKTOK_API_URL",
    "FIRESTORE_COLLECTION_PREFIX",
    "TIKTOK_TEST_EVENT_CODE",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "LOCAL_STACK_FILE",
    *(variable for variable, _ in localstack.DEFAULT_PORTS.values()),
}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LEAKY and not k.startswith("MAKE")}
    return {**env, **extra}


def make(
    target: str, env: dict[str, str], *args: str, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "--no-print-directory", target, *args],
        cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@dataclass
class LocalStack:
    """A `make run` stack: its output, ports and the file local commands find it by."""

    process: subprocess.Popen
    output: Output
    ports: dict[str, int]
    stack_file: Path

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"


def start_local_stack(tmp: Path, **settings: str) -> LocalStack:
    ports = {name: localstack.free_port() for name in localstack.DEFAULT_PORTS}
    stack_file = tmp / "stack.json"
    env = clean_env(LOCAL_STACK_FILE=str(stack_file), **settings)
    env.update({variable: str(ports[name]) for name, (variable, _) in localstack.DEFAULT_PORTS.items()})
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "localstack.py"), "run"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    output = Output(process.stdout)
    output.start()
    running = LocalStack(process, output, ports, stack_file)
    try:
        output.wait_for("Settings (override", timeout=180)
    except BaseException:
        stop_local_stack(running)
        raise
    return running


def stop_local_stack(running: LocalStack) -> None:
    if running.process.poll() is None:
        running.process.send_signal(signal.SIGINT)
        try:
            running.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait(timeout=10)
    running.output.join(timeout=5)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = start_local_stack(tmp_path_factory.mktemp("first-run"))
    try:
        yield running
    finally:
        stop_local_stack(running)
    assert not running.stack_file.exists(), "a stopped stack must not leave its file for commands to trust"


# --- settings checked before anything starts ----------------------------------------------


def run_with(tmp_path: Path, **settings: str) -> tuple[subprocess.CompletedProcess, float, dict[str, int]]:
    ports = {name: localstack.free_port() for name in localstack.DEFAULT_PORTS}
    env = clean_env(LOCAL_STACK_FILE=str(tmp_path / "stack.json"), **settings)
    env.update({variable: str(ports[name]) for name, (variable, _) in localstack.DEFAULT_PORTS.items()})
    started = time.monotonic()
    result = make("run", env, timeout=60)
    return result, time.monotonic() - started, ports


def test_make_run_with_an_invalid_consent_policy_exits_at_once_naming_it(tmp_path):
    result, seconds, ports = run_with(tmp_path, CONSENT_POLICY="maybe")
    assert result.returncode != 0, result.stdout + result.stderr
    assert seconds < 15, f"took {seconds:.1f} s: the settings must be checked before anything starts"
    (line,) = [line for line in result.stderr.splitlines() if "CONSENT_POLICY" in line]
    assert "'maybe'" in line and "opt-in" in line and "opt-out" in line and "Fix:" in line
    assert "running locally" not in result.stdout
    assert not any(localstack.port_is_open(port) for port in ports.values()), "nothing may have been started"
    assert not (tmp_path / "stack.json").exists()


def test_make_run_with_tenants_that_are_not_json_names_pipeline_tenants(tmp_path):
    result, seconds, _ = run_with(tmp_path, PIPELINE_TENANTS="{pixels: nope}")
    assert result.returncode != 0 and seconds < 15
    (line,) = [line for line in result.stderr.splitlines() if line.strip().startswith("PIPELINE_TENANTS")]
    assert "not valid JSON" in line and "Fix:" in line
    # The secrets the stack would derive from valid tenants are not blamed for the tenants' mistake.
    assert "TIKTOK_ACCESS_TOKEN" not in result.stderr and "SHOPIFY_WEBHOOK_SECRET" not in result.stderr


# --- the banner and the local commands ----------------------------------------------------


def test_the_banner_says_where_to_look_and_which_tenants_are_in_force(local_stack):
    text = local_stack.output.text
    assert "make demo" in text and f"{local_stack.url('sandbox')}/sandbox/events" in text
    assert "grep withheld" in text
    assert "pixel CLOCALPIXEL0001: consent opt-in" in text
    assert "Shopify shop local-shop.myshopify.com -> CLOCALPIXEL0001" in text
    assert "WooCommerce site woo.local.test -> CLOCALPIXEL0001" in text


def test_make_redrive_list_works_against_the_running_stack_without_exports(local_stack):
    result = make("redrive", clean_env(LOCAL_STACK_FILE=str(local_stack.stack_file)), "ARGS=--list")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "0 dead event(s) in Firestore, 0 message(s) in the dead-letter subscription" in result.stderr


def test_the_replay_command_works_against_the_running_stack_without_exports(local_stack):
    result = make("replay", clean_env(LOCAL_STACK_FILE=str(local_stack.stack_file)), stdin="")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"records": 0, "failed": 0}


def production_env(tmp_path: Path) -> dict[str, str]:
    """No stack file, no emulators, no project, no credentials, and no metadata server to wait for."""
    return clean_env(
        LOCAL_STACK_FILE=str(tmp_path / "no-stack.json"), HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
        GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9", NO_GCE_CHECK="True",
    )  # fmt: skip


@pytest.mark.parametrize("target", ["redrive", "replay"])
def test_without_a_stack_or_credentials_a_command_explains_itself_in_one_line(tmp_path, target):
    args = ("ARGS=--list",) if target == "redrive" else ()
    result = make(target, production_env(tmp_path), *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("make: ")]
    assert len(lines) == 1, result.stderr
    assert "GOOGLE_CLOUD_PROJECT" in lines[0] and "make run" in lines[0] and "credentials" in lines[0]


def test_make_run_starts_each_run_with_fresh_logs(tmp_path):
    log = localstack.RUN_DIR / "first-run-test.log"
    localstack.RUN_DIR.mkdir(exist_ok=True)
    log.write_text("from an earlier run\n")
    try:
        run_with(tmp_path, CONSENT_POLICY="maybe")  # refused before anything starts: logs untouched
        assert log.read_text() == "from an earlier run\n"
        localstack._truncate_logs()
        assert log.read_text() == ""
    finally:
        log.unlink(missing_ok=True)
