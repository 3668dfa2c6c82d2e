"""Reconciliation, hourly: Cloud Scheduler POSTs (with OIDC) and every shop's orders are accounted for.

One run of :mod:`shared.reconcile` over the trailing ``RECONCILE_WINDOW_HOURS``: each shop's orders
against the pipeline's records, the missing paid ones backfilled through the order flow, the
webhooks checked; one log line with ``missing_unsent`` and ``unhealthy_webhooks``
(:mod:`shared.reconcile.function`). GET is the health check; the rest is
:class:`shared.infra.entry.Entry`'s.
"""

from __future__ import annotations

from shared.infra.entry import Entry, misconfigured
from shared.infra.instance import PerInstance
from shared.reconcile.function import Job, handle_request

_runtime = PerInstance(Job.from_env)
reset = _runtime.reset  # tests change the environment between apps

reconcile = Entry(
    "reconcile", _runtime, handle_request, on_misconfigured=misconfigured("reconcile", "reconcile job"),
).function()  # fmt: skip
