"""What the Shopify webhook reads: its shops (one from the environment, or PIPELINE_TENANTS), secrets and limits."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from shared import budgets
from shared.config import (
    DEFAULT_SHOPIFY_API_VERSION,
    ConfigError,
    ConsentPolicy,
    OrderReceiverSettings,
    Tenants,
    attach_secrets,
)
from shared.domain.events import shop_key
from shared.sources.shopify import SOURCE


class ShopifyShopConfig(BaseModel):
    """One Shopify shop: PIPELINE_TENANTS' shopify_shops entry (or SHOPIFY_SHOP_DOMAIN's)."""

    model_config = ConfigDict(extra="forbid")

    domain: Annotated[str, Field(min_length=3)]
    pixel_code: str
    secrets: list[SecretStr] = Field(default_factory=list)
    purchase_topic: Literal["orders/paid", "orders/create"] = "orders/paid"
    content_id: Literal["variant_id", "product_id", "sku"] = "variant_id"
    # Presentment currency is what the shopper paid and what the storefront
    # pixel reports on the thank-you page, so server and pixel values agree.
    currency: Literal["presentment", "shop"] = "presentment"
    include_test_orders: bool = False
    include_pos_orders: bool = False
    include_draft_orders: bool = False
    consent_policy: ConsentPolicy | None = None  # None: the pixel's policy

    @field_validator("domain")
    @classmethod
    def _normalize_domain(cls, value: str) -> str:
        return shop_key(value)


class ShopifySettings(OrderReceiverSettings):
    SECRET_ENV: ClassVar[frozenset[str]] = frozenset({"SHOPIFY_WEBHOOK_SECRET"})

    shop_domain: str | None = Field(None, alias="SHOPIFY_SHOP_DOMAIN")
    webhook_secret: SecretStr | None = Field(None, alias="SHOPIFY_WEBHOOK_SECRET")
    # The single-tenant shop's include_test_orders (PIPELINE_TENANTS sets it per shop): on while verifying a deployment.
    include_test_orders: bool = Field(False, alias="SHOPIFY_INCLUDE_TEST_ORDERS")
    # Shopify signs the body only, so a captured body can be re-sent at any time: signed
    # order bodies older than this are refused, and so are deliveries whose X-Shopify-Triggered-At
    # is (a Pub/Sub message may wait that long). 7 days is TikTok's click attribution window;
    # the cap keeps it below the order records' 8 days (shared.receive.orders.ORDER_EVENT_TTL), so a
    # replay arriving after those records expired is still refused, never published again.
    max_order_age_days: int = Field(7, alias="SHOPIFY_MAX_ORDER_AGE_DAYS", ge=1, le=budgets.MAX_ORDER_AGE.days)
    # Read before the signature check, so it bounds what anyone can make an instance hold.
    # Shopify documents no cap; it says order bodies can exceed a megabyte.
    max_body_bytes: int = Field(4_194_304, alias="SHOPIFY_MAX_BODY_BYTES", ge=65_536, le=16_777_216)
    # The version the webhook subscriptions were registered with (Terraform's shopify_api_version): checked
    # against Shopify's support window at start and against each delivery's X-Shopify-API-Version.
    api_version: str = Field(DEFAULT_SHOPIFY_API_VERSION, alias="SHOPIFY_API_VERSION",
                             pattern=r"^20[0-9]{2}-(01|04|07|10)$")  # fmt: skip

    def tenants(self) -> Tenants:
        """The tenants with this source's shops as written: :meth:`shops` validates them."""
        document = self._base_tenants()
        if not self.tenants_json:
            if not self.shop_domain:
                raise ConfigError("SHOPIFY_SHOP_DOMAIN is not set (or set PIPELINE_TENANTS)")
            document[str(SOURCE.tenants_key)] = {
                self.shop_domain: {
                    "domain": self.shop_domain,
                    "pixel_code": self.pixel_code,
                    "include_test_orders": self.include_test_orders,
                }
            }
        return self._validated(document)

    def shops(self, tenants: Tenants) -> dict[str, ShopifyShopConfig]:
        """Shop key -> its configuration with its secrets (every shop needs one); ConfigError names what is wrong."""
        shops = tenants.entries(str(SOURCE.tenants_key), ShopifyShopConfig)
        default = shop_key(self.shop_domain) if self.shop_domain else None
        attach_secrets("SHOPIFY_WEBHOOK_SECRET", self.webhook_secret, default, lambda key: shops.get(shop_key(key)),
                       "shop", required=shops)  # fmt: skip
        return shops
