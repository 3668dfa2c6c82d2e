"""A per-client token bucket for one instance, in bounded memory.

Each client (an address; an IPv6 client by its /64, which one household or
phone holds) has a bucket of ``burst`` tokens refilled at ``per_minute``; a
request takes one or is refused with the seconds until one is back. At most
``max_clients`` buckets are kept: the least recently seen is dropped first, and
a dropped bucket comes back full, which only forgives a client that had gone
quiet. Limits are per instance; Cloud Armor in front of a load balancer is the
deployment-wide limit (see docs/collect.md, "Rate limit").
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_CLIENTS = 10_000
# The one bucket of requests whose client has no address at all: shared, so limited, never free.
UNKNOWN_CLIENT = "(no address)"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # whole seconds until a token is back (0 when allowed)


def client_key(address: str) -> str:
    """The bucket of an address: IPv4 as it is, IPv6 by its /64 (one subscriber's prefix)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class TokenBuckets:
    """Thread-safe; ``per_minute`` 0 allows everything."""

    def __init__(
        self,
        per_minute: int,
        burst: int,
        *,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_second = per_minute / 60.0
        self.burst = float(max(1, burst))
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, address: str | None) -> Verdict:
        if not self.enabled:
            return Verdict(True)
        key = client_key(address) if address else UNKNOWN_CLIENT
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.per_second)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)  # most recently seen last
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        if allowed:
            return Verdict(True)
        return Verdict(False, max(1, math.ceil((1.0 - tokens) / self.per_second)))
