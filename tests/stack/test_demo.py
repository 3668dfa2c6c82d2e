"""The README's first-event walkthrough, run as written (on the test stack's ports instead of the defaults)."""

from __future__ import annotations

import json
import re
import subprocess

import httpx
import pytest

from tests.helpers import ROOT
from tests.stack.test_first_run import LocalStack, clean_env, local_stack, make  # noqa: F401 (local_stack: a fixture)

pytestmark = [
    pytest.mark.stack,
    pytest.mark.starts_own_processes(
        reason="drives `make run` and the local commands as processes of their own, as a user does"
    ),
]


def walkthrough() -> list[str]:
    """The commands of the README's "Your first event" block, comments removed."""
    section = ROOT.joinpath("README.md").read_text().split("## Your first event", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def on_stack(command: str, stack: LocalStack) -> str:
    """``command`` pointed at the test stack: its sandbox port instead of the default 8090."""
    return command.replace("127.0.0.1:8090", f"127.0.0.1:{stack.ports['sandbox']}")


def test_the_readme_walkthrough_runs_as_written(local_stack):  # noqa: F811 (the fixture)
    commands = walkthrough()
    assert commands[:2] == ["make run", "make demo"], commands  # make run: the local_stack fixture
    env = clean_env(LOCAL_STACK_FILE=str(local_stack.stack_file))

    demo = make("demo", env, timeout=120)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert "-> 200 accepted" in out
    assert '"outcome": "published"' in out
    assert '"outcome": "withheld_consent"' in out and "withheld (consent no_consent): the policy is opt-in" in out
    assert "received: Purchase for pixel CLOCALPIXEL0001" in out and "with the click id" in out
    shopify_order = re.search(r"Shopify orders/paid for order (\d+)", out).group(1)
    woo_order = re.search(r"WooCommerce order\.created for order (\d+)", out).group(1)

    curl, grep = commands[2], commands[3]
    assert curl.startswith("curl ") and grep.startswith("grep withheld")
    received = subprocess.run(  # noqa: S602 (the README's command, as a user types it)
        on_stack(curl, local_stack),
        shell=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    events = json.loads(received.stdout)["events"]
    ours = [e for e in events if e["event_id"] == f"shopify:local-shop.myshopify.com:order:{shopify_order}:Purchase"]
    assert len(ours) == 1 and ours[0]["event_source_id"] == "CLOCALPIXEL0001"
    assert (
        len(ours[0]["user"]["email"][0] if isinstance(ours[0]["user"]["email"], list) else ours[0]["user"]["email"])
        == 64
    )
    assert not [e for e in events if woo_order in e["event_id"]], "the order without consent must not reach TikTok"

    withheld = subprocess.run(  # noqa: S602 (the README's command, as a user types it)
        grep,
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    lines = [line for line in withheld.stdout.splitlines() if woo_order in line]
    assert lines and all("withheld_consent" in line for line in lines), withheld.stdout[-2000:]


def test_demo_without_a_running_stack_says_to_start_one(tmp_path):
    result = make("demo", clean_env(LOCAL_STACK_FILE=str(tmp_path / "none.json")))
    assert result.returncode == 2 and "make run" in result.stderr and "Traceback" not in result.stderr


def test_the_demo_sends_as_a_browser_would_so_collect_does_not_drop_it_as_a_bot(local_stack):  # noqa: F811
    # An HTTP library's own user agent is dropped as a bot: the grant must not depend on luck.
    body = {"pixel_code": "CLOCALPIXEL0001", "key": "local-collect-key", "consent": True}
    bare = httpx.post(
        local_stack.url("collect") + "/", content=json.dumps(body), headers={"Content-Type": "text/plain"}
    )
    assert bare.headers.get("X-Collect-Outcome") == "dropped_bot"
