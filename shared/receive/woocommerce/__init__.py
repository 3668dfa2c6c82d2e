"""The WooCommerce webhook: a signed v3 order -> one TikTok Purchase per paid order, never lost.

In the order a delivery passes through them:

- ``handler``: :func:`handle`, one POST to its reply (ping, site, signature, the outcome's status);
- ``mapping``: pure, the topic and status rules, the order meta, the v3 order -> ``OrderEvent``;
- ``flow``: the shared order flow with bounded waits, publishing without the context or parking when down;
- ``parking``: pure, the replay records a parked order is logged with, and reading them back;
- ``settings``: what the function reads (:class:`~.settings.WooCommerceSettings`) and each site's configuration;
- ``runtime``: one instance's :class:`Runtime`: sites and tenants, Firestore and Pub/Sub, the time bound on each call.

Only what ``functions/woocommerce_webhook`` uses is re-exported here. See docs/woocommerce.md.
"""

from shared.receive.woocommerce.flow import replay
from shared.receive.woocommerce.handler import MAX_BODY_BYTES, handle, handle_request
from shared.receive.woocommerce.parking import parked_records, record_event_id
from shared.receive.woocommerce.runtime import Runtime

__all__ = ["MAX_BODY_BYTES", "Runtime", "handle", "handle_request", "parked_records", "record_event_id", "replay"]
