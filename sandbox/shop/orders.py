"""Orders as each platform represents them, and what happens to them.

The shop stores one dict per order in the platform's own webhook shape (Shopify's REST order,
WooCommerce's v3 order), so a webhook body is the stored order and the APIs read from it.
:func:`shopify_order` and :func:`woocommerce_order` build a new order from the few fields a test
cares about; :func:`shopify_change` and :func:`woocommerce_change` apply pay, cancel or refund
and say which webhook topics that fires. :func:`seed_orders` reads the published samples in
``shared/fixtures`` (a missing folder seeds nothing). All pure but the fixture reading.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import secrets
import string
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

SHOPIFY = "shopify"
WOOCOMMERCE = "woocommerce"
PLATFORMS = (SHOPIFY, WOOCOMMERCE)
ACTIONS = ("pay", "cancel", "refund")

# What each change fires (Shopify topics / WooCommerce topics).
SHOPIFY_TOPICS = {
    "create": ("orders/create",),
    "create_paid": ("orders/create", "orders/paid"),
    "pay": ("orders/paid", "orders/updated"),
    "cancel": ("orders/cancelled", "orders/updated"),
    "refund": ("refunds/create", "orders/updated"),
}
WOOCOMMERCE_TOPICS = {"create": ("order.created",), "pay": ("order.updated",), "cancel": ("order.updated",),
                      "refund": ("order.updated",)}  # fmt: skip
PAID_WOO_STATUSES = frozenset({"processing", "completed"})


class OrderError(ValueError):
    """A control request the shop cannot apply; the message names the field."""


def utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.timezone.utc) if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def shopify_time(moment: dt.datetime) -> str:
    """REST timestamps: second precision with the shop's offset (the local shop runs on UTC)."""
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def woo_time(moment: dt.datetime) -> str:
    """v3 timestamps: no offset; ``*_gmt`` in UTC, the others in the site's zone (UTC here)."""
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%S")


def _when(params: Mapping[str, Any], key: str, default: dt.datetime) -> dt.datetime:
    raw = params.get(key)
    if raw is None:
        return default
    if not isinstance(raw, str):
        raise OrderError(f"{key} must be an ISO 8601 date-time string")
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise OrderError(f"{key}: {raw!r} is not an ISO 8601 date-time") from exc
    return utc(parsed)


def _amount(params: Mapping[str, Any], key: str, default: str) -> Decimal:
    raw = params.get(key, default)
    try:
        value = Decimal(str(raw))
    except InvalidOperation as exc:
        raise OrderError(f"{key}: {raw!r} is not an amount") from exc
    if not value.is_finite() or value < 0:
        raise OrderError(f"{key} must be a non-negative amount")
    return value.quantize(Decimal("0.01"))


def _text(params: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    value = params.get(key, default)
    if value is not None and not isinstance(value, str):
        raise OrderError(f"{key} must be a string")
    return value


def _currency(params: Mapping[str, Any]) -> str:
    currency = _text(params, "currency", "USD") or "USD"
    if len(currency) != 3 or not currency.isalpha():
        raise OrderError(f"currency: {currency!r} is not an ISO 4217 code")
    return currency.upper()


def _set(amount: Decimal | str, currency: str, presentment: str | None = None) -> dict[str, Any]:
    return {
        "shop_money": {"amount": str(amount), "currency_code": currency},
        "presentment_money": {"amount": str(amount), "currency_code": presentment or currency},
    }


def random_token(length: int = 32) -> str:
    return secrets.token_hex(length // 2)


def shopify_order(order_id: int, number: int, params: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """A new online-store order as Shopify's order webhooks carry it."""
    created = _when(params, "created_at", now)
    updated = _when(params, "updated_at", created if "created_at" in params else now)
    total = _amount(params, "total", "49.90")
    currency = _currency(params)
    paid = bool(params.get("paid", True))
    email = _text(params, "email", f"shopper{number}@example.com")
    phone = _text(params, "phone")
    customer_id = 7_000_000_000_000 + order_id % 1_000_000_000_000
    address = {"first_name": "Jane", "last_name": "Shopper", "name": "Jane Shopper", "phone": phone,
               "address1": "1 Test Street", "address2": None, "city": "Ottawa", "province": "Ontario",
               "province_code": "ON", "zip": "K2H7A8", "country": "Canada", "country_code": "CA",
               "company": None}  # fmt: skip
    attributes = params.get("note_attributes") or []
    if not isinstance(attributes, list):
        raise OrderError("note_attributes must be a list of {name, value}")
    line_id = order_id * 10 + 1
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": f"#{1000 + number}",
        "number": number,
        "order_number": 1000 + number,
        "token": random_token(),
        "cart_token": _text(params, "cart_token", random_token()),
        "checkout_token": _text(params, "checkout_token", random_token()),
        "confirmation_number": "".join(secrets.choice(string.ascii_uppercase) for _ in range(9)),
        "created_at": shopify_time(created),
        "updated_at": shopify_time(updated),
        "processed_at": shopify_time(created),
        "cancelled_at": None,
        "cancel_reason": None,
        "closed_at": None,
        "confirmed": True,
        "test": bool(params.get("test", False)),
        "source_name": _text(params, "source_name", "web"),
        "source_identifier": None,
        "financial_status": "paid" if paid else "pending",
        "fulfillment_status": None,
        "email": email,
        "contact_email": email,
        "phone": phone,
        "buyer_accepts_marketing": False,
        "currency": currency,
        "presentment_currency": currency,
        "total_price": str(total),
        "current_total_price": str(total),
        "subtotal_price": str(total),
        "total_tax": "0.00",
        "total_discounts": "0.00",
        "total_price_set": _set(total, currency),
        "current_total_price_set": _set(total, currency),
        "subtotal_price_set": _set(total, currency),
        "landing_site": _text(params, "landing_site"),
        "referring_site": _text(params, "referring_site"),
        "note": None,
        "note_attributes": attributes,
        "browser_ip": _text(params, "browser_ip", "203.0.113.24"),
        "client_details": {
            "browser_ip": _text(params, "browser_ip", "203.0.113.24"),
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "accept_language": "en-US",
        },  # fmt: skip
        "customer_locale": "en",
        "tags": "",
        "customer": {
            "id": customer_id,
            "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
            "email": email,
            "phone": phone,
            "first_name": "Jane",
            "last_name": "Shopper",
            "state": "disabled",
            "verified_email": True,
            "currency": currency,
        },
        "billing_address": address,
        "shipping_address": address,
        "line_items": [
            {
                "id": line_id,
                "admin_graphql_api_id": f"gid://shopify/LineItem/{line_id}",
                "product_id": 632910392,
                "variant_id": 808950810,
                "sku": "IPOD2008PINK",
                "title": "IPod Nano - 8gb",
                "name": "IPod Nano - 8gb - pink",
                "variant_title": "pink",
                "vendor": "Apple",
                "quantity": 1,
                "price": str(total),
                "price_set": _set(total, currency),
                "properties": [],
            }
        ],
        "shipping_lines": [],
        "tax_lines": [],
        "discount_codes": [],
        "refunds": [],
    }


def shopify_change(order: dict[str, Any], action: str, params: Mapping[str, Any], now: dt.datetime,
                   refund_id: int) -> tuple[dict[str, Any], tuple[str, ...], dict[str, Any] | None]:  # fmt: skip
    """``order`` after ``action``, the topics it fires, and the refunds/create body (refund only)."""
    order = copy.deepcopy(order)
    at = _when(params, "at", now)
    stamp = shopify_time(at)
    refund_body = None
    if action == "pay":
        if order.get("financial_status") == "paid":
            raise OrderError(f"order {order['id']} is already paid")
        order["financial_status"] = "paid"
    elif action == "cancel":
        if order.get("cancelled_at"):
            raise OrderError(f"order {order['id']} is already cancelled")
        order.update(cancelled_at=stamp, cancel_reason=_text(params, "reason", "customer"), closed_at=stamp)
        if order.get("financial_status") in ("pending", "authorized"):
            order["financial_status"] = "voided"
    elif action == "refund":
        total = Decimal(str(order.get("current_total_price") or "0"))
        amount = _amount(params, "amount", str(total))
        if amount <= 0 or amount > total:
            raise OrderError(f"amount must be more than 0 and at most what is left ({total})")
        left = total - amount
        currency = str(order.get("currency"))
        order["current_total_price"] = str(left)
        order["current_total_price_set"] = _set(left, currency, order.get("presentment_currency"))
        order["financial_status"] = "refunded" if left == 0 else "partially_refunded"
        refund_body = {
            "id": refund_id,
            "admin_graphql_api_id": f"gid://shopify/Refund/{refund_id}",
            "order_id": order["id"],
            "created_at": stamp,
            "processed_at": stamp,
            "note": _text(params, "reason"),
            "restock": False,
            "refund_line_items": [],
            "transactions": [
                {
                    "id": refund_id + 1,
                    "order_id": order["id"],
                    "kind": "refund",
                    "status": "success",
                    "amount": str(amount),
                    "currency": currency,
                    "gateway": "bogus",
                    "created_at": stamp,
                }
            ],  # fmt: skip
        }
        order["refunds"] = [*order.get("refunds", []), refund_body]
    else:
        raise OrderError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    order["updated_at"] = stamp
    return order, SHOPIFY_TOPICS[action], refund_body


def woocommerce_order(order_id: int, params: Mapping[str, Any], site_url: str, now: dt.datetime) -> dict[str, Any]:
    """A new checkout order as WooCommerce's REST API v3 (and its webhooks) represents it."""
    created = _when(params, "created_at", now)
    modified = _when(params, "updated_at", created if "created_at" in params else now)
    total = _amount(params, "total", "29.35")
    paid = bool(params.get("paid", True))
    status = _text(params, "status") or ("processing" if paid else "pending")
    key = _text(params, "order_key") or "wc_order_" + "".join(
        secrets.choice(string.ascii_letters + string.digits) for _ in range(13)
    )
    meta: list[dict[str, Any]] = []
    for index, (meta_key, value) in enumerate((("_tt_session", params.get("session")),
                                               ("_ttclid", params.get("ttclid")))):  # fmt: skip
        if value is not None:
            meta.append({"id": order_id * 10 + index, "key": meta_key, "value": str(value)})
    extra = params.get("meta_data") or []
    if not isinstance(extra, list) or not all(isinstance(m, dict) and "key" in m for m in extra):
        raise OrderError("meta_data must be a list of {key, value}")
    meta += [{"id": order_id * 10 + 5 + i, "key": m["key"], "value": m.get("value")} for i, m in enumerate(extra)]
    billing = {"first_name": "John", "last_name": "Doe", "company": "", "address_1": "969 Market", "address_2": "",
               "city": "San Francisco", "state": "CA", "postcode": "94103", "country": "US",
               "email": _text(params, "email", f"buyer{order_id}@example.com") or "",
               "phone": _text(params, "phone", "") or ""}  # fmt: skip
    base = site_url.rstrip("/")
    return {
        "id": order_id,
        "parent_id": 0,
        "number": str(order_id),
        "order_key": key,
        "created_via": "checkout",
        "version": "9.8.0",
        "status": status,
        "currency": _currency(params),
        "date_created": woo_time(created),
        "date_created_gmt": woo_time(created),
        "date_modified": woo_time(modified),
        "date_modified_gmt": woo_time(modified),
        "discount_total": "0.00",
        "discount_tax": "0.00",
        "shipping_total": "0.00",
        "shipping_tax": "0.00",
        "cart_tax": "0.00",
        "total": str(total),
        "total_tax": "0.00",
        "prices_include_tax": False,
        "customer_id": 0,
        "customer_ip_address": _text(params, "ip", "203.0.113.24"),
        "customer_user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "customer_note": "",
        "billing": billing,
        "shipping": {k: v for k, v in billing.items() if k not in ("email", "phone")},
        "payment_method": "bacs",
        "payment_method_title": "Direct bank transfer",
        "transaction_id": "",
        "date_paid": woo_time(created) if status in PAID_WOO_STATUSES else None,
        "date_paid_gmt": woo_time(created) if status in PAID_WOO_STATUSES else None,
        "date_completed": None,
        "date_completed_gmt": None,
        "cart_hash": random_token(),
        "meta_data": meta,
        "line_items": [
            {
                "id": order_id * 10 + 9,
                "name": "Woo Single #1",
                "product_id": 93,
                "variation_id": 0,
                "quantity": 1,
                "tax_class": "",
                "subtotal": str(total),
                "subtotal_tax": "0.00",
                "total": str(total),
                "total_tax": "0.00",
                "taxes": [],
                "meta_data": [],
                "sku": "",
                "price": float(total),
            }
        ],  # fmt: skip
        "tax_lines": [],
        "shipping_lines": [],
        "fee_lines": [],
        "coupon_lines": [],
        "refunds": [],
        "_links": {
            "self": [{"href": f"{base}/wp-json/wc/v3/orders/{order_id}"}],
            "collection": [{"href": f"{base}/wp-json/wc/v3/orders"}],
        },
    }


def woocommerce_change(order: dict[str, Any], action: str, params: Mapping[str, Any], now: dt.datetime,
                       refund_id: int) -> tuple[dict[str, Any], tuple[str, ...]]:  # fmt: skip
    """``order`` after ``action`` and the topics it fires."""
    order = copy.deepcopy(order)
    stamp = woo_time(_when(params, "at", now))
    if action == "pay":
        if order.get("status") in PAID_WOO_STATUSES:
            raise OrderError(f"order {order['id']} is already paid")
        order.update(status="processing", date_paid=stamp, date_paid_gmt=stamp)
    elif action == "cancel":
        if order.get("status") == "cancelled":
            raise OrderError(f"order {order['id']} is already cancelled")
        order["status"] = "cancelled"
    elif action == "refund":
        total = Decimal(str(order.get("total") or "0"))
        refunded = -sum((Decimal(str(r.get("total") or "0")) for r in order.get("refunds", [])), Decimal(0))
        amount = _amount(params, "amount", str(total - refunded))
        if amount <= 0 or amount > total - refunded:
            raise OrderError(f"amount must be more than 0 and at most what is left ({total - refunded})")
        order["refunds"] = [*order.get("refunds", []), {"id": refund_id, "reason": _text(params, "reason", ""),
                                                        "total": f"-{amount}"}]  # fmt: skip
        if refunded + amount == total:
            order["status"] = "refunded"
    else:
        raise OrderError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    order["date_modified"] = order["date_modified_gmt"] = stamp
    return order, WOOCOMMERCE_TOPICS[action]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def seed_orders(fixtures: Path | None) -> dict[str, list[dict[str, Any]]]:
    """The published sample orders under ``fixtures`` (``shopify/``, ``woocommerce/``), by platform.

    The documented Shopify example lost its id's precision when it was scraped: the exact id is
    taken back from its ``admin_graphql_api_id``. A missing folder or an unreadable file seeds nothing.
    """
    seeded: dict[str, list[dict[str, Any]]] = {SHOPIFY: [], WOOCOMMERCE: []}
    if fixtures is None or not fixtures.is_dir():
        return seeded
    for path in sorted((fixtures / "shopify").glob("*.json")):
        body = _read_json(path)
        if isinstance(body, dict):
            body = body.get("response") or body.get("order") or body
        if not isinstance(body, dict) or not isinstance(body.get("id"), int):
            continue
        exact = str(body.get("admin_graphql_api_id") or "").rsplit("/", 1)[-1]
        if exact.isdigit():
            body["id"] = int(exact)
        body.setdefault("updated_at", body.get("created_at"))
        seeded[SHOPIFY].append(body)
    for path in sorted((fixtures / "woocommerce").glob("*.json")):
        body = _read_json(path)
        if isinstance(body, dict) and isinstance(body.get("id"), int) and "order_key" in body:
            seeded[WOOCOMMERCE].append(body)
    return seeded


def is_paid(platform: str, order: Mapping[str, Any]) -> bool:
    if platform == SHOPIFY:
        return order.get("financial_status") in ("paid", "partially_refunded", "refunded")
    return order.get("status") in PAID_WOO_STATUSES or bool(order.get("date_paid_gmt"))
