"""What the collect handler takes: the request as the adapter hands it over; and its refusals (4xx with a reason)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class HttpRequest:
    """What the adapter hands over: headers with lowercase names and a bounded body reader."""

    method: str
    headers: Mapping[str, str]
    read: Callable[[int], bytes] = lambda _n: b""
    remote_addr: str | None = None

    def header(self, name: str) -> str:
        return (self.headers.get(name.lower()) or "").strip()


class Refused(Exception):
    """A request we answer with a 4xx; the reason names what to fix."""

    def __init__(self, status: int, error: str, reason: str, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason, self.fields = status, error, reason, fields
