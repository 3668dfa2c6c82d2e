"""The sandbox's Flask app: TikTok's track endpoint, inspection endpoints and page, fault injection.

Routes are thin adapters: the contract lives in :mod:`sandbox.contract`, the
fault rules in :mod:`sandbox.faults`, and the few pure helpers below shape what
is stored and answered. Shared state sits behind one lock; sleeps (latency,
timeouts) happen outside it so one slow request never stalls the others.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox.contract import (
    INVALID_FIELD,
    TOKEN_INVALID,
    TOO_MANY_REQUESTS,
    TRACK_PATH,
    Verdict,
    Violation,
    check_access_token,
    check_body,
    parse_body,
    token_pixels,
)
from sandbox.faults import HTTP_5XX, THROTTLE, TIMEOUT, FaultConfig, parse_faults, pick_fault
from sandbox.inspector import page_file, snapshot

# What a faulted request answers: (HTTP status, TikTok code, message). 50002 is in the
# retryable family, so a sender that reads the body before the status still retries.
_FAULT_ANSWERS = {
    HTTP_5XX: (503, 50002, "Service unavailable (sandbox fault: http_5xx)."),
    TIMEOUT: (504, 50002, "Gateway timeout (sandbox fault: timeout); the client should have given up already."),
    THROTTLE: (200, TOO_MANY_REQUESTS, "Too many requests. Please retry later."),
}

_log_lock = threading.Lock()

# The inspector's files: (content type, name in sandbox/page/). The page loads nothing from elsewhere.
_PAGE_FILES = {
    "/sandbox/inspector.js": ("text/javascript; charset=utf-8", "inspector.js"),
    "/sandbox/inspector.css": ("text/css; charset=utf-8", "inspector.css"),
}
_PAGE_HEADERS = {
    # Only its own script, style and JSON: a value that slipped into the page could load or send nothing.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def log_line(record: dict[str, Any]) -> None:
    """One JSON line on stdout, whole even when threads log at once."""
    line = json.dumps(record, default=str, ensure_ascii=False)
    with _log_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def new_request_id() -> str:
    # TikTok's request ids start with a UTC timestamp; the random tail makes ours unique.
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + uuid.uuid4().hex[:20]


def tiktok_body(verdict: Verdict, request_id: str) -> dict[str, Any]:
    data = {"failed_events": list(verdict.failed_events)} if verdict.failed_events else {}
    return {"code": verdict.code, "message": verdict.message, "request_id": request_id, "data": data}


def failing_event_ids(events: list[dict[str, Any]], fail_event_ids: Collection[str]) -> Verdict | None:
    """The 40002 a permanently bad event gets, for events whose id is on the fault list."""
    failed = [index for index, event in enumerate(events) if event.get("event_id") in fail_event_ids]
    if not failed:
        return None
    first = failed[0]
    message = f"Invalid value for data[{first}].event_id: refused by the sandbox (fail_event_ids)."
    return Verdict(INVALID_FIELD, message, tuple(failed))


def summarize(body: dict[str, Any] | None) -> dict[str, Any]:
    """What the request log keeps of a body, even a rejected one: counts and ids, no event content."""
    body = body or {}
    data = body.get("data")
    source_id = body.get("event_source_id")
    test_code = body.get("test_event_code")
    return {
        "event_count": len(data) if isinstance(data, list) else 0,
        "event_source_id": source_id if isinstance(source_id, str) else None,
        "test_event_code": test_code if isinstance(test_code, str) else None,
    }


def stored_events(body: dict[str, Any], request_id: str, received_at: float) -> list[dict[str, Any]]:
    """Each event as received plus where and when it came in."""
    extra = {
        "event_source_id": body["event_source_id"],
        "test_event_code": body.get("test_event_code"),
        "received_at": received_at,
        "request_id": request_id,
    }
    # The contract refuses unknown event keys, so these can not overwrite anything sent.
    return [{**event, **extra} for event in body["data"]]


def matching(events: Iterable[dict[str, Any]], event_id: str | None, pixel: str | None) -> list[dict[str, Any]]:
    return [
        event
        for event in events
        if (event_id is None or event.get("event_id") == event_id)
        and (pixel is None or event["event_source_id"] == pixel)
    ]


@dataclass
class _State:
    """Everything the sandbox remembers. Hold ``lock`` for every read and write."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: FaultConfig = field(default_factory=FaultConfig)
    rng: random.Random = field(default_factory=random.Random)


def create_app(access_token: str | Mapping[str, str], pixel_codes: set[str] | None = None) -> Flask:
    """A sandbox that accepts ``access_token`` and, when given, only the pixels in ``pixel_codes``.

    ``access_token`` may be a ``{pixel_code: token}`` map, as a deployment with
    several pixels holds: each token is then accepted for its own pixel only, and
    a valid token sent for another pixel gets TikTok's 40001 (no permission).
    """
    if not access_token or (not isinstance(access_token, str) and not all(access_token.values())):
        raise ValueError("the sandbox needs a non-empty access token")
    tokens = None if isinstance(access_token, str) else dict(access_token)
    pixels = frozenset(pixel_codes) if pixel_codes is not None else None
    state = _State()
    app = Flask(__name__, static_folder=None)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep events in the order they were sent

    def judge(body: dict[str, Any] | None, body_error: Verdict | None, faults: FaultConfig, now: float) -> Verdict:
        if faults.reject_token:
            return Verdict(TOKEN_INVALID, "Access token is invalid.")
        denied = check_access_token(
            request.headers.get("Access-Token"), access_token, request.headers.get("Authorization")
        )
        if denied is not None:
            return denied
        if body is None:
            assert body_error is not None
            return body_error
        allowed = pixels
        if tokens is not None:
            allowed = token_pixels(request.headers.get("Access-Token", ""), tokens)
            allowed = allowed if pixels is None else allowed & pixels
        verdict = check_body(body, now=now, pixel_codes=allowed)
        if verdict.ok:
            verdict = failing_event_ids(body["data"], faults.fail_event_ids) or verdict
        return verdict

    @app.post(TRACK_PATH)
    def track() -> tuple[Response, int]:
        received_at = time.time()
        request_id = new_request_id()
        with state.lock:
            faults = state.faults
            fault = None if faults.reject_token else pick_fault(faults, state.rng)
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        body: dict[str, Any] | None = None
        body_error: Verdict | None = None
        try:
            body = parse_body(request.content_type, request.get_data())
        except Violation as exc:
            body_error = Verdict(exc.code, exc.message)
        status = 200
        if fault is not None:
            if fault == TIMEOUT:
                time.sleep(faults.timeout_seconds)
            status, code, message = _FAULT_ANSWERS[fault]
            verdict = Verdict(code, message)
        else:
            verdict = judge(body, body_error, faults, received_at)
        entry = {
            "request_id": request_id,
            "received_at": received_at,
            **summarize(body),
            "code": verdict.code,
            "http_status": status,
            "fault": fault,
        }
        with state.lock:
            state.requests.append(entry)
            if status == 200 and verdict.ok and body is not None:
                state.events.extend(stored_events(body, request_id, received_at))
        g.log_fields = {k: entry[k] for k in ("request_id", "code", "event_count", "event_source_id", "fault")}
        return jsonify(tiktok_body(verdict, request_id)), status

    @app.post(TRACK_PATH.rstrip("/"))
    def track_without_slash() -> tuple[Response, int]:
        # Without this, Flask answers a 308 redirect that httpx does not follow: a confusing failure.
        return jsonify(error="Not Found", message=f"The endpoint is {TRACK_PATH} (with the trailing slash)."), 404

    @app.get("/")
    def health() -> Response:
        # A browser (asking for HTML first) gets the inspector; health checks and curl keep their JSON.
        if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
            return Response(page_file("index.html"), content_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)
        return jsonify(status="ok")

    @app.get("/sandbox/inspector")
    def inspector_page() -> Response:
        return Response(page_file("index.html"), content_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    @app.get("/sandbox/inspector.js")
    @app.get("/sandbox/inspector.css")
    def inspector_asset() -> Response:
        content_type, name = _PAGE_FILES[request.path]
        return Response(page_file(name), content_type=content_type, headers=_PAGE_HEADERS)

    @app.get("/sandbox/inspect")
    def inspect() -> Response:
        """The inspector's rows and chart: names of match keys present, never a value."""
        with state.lock:
            events, requests = list(state.events), list(state.requests)
        response = jsonify(snapshot(events, requests, time.time()))
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/sandbox/events")
    def list_events() -> Response:
        with state.lock:
            events = list(state.events)
        return jsonify(events=matching(events, request.args.get("event_id"), request.args.get("pixel")))

    @app.delete("/sandbox/events")
    def clear_events() -> Response:
        with state.lock:
            cleared = {"cleared_events": len(state.events), "cleared_requests": len(state.requests)}
            state.events.clear()
            state.requests.clear()
        return jsonify(cleared)

    @app.get("/sandbox/requests")
    def list_requests() -> Response:
        with state.lock:
            requests = list(state.requests)
        return jsonify(requests=requests)

    @app.get("/sandbox/faults")
    def show_faults() -> Response:
        with state.lock:
            config = state.faults
        return jsonify(faults=config.to_json())

    @app.post("/sandbox/faults")
    def set_faults() -> tuple[Response, int]:
        try:
            config = parse_faults(json.loads(request.get_data() or b"null"))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            return jsonify(error="invalid fault configuration", reason=str(exc)), 400
        with state.lock:
            state.faults = config
            # A fresh RNG per configuration: the same seed replays the same faults.
            state.rng = random.Random(config.seed)
        return jsonify(faults=config.to_json()), 200

    @app.delete("/sandbox/faults")
    def reset_faults() -> Response:
        config = FaultConfig()
        with state.lock:
            state.faults = config
            state.rng = random.Random()
        return jsonify(faults=config.to_json())

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        response = exc.get_response()  # keeps headers such as Allow on a 405
        response.set_data(json.dumps({"error": exc.name, "message": exc.description}))
        response.content_type = "application/json"
        return response

    @app.before_request
    def start_clock() -> None:
        g.started = time.monotonic()

    @app.after_request
    def log_request(response: Response) -> Response:
        # Method, path, status and ids only: never headers (the token) nor bodies (hashed PII).
        fields = g.get("log_fields", {})
        severity = "ERROR" if response.status_code >= 500 else "WARNING" if fields.get("code") else "INFO"
        log_line(
            {
                "severity": severity,
                "message": f"{request.method} {request.path} {response.status_code}",
                "time": round(time.time(), 3),
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.monotonic() - g.get("started", time.monotonic())) * 1000, 1),
                **fields,
            }
        )
        return response

    return app
