"""Shopify webhooks: authenticate, route by topic, map to an order event, act once.

One module per step of a delivery, in the order a delivery takes them:

- ``settings``: what the function reads (:class:`~.settings.ShopifySettings`) and each shop's configuration;
- ``request``: the ``X-Shopify-*`` headers, the topics and limits, :func:`find_shop` (the shop, or why not);
- ``mapping``: pure mapping of the untrusted JSON (ids, money, click ids, identity, properties);
- ``routing``: pure: topic + body -> an action or a final outcome, and the checks a signed body still needs;
- ``flow``: the action carried out (the order flow, records, deletions) within the delivery's deadline;
- ``runtime``: the instance's :class:`Runtime`: shops and tenants, limits, Firestore and Pub/Sub bounded per delivery;
- ``handler``: an HTTPS request or verified delivery to its :class:`~shared.infra.http.Reply`;
- ``pubsub``: the same deliveries pushed by Google Cloud Pub/Sub (authenticated by IAM).

No delivery id is claimed: every effect is idempotent on its own natural key
(the sender's claim on the order event's deterministic event_id, see
:mod:`shared.receive.orders`; the record claims of cancellations and refunds;
deletions and acknowledgements repeat harmlessly), so a redelivery,
concurrent or after a timeout or crash at any step, completes the work or
repeats it harmlessly. A permanent claim taken before the work would instead
outlive a failed attempt and swallow Shopify's retry of an order never published.

Only what ``functions/shopify_webhook/main.py`` uses is re-exported here.
"""

from shared.receive.shopify.handler import handle_request, receive
from shared.receive.shopify.pubsub import handle_push_request, receive_push
from shared.receive.shopify.runtime import Runtime

__all__ = ["Runtime", "handle_push_request", "handle_request", "receive", "receive_push"]
