"""Helpers shared by the tests: signing webhooks, waiting on the sandbox, reading fixtures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
# Copies of ../shared/fixtures (real sample payloads published by others), so the
# tests stand alone; see tests/fixtures/README.md for where each comes from.
FIXTURES = ROOT / "tests" / "fixtures"


def load_fixture(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text())


def shopify_signature(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def woocommerce_signature(body: bytes, secret: str) -> str:
    import html

    key = html.unescape(secret).encode()
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll until ``predicate`` returns something truthy; return it (or raise TimeoutError)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def sandbox_events(sandbox_url: str, **filters: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{sandbox_url}/sandbox/events", params=filters, timeout=5)
    response.raise_for_status()
    return response.json()["events"]


def wait_for_sandbox_events(sandbox_url: str, count: int, timeout: float = 30.0, **filters: str) -> list[dict]:
    """Wait until the sandbox holds at least ``count`` events matching ``filters``."""
    return wait_until(lambda: (e := sandbox_events(sandbox_url, **filters)) and len(e) >= count and e, timeout)
