"""One reconciliation run: each shop's orders of a window against the pipeline's records, backfill, webhooks.

Every source whose definition names an ``orders`` hook (``shared.sources``) is asked for its
shops; each shop's orders are listed, each is given one state (the report's outcome of its
Purchase, or ``missing`` / ``ignored`` when the pipeline holds nothing), the missing paid ones
(and the test or cancelled ones never recorded) go through the webhook's own order flow when
backfilling, and the shop's webhooks are checked (and, with repair, set active again).

``python -m shared.reconcile`` is the command (``scripts/reconcile.py``, ``make reconcile``);
``functions/reconcile`` runs :func:`run` hourly. Exit status of the command: 0 when every paid
order is accounted for and every webhook is healthy, 1 when missing orders remain unsent or a
webhook is unhealthy, 2 on bad input or a shop or Firestore that could not be read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared import report
from shared.config import ConfigError
from shared.domain.events import order_event_id, shop_key
from shared.outcome import Kind
from shared.reconcile import CLASSES, PAID, ApiError, Channel, Deliver, Shop, ShopOrder, Webhook
from shared.reconcile.compare import (
    BACKFILLED_CLASSES,
    IGNORED,
    MISSING,
    PURCHASE,
    STATES,
    Documents,
    read_outcomes,
    state,
)
from shared.reconcile.settings import ReconcileSettings
from shared.sources import registry

# A missing paid order is accounted for once the order flow decided about it (sent, withheld, skipped).
DECIDED = frozenset({Kind.PUBLISHED, Kind.WITHHELD_CONSENT, Kind.SKIPPED, Kind.DUPLICATE})
SHOWN_ORDERS = 20  # per shop in the table; the JSON lists them all


@dataclass
class OrderLine:
    """One order the run did something about (or could not): ids and what happened, never a shopper's data."""

    order_id: str
    name: str
    kind: str
    state: str
    outcome: str | None = None  # the order flow's answer when backfilled
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class ShopResult:
    """One shop's reconciliation: its orders by class and by state, what backfill did, its webhooks."""

    source: str
    shop: str
    orders: int = 0
    classes: Counter[str] = field(default_factory=Counter)
    states: Counter[str] = field(default_factory=Counter)
    skipped_by_rule: Counter[str] = field(default_factory=Counter)
    backfilled: Counter[str] = field(default_factory=Counter)  # the order flow's outcomes of what ran through it
    missing_unsent: int = 0
    lines: list[OrderLine] = field(default_factory=list)
    webhooks: list[Webhook] | None = None
    repaired: list[str] = field(default_factory=list)  # repair's one line per webhook
    api_calls: int = 0
    truncated: bool = False
    error: str | None = None

    @property
    def unhealthy(self) -> int:
        return sum(not webhook.healthy for webhook in self.webhooks or ())

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "shop": self.shop, "orders": self.orders,
            "classes": {name: self.classes[name] for name in CLASSES},
            "states": {name: self.states[name] for name in STATES},
            "skipped_by_rule": dict(sorted(self.skipped_by_rule.items())),
            "backfilled": dict(sorted(self.backfilled.items())),
            "missing_unsent": self.missing_unsent, "unhealthy_webhooks": self.unhealthy,
            "webhooks": None if self.webhooks is None else [w.__dict__ for w in self.webhooks],
            "repaired": self.repaired, "api_calls": self.api_calls, "truncated": self.truncated,
            "error": self.error, "orders_acted_on": [line.to_json() for line in self.lines],
        }  # fmt: skip


@dataclass
class Pipeline:
    """Firestore and the events topic, each made on first use (reading never connects to Pub/Sub)."""

    make_store: Callable[[], Any]
    make_publisher: Callable[[], Any]
    _store: Any = None
    _flows: dict[int, Deliver] = field(default_factory=dict)

    @property
    def store(self) -> Any:
        if self._store is None:
            self._store = self.make_store()
        return self._store

    def deliver(self, shop: Shop) -> Deliver:
        """The shop's order flow over this pipeline, made once."""
        if id(shop) not in self._flows:
            publisher = self.make_publisher()
            self.make_publisher = lambda: publisher
            self._flows[id(shop)] = shop.flow(self.store, publisher)
        return self._flows[id(shop)]


def channels() -> list[Channel]:
    """Every source's ``orders`` hook (``shared.sources``), loaded."""
    return [registry.load(source.orders) for source in registry.SOURCES if source.orders]


def shops(settings: ReconcileSettings, environ: Mapping[str, str], only: Sequence[str] = ()) -> list[Shop]:
    """The configured shops and sites (``only``: those whose key is named), credentials or not."""
    wanted = {shop_key(name) for name in only}
    found = [shop for channel in channels() for shop in channel.shops(settings, environ)]
    if wanted:
        unknown = sorted(wanted - {shop.key for shop in found})
        if unknown:
            raise ConfigError(f"{unknown[0]!r} is not a configured shop or site "
                              f"(configured: {', '.join(s.key for s in found) or 'none'})")  # fmt: skip
        found = [shop for shop in found if shop.key in wanted]
    return found


def _listed(shop: Shop, since: dt.datetime, until: dt.datetime, bound: int) -> tuple[list[ShopOrder], bool]:
    assert shop.orders is not None
    orders: list[ShopOrder] = []
    for order in shop.orders.list(since, until):
        if len(orders) >= bound:
            return orders, True
        orders.append(order)
    return orders, False


def reconcile_shop(
    shop: Shop,
    pipeline: Pipeline,
    since: dt.datetime,
    until: dt.datetime,
    *,
    backfill: bool,
    repair: bool = False,
    max_orders: int = 50_000,
    check_webhooks: bool = True,
) -> ShopResult:
    """One shop, start to end; an API or store failure is the result's ``error``, never raised."""
    result = ShopResult(shop.source, shop.key)
    if shop.orders is None:
        result.error = shop.problem or "no credentials"
        return result
    try:
        orders, result.truncated = _listed(shop, since, until, max_orders)
        ids = [order_event_id(shop.source, shop.key, order.order_id, PURCHASE) for order in orders]
        records = read_outcomes(pipeline.store, shop.pixel_code, ids)
        for order, event_id in zip(orders, ids, strict=True):
            record = records.get(event_id)
            result.orders += 1
            result.classes[order.kind] += 1
            result.states[state(order.kind, record)] += 1
            if record is not None and record.outcome == report.SKIPPED:
                result.skipped_by_rule[record.rule or "other"] += 1
            if record is None and order.kind in BACKFILLED_CLASSES:
                unsent = OrderLine(order.order_id, order.name, order.kind, state(order.kind, None))
                result.lines.append(_backfilled(shop, pipeline, order) if backfill else unsent)
        for line in result.lines:
            if line.outcome:
                result.backfilled[line.outcome] += 1
        result.missing_unsent = sum(line.kind == PAID and line.outcome not in DECIDED for line in result.lines)
        if check_webhooks:
            result.webhooks = shop.orders.webhooks()
            if repair and result.webhooks:
                result.webhooks = [_repaired(shop, webhook, result) for webhook in result.webhooks]
    except ApiError as exc:
        result.error = str(exc)
    except Exception as exc:  # Firestore or Pub/Sub: their messages are long and nested, one line says enough
        result.error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    result.api_calls = shop.orders.calls
    return result


def _backfilled(shop: Shop, pipeline: Pipeline, order: ShopOrder) -> OrderLine:
    """One order through the webhook's flow; a failure is the line's outcome (retried by the next run)."""
    line = OrderLine(order.order_id, order.name, order.kind, MISSING if order.kind == PAID else IGNORED)
    assert shop.orders is not None
    try:
        outcome = pipeline.deliver(shop)(shop.orders.details(order))
    except ApiError as exc:
        line.outcome, line.reason = "failed", str(exc)
        return line
    line.outcome, line.reason = str(outcome.kind), outcome.reason[:300]
    return line


def _repaired(shop: Shop, webhook: Webhook, result: ShopResult) -> Webhook:
    if webhook.healthy:
        return webhook
    assert shop.orders is not None
    try:
        fixed = shop.orders.repair(webhook)
    except ApiError as exc:
        result.repaired.append(f"{webhook.topic}: not repaired: {exc}")
        return webhook
    result.repaired.append(f"{webhook.topic} (webhook {webhook.id}): {webhook.status} -> {fixed.status}")
    return fixed


@dataclass
class Run:
    """A whole run: its window, what it did, and each shop's result."""

    since: dt.datetime
    until: dt.datetime
    backfill: bool
    repair: bool
    shops: list[ShopResult]

    @property
    def missing_unsent(self) -> int:
        return sum(result.missing_unsent for result in self.shops)

    @property
    def unhealthy_webhooks(self) -> int:
        return sum(result.unhealthy for result in self.shops)

    @property
    def errors(self) -> list[str]:
        return [f"{r.source} {r.shop}: {r.error}" for r in self.shops if r.error]

    def counts(self) -> dict[str, int]:
        """The run's totals, as the job's log line carries them."""
        total: Counter[str] = Counter()
        for result in self.shops:
            total.update(result.states)
            total["orders"] += result.orders
            total["backfilled"] += result.backfilled[Kind.PUBLISHED]
            total["api_calls"] += result.api_calls
        return {"orders": total["orders"], **{name: total[name] for name in STATES},
                "backfilled": total["backfilled"], "missing_unsent": self.missing_unsent,
                "unhealthy_webhooks": self.unhealthy_webhooks, "shops": len(self.shops),
                "shop_errors": len(self.errors), "api_calls": total["api_calls"]}  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "backfill": self.backfill,
                "repair": self.repair, **self.counts(), "shops_detail": [r.to_json() for r in self.shops]}  # fmt: skip

    @property
    def exit_status(self) -> int:
        if self.errors:
            return 2
        return 1 if self.missing_unsent or self.unhealthy_webhooks else 0


def run(
    targets: Iterable[Shop],
    pipeline: Pipeline,
    since: dt.datetime,
    until: dt.datetime,
    *,
    backfill: bool,
    repair: bool = False,
    max_orders: int = 50_000,
) -> Run:
    results = [reconcile_shop(shop, pipeline, since, until, backfill=backfill, repair=repair, max_orders=max_orders)
               for shop in targets]  # fmt: skip
    return Run(since, until, backfill, repair, results)


# --- printing -------------------------------------------------------------------------------

_COLUMNS = (("orders", None), ("sent", report.SENT), ("withheld", report.WITHHELD), ("skipped", report.SKIPPED),
            ("dead", report.DEAD), ("pending", report.PENDING), ("missing", MISSING), ("backfilled", Kind.PUBLISHED),
            ("ignored", IGNORED))  # fmt: skip


def render(done: Run) -> str:
    mode = "backfill" if done.backfill else "compare only (--backfill sends the missing)"
    lines = [f"reconcile {done.since.isoformat()} .. {done.until.isoformat()}: orders created in the window; {mode}"]
    for result in done.shops:
        lines += ["", f"{result.source} {result.shop}" + (f"  ({result.api_calls} API calls)" if result.api_calls
                                                            else "")]  # fmt: skip
        if result.error and not result.orders:
            lines.append(f"  NOT RECONCILED: {result.error}")
            continue
        lines.append("  " + "".join(f"{title:>11}" for title, _ in _COLUMNS))
        values = [result.orders, *(result.backfilled[n] if n == Kind.PUBLISHED else result.states[n]
                                   for _, n in _COLUMNS[1:])]  # fmt: skip
        lines.append("  " + "".join(f"{value:>11}" for value in values))
        lines.append("  in the shop: " + ", ".join(f"{n} {result.classes[n]}" for n in CLASSES if result.classes[n]))
        if result.truncated:
            lines.append("  TRUNCATED at --max-orders: narrow the window or raise the bound")
        if result.skipped_by_rule:
            lines.append(
                "  skipped by rule: " + ", ".join(f"{r} {c}" for r, c in sorted(result.skipped_by_rule.items()))
            )
        for line in result.lines[:SHOWN_ORDERS]:
            what = f"{line.outcome}: {line.reason}" if line.outcome else "not backfilled"
            lines.append(f"  {line.state} {line.kind} order {line.name} (id {line.order_id}): {what}")
        if len(result.lines) > SHOWN_ORDERS:
            lines.append(f"  ... and {len(result.lines) - SHOWN_ORDERS} more (--json lists them all)")
        if result.missing_unsent:
            lines.append(f"  {result.missing_unsent} paid order(s) missing and not sent"
                         + ("" if done.backfill else ": run with --backfill"))  # fmt: skip
        if result.webhooks is not None:
            lines.append("  webhooks: " + (", ".join(f"{w.topic} {w.status.upper() if not w.healthy else w.status}"
                                                     for w in result.webhooks) or "none"))  # fmt: skip
            if result.unhealthy and not done.repair:
                lines.append("  an unhealthy webhook misses orders: --repair sets a disabled one active again")
        lines += [f"  repair: {line}" for line in result.repaired]
        if result.error:
            lines.append(f"  ERROR: {result.error}")
    if not done.shops:
        lines.append("  no shop or site is configured")
    return "\n".join(lines)


# --- the command ----------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make reconcile ARGS=...",
        description="Every order the shop sold, accounted "
        "for: each shop's orders of a window against what the pipeline holds.",
    )
    parser.add_argument(
        "--since", help="start: 3d, 24h, 30m, or an ISO date/time (default RECONCILE_WINDOW_HOURS, 72h)"
    )
    parser.add_argument("--until", default="now", help="end: now, 1h, or an ISO date/time (default now)")
    parser.add_argument("--shop", "--site", action="append", default=[], metavar="NAME",
                        help="only this shop domain or site (repeatable)")  # fmt: skip
    parser.add_argument("--backfill", action="store_true", help="send each missing paid order through the order flow")
    parser.add_argument("--repair", action="store_true", help="set disabled WooCommerce webhooks active again")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    parser.add_argument("--max-orders", type=int, help="orders listed per shop at most (RECONCILE_MAX_ORDERS)")
    return parser.parse_args(argv)


def pipeline_of(settings: ReconcileSettings) -> Pipeline:
    """Firestore and the events topic as the webhooks' settings name them."""

    def store() -> Any:
        from shared.infra.store import store_from_settings

        return store_from_settings(settings, timeout=settings.timeout_seconds)

    def publisher() -> Any:
        from shared.infra.pubsub import publisher_from_settings

        return publisher_from_settings(settings)

    return Pipeline(store, publisher)


def main(argv: Sequence[str] | None = None, environ: MutableMapping[str, str] = os.environ) -> int:
    args = _parse(argv)
    from shared.infra.localenv import prepare

    prepare("make reconcile", ("GOOGLE_CLOUD_PROJECT",), environ)
    try:
        settings = ReconcileSettings.from_env(environ)
        now = dt.datetime.now(dt.timezone.utc)
        since, until = report.window(args.since or f"{settings.window_hours}h", args.until, now)
        if args.max_orders is not None and args.max_orders < 1:
            raise ConfigError("--max-orders must be at least 1")
        targets = shops(settings, environ, args.shop)
    except (ConfigError, report.ReportError) as exc:
        print(f"make reconcile: {exc}", file=sys.stderr)
        return 2
    if not any(shop.orders for shop in targets):
        named = "; ".join(f"{s.source} {s.key}: {s.problem}" for s in targets) or "no shop or site is configured"
        print(f"make reconcile: nothing to reconcile ({named})", file=sys.stderr)
        return 2
    done = run(targets, pipeline_of(settings), since, until, backfill=args.backfill, repair=args.repair,
               max_orders=args.max_orders or settings.max_orders)  # fmt: skip
    print(json.dumps(done.to_json(), indent=1, default=str) if args.json else render(done))
    for problem in done.errors:
        print(f"make reconcile: {problem}", file=sys.stderr)
    return done.exit_status


def shop_orders(settings: ReconcileSettings, environ: Mapping[str, str], since: dt.datetime,
                       until: dt.datetime, store: Documents) -> list[dict[str, Any]]:  # fmt: skip
    """``make report --shop-orders``: per shop with credentials, its orders vs the pipeline's, no backfill."""
    pipeline = Pipeline(lambda: store, lambda: None)
    found = []
    for shop in shops(settings, environ):
        if shop.orders is None:
            continue
        result = reconcile_shop(shop, pipeline, since, until, backfill=False, check_webhooks=False)
        found.append(result.to_json())
    return found
