"""TikTok Events API 2.0 client and the classification of its answers.

TikTok answers HTTP 200 with a ``code`` in the body, errors included, so the
body decides. :func:`classify` turns any answer (or failure to get one) into an
:class:`ApiResult` whose ``verdict`` says what the sender does next:

- ``ok``: 0, and 20001 (partial success: treated as success, detail logged);
- ``retry``: throttling and server trouble (40100, 40132, 40700, 5xxxx, 60001,
  61000, unknown codes outside 4xxxx), HTTP 5xx, 408, 429, timeouts and
  connection errors: Pub/Sub redelivers with backoff; throttling (40100,
  40132, HTTP 429) is marked ``throttled``, which closes the sender's gate;
- ``reject``: permanent (40000, 40001, 40002, 40061, 40062, token errors
  40102/40104/40105, any other 4xxxx, an HTTP 4xx without a TikTok code): the
  event is dead-lettered with TikTok's code and message, re-drivable later.

``request_level`` marks rejections about the request as a whole (token,
permission, wrong URL): splitting the batch can not help, so the sender does
not bisect those.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any, TypedDict

from shared.destinations import Answer, Verdict

if TYPE_CHECKING:  # httpx is imported when the first client is built
    import httpx

SUCCESS_CODES = frozenset({0, 20001})
RETRYABLE_CODES = frozenset({40100, 40132, 40700, 60001, 61000})
# Refusals of the whole request, whatever events it carries.
REQUEST_LEVEL_CODES = {
    40001: "no permission on the pixel (check the pixel code and that the token belongs to it)",
    40102: "access token expired (rotate TIKTOK_ACCESS_TOKEN)",
    40104: "access token empty (set TIKTOK_ACCESS_TOKEN)",
    40105: "access token invalid (check TIKTOK_ACCESS_TOKEN)",
}
RETRYABLE_HTTP = frozenset({408, 429})
# "Too many requests" and "frequency limited", and HTTP 429: TikTok asks for fewer requests, not another one
# (the answer is marked ``throttled``; the sender's gate then holds every request of the instance back).
THROTTLE_CODES = frozenset({40100, 40132})
THROTTLE_HTTP = 429
MAX_MESSAGE_CHARS = 500


ApiResult = Answer  # the name the TikTok code and its tests know the seam's answer by


def _verdict_for_code(code: int) -> Verdict:
    if code in SUCCESS_CODES:
        return "ok"
    if code in RETRYABLE_CODES or 50000 <= code <= 59999:
        return "retry"
    if 40000 <= code <= 49999:
        return "reject"
    # Unknown families: retrying is safe (TikTok deduplicates, Pub/Sub bounds the attempts).
    return "retry"


def _failed_indexes(data: Any) -> tuple[int, ...]:
    if not isinstance(data, dict):
        return ()
    failed = data.get("failed_events")
    if not isinstance(failed, list):
        return ()
    indexes = []
    for item in failed:
        # The sandbox lists indexes; accept {"index": n} objects too.
        value = item.get("index") if isinstance(item, dict) else item
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            indexes.append(value)
    return tuple(sorted(set(indexes)))


def _short(text: Any) -> str:
    return str(text)[:MAX_MESSAGE_CHARS]


class _Common(TypedDict):
    """What every answer of :func:`classify` carries."""

    code: int | None
    request_id: str | None
    http_status: int


def classify(http_status: int, body: bytes | str | dict[str, Any] | None) -> ApiResult:
    """Classify one HTTP answer from the track endpoint (pure)."""
    parsed: Any = body
    if isinstance(body, (bytes, str)):
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
    code = parsed.get("code") if isinstance(parsed, dict) else None
    if isinstance(code, bool) or not isinstance(code, int):
        code = None
    message = _short(parsed.get("message", "")) if isinstance(parsed, dict) else ""
    request_id = parsed.get("request_id") if isinstance(parsed, dict) else None
    request_id = request_id if isinstance(request_id, str) else None
    common = _Common(code=code, request_id=request_id, http_status=http_status)

    if http_status >= 500 or http_status in RETRYABLE_HTTP:
        throttled = http_status == THROTTLE_HTTP or code in THROTTLE_CODES
        return ApiResult("retry", message=message or f"HTTP {http_status} from TikTok", throttled=throttled, **common)
    if code is None:
        if 200 <= http_status < 300:
            # A 2xx without a code is not TikTok's contract: do not count it as delivered.
            return ApiResult("retry", message=f"HTTP {http_status} without a TikTok code in the body", **common)
        return ApiResult(
            "reject",
            message=f"HTTP {http_status} without a TikTok code: check TIKTOK_API_URL",
            request_level=True,
            **common,
        )
    verdict = _verdict_for_code(code)
    if verdict == "reject" and code in REQUEST_LEVEL_CODES:
        hint = REQUEST_LEVEL_CODES[code]
        return ApiResult("reject", message=f"{message} ({hint})" if message else hint, request_level=True, **common)
    failed = _failed_indexes(parsed.get("data")) if verdict == "reject" else ()
    return ApiResult(verdict, message=message, failed_indexes=failed, throttled=code in THROTTLE_CODES, **common)


def classify_exception(exc: BaseException) -> ApiResult:
    """No answer at all (timeout, connection refused or reset): always worth a retry."""
    return ApiResult(
        "retry", code=None, message=_short(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    )


def encode_request(body: dict[str, Any]) -> bytes:
    """The request body as UTF-8 JSON; ValueError (naming no value) for what JSON or UTF-8 can not carry."""
    try:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string holds an unpaired UTF-16 surrogate") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValueError(f"not JSON-serialisable: {type(exc).__name__}") from None


class TikTokClient:
    """One connection-reusing httpx client per instance, created on first use."""

    def __init__(self, api_url: str, timeout_seconds: float, transport: httpx.BaseTransport | None = None) -> None:
        self.api_url = api_url
        self.timeout_seconds = timeout_seconds
        self._transport = transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import httpx

                    self._client = httpx.Client(
                        timeout=httpx.Timeout(self.timeout_seconds),
                        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                        transport=self._transport,
                        headers={"Content-Type": "application/json"},
                    )
        return self._client

    def track(self, body: dict[str, Any], access_token: str) -> ApiResult:
        """POST one Events API request; never raises for network or API errors."""
        import httpx

        try:
            payload = encode_request(body)
        except ValueError as exc:
            # Rejected, not retried: the same events would fail the same way; deliver() bisects
            # the request so that only the event that can not be written is refused.
            return ApiResult("reject", None, f"could not serialise the request ({exc})", local=True)
        client = self._http()
        try:
            response = client.post(self.api_url, content=payload, headers={"Access-Token": access_token})
        except httpx.HTTPError as exc:
            return classify_exception(exc)
        return classify(response.status_code, response.content)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
