"""The README's first command: the whole stack comes up, prints its URLs, and Ctrl-C stops all of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import localstack

from tests.helpers import ROOT, wait_until


def test_run_starts_everything_and_ctrl_c_stops_everything():
    ports = {name: localstack.free_port() for name in localstack.DEFAULT_PORTS}
    env = {**os.environ, **{variable: str(ports[name]) for name, (variable, _) in localstack.DEFAULT_PORTS.items()}}
    env["TIKTOK_PIXEL_CODE"] = "CSMOKETEST01"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "localstack.py"), "run"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    banner: list[str] = []
    try:
        while True:
            line = process.stdout.readline()
            assert line, "stack exited before printing its banner:\n" + "".join(banner)
            banner.append(line)
            if line.startswith("Settings"):
                break
        text = "".join(banner)
        for name in localstack.FUNCTIONS:
            assert f"http://127.0.0.1:{ports[name]}/" in text
        assert f"127.0.0.1:{ports['pubsub']}" in text and f"127.0.0.1:{ports['firestore']}" in text
        for name in ("pubsub", "firestore", "sandbox", *localstack.FUNCTIONS):
            assert localstack.port_is_open(ports[name]), f"{name} is not listening"
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    # Nothing it started may keep a port (the emulators' Java children included).
    wait_until(lambda: not any(localstack.port_is_open(p) for p in ports.values()), timeout=20)
    time.sleep(0.5)
    assert not any(localstack.port_is_open(p) for p in ports.values())
