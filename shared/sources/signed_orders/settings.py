"""What the signed-orders function reads: its sites (one from the environment, or PIPELINE_TENANTS) and secrets."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from shared.config import ConfigError, ConsentPolicy, OrderReceiverSettings, Tenants, attach_secrets
from shared.domain.events import shop_key
from shared.sources.signed_orders import SOURCE

# Stripe's default tolerance: long enough for a clock a little off and a slow network, short
# enough that a captured request is stale before anyone can use it.
DEFAULT_TOLERANCE_SECONDS = 300
# A real order is a few kB; read before the signature is checked, so it bounds what anyone can make an instance hold.
DEFAULT_MAX_BODY_BYTES = 262_144


class SiteConfig(BaseModel):
    """One site (a shop, a checkout) whose backend posts signed orders: PIPELINE_TENANTS' signed_order_sites entry."""

    model_config = ConfigDict(extra="forbid")

    # What the backend sends in Pipeline-Site and what order event ids carry: a host name, e.g. shop.example.com.
    site: Annotated[str, Field(min_length=3, max_length=200)]
    pixel_code: str
    secrets: list[SecretStr] = Field(default_factory=list)
    consent_policy: ConsentPolicy | None = None  # None: the pixel's policy
    # Orders the backend marks "test": true are skipped unless this is true.
    include_test_orders: bool = False

    @field_validator("site")
    @classmethod
    def _normalize(cls, value: str) -> str:
        return shop_key(value)


class SignedOrdersSettings(OrderReceiverSettings):
    SECRET_ENV: ClassVar[frozenset[str]] = frozenset({"SIGNED_ORDERS_SECRET"})

    site: str | None = Field(None, alias="SIGNED_ORDERS_SITE")
    # One secret (comma-separated while rotating), or JSON {"<site>": ["<secret>", ...]}.
    secret: SecretStr | None = Field(None, alias="SIGNED_ORDERS_SECRET")
    # How far a signature's timestamp may lie from our clock, either way, before the request is refused as stale.
    tolerance_seconds: int = Field(DEFAULT_TOLERANCE_SECONDS, alias="SIGNED_ORDERS_TOLERANCE_SECONDS", ge=30, le=3600)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, alias="SIGNED_ORDERS_MAX_BODY_BYTES", ge=16_384, le=4_194_304)

    def tenants(self) -> Tenants:
        """The tenants and this source's sites (validated, secrets attached): :func:`sites` reads them."""
        document = self._base_tenants()
        if not self.tenants_json:
            if not self.site:
                raise ConfigError("SIGNED_ORDERS_SITE is not set (or set PIPELINE_TENANTS)")
            document[str(SOURCE.tenants_key)] = {self.site: {"site": self.site, "pixel_code": self.pixel_code}}
        return self._validated(document)

    def sites(self, tenants: Tenants) -> dict[str, SiteConfig]:
        """Site key -> its configuration with its secrets; ConfigError names what is wrong."""
        key = str(SOURCE.tenants_key)
        sites = tenants.entries(key, SiteConfig, name_field="site")
        if not sites:
            raise ConfigError(f"no site to receive signed orders for: set SIGNED_ORDERS_SITE or PIPELINE_TENANTS {key}")
        default = shop_key(self.site) if self.site else None
        attach_secrets("SIGNED_ORDERS_SECRET", self.secret, default, sites.get, "signed-orders site", required=sites)
        return sites
