"""Every function's entry point, written once: method, health, counters, configuration errors, the outcome line.

A ``functions/<name>/main.py`` only names its source: how to build the
instance's runtime and the handler that turns one request into a
:class:`~shared.infra.http.Reply`. :class:`Entry` does the rest, the same way
for every function: GET (and HEAD where asked) is the health check or
``/metrics``; a method the function does not take is a 405; the runtime is
built once per instance on first use (:class:`~shared.infra.instance.PerInstance`);
a :class:`~shared.config.ConfigError` from building it is logged and answered
503 (Pub/Sub and the webhooks retry until the settings are fixed); the reply's
outcome is logged once, then answered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import flask
import functions_framework
from flask.typing import ResponseReturnValue

from shared.config import ConfigError
from shared.infra import log
from shared.infra.http import Reply, refusal
from shared.infra.instance import PerInstance
from shared.infra.metrics import metrics_reply

R = TypeVar("R")

# A handler's view of the request and of the instance's runtime (called only when it needs it).
Handler = Callable[[flask.Request, Callable[[], R]], Reply]


def public_metrics(request: flask.Request, _runtime: R | None) -> ResponseReturnValue:
    """A receiver's GET: ``/metrics`` when exposed (``EXPOSE_METRICS``), else the health check."""
    return metrics_reply(request.path) or ({"status": "ok"}, 200)


def misconfigured(name: str, what: str, *, unread: bool = False) -> Callable[[ConfigError], ResponseReturnValue]:
    """A receiver's 503 for invalid settings: the variable in the log, never in the answer.

    ``unread``: the answer leaves the request body unread (:func:`~shared.infra.http.refusal`).
    """

    def answer(exc: ConfigError) -> ResponseReturnValue:
        log.error(f"{name} is misconfigured", reason=str(exc))
        body = {"error": "misconfigured", "reason": f"the {what}'s settings are invalid; see its logs"}
        return refusal(body, 503) if unread else (body, 503)

    return answer


@dataclass(frozen=True)
class Entry(Generic[R]):
    """One function: its name, its instance's runtime and its handler; called per request by the framework."""

    name: str
    instance: PerInstance[R]
    handle: Handler[R]
    # Methods answered by ``get`` (health, counters); none of them builds the runtime.
    health_methods: tuple[str, ...] = ("GET",)
    get: Callable[[flask.Request, R | None], ResponseReturnValue] = public_metrics
    # The answer to any other method but POST; None: the handler answers every other method itself.
    not_allowed: Callable[[], ResponseReturnValue] | None = None
    # The answer when building the runtime raised ConfigError; None: :func:`misconfigured` of a webhook.
    on_misconfigured: Callable[[ConfigError], ResponseReturnValue] | None = None

    def __call__(self, request: flask.Request) -> ResponseReturnValue:
        if request.method in self.health_methods:
            return self.get(request, self.instance.peek())
        if request.method != "POST" and self.not_allowed is not None:
            return self.not_allowed()
        try:
            reply = self.handle(request, self.instance.get)
        except ConfigError as exc:
            answer = self.on_misconfigured or misconfigured(self.name, "webhook")
            return answer(exc)
        return reply.answer()

    def function(self) -> Callable[[flask.Request], ResponseReturnValue]:
        """The entry point functions-framework calls, under the function's name, every line traced."""

        def entry(request: flask.Request) -> ResponseReturnValue:
            return self(request)

        entry.__name__ = entry.__qualname__ = self.name
        return functions_framework.http(log.traced(entry))


def webhook_not_allowed() -> ResponseReturnValue:
    """A webhook's 405: deliveries are POSTs."""
    return {"error": "method not allowed", "reason": "webhooks are POST requests"}, 405, {"Allow": "GET, POST"}
