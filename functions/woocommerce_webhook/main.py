"""WooCommerce webhooks -> TikTok Purchase events: the entry point of :mod:`shared.receive.woocommerce`.

GET is the health check (``/metrics`` when EXPOSE_METRICS is set); POST is a webhook delivery or the
setup ping, which needs no settings. The rest is :class:`shared.infra.entry.Entry`'s.
"""

from __future__ import annotations

from shared.infra.entry import Entry, misconfigured, webhook_not_allowed
from shared.infra.instance import PerInstance
from shared.receive import woocommerce as source

_runtime = PerInstance(source.Runtime.from_env)
reset = _runtime.reset  # tests change the environment between apps
runtime = _runtime.get

woocommerce_webhook = Entry(
    "woocommerce_webhook", _runtime, source.handle_request, not_allowed=webhook_not_allowed,
    on_misconfigured=misconfigured("woocommerce_webhook", "webhook", unread=True),
).function()  # fmt: skip
