"""What a function instance builds once, on first use, and keeps: settings, clients, the runtime.

Cloud Functions reuses an instance for many requests (up to 80 at once), so
clients are made once per instance, not per request, and not at import time
either: a failed start-up (a wrong setting, an unreachable emulator) must be
an answer to one request that names the cause, then tried again on the next,
rather than a crash loop. ``PerInstance`` is that pattern, written once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerInstance(Generic[T]):
    """``build()``'s value, made by the first caller (others wait), kept until :meth:`reset`.

    When ``build`` raises, nothing is kept and the next call tries again.
    """

    def __init__(self, build: Callable[[], T], close: Callable[[T], object] | None = None) -> None:
        self._build = build
        self._close = close
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    def peek(self) -> T | None:
        """The value if it was built, without building it (metrics, shutdown)."""
        return self._value

    def reset(self) -> None:
        """Forget (and close) the value: tests change the environment between apps."""
        with self._lock:
            value, self._value = self._value, None
        if value is not None and self._close is not None:
            self._close(value)
