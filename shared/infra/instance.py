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
from typing import Generic, NoReturn, TypeVar, cast

from shared.infra.deadline import BoundedProxy, Deadline

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


S = TypeVar("S")
P = TypeVar("P")


class MadeInsideTheBound:
    """A client's methods, with the client itself fetched inside the bounded call.

    Making the client on first use may hang or fail as well (credentials, an
    unreachable emulator); inside the bound that is an unavailable dependency
    like any other, not an internal error.
    """

    def __init__(self, get: Callable[[], object]) -> None:
        self._get = get

    def __getattr__(self, name: str) -> Callable[..., object]:
        return lambda *args, **kwargs: getattr(self._get(), name)(*args, **kwargs)


class Clients(Generic[S, P]):
    """One instance's Firestore store and Pub/Sub publisher, each made on first use, once.

    :meth:`bounded_store` and :meth:`bounded_publisher` are the one way a request's
    calls are held to a budget: every method call within what is left of the
    :class:`~shared.infra.deadline.Deadline` the caller gives, made once per request
    (its calls share the budget) or once per call (each gets the whole budget).
    """

    # Whether the client is made inside the bound (a client that cannot be made is then an
    # unavailable dependency, in time) or before the bound (its error raised as it is).
    clients_made_inside_the_bound = False

    def __init__(self, store: Callable[[], S], publisher: Callable[[], P]) -> None:
        self._store = PerInstance(store)
        self._publisher = PerInstance(publisher)

    @property
    def store(self) -> S:
        return self._store.get()

    @property
    def publisher(self) -> P:
        return self._publisher.get()

    def bounded_store(self, deadline: Deadline) -> S:
        """The store, every call failing with DependencyUnavailable once ``deadline`` is spent."""
        target = MadeInsideTheBound(lambda: self.store) if self.clients_made_inside_the_bound else self.store
        return cast(S, BoundedProxy(target, "firestore", deadline))

    def bounded_publisher(self, deadline: Deadline) -> P:
        """The publisher, every call failing with DependencyUnavailable once ``deadline`` is spent."""
        target = MadeInsideTheBound(lambda: self.publisher) if self.clients_made_inside_the_bound else self.publisher
        return cast(P, BoundedProxy(target, "pubsub", deadline))


def first_use(value: T | None, factory: Callable[[], T] | None, name: str) -> Callable[[], T]:
    """What makes a Runtime's client: the one given, else its factory (clients made at first use)."""
    if value is not None:
        return lambda: value
    if factory is not None:
        return factory

    def missing() -> NoReturn:
        raise RuntimeError(f"the Runtime was given no {name} and no {name}_factory")

    return missing
