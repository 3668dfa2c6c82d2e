"""WooCommerce REST API v3 ``GET /orders``: its parameters, filters, order and paging headers. Pure.

Dates: ``after``/``before`` filter on the creation date and ``modified_after``/``modified_before``
on the modification date, in the site's time zone unless ``dates_are_gmt=true`` (the local site
runs on UTC, so both read the same). They compare strictly: WordPress's ``WP_Date_Query`` is not
inclusive by default, so an order modified exactly at ``modified_after`` is not listed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sandbox.shop.shopify_search import parse_datetime

MAX_PER_PAGE = 100
ORDER_STATUSES = ("pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed", "trash",
                  "checkout-draft")  # fmt: skip
ORDERBY = {"date": "date_created_gmt", "id": "id", "modified": "date_modified_gmt", "include": "id",
           "title": "id", "slug": "id"}  # fmt: skip


class InvalidParams(ValueError):
    """WordPress's ``rest_invalid_param``: which parameters, and why each."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = dict(problems)

    def body(self) -> dict[str, Any]:
        return {
            "code": "rest_invalid_param",
            "message": f"Invalid parameter(s): {', '.join(self.problems)}",
            "data": {"status": 400, "params": self.problems},
        }


@dataclass(frozen=True)
class OrderQuery:
    page: int = 1
    per_page: int = 10
    after: dt.datetime | None = None
    before: dt.datetime | None = None
    modified_after: dt.datetime | None = None
    modified_before: dt.datetime | None = None
    statuses: frozenset[str] | None = None  # None: any
    orderby: str = "date"
    descending: bool = True


def _int(args: Mapping[str, str], key: str, default: int, low: int, high: int, problems: dict[str, str]) -> int:
    raw = args.get(key)
    if raw is None or raw == "":
        return default
    if not raw.strip().isdigit() or not low <= int(raw) <= high:
        limit = f"between {low} (inclusive) and {high} (inclusive)" if high < 10**9 else f"at least {low}"
        problems[key] = f"{key} must be {limit}"
        return default
    return int(raw)


def parse_order_query(args: Mapping[str, str]) -> OrderQuery:
    """The query string of ``GET /wp-json/wc/v3/orders``, or :class:`InvalidParams`."""
    problems: dict[str, str] = {}
    page = _int(args, "page", 1, 1, 10**9, problems)
    per_page = _int(args, "per_page", 10, 1, MAX_PER_PAGE, problems)
    dates: dict[str, dt.datetime | None] = {}
    for key in ("after", "before", "modified_after", "modified_before"):
        raw = args.get(key)
        dates[key] = parse_datetime(raw) if raw else None
        if raw and dates[key] is None:
            problems[key] = "Invalid date."
    status = (args.get("status") or "any").strip()
    statuses = None
    if status != "any":
        statuses = frozenset(s.strip() for s in status.split(",") if s.strip())
        unknown = sorted(statuses - set(ORDER_STATUSES))
        if unknown:
            problems["status"] = f"status[0] is not one of {', '.join(('any', *ORDER_STATUSES))}."
    orderby = args.get("orderby") or "date"
    if orderby not in ORDERBY:
        problems["orderby"] = f"orderby is not one of {', '.join(ORDERBY)}."
    order = (args.get("order") or "desc").lower()
    if order not in ("asc", "desc"):
        problems["order"] = "order is not one of asc, desc."
    if problems:
        raise InvalidParams(problems)
    return OrderQuery(page, per_page, dates["after"], dates["before"], dates["modified_after"],
                      dates["modified_before"], statuses, orderby, order == "desc")  # fmt: skip


def _when(order: Mapping[str, Any], key: str) -> dt.datetime | None:
    return parse_datetime(order.get(key))


def matches(order: Mapping[str, Any], query: OrderQuery) -> bool:
    if query.statuses is not None and order.get("status") not in query.statuses:
        return False
    created, modified = _when(order, "date_created_gmt"), _when(order, "date_modified_gmt")
    checks = ((query.after, created, 1), (query.before, created, -1), (query.modified_after, modified, 1),
              (query.modified_before, modified, -1))  # fmt: skip
    for bound, value, direction in checks:
        if bound is None:
            continue
        if value is None or (value <= bound if direction > 0 else value >= bound):
            return False
    return True


def _sort_key(order: Mapping[str, Any], orderby: str) -> tuple[str, int]:
    field = ORDERBY[orderby]
    order_id = int(order.get("id") or 0)
    if field == "id":
        return ("", order_id)
    moment = _when(order, field)
    return (moment.isoformat() if moment else "", order_id)


@dataclass(frozen=True)
class OrderPage:
    orders: list[dict[str, Any]]
    total: int
    total_pages: int


def list_orders(orders: Iterable[dict[str, Any]], query: OrderQuery) -> OrderPage:
    chosen = sorted((o for o in orders if matches(o, query)), key=lambda o: _sort_key(o, query.orderby),
                    reverse=query.descending)  # fmt: skip
    total = len(chosen)
    start = (query.page - 1) * query.per_page
    return OrderPage(chosen[start : start + query.per_page], total, math.ceil(total / query.per_page) if total else 0)


def link_header(base_url: str, args: Mapping[str, str], page: int, total_pages: int) -> str | None:
    """``Link: <...page=N>; rel="prev", <...>; rel="next"`` as WordPress builds it from the request."""
    links = []
    kept = {k: v for k, v in args.items() if k not in ("page", "consumer_key", "consumer_secret")}
    if page > 1:
        links.append(f'<{base_url}?{urlencode({**kept, "page": min(page - 1, max(total_pages, 1))})}>; rel="prev"')
    if total_pages > page:
        links.append(f'<{base_url}?{urlencode({**kept, "page": page + 1})}>; rel="next"')
    return ", ".join(links) or None
