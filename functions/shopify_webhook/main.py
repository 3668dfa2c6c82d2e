"""Shopify webhooks -> TikTok events: the two entry points of :mod:`shared.receive.shopify`.

One per delivery method, each deployed as its own function: ``shopify_webhook`` is the public HTTPS
endpoint (authenticated by the HMAC), ``shopify_pubsub`` the push target of the Shopify delivery topic's
subscription (authenticated by IAM: only the push identity may invoke it, so it never faces the public;
see :mod:`shared.receive.shopify.pubsub`; a 503 has Pub/Sub redeliver). Both end in the same
verified-delivery path. GET is the health check (``/metrics`` when EXPOSE_METRICS is set), POST a
delivery; the rest is :class:`shared.infra.entry.Entry`'s.
"""

from __future__ import annotations

from shared.infra.entry import Entry, webhook_not_allowed
from shared.infra.instance import PerInstance
from shared.receive import shopify as source

_runtime = PerInstance(source.Runtime.from_env)
reset = _runtime.reset  # tests change the environment between apps
runtime = _runtime.get

shopify_webhook = Entry("shopify_webhook", _runtime, source.handle_request, not_allowed=webhook_not_allowed).function()
shopify_pubsub = Entry(
    "shopify_pubsub", _runtime, source.handle_push_request, not_allowed=webhook_not_allowed
).function()
