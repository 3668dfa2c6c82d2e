"""The TikTok client and the classification of TikTok's answers.

Classification is pure (a table of codes); the client is checked against the
real sandbox served in this process (:class:`RecordingSandbox`, also used by
the sender tests), which also records the exact bytes it received.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.tiktok.api import TikTokClient, classify, classify_exception

TOKEN = "test-token-abc"
PIXEL = "CTESTPIXEL0001"


class RecordingSandbox:
    """The sandbox app on a free port in a thread; records every track request as received.

    ``hide_failed_events`` removes ``data.failed_events`` from answers, as real
    TikTok may not name the failing events.
    """

    def __init__(self, token: str = TOKEN, hide_failed_events: bool = False) -> None:
        from werkzeug.serving import make_server

        from sandbox.app import create_app
        from sandbox.contract import TRACK_PATH

        self.app = create_app(token)
        self.hide_failed_events = hide_failed_events
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.api_url = self.url + TRACK_PATH
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        from werkzeug.wrappers import Request, Response

        request = Request(environ)
        body = request.get_data()
        if request.method == "POST" and request.path.startswith("/open_api/"):
            with self._lock:
                self.received.append({"headers": dict(request.headers), "body": body})
        # The body was read: hand the app a fresh stream holding the same bytes.
        environ = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        response = Response.from_app(self.app, environ)
        if self.hide_failed_events and request.path.startswith("/open_api/"):
            answer = json.loads(response.get_data())
            if isinstance(answer.get("data"), dict):
                answer["data"].pop("failed_events", None)
            response.set_data(json.dumps(answer))
        return response(environ, start_response)

    def faults(self, **config: Any) -> None:
        self.http.post("/sandbox/faults", json=config).raise_for_status()

    def events(self, **filters: str) -> list[dict[str, Any]]:
        return self.http.get("/sandbox/events", params=filters).json()["events"]

    def requests(self) -> list[dict[str, Any]]:
        return self.http.get("/sandbox/requests").json()["requests"]

    def close(self) -> None:
        self.server.shutdown()
        self.http.close()


@pytest.fixture
def sandbox() -> Iterator[RecordingSandbox]:
    server = RecordingSandbox()
    yield server
    server.close()


def _body(event_id: str = "e-1", pixel: str = PIXEL, **event: Any) -> dict[str, Any]:
    item = {"event": "Purchase", "event_time": 1_700_000_000, "event_id": event_id, "user": {"ip": "203.0.113.9"}}
    return {"event_source": "web", "event_source_id": pixel, "data": [{**item, **event}]}


# --- classification (pure) ---------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "verdict"),
    [
        (200, 0, "ok"),
        (200, 20001, "ok"),
        (200, 40100, "retry"),
        (200, 40132, "retry"),
        (200, 40700, "retry"),
        (200, 50000, "retry"),
        (200, 50002, "retry"),
        (200, 51003, "retry"),
        (200, 60001, "retry"),
        (200, 61000, "retry"),
        (200, 40000, "reject"),
        (200, 40001, "reject"),
        (200, 40002, "reject"),
        (200, 40061, "reject"),
        (200, 40062, "reject"),
        (200, 40102, "reject"),
        (200, 40104, "reject"),
        (200, 40105, "reject"),
        (200, 41234, "reject"),  # unknown 4xxxx: permanent
        (503, 0, "retry"),  # the HTTP status wins over a body claiming success
        (500, 40002, "retry"),
        (429, 40002, "retry"),
        (408, None, "retry"),
    ],
)
def test_classify_by_body_code_then_http_status(status: int, code: int | None, verdict: str) -> None:
    body = json.dumps({"code": code, "message": "m", "request_id": "r1"}) if code is not None else b""
    assert classify(status, body).verdict == verdict


def test_http_200_error_is_not_success() -> None:
    result = classify(200, {"code": 40002, "message": "Invalid value for event_id: not a valid string."})
    assert (result.verdict, result.code, result.request_level) == ("reject", 40002, False)
    assert "event_id" in result.describe()


def test_token_and_permission_errors_refuse_the_whole_request() -> None:
    for code in (40001, 40102, 40104, 40105):
        result = classify(200, {"code": code, "message": "denied"})
        assert result.request_level, code
    assert "TIKTOK_ACCESS_TOKEN" in classify(200, {"code": 40105, "message": "bad"}).message


def test_failed_event_indexes_are_read_when_given() -> None:
    result = classify(200, {"code": 40002, "message": "x", "data": {"failed_events": [3, 1, "x", -1, True]}})
    assert result.failed_indexes == (1, 3)
    assert classify(200, {"code": 40002, "message": "x", "data": {}}).failed_indexes == ()


def test_answers_without_a_tiktok_code() -> None:
    assert classify(200, b"<html>gateway</html>").verdict == "retry"  # 2xx without a code: not delivered
    not_found = classify(404, b"Not Found")
    assert (not_found.verdict, not_found.request_level) == ("reject", True)
    assert "TIKTOK_API_URL" in not_found.message


def test_no_answer_is_retried() -> None:
    assert classify_exception(httpx.ReadTimeout("timed out")).verdict == "retry"
    assert classify_exception(httpx.ConnectError("refused")).verdict == "retry"


# --- the client ----------------------------------------------------------------


def test_client_posts_json_with_the_access_token_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"code": 0, "message": "OK", "request_id": "rid-1"})

    client = TikTokClient("https://tiktok.test/open_api/v1.3/event/track/", 5, transport=httpx.MockTransport(handler))
    result = client.track(_body(), "tok-1")
    assert (result.ok, result.request_id) == (True, "rid-1")
    (request,) = seen
    assert request.headers["Access-Token"] == "tok-1"
    assert "authorization" not in request.headers
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == _body()


def test_client_turns_network_failures_into_retries() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = TikTokClient("https://tiktok.test/x/", 5, transport=httpx.MockTransport(handler))
    assert client.track(_body(), "tok").verdict == "retry"


@pytest.mark.parametrize(("field", "value"), [("currency", "EUR\ud800"), ("value", float("nan")), ("value", 1e400)])
def test_a_body_json_can_not_carry_is_refused_here_without_a_request(field: str, value: Any) -> None:
    seen: list[httpx.Request] = []
    client = TikTokClient("https://tiktok.test/x/", 5, transport=httpx.MockTransport(lambda r: seen.append(r)))
    body = _body()
    body["data"][0]["properties"] = {field: value}
    result = client.track(body, "tok")
    assert (result.verdict, result.local, result.request_level) == ("reject", True, False)
    assert "serialise" in result.message and "\ud800" not in result.message
    assert seen == []


def test_client_creates_one_http_client_and_reuses_it() -> None:
    client = TikTokClient("https://tiktok.test/x/", 5, transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    client.track(_body(), "t")
    first = client._http()
    client.track(_body(), "t")
    assert client._http() is first


def test_against_the_sandbox_success_bad_token_and_bad_event(sandbox: RecordingSandbox) -> None:
    client = TikTokClient(sandbox.api_url, 5)
    ok = client.track(_body("good-1"), TOKEN)
    assert ok.ok and ok.request_id
    denied = client.track(_body("good-2"), "wrong-token")
    assert (denied.verdict, denied.request_level) == ("reject", True)
    bad_body = _body("bad-1")
    bad_body["data"][0]["event_id"] = 123  # a number is not a valid event_id
    bad = client.track(bad_body, TOKEN)
    assert (bad.verdict, bad.code, bad.failed_indexes) == ("reject", 40002, (0,))
    assert [e["event_id"] for e in sandbox.events()] == ["good-1"]


def test_against_the_sandbox_timeouts_are_retries(sandbox: RecordingSandbox) -> None:
    sandbox.faults(error_rate=1.0, timeout=1, timeout_seconds=2.0)
    client = TikTokClient(sandbox.api_url, 0.3)
    result = client.track(_body("slow-1"), TOKEN)
    assert result.verdict == "retry"
    assert "Timeout" in result.message
    assert sandbox.events() == []
