"""One HTTP client for the shops' APIs: explicit timeouts, bounded retries, one line for a refused secret."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from shared.domain.untrusted import clean_text
from shared.reconcile import AccessRefused, ApiError

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_RETRIES = 5
MAX_WAIT_SECONDS = 60.0  # one wait between attempts, whatever the server asks


def retry_after(response: httpx.Response, attempt: int) -> float:
    """Seconds to wait before the next attempt: the server's Retry-After, else exponential backoff."""
    header = response.headers.get("Retry-After", "").strip()
    if header:
        try:
            return float(min(MAX_WAIT_SECONDS, max(0.0, float(header))))
        except ValueError:
            try:
                moment = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):
                moment = None
            if moment is not None:
                return float(min(MAX_WAIT_SECONDS, max(0.0, moment.timestamp() - time.time())))
    return min(MAX_WAIT_SECONDS, 0.5 * 2.0**attempt)


def _said(response: httpx.Response) -> str:
    """What the API said about a refusal, in one short line (errors and messages name no shopper)."""
    try:
        body = response.json()
    except ValueError:
        return clean_text(response.text[:200]).strip() or response.reason_phrase
    said: Any = body
    if isinstance(body, Mapping):
        said = body.get("errors") or body.get("message") or body.get("error_description") or body.get("error")
    if isinstance(said, list):
        said = "; ".join(str(item.get("message", item) if isinstance(item, Mapping) else item) for item in said)
    return " ".join(clean_text(str(said)).split())[:200] or response.reason_phrase


class Api:
    """Requests to one shop's API, each counted; 429/5xx and transport errors retried with backoff.

    ``credential`` names the setting whose value authenticates the requests, and ``where`` the shop, so
    that a 401/403 is one line saying which secret to fix (:class:`AccessRefused`).
    """

    def __init__(
        self,
        base_url: str,
        *,
        credential: str,
        where: str,
        auth: httpx.Auth | tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retries: int = DEFAULT_RETRIES,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.credential, self.where, self.retries, self.sleep = credential, where, retries, sleep
        self.calls = 0
        self.waited = 0.0
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            auth=auth,
            headers=dict(headers or {}),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            follow_redirects=False,
        )

    def wait(self, seconds: float) -> None:
        self.waited += seconds
        self.sleep(seconds)

    def request(self, method: str, path: str, *, credential: str | None = None, **kwargs: Any) -> httpx.Response:
        """The answer (2xx or 3xx); raises :class:`AccessRefused` on 401/403, :class:`ApiError` otherwise."""
        failure = ""
        for attempt in range(self.retries + 1):
            self.calls += 1
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                failure = f"{type(exc).__name__} reaching {self.where}"
                if attempt < self.retries:
                    self.wait(min(MAX_WAIT_SECONDS, 0.5 * 2.0**attempt))
                continue
            if response.status_code in (401, 403):
                named = credential or self.credential
                raise AccessRefused(f"{named} for {self.where} was refused ({response.status_code}): {_said(response)}")
            if response.status_code in RETRIED_STATUSES:
                failure = f"{self.where} answered {response.status_code}: {_said(response)}"
                if attempt < self.retries:
                    self.wait(retry_after(response, attempt))
                continue
            if response.status_code >= 400:
                raise ApiError(f"{self.where} answered {response.status_code} to {method} {path}: {_said(response)}")
            return response
        raise ApiError(f"{failure} (gave up after {self.retries + 1} attempts)")

    def close(self) -> None:
        self._client.close()
