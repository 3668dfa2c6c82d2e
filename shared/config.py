"""Configuration from the environment: the framework's settings classes and the tenants every source shares.

Every setting is a field whose alias is the environment variable that sets it,
so ``SenderSettings.env_names()`` is exactly what the sender reads (Terraform's
wiring test relies on that). A missing or invalid value raises
:class:`ConfigError` naming the variable.

Single tenant (the local stack, most merchants): ``TIKTOK_PIXEL_CODE``,
``CONSENT_POLICY``... and each source's own variables. Several pixels, shops
or sites: ``PIPELINE_TENANTS`` holds a JSON document (see README, "Several
pixels and shops"). Secrets (``TIKTOK_ACCESS_TOKEN`` and each source's) are
either one value for the default tenant or a JSON object keyed by pixel, shop
or site (:func:`attach_secrets`).

A source's settings class and its tenant entries live in its own folder (the registry names them):
:class:`Tenants` keeps the pixels and checks each source's entries for their pixel, the source's
settings validate the rest.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from shared import budgets
from shared.domain.events import ORDER_CLOCK_AHEAD_SECONDS, shop_key
from shared.domain.untrusted import describe_validation, validation_problems
from shared.sources import registry

ConsentPolicy = Literal["opt-in", "opt-out"]
# What Global Privacy Control (Sec-GPC: 1) means for a pixel: limited_data_use, or a denial.
GpcMode = Literal["limited", "deny"]
DEFAULT_API_URL = "https://business-api.tiktok.com/open_api/v1.3/event/track/"
# The newest stable Shopify API version in shared/data/shopify_api_versions.json (a unit test keeps them equal).
DEFAULT_SHOPIFY_API_VERSION = "2026-10"

EntryT = TypeVar("EntryT", bound=BaseModel)

_CLAIM_TTL_HOURS = int(budgets.CLAIM_TTL.total_seconds() // 3600)


def order_claim_ttl_hours(max_event_age_days: int) -> int:
    """CLAIM_TTL_HOURS' least value for an ORDER_MAX_EVENT_AGE_DAYS (``shared.budgets.order_claim_ttl``)."""
    return int(budgets.order_claim_ttl(dt.timedelta(days=max_event_age_days)).total_seconds() // 3600)


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the environment variable."""


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class PixelConfig(BaseModel):
    """One TikTok pixel: where its browser events may come from and its consent policy."""

    model_config = ConfigDict(extra="forbid")

    pixel_code: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    consent_policy: ConsentPolicy = "opt-in"
    # Global Privacy Control: "limited" sends with limited_data_use, "deny" withholds (docs/collect.md, Consent).
    gpc: GpcMode = "limited"
    # Origins (scheme://host[:port]) whose pages may call collect for this pixel.
    allowed_origins: list[str] = Field(default_factory=list)
    # Public keys that admit requests without an Origin header (Shopify's pixel
    # sandbox strips it); see README "Admitting Shopify custom pixels".
    collect_keys: list[str] = Field(default_factory=list)
    click_ttl_days: Annotated[int, Field(ge=1, le=28)] = 7
    test_event_code: str | None = None
    # Purchase-type events (Purchase, CompletePayment, PlaceAnOrder) from collect: refused unless a site
    # without order webhooks takes them, then each worth at most browser_purchase_max_value (in the
    # events' own currency). See docs/collect.md, "Purchases from the browser".
    browser_purchases: bool = False
    browser_purchase_max_value: Annotated[float, Field(gt=0, le=1e15)] | None = None
    # Secrets the store's server signs customer ids with (HMAC-SHA256), newest first; from
    # COLLECT_SIGNING_SECRET, never from PIPELINE_TENANTS. See docs/collect.md, "Signed customer ids".
    signing_secrets: list[SecretStr] = Field(default_factory=list, exclude=True)

    _split = field_validator("allowed_origins", "collect_keys", mode="before")(_split_list)

    @model_validator(mode="after")
    def _purchases_bounded(self) -> Self:
        if self.browser_purchases and self.browser_purchase_max_value is None:
            raise ValueError(
                "browser_purchases is true without browser_purchase_max_value. Fix: set browser_purchase_max_value "
                "to the largest order value a browser may report (e.g. 500), or remove browser_purchases"
            )
        return self


class Tenants(BaseModel):
    """Which pixels this deployment serves, and each source's own entries under its ``tenants_key``.

    The entries are checked here only for their pixel and kept as written; the source's settings validate
    the rest (:meth:`entries`, or :meth:`source_entries` as written).
    """

    model_config = ConfigDict(extra="allow")

    pixels: dict[str, PixelConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        for key, value in (self.model_extra or {}).items():
            if key not in registry.TENANT_KEYS:
                known = ", ".join(["pixels", *registry.TENANT_KEYS])
                raise ValueError(f"{key}: not a key of PIPELINE_TENANTS (known: {known})")
            if not isinstance(value, dict) or not all(isinstance(entry, dict) for entry in value.values()):
                raise ValueError(f"{key}: expected an object of entries, each an object")
        for key, value in (self.model_extra or {}).items():
            for name, raw in value.items():
                if raw.get("pixel_code") not in self.pixels:
                    raise ValueError(f"{key}.{name}.pixel_code {raw.get('pixel_code')!r} is not in pixels")
        return self

    def pixel(self, pixel_code: str) -> PixelConfig | None:
        return self.pixels.get(pixel_code)

    def source_entries(self, key: str) -> dict[str, dict[str, Any]]:
        """A source's own entries (its definition's ``tenants_key``), as written: its settings validate them."""
        entries: dict[str, dict[str, Any]] = (self.model_extra or {}).get(key) or {}
        return entries

    def entries(self, key: str, model: type[EntryT], *, name_field: str | None = None) -> dict[str, EntryT]:
        """A source's own entries validated as ``model``, by shop key (``shop_key`` of each name).

        ``name_field``: the model's field that defaults to the entry's name (an entry may leave it out).
        ConfigError names every failing field by its path, ``PIPELINE_TENANTS: <key>.<name>.<field>: ...``.
        """
        found: dict[str, EntryT] = {}
        problems: list[str] = []
        for name, raw in self.source_entries(key).items():
            try:
                found[shop_key(name)] = model.model_validate({name_field: name, **raw} if name_field else raw)
            except ValidationError as exc:
                problems += [f"{'.'.join(map(str, (key, name, *loc)))}: {msg}" for loc, msg in validation_problems(exc)]
        if problems:
            raise ConfigError("PIPELINE_TENANTS: " + "; ".join(problems))
        return found

    def sharing_pixel(self, pixel_code: str) -> list[tuple[str, str]]:
        """Every source entry (its ``tenants_key``, its shop key) that sends to ``pixel_code``."""
        return [(key, shop_key(name)) for key in registry.TENANT_KEYS
                for name, raw in self.source_entries(key).items() if raw.get("pixel_code") == pixel_code]  # fmt: skip

    def policy_for(self, pixel_code: str, override: ConsentPolicy | None = None) -> ConsentPolicy:
        if override:
            return override
        pixel = self.pixels.get(pixel_code)
        return pixel.consent_policy if pixel else "opt-in"


class _EnvSettings(BaseModel):
    """Base: fields are read from the environment variables named by their aliases."""

    model_config = ConfigDict(extra="ignore", populate_by_name=False, frozen=True)

    # Which variables hold secrets (Secret Manager in production).
    SECRET_ENV: ClassVar[frozenset[str]] = frozenset()

    project: str = Field("local-dev", alias="GOOGLE_CLOUD_PROJECT")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", alias="LOG_LEVEL")
    firestore_database: str = Field("(default)", alias="FIRESTORE_DATABASE")
    # Prefix for every collection name: lets tests (and staging) share a database.
    collection_prefix: str = Field("", alias="FIRESTORE_COLLECTION_PREFIX", pattern=r"^[A-Za-z0-9_-]*$")

    @classmethod
    def env_names(cls) -> set[str]:
        return {f.alias for f in cls.model_fields.values() if f.alias}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        environ = os.environ if environ is None else environ
        values = {name: environ[name] for name in cls.env_names() if environ.get(name, "") != ""}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(describe_validation(exc, "configuration")) from None


def attach_secrets(
    env: str,
    value: SecretStr | None,
    default_key: str | None,
    find: Callable[[str], Any],
    noun: str,
    *,
    attribute: str = "secrets",
    required: Mapping[str, Any] | None = None,
) -> None:
    """Lay ``env``'s secrets (one, or a JSON object by key) before each entry's own; name what is wrong.

    With ``required``, every one of those entries must end with at least one secret.
    """
    raw = value.get_secret_value() if value else None
    for key, secrets in _secret_map(raw, default_key, env).items():
        entry = find(key)
        if entry is None:
            raise ConfigError(f"{env}: {key!r} is not a configured {noun}")
        setattr(entry, attribute, secrets + getattr(entry, attribute))
    for key, entry in (required or {}).items():
        if not getattr(entry, attribute):
            raise ConfigError(f"{env} has no secret for {noun} {key!r}")


def _secret_map(raw: str | None, default_key: str | None, variable: str) -> dict[str, list[SecretStr]]:
    """A secret variable: one value (comma-separated for rotation) or a JSON object of them."""
    if not raw:
        return {}
    text = raw.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{variable}: not valid JSON ({exc.msg})") from None
        if not isinstance(parsed, dict):
            raise ConfigError(f"{variable}: expected a JSON object")
        return {str(k): [SecretStr(s) for s in ([v] if isinstance(v, str) else v) if s] for k, v in parsed.items()}
    if default_key is None:
        raise ConfigError(f"{variable}: a single value needs the default tenant to be configured")
    return {default_key: [SecretStr(s.strip()) for s in text.split(",") if s.strip()]}


class TenantSettings(_EnvSettings):
    """Settings shared by the functions that need to know the tenants."""

    pixel_code: str | None = Field(None, alias="TIKTOK_PIXEL_CODE")
    consent_policy: ConsentPolicy = Field("opt-in", alias="CONSENT_POLICY")
    consent_gpc: GpcMode = Field("limited", alias="CONSENT_GPC")
    tenants_json: str | None = Field(None, alias="PIPELINE_TENANTS")
    default_phone_region: str = Field("US", alias="DEFAULT_PHONE_REGION", pattern=r"^[A-Z]{2}$")
    # Events Manager's Test Events code for the default pixel: while set, every
    # event goes to the Test Events tab instead of production reporting.
    test_event_code: str | None = Field(None, alias="TIKTOK_TEST_EVENT_CODE", max_length=64)

    def _base_tenants(self) -> dict[str, Any]:
        if self.tenants_json:
            try:
                tenants: dict[str, Any] = json.loads(self.tenants_json)
                return tenants
            except json.JSONDecodeError as exc:
                raise ConfigError(f"PIPELINE_TENANTS: not valid JSON ({exc.msg})") from None
        if not self.pixel_code:
            raise ConfigError("TIKTOK_PIXEL_CODE is not set (or set PIPELINE_TENANTS)")
        pixel = {"pixel_code": self.pixel_code, "consent_policy": self.consent_policy, "gpc": self.consent_gpc}
        if self.test_event_code:
            pixel["test_event_code"] = self.test_event_code
        return {"pixels": {self.pixel_code: pixel}}

    def _validated(self, document: dict[str, Any]) -> Tenants:
        try:
            return Tenants.model_validate(document)
        except ValidationError as exc:
            raise ConfigError(
                describe_validation(exc, "configuration").replace("invalid configuration", "PIPELINE_TENANTS")
            ) from None


class ReceiverSettings(TenantSettings):
    pubsub_topic: str = Field("tiktok-events", alias="PUBSUB_TOPIC")


class OrderReceiverSettings(ReceiverSettings):
    """What both order webhooks read beyond the tenants."""

    # An order event paid further back than this is never sent (skipped, rule outside_window): TikTok
    # attributes nothing past the advertiser's click window (7 days by default, up to 28). The sender reads it too.
    max_event_age_days: int = Field(7, alias="ORDER_MAX_EVENT_AGE_DAYS", ge=1, le=28)


class CollectSettings(ReceiverSettings):
    SECRET_ENV: ClassVar[frozenset[str]] = frozenset({"COLLECT_SIGNING_SECRET"})

    allowed_origins: str | None = Field(None, alias="COLLECT_ALLOWED_ORIGINS")
    collect_keys: str | None = Field(None, alias="COLLECT_KEYS")
    click_ttl_days: int = Field(7, alias="CLICK_TTL_DAYS", ge=1, le=28)
    max_body_bytes: int = Field(32_768, alias="COLLECT_MAX_BODY_BYTES", ge=1024, le=1_048_576)
    max_events_per_request: int = Field(20, alias="COLLECT_MAX_EVENTS", ge=1, le=100)
    # Proxies in front of the function that append to X-Forwarded-For (0: the
    # function URL itself; 1: behind an external Application Load Balancer).
    trusted_proxy_hops: int = Field(0, alias="COLLECT_TRUSTED_PROXY_HOPS", ge=0, le=5)
    # A page's event_time further back than this is its clock's mistake (or a beacon replayed):
    # the time of receipt is used and the answer says so. TikTok's click attribution window is 7 days by default.
    max_event_age_days: int = Field(7, alias="COLLECT_MAX_EVENT_AGE_DAYS", ge=1, le=28)
    # Headless browsers (Playwright, Selenium's headless Chrome) are dropped as bots; true lets them in, for testing.
    allow_automated_browsers: bool = Field(False, alias="COLLECT_ALLOW_AUTOMATED_BROWSERS")
    # Per client address and instance: a token bucket refilled at this rate (0 turns the limit off)...
    rate_limit_per_minute: int = Field(600, alias="COLLECT_RATE_LIMIT_PER_MINUTE", ge=0, le=1_000_000)
    # ...holding at most this many requests (a page's burst: landing sync, events, unload flush).
    rate_limit_burst: int = Field(120, alias="COLLECT_RATE_LIMIT_BURST", ge=1, le=100_000)
    # What signs customer ids (customer_id_signature): one value, comma-separated for rotation,
    # or JSON {pixel_code: [secrets]}.
    signing_secret: SecretStr | None = Field(None, alias="COLLECT_SIGNING_SECRET")
    # The default pixel's browser_purchases and browser_purchase_max_value (PIPELINE_TENANTS sets them per pixel).
    browser_purchases: bool = Field(False, alias="COLLECT_BROWSER_PURCHASES")
    browser_purchase_max_value: float | None = Field(None, alias="COLLECT_BROWSER_PURCHASE_MAX_VALUE", gt=0, le=1e15)

    def tenants(self) -> Tenants:
        document = self._base_tenants()
        if not self.tenants_json:
            if self.browser_purchases and self.browser_purchase_max_value is None:
                raise ConfigError(
                    "COLLECT_BROWSER_PURCHASE_MAX_VALUE is not set while COLLECT_BROWSER_PURCHASES is true. Fix: set "
                    "it to the largest order value a browser may report (e.g. 500), or unset COLLECT_BROWSER_PURCHASES"
                )
            pixel = document["pixels"][self.pixel_code]
            pixel["allowed_origins"] = _split_list(self.allowed_origins or "")
            pixel["collect_keys"] = _split_list(self.collect_keys or "")
            pixel["click_ttl_days"] = self.click_ttl_days
            pixel["browser_purchases"] = self.browser_purchases
            pixel["browser_purchase_max_value"] = self.browser_purchase_max_value
        tenants = self._validated(document)
        attach_secrets("COLLECT_SIGNING_SECRET", self.signing_secret, self.pixel_code, tenants.pixel, "pixel",
                        attribute="signing_secrets")  # fmt: skip
        return tenants


class SenderSettings(_EnvSettings):
    SECRET_ENV: ClassVar[frozenset[str]] = frozenset({"TIKTOK_ACCESS_TOKEN"})

    pixel_code: str | None = Field(None, alias="TIKTOK_PIXEL_CODE")
    access_token: SecretStr | None = Field(None, alias="TIKTOK_ACCESS_TOKEN")
    api_url: str = Field(DEFAULT_API_URL, alias="TIKTOK_API_URL", pattern=r"^https?://")
    timeout_seconds: float = Field(budgets.TIKTOK_TIMEOUT_SECONDS, alias="TIKTOK_TIMEOUT_SECONDS", gt=0, le=120)
    # Longer than every redelivery window: Pub/Sub retention (7 days max, so at least 8 days),
    # Shopify's day-late deliveries and TikTok's own 48 h dedup window.
    # An order event's only claim: it must outlive the order window (ORDER_MAX_EVENT_AGE_DAYS, the clock
    # allowance and a day: budgets.order_claim_ttl says why), or a redelivery after it expired would send
    # again. Unset, it follows ORDER_MAX_EVENT_AGE_DAYS; set shorter, the sender refuses to start.
    claim_ttl_hours: int = Field(_CLAIM_TTL_HOURS, alias="CLAIM_TTL_HOURS", ge=8 * 24, le=24 * 60)
    # The order window the sender enforces, as the webhooks do: an order event older than this is skipped.
    max_event_age_days: int = Field(7, alias="ORDER_MAX_EVENT_AGE_DAYS", ge=1, le=28)
    claim_lease_seconds: int = Field(budgets.CLAIM_LEASE_SECONDS, alias="CLAIM_LEASE_SECONDS", ge=5, le=3600)
    dead_ttl_days: int = Field(30, alias="DEAD_EVENT_TTL_DAYS", ge=1, le=365)
    # Claim browser events before sending them too (two writes each instead of one; see docs/collect.md).
    claim_browser_events: bool = Field(False, alias="SENDER_CLAIM_BROWSER_EVENTS")
    batch_max_events: int = Field(1000, alias="SENDER_BATCH_MAX_EVENTS", ge=1, le=1000)
    batch_wait_ms: int = Field(budgets.SENDER_BATCH_WAIT_MS, alias="SENDER_BATCH_WAIT_MS", ge=0, le=5000)
    # A batch also goes as soon as nobody joined it for this long (0: always wait the full wait).
    batch_idle_ms: int = Field(budgets.SENDER_BATCH_IDLE_MS, alias="SENDER_BATCH_IDLE_MS", ge=0, le=5000)
    # The events topic: a push held back by TikTok's throttling longer than SENDER_THROTTLE_HOLD is published
    # there again and acknowledged, so throttling alone spends no delivery attempt (shared.send.throttle).
    # Unset, such a push is answered 503 and Pub/Sub redelivers it.
    pubsub_topic: str | None = Field(None, alias="PUBSUB_TOPIC")
    # While a batch is in flight, the next keeps accepting for up to this long: the threads the one in
    # flight holds join it once answered (0: only SENDER_BATCH_WAIT_MS). See shared.send.batching.batch_due.
    batch_hold_ms: int = Field(budgets.SENDER_BATCH_HOLD_MS, alias="SENDER_BATCH_HOLD_MS", ge=0, le=60_000)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        return super().from_env(environ).with_order_claim_ttl()

    def with_order_claim_ttl(self) -> Self:
        """These settings with a claim that outlives the order window; ConfigError when CLAIM_TTL_HOURS is shorter."""
        needed = order_claim_ttl_hours(self.max_event_age_days)
        if "claim_ttl_hours" not in self.model_fields_set:
            return self.model_copy(update={"claim_ttl_hours": max(self.claim_ttl_hours, needed)})
        if self.claim_ttl_hours < needed:
            ahead, margin = ORDER_CLOCK_AHEAD_SECONDS // 3600, int(budgets.CLAIM_MARGIN.total_seconds() // 3600)
            raise ConfigError(
                f"CLAIM_TTL_HOURS ({self.claim_ttl_hours}) is shorter than ORDER_MAX_EVENT_AGE_DAYS "
                f"({self.max_event_age_days}) x 24 + {ahead} h of clock allowance + {margin} h of margin = {needed} h: "
                "a paid order redelivered after its claim expired would be sent again. Fix: set CLAIM_TTL_HOURS to at "
                f"least {needed} (or unset it), or lower ORDER_MAX_EVENT_AGE_DAYS"
            )
        return self

    def access_tokens(self) -> dict[str, SecretStr]:
        """Pixel code -> token."""
        raw = self.access_token.get_secret_value() if self.access_token else None
        tokens = _secret_map(raw, self.pixel_code, "TIKTOK_ACCESS_TOKEN")
        found = {pixel: secrets[0] for pixel, secrets in tokens.items() if secrets}
        if raw and self.pixel_code and self.pixel_code not in found:
            # A map without the default pixel: every one of its events would be dead-lettered.
            named = ", ".join(sorted(found)) or "no pixel"
            raise ConfigError(f"TIKTOK_ACCESS_TOKEN: has no token for pixel {self.pixel_code} (TIKTOK_PIXEL_CODE); "
                              f"its JSON map names {named}")  # fmt: skip
        return found


@functools.cache
def function_settings() -> dict[str, type[_EnvSettings]]:
    """Every folder under functions/ and the settings class it reads: each source's (the registry), the sender's
    and the reconcile job's (which reads every order source's shops through their ``orders`` hooks).

    Terraform's wiring tests and ``make run`` read it; a new source's settings live in its own folder.
    """
    found: dict[str, type[_EnvSettings]] = {}
    for source in registry.SOURCES:
        if source.function and source.settings:
            found[source.function] = registry.load(source.settings)
    return {
        **found,
        "sender": SenderSettings,
        "reconcile": registry.load("shared.reconcile.settings:ReconcileSettings"),
    }
