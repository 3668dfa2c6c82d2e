"""What the collect handler takes: the request as the adapter hands it over; its refusals are :class:`Refused`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared.infra.http import Refused

__all__ = ["HttpRequest", "Refused"]


@dataclass(frozen=True)
class HttpRequest:
    """What the adapter hands over: headers with lowercase names and a bounded body reader."""

    method: str
    headers: Mapping[str, str]
    read: Callable[[int], bytes] = lambda _n: b""
    remote_addr: str | None = None

    def header(self, name: str) -> str:
        return (self.headers.get(name.lower()) or "").strip()
