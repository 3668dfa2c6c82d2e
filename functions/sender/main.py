"""Sender: Pub/Sub push -> TikTok Events API, each event delivered once (see shared/send/).

An HTTP function rather than a CloudEvent one: functions-framework would parse the body itself,
unbounded, before any of this code runs. The request is :mod:`shared.send.request`'s, the rest
:class:`shared.infra.entry.Entry`'s.
"""

from __future__ import annotations

from shared.infra.instance import PerInstance
from shared.send.request import build, entry
from shared.send.sender import Sender

_runtime: PerInstance[Sender] = PerInstance(build, close=lambda s: s.client.close())
reset = _runtime.reset  # tests change the environment between apps
runtime = _runtime.get

sender = entry(_runtime).function()
