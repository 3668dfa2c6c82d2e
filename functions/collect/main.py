"""Browser events -> click contexts and TikTok events: the collect endpoint of :mod:`shared.receive.collect`.

GET and HEAD are the health check (``/metrics`` when EXPOSE_METRICS is set); OPTIONS is a CORS preflight;
POST is a collect request (JSON, as ``application/json`` or ``text/plain`` for ``navigator.sendBeacon``).
The rest is :class:`shared.infra.entry.Entry`'s.
"""

from __future__ import annotations

from shared.infra.entry import Entry, misconfigured
from shared.infra.instance import PerInstance
from shared.receive import collect as source

_runtime = PerInstance(source.Runtime.from_env)
reset = _runtime.reset  # tests change the environment between apps

collect = Entry(
    "collect", _runtime, source.handle_request,
    health_methods=("GET", "HEAD"), on_misconfigured=misconfigured("collect", "endpoint"),
).function()  # fmt: skip
