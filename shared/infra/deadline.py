"""Bounded waits on Firestore and Pub/Sub: an answer within a deadline, whatever the client libraries do.

The client libraries retry an unreachable server for minutes; a webhook must
answer within seconds (Shopify gives 5). :func:`bounded` runs one call in a
daemon thread and stops waiting at its deadline; :class:`Deadline` spreads one
budget over the several calls of a request; :class:`BoundedProxy` applies it to
every method of a store or publisher.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any


class DependencyUnavailable(Exception):
    """Firestore or Pub/Sub did not answer in time or failed; ``detail`` holds no personal data."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency} unavailable: {detail}")
        self.dependency = dependency
        self.detail = detail


# Calls abandoned after their deadline that still wait on a dead server; past this many, new
# calls fail at once instead of piling up threads (each request makes at most a few calls).
_MAX_ABANDONED_CALLS = 64
_abandoned_lock = threading.Lock()
_abandoned = 0


def bounded(dependency: str, seconds: float, call: Callable[[], Any]) -> Any:
    """``call()`` within ``seconds``: the client libraries retry an unreachable server for minutes.

    The call runs in a daemon thread, which may outlive the wait (the client keeps
    retrying) but never delays the answer nor the instance's shutdown.
    """
    global _abandoned
    if _abandoned >= _MAX_ABANDONED_CALLS:
        raise DependencyUnavailable(dependency, f"{_abandoned} earlier calls still hang")
    done = threading.Event()
    result: dict[str, Any] = {}

    def run() -> None:
        global _abandoned
        try:
            result["value"] = call()
        except Exception as exc:
            result["error"] = exc
        finally:
            with _abandoned_lock:
                done.set()
                if result.get("abandoned"):
                    _abandoned -= 1

    # In the caller's context, so its log lines and what it publishes keep the request's trace.
    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(run,), name=f"bounded-{dependency}", daemon=True).start()
    if not done.wait(seconds):
        with _abandoned_lock:
            if not done.is_set():
                result["abandoned"] = True
                _abandoned += 1
                raise DependencyUnavailable(dependency, f"no answer within {seconds:g}s")
    if "error" in result:
        exc = result["error"]
        raise DependencyUnavailable(dependency, f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    return result["value"]


class Deadline:
    """One request's budget for its dependency calls."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends_at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.ends_at - time.monotonic()


class BoundedProxy:
    """``target`` whose every method call is bounded by what is left of ``deadline``."""

    def __init__(self, target: Any, dependency: str, deadline: Deadline) -> None:
        self._target, self._dependency, self._deadline = target, dependency, deadline

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            left = self._deadline.remaining()
            if left <= 0:
                raise DependencyUnavailable(self._dependency, f"the request's {self._deadline.seconds:g}s are spent")
            return bounded(self._dependency, left, lambda: attribute(*args, **kwargs))

        return call
