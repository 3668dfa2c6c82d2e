"""Reconciliation: every order the shop sold, accounted for.

A webhook can be lost for good: Shopify gives up after its retries (and deletes an app's
subscription), WooCommerce disables a webhook after five failed deliveries and never resends.
Reconciliation asks the shop itself for the orders of a window and compares each with what the
pipeline holds under its deterministic event id (``shared.domain.events.order_event_id``):
sent, withheld, skipped, dead, pending, or **missing**: nothing at all. ``--backfill`` runs each
missing paid order through the same order flow a webhook takes (``shared.receive.orders``), so a
late webhook and a backfill make one Purchase (the sender's claim on the event id).

One name per step, in the order a run takes them:

- this module: the types every platform shares (:class:`ShopOrder`, :class:`Webhook`, the
  :class:`ShopOrders` protocol a platform's client implements, :class:`Shop`, :class:`Channel`);
- ``api``: one HTTP client for the shops' APIs (timeouts, bounded retries, one line for a refused secret);
- ``settings``: what a run reads (windows, credentials, local stand-in addresses);
- ``shopify`` / ``woocommerce``: each platform's client and channel, named by its source definition's
  ``orders`` hook (``shared.sources``): the framework reads the hook, never the platform;
- ``compare``: the pipeline's records of an order (read by key, classified by ``shared.report``);
- ``job``: a whole run (list, compare, backfill, webhook health, repair), its table and JSON;
  ``python -m shared.reconcile`` / ``scripts/reconcile.py`` / ``make reconcile`` run it, and
  ``functions/reconcile`` runs it hourly.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from shared.outcome import Outcome
    from shared.reconcile.settings import ReconcileSettings

# What an order is, in the shop's own terms (one each, checked in this order by every platform).
TEST, CANCELLED, REFUNDED, PAID, UNPAID = "test", "cancelled", "refunded", "paid", "unpaid"
CLASSES = (PAID, TEST, CANCELLED, REFUNDED, UNPAID)

# Webhook states as the platforms spell them, and ours for a topic without any subscription.
ACTIVE, MISSING = "active", "missing"


class ApiError(Exception):
    """A shop's API failed for good (after bounded retries): one line for the operator."""


class AccessRefused(ApiError):
    """The shop refused our credentials (401/403): the line names the secret to fix."""


@dataclass(frozen=True)
class ShopOrder:
    """One order as the shop lists it: enough to compare, and its webhook-shaped body to backfill."""

    order_id: str  # the platform's numeric id, as order event ids spell it
    name: str  # what the merchant sees ("#1001"); never a shopper's data
    kind: str  # one of CLASSES
    created_at: dt.datetime | None = None
    # The order's body in the shape its webhook delivers (Shopify: fetched only when backfilled).
    body: Mapping[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Webhook:
    """One webhook subscription of the shop (or a topic it lacks: ``status`` :data:`MISSING`)."""

    topic: str
    status: str
    delivery_url: str | None = None
    id: str | None = None

    @property
    def healthy(self) -> bool:
        return self.status == ACTIVE


class ShopOrders(Protocol):
    """A shop's own view: its orders of a window, and the webhooks that should have brought them."""

    @property
    def calls(self) -> int:
        """API requests made so far (retries and token requests included)."""
        ...

    def list(self, since: dt.datetime, until: dt.datetime) -> Iterator[ShopOrder]:
        """Orders created in ``[since, until)`` (each once), classified."""
        ...

    def details(self, order: ShopOrder) -> ShopOrder:
        """The order with its webhook-shaped ``body`` (a second request where listing leaves it out)."""
        ...

    def webhooks(self) -> builtins.list[Webhook] | None:
        """The order webhooks of our endpoint and the topics that have none; None: not checkable here."""
        ...

    def repair(self, webhook: Webhook) -> Webhook:
        """Set a paused or disabled webhook active again (raises :class:`ApiError` when it cannot)."""
        ...


# One order -> the order flow's outcome: what a webhook delivering it would do.
Deliver = Callable[[ShopOrder], "Outcome"]
# (store, publisher) -> a shop's order flow over them, made once per run.
Flow = Callable[[Any, Any], Deliver]


@dataclass
class Shop:
    """One shop or site to reconcile: who it is, whose pixel its claims are under, its client and flow."""

    source: str  # the source's name (shopify, woocommerce): the order event ids' first part
    key: str  # the shop key of its order event ids (myshopify domain, site host)
    pixel_code: str
    orders: ShopOrders | None  # None: no credentials (``problem`` says which to set)
    flow: Flow
    problem: str | None = None


class Channel(Protocol):
    """What a source definition's ``orders`` hook names: its shops, each with a client and the order flow."""

    source: str

    def shops(self, settings: ReconcileSettings, environ: Mapping[str, str]) -> list[Shop]: ...
