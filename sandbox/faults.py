"""Fault injection for the sandbox: what can go wrong with TikTok, on demand.

Pure: :func:`parse_faults` turns the JSON posted to ``/sandbox/faults`` into a
:class:`FaultConfig` (or a :class:`ValueError` whose message is the reason),
and :func:`pick_fault` draws one request's fault from a caller-owned RNG, so a
seed makes a whole run reproducible.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any

HTTP_5XX = "http_5xx"
THROTTLE = "throttle"
TIMEOUT = "timeout"
FAULT_KINDS = (HTTP_5XX, THROTTLE, TIMEOUT)

# Bounds keep a typo (latency in seconds instead of ms) from hanging a test run.
MAX_LATENCY_MS = 60_000
MAX_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class FaultConfig:
    """The faults in force; the default injects nothing."""

    error_rate: float = 0.0
    http_5xx: float = 0.0
    throttle: float = 0.0
    timeout: float = 0.0
    latency_ms: int = 0
    timeout_seconds: float = 15.0
    seed: int | None = None
    fail_event_ids: tuple[str, ...] = ()
    reject_token: bool = False

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "fail_event_ids": list(self.fail_event_ids)}


def _number(payload: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number")
    if not low <= value <= high:
        raise ValueError(f"{key} must be between {low:g} and {high:g}")
    return float(value)


def parse_faults(payload: Any) -> FaultConfig:
    """Validate a whole fault configuration; keys left out take their defaults."""
    if not isinstance(payload, dict):
        raise ValueError("the body must be a JSON object")
    unknown = sorted(set(payload) - set(FaultConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(unknown)}")
    defaults = FaultConfig()
    error_rate = _number(payload, "error_rate", 0.0, 0.0, 1.0)
    weights = {kind: _number(payload, kind, 0.0, 0.0, math.inf) for kind in FAULT_KINDS}
    if error_rate > 0 and not any(weights.values()):
        raise ValueError(f"error_rate > 0 needs a positive weight for at least one of {', '.join(FAULT_KINDS)}")
    latency_ms = payload.get("latency_ms", 0)
    if isinstance(latency_ms, bool) or not isinstance(latency_ms, int) or not 0 <= latency_ms <= MAX_LATENCY_MS:
        raise ValueError(f"latency_ms must be an integer between 0 and {MAX_LATENCY_MS}")
    timeout_seconds = _number(payload, "timeout_seconds", defaults.timeout_seconds, 0.0, MAX_TIMEOUT_SECONDS)
    if timeout_seconds <= 0:
        raise ValueError("timeout_seconds must be greater than 0")
    seed = payload.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError("seed must be an integer or null")
    fail_event_ids = payload.get("fail_event_ids", [])
    if not isinstance(fail_event_ids, list) or not all(isinstance(i, str) and i for i in fail_event_ids):
        raise ValueError("fail_event_ids must be a list of non-empty strings")
    reject_token = payload.get("reject_token", False)
    if not isinstance(reject_token, bool):
        raise ValueError("reject_token must be a boolean")
    return FaultConfig(
        error_rate=error_rate,
        latency_ms=latency_ms,
        timeout_seconds=timeout_seconds,
        seed=seed,
        fail_event_ids=tuple(fail_event_ids),
        reject_token=reject_token,
        **weights,
    )


def pick_fault(config: FaultConfig, rng: random.Random) -> str | None:
    """The fault for one request (one of :data:`FAULT_KINDS`), or None to answer normally."""
    if config.error_rate <= 0 or rng.random() >= config.error_rate:
        return None
    weights = [getattr(config, kind) for kind in FAULT_KINDS]
    return rng.choices(FAULT_KINDS, weights=weights)[0]
