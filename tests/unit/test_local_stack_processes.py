"""The local stack's process plumbing: a request is handed over once complete, a crash loop gives up, a port's
holder is found.
"""

from __future__ import annotations

import os
import subprocess
import sys

import localstack
import pytest


@pytest.mark.parametrize(
    ("data", "complete"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: a", False),
        (b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", True),
        (b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n{}", False),
        (b'POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n{""}', True),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", False),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", True),
        # The client waits for gunicorn's 100 Continue before sending its body.
        (b"POST / HTTP/1.1\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n", True),
        # A large body is handed over after BUFFER_BYTES: the function's own limit refuses the rest unread.
        (b"POST / HTTP/1.1\r\nContent-Length: 31457280\r\n\r\n" + b"x" * localstack.BUFFER_BYTES, True),
        (b"POST / HTTP/1.1\r\nContent-Length: 31457280\r\n\r\n" + b"x" * 1000, False),
    ],
)
def test_a_request_is_handed_to_a_thread_once_complete(data, complete):
    assert localstack.request_complete(data) is complete


def test_a_crash_loop_gives_up_with_one_clear_line(tmp_path):
    reports: list[str] = []
    port = localstack.free_port()
    supervisor = localstack.Supervisor(report=reports.append, limit=2, window=60, backoff=(0.05,))
    crash = [sys.executable, "-c", "import sys, time; time.sleep(0.3); sys.exit(3)"]
    crasher = localstack.Supervised(
        name="crasher",
        launch=lambda: subprocess.Popen(crash, start_new_session=True),
        health_url=f"http://127.0.0.1:{port}/",
        port=port,
        log=tmp_path / "crasher.log",
    )
    supervisor.add(crasher)
    supervisor.watch("crasher")
    try:
        assert supervisor.failed.wait(30), reports
    finally:
        supervisor.stop()
    gave_up = [line for line in reports if "gave up" in line]
    assert len(gave_up) == 1, reports
    assert "crasher exited with code 3 and keeps crashing (3 exits within 60 s)" in gave_up[0]
    assert [line for line in reports if "restart" in line and "exited with code 3" in line][:2] == [
        f"crasher exited with code 3; restart {n} in 0.05 s (log: {tmp_path / 'crasher.log'})." for n in (1, 2)
    ]
    assert crasher.gave_up and crasher.restarts == 2


def test_port_holders_finds_a_listener_and_nobody_on_a_free_port():
    port = localstack.free_port()
    assert localstack.port_holders(port) == []
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert localstack.port_holders(port) == [os.getpid()]
