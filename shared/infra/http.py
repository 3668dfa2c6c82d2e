"""What a function answers (:class:`Reply`), the one refusal (:class:`Refused`), and answers that leave a body unread.

functions-framework reads the whole request body after every response that
is not streamed (its ``read_request`` after-request hook) and Flask keeps it
in memory: a 413 for a 30 MB upload would read and hold all 30 MB after all,
and a 429 would pay for the very body it refuses. A streamed response is the
one case the hook leaves alone, so every refusal goes out as one, with
``Connection: close`` so the server does not wait for the rest either.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import flask
from flask.typing import ResponseReturnValue

if TYPE_CHECKING:
    from shared.outcome import Outcome


def refusal(body: Any, status: int, headers: Mapping[str, str] | None = None) -> flask.Response:
    """A JSON (or empty) refusal after which the rest of the request body is never read."""
    payload = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    response = flask.Response(iter([payload]), status=status, mimetype="application/json")
    response.headers.update(headers or {})
    response.headers["Content-Length"] = str(len(payload))
    response.headers["Connection"] = "close"
    return response


def headers_of(request: flask.Request) -> Mapping[str, str]:
    """The request's headers as the domain reads them: werkzeug's ``Headers``, case-insensitive.

    It maps str to str but is not declared a ``Mapping``; the object itself is passed, not a copy,
    so lookups stay case-insensitive and nothing is copied per request.
    """
    return cast("Mapping[str, str]", request.headers)


class Refused(Exception):
    """A request we answer with a 4xx and nothing else done; the reason names what to fix."""

    def __init__(self, status: int, error: str, reason: str, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason, self.fields = status, error, reason, fields

    def body(self) -> dict[str, Any]:
        """The answer's JSON: the error, the reason and, when there are any, the fields at fault."""
        body: dict[str, Any] = {"error": self.error, "reason": self.reason}
        if self.fields:
            body["fields"] = self.fields
        return body


@dataclass(frozen=True)
class Reply:
    """One function's answer to one request: status, JSON body (None: empty), headers, and its outcome.

    The domain decides all of it; the entry point only logs ``outcome`` (once
    per request) and turns the rest into Flask's answer with :meth:`response`.
    """

    status: int
    body: dict[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    outcome: Outcome | None = None

    def answer(self, **fields: Any) -> ResponseReturnValue:
        """The entry point's last step: the request's one outcome line (with ``fields``), then :meth:`response`."""
        if self.outcome is not None:
            self.outcome.log(**fields)
        return self.response()

    def response(self) -> ResponseReturnValue:
        """Flask's answer; a 4xx or 5xx leaves whatever of the request body is unread unread."""
        if self.status >= 400:
            return refusal(self.body, self.status, self.headers)
        return (self.body if self.body is not None else ""), self.status, dict(self.headers)
