"""The shop's settings: identities and secrets fixed at start, and the knobs tests turn at run time.

:class:`ShopConfig` comes from the environment (the local stack's variable names where they exist,
so the shop signs with the secrets the webhooks accept) and the command line. :class:`Knobs` are
what ``POST /_shop/config`` changes: the delivery time factor, timeouts, retry and disable rules,
the GraphQL cost bucket and WooCommerce's injected 429s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sandbox.shop import delivery, throttle

DEFAULT_PORT = 8088
DEFAULT_API_VERSION = "2026-10"  # shared.config.DEFAULT_SHOPIFY_API_VERSION
_REPO = Path(__file__).resolve().parents[2]
SHARED_FIXTURES = _REPO.parent / "shared" / "fixtures"  # the samples folder beside the repository
# The repository's own copies when it stands alone (tests/unit/test_standalone.py).
DEFAULT_FIXTURES = SHARED_FIXTURES if SHARED_FIXTURES.is_dir() else _REPO / "tests" / "fixtures"
SHOPIFY_TOPICS = ("orders/create", "orders/paid", "orders/cancelled", "refunds/create")
WOOCOMMERCE_TOPICS = ("order.created", "order.updated")


@dataclass(frozen=True)
class Knobs:
    time_factor: float = 1.0  # scales Shopify's retry delays (0.0001: 4 hours in 1.4 s)
    shopify_timeout: float = delivery.SHOPIFY_TIMEOUT_SECONDS
    shopify_retries: int = delivery.SHOPIFY_RETRIES
    shopify_remove_after: int = delivery.SHOPIFY_REMOVE_AFTER
    woocommerce_timeout: float = delivery.WOOCOMMERCE_TIMEOUT_SECONDS
    woocommerce_max_failures: int = delivery.WOOCOMMERCE_MAX_FAILURES
    graphql_maximum: float = throttle.DEFAULT_MAXIMUM
    graphql_restore_rate: float = throttle.DEFAULT_RESTORE_RATE
    graphql_max_query_cost: int = throttle.DEFAULT_MAX_QUERY_COST
    woocommerce_429_every: int = 0  # every Nth REST request answers 429 (0: never)
    woocommerce_retry_after: int = 1
    shopify_scopes: str = "read_orders"  # add read_all_orders to see orders older than 60 days

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_BOUNDS: dict[str, tuple[float, float]] = {
    "time_factor": (0.0, 10.0),
    "shopify_timeout": (0.01, 60.0),
    "shopify_retries": (0, 50),
    "shopify_remove_after": (1, 1000),
    "woocommerce_timeout": (0.01, 120.0),
    "woocommerce_max_failures": (0, 1000),
    "graphql_maximum": (1.0, 1e9),
    "graphql_restore_rate": (0.0, 1e9),
    "graphql_max_query_cost": (1, 10**9),
    "woocommerce_429_every": (0, 10**6),
    "woocommerce_retry_after": (0, 3600),
}


def update_knobs(knobs: Knobs, changes: Any) -> Knobs:
    """``knobs`` with ``changes`` (a JSON object of some of its fields) applied, or ValueError naming the field."""
    if not isinstance(changes, dict):
        raise ValueError("the body must be a JSON object")
    known = {f.name: f.type for f in fields(Knobs)}
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(unknown)} (known: {', '.join(known)})")
    clean: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "shopify_scopes":
            if not isinstance(value, str):
                raise ValueError("shopify_scopes must be a comma-separated string")
            clean[key] = value
            continue
        integer = known[key] == "int"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{key} must be a number")
        if integer and not float(value).is_integer():
            raise ValueError(f"{key} must be an integer")
        low, high = _BOUNDS[key]
        if not low <= value <= high:
            raise ValueError(f"{key} must be between {low:g} and {high:g}")
        clean[key] = int(value) if integer else float(value)
    return replace(knobs, **clean)


@dataclass(frozen=True)
class ShopConfig:
    """Who the shop is and what it signs with; the defaults are the local stack's dev values."""

    shop_domain: str = "local-shop.myshopify.com"
    shopify_webhook_secret: str = "local-shopify-secret"  # noqa: S105 (local dev value)
    shopify_client_id: str = "local-shopify-client-id"
    shopify_client_secret: str = "local-shopify-secret"  # noqa: S105 (local dev value)
    shopify_admin_token: str = "shpat_local_admin_token"  # noqa: S105 (local dev value)
    shopify_api_version: str = DEFAULT_API_VERSION
    shopify_webhook_url: str | None = None
    woocommerce_site_url: str = "https://woo.local.test"
    woocommerce_webhook_secret: str = "local-woocommerce-secret"  # noqa: S105 (local dev value)
    woocommerce_consumer_key: str = "ck_local_read"
    woocommerce_consumer_secret: str = "cs_local_read"  # noqa: S105 (local dev value)
    woocommerce_admin_key: str = "ck_local_admin"
    woocommerce_admin_secret: str = "cs_local_admin"  # noqa: S105 (local dev value)
    woocommerce_webhook_url: str | None = None
    fixtures: Path | None = DEFAULT_FIXTURES
    knobs: Knobs = field(default_factory=Knobs)


def _first_secret(raw: str | None, tenant: str) -> str | None:
    """One secret from a variable holding one, several comma-separated (the first), or a JSON map by tenant."""
    if not raw or not raw.strip():
        return None
    text = raw.strip()
    if text.startswith("{"):
        try:
            entries = json.loads(text)
        except ValueError:
            return None
        wanted = tenant.lower().removeprefix("https://").removeprefix("http://").rstrip("/")
        for key, value in entries.items() if isinstance(entries, dict) else ():
            if str(key).lower().removeprefix("https://").removeprefix("http://").rstrip("/") == wanted:
                value = value[0] if isinstance(value, list) and value else value
                return str(value) if value else None
        return None
    return text.split(",")[0].strip() or None


def from_environ(environ: Mapping[str, str]) -> ShopConfig:
    """The settings the environment gives, the local stack's dev values for the rest."""
    defaults = ShopConfig()

    def get(name: str, default: str) -> str:
        return environ.get(name, "").strip() or default

    shop = get("SHOPIFY_SHOP_DOMAIN", defaults.shop_domain)
    if shop.startswith("{") or "," in shop:
        shop = defaults.shop_domain
    site = get("WOOCOMMERCE_SITE_URL", defaults.woocommerce_site_url)
    if site.startswith("{") or "," in site:
        site = defaults.woocommerce_site_url
    shop_secret = _first_secret(environ.get("SHOPIFY_WEBHOOK_SECRET"), shop) or defaults.shopify_webhook_secret
    fixtures = environ.get("SHOP_FIXTURES")
    return ShopConfig(
        shop_domain=shop,
        shopify_webhook_secret=shop_secret,
        shopify_client_id=get("SHOPIFY_CLIENT_ID", defaults.shopify_client_id),
        # An app's webhooks are signed with its client secret: by default they are one value.
        shopify_client_secret=get("SHOPIFY_CLIENT_SECRET", shop_secret),
        shopify_admin_token=get("SHOPIFY_ADMIN_TOKEN", defaults.shopify_admin_token),
        shopify_api_version=get("SHOPIFY_API_VERSION", defaults.shopify_api_version),
        shopify_webhook_url=environ.get("SHOP_SHOPIFY_WEBHOOK_URL") or None,
        woocommerce_site_url=site,
        woocommerce_webhook_secret=_first_secret(environ.get("WOOCOMMERCE_WEBHOOK_SECRET"), site)
        or defaults.woocommerce_webhook_secret,
        woocommerce_consumer_key=get("WOOCOMMERCE_CONSUMER_KEY", defaults.woocommerce_consumer_key),
        woocommerce_consumer_secret=get("WOOCOMMERCE_CONSUMER_SECRET", defaults.woocommerce_consumer_secret),
        woocommerce_admin_key=get("WOOCOMMERCE_ADMIN_CONSUMER_KEY", defaults.woocommerce_admin_key),
        woocommerce_admin_secret=get("WOOCOMMERCE_ADMIN_CONSUMER_SECRET", defaults.woocommerce_admin_secret),
        woocommerce_webhook_url=environ.get("SHOP_WOOCOMMERCE_WEBHOOK_URL") or None,
        fixtures=Path(fixtures) if fixtures else (defaults.fixtures if fixtures is None else None),
        knobs=update_knobs(Knobs(), {"time_factor": float(environ["SHOP_TIME_FACTOR"])})
        if environ.get("SHOP_TIME_FACTOR")
        else Knobs(),
    )
