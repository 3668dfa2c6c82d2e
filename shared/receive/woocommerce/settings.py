"""What the WooCommerce webhook reads: its sites (one from the environment, or PIPELINE_TENANTS) and secrets."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from shared.config import ConfigError, ConsentPolicy, OrderReceiverSettings, Tenants, attach_secrets
from shared.domain.events import shop_key
from shared.sources.woocommerce import SOURCE


class WooCommerceSiteConfig(BaseModel):
    """One WooCommerce site: PIPELINE_TENANTS' woocommerce_sites entry (or WOOCOMMERCE_SITE_URL's)."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(min_length=3)]
    pixel_code: str
    secrets: list[SecretStr] = Field(default_factory=list)
    content_id: Literal["product_id", "variation_id", "sku"] = "product_id"
    consent_policy: ConsentPolicy | None = None

    @property
    def site(self) -> str:
        return shop_key(self.url)


class WooCommerceSettings(OrderReceiverSettings):
    SECRET_ENV: ClassVar[frozenset[str]] = frozenset({"WOOCOMMERCE_WEBHOOK_SECRET"})

    site_url: str | None = Field(None, alias="WOOCOMMERCE_SITE_URL")
    webhook_secret: SecretStr | None = Field(None, alias="WOOCOMMERCE_WEBHOOK_SECRET")

    def tenants(self) -> Tenants:
        """The tenants with this source's sites as written: :meth:`sites` validates them."""
        document = self._base_tenants()
        if not self.tenants_json:
            if not self.site_url:
                raise ConfigError("WOOCOMMERCE_SITE_URL is not set (or set PIPELINE_TENANTS)")
            document[str(SOURCE.tenants_key)] = {self.site_url: {"url": self.site_url, "pixel_code": self.pixel_code}}
        return self._validated(document)

    def sites(self, tenants: Tenants) -> dict[str, WooCommerceSiteConfig]:
        """Site key -> its configuration with its secrets (every site needs one); ConfigError names what is wrong."""
        sites = tenants.entries(str(SOURCE.tenants_key), WooCommerceSiteConfig)
        default = shop_key(self.site_url) if self.site_url else None
        attach_secrets("WOOCOMMERCE_WEBHOOK_SECRET", self.webhook_secret, default, lambda key: sites.get(shop_key(key)),
                       "site", required=sites)  # fmt: skip
        return sites
