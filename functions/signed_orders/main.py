"""Signed orders from any backend -> TikTok events: the entry point of :mod:`shared.sources.signed_orders`.

GET is the health check (``/metrics`` when EXPOSE_METRICS is set); POST is one signed order
(docs/signed-orders.md). The rest is :class:`shared.infra.entry.Entry`'s.
"""

from __future__ import annotations

from shared.infra.entry import Entry, misconfigured, webhook_not_allowed
from shared.infra.instance import PerInstance
from shared.sources.signed_orders.handler import handle_request
from shared.sources.signed_orders.runtime import Runtime

_runtime = PerInstance(Runtime.from_env)
reset = _runtime.reset  # tests change the environment between apps
runtime = _runtime.get

signed_orders = Entry(
    "signed_orders", _runtime, handle_request, not_allowed=webhook_not_allowed,
    on_misconfigured=misconfigured("signed_orders", "endpoint", unread=True),
).function()  # fmt: skip
