"""What a reconciliation run reads: its window and bounds, the shops' API credentials, local stand-ins.

The shops and sites themselves, with their pixels and consent policies, are the webhooks' own
(each order source's settings class, named by the registry: ``SHOPIFY_SHOP_DOMAIN``,
``WOOCOMMERCE_SITE_URL`` or ``PIPELINE_TENANTS``); :func:`tenants_of` reads them without
the webhook signing secrets, which reconciliation never needs. Every credential is one value
(the single shop or site) or a JSON object keyed by shop domain or site URL, like the webhook secrets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

from pydantic import Field, SecretStr

from shared.config import (
    DEFAULT_SHOPIFY_API_VERSION,
    ConfigError,
    OrderReceiverSettings,
    Tenants,
    TenantSettings,
)
from shared.domain.events import shop_key
from shared.sources import registry

# Topics our Shopify subscriptions carry (docs/shopify.md, Topics): those reconciliation checks by default.
SHOPIFY_TOPICS = "orders/paid,orders/create,orders/cancelled"


class ReconcileSettings(OrderReceiverSettings):
    """The reconcile job's and command's settings (tenants, Firestore and the events topic as the webhooks')."""

    SECRET_ENV: ClassVar[frozenset[str]] = frozenset(
        {"SHOPIFY_ADMIN_TOKEN", "SHOPIFY_CLIENT_SECRET", "WOOCOMMERCE_API_KEY", "WOOCOMMERCE_API_SECRET"}
    )

    @classmethod
    def env_names(cls) -> set[str]:
        """Its own variables and each order source's shops as that source's webhook reads them (:func:`tenants_of`
        reads them from the same environment), the webhooks' signing secrets aside: what Terraform must set."""
        names = super().env_names()
        for source in registry.SOURCES:
            if source.orders and source.settings:
                settings_class: type[TenantSettings] = registry.load(source.settings)
                names |= settings_class.env_names() - settings_class.SECRET_ENV
        return names

    # The deployed job's trailing window (the command's --since default is the same).
    window_hours: int = Field(72, alias="RECONCILE_WINDOW_HOURS", ge=1, le=28 * 24)
    # The deployed job backfills what is missing; the command only with --backfill.
    backfill: bool = Field(True, alias="RECONCILE_BACKFILL")
    # The deployed job sets disabled WooCommerce webhooks active again (needs a read_write key).
    repair: bool = Field(False, alias="RECONCILE_REPAIR")
    timeout_seconds: float = Field(30.0, alias="RECONCILE_TIMEOUT_SECONDS", gt=0, le=120)
    retries: int = Field(5, alias="RECONCILE_MAX_RETRIES", ge=0, le=10)
    # Orders listed per shop at most: a bound on one run's time and reads, not a page size.
    max_orders: int = Field(50_000, alias="RECONCILE_MAX_ORDERS", ge=1, le=1_000_000)

    # Shopify: an admin-created app's Admin API token, or a Dev Dashboard app's client credentials.
    shopify_admin_token: SecretStr | None = Field(None, alias="SHOPIFY_ADMIN_TOKEN")
    shopify_client_id: str | None = Field(None, alias="SHOPIFY_CLIENT_ID")
    shopify_client_secret: SecretStr | None = Field(None, alias="SHOPIFY_CLIENT_SECRET")
    shopify_api_version: str = Field(DEFAULT_SHOPIFY_API_VERSION, alias="SHOPIFY_API_VERSION",
                                     pattern=r"^20[0-9]{2}-(01|04|07|10)$")  # fmt: skip
    # Instead of https://<shop> (a local stand-in): one URL, "{shop}" replaced by the shop's domain.
    shopify_admin_url: str | None = Field(None, alias="SHOPIFY_ADMIN_URL", pattern=r"^https?://")
    # Our Shopify endpoint(s) as subscriptions name them (HTTPS URL, pubsub://project:topic), comma-separated.
    # Unset: subscriptions are not checked (webhooks made in the Shopify admin are invisible to the API).
    shopify_webhook_url: str | None = Field(None, alias="RECONCILE_SHOPIFY_WEBHOOK_URL")
    shopify_topics: str = Field(SHOPIFY_TOPICS, alias="RECONCILE_SHOPIFY_TOPICS")

    # WooCommerce: a REST API key (read for listing; read_write for --repair).
    woocommerce_api_key: SecretStr | None = Field(None, alias="WOOCOMMERCE_API_KEY")
    woocommerce_api_secret: SecretStr | None = Field(None, alias="WOOCOMMERCE_API_SECRET")
    # Instead of the site's URL (a local stand-in): one URL, "{site}" replaced by the site's host.
    woocommerce_api_url: str | None = Field(None, alias="WOOCOMMERCE_API_URL", pattern=r"^https?://")
    # Our webhook URL as WooCommerce's delivery_url holds it; unset: every order.* webhook of the site.
    woocommerce_webhook_url: str | None = Field(None, alias="RECONCILE_WOOCOMMERCE_WEBHOOK_URL")


def per_shop(variable: str, value: SecretStr | str | None, shops: list[str]) -> dict[str, str]:
    """A credential by shop key: one value for the only shop, or a JSON object keyed by shop or site URL."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not raw or not raw.strip():
        return {}
    text = raw.strip()
    if not text.startswith("{"):
        if len(shops) != 1:
            raise ConfigError(f"{variable}: one value serves one shop, and {len(shops)} are configured: "
                              "give a JSON object keyed by shop")  # fmt: skip
        return {shops[0]: text}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{variable}: not valid JSON ({exc.msg})") from None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise ConfigError(f"{variable}: expected a JSON object of strings keyed by shop")
    found = {shop_key(k): v for k, v in parsed.items()}
    unknown = sorted(set(found) - set(shops))
    if unknown:
        raise ConfigError(f"{variable}: {unknown[0]!r} is not a configured shop or site")
    return found


def _placeholder_secrets(environ: Mapping[str, str], variable: str, tenants_key: str) -> str:
    """A stand-in for a webhook secret the settings require and reconciliation never uses."""
    document: Any = {}
    if environ.get("PIPELINE_TENANTS"):
        try:
            document = json.loads(environ["PIPELINE_TENANTS"])
        except json.JSONDecodeError:
            document = {}  # the settings say what is wrong with it
    entries = document.get(tenants_key) if isinstance(document, dict) else None
    if isinstance(entries, dict) and entries:
        return json.dumps(dict.fromkeys(entries, "unused"))
    return "unused"


class WebhookTenants(NamedTuple):
    """A source's webhook settings (its signing secrets stood in for) and the tenants they read."""

    # The source definition's settings class: its own method validates its shops or sites from ``tenants``.
    settings: Any
    tenants: Tenants


def tenants_of(source: str, environ: Mapping[str, str]) -> WebhookTenants | None:
    """A source's tenants as its webhook reads them, without its signing secrets; None when it has no shop.

    Read from the source definition's settings class (``shared.sources``), so the shops, pixels and
    policies are exactly the webhook's.
    """
    definition = registry.source(source)
    if not definition.settings:
        return None
    settings_class: type[TenantSettings] = registry.load(definition.settings)
    secret_variables = sorted(getattr(settings_class, "SECRET_ENV", frozenset()))
    view = dict(environ)
    for variable in secret_variables:
        if not view.get(variable):
            view[variable] = _placeholder_secrets(environ, variable, str(definition.tenants_key))
    settings = settings_class.from_env(view)
    try:
        tenants: Tenants = settings.tenants()  # type: ignore[attr-defined]
    except ConfigError as exc:
        if not environ.get("PIPELINE_TENANTS") and not str(exc).startswith("TIKTOK_PIXEL_CODE"):
            return None  # single tenant, and this platform has no shop configured
        raise
    return WebhookTenants(settings, tenants)
