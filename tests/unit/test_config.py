"""Configuration: defaults, multi-tenant JSON, secrets, and errors that name the setting."""

from __future__ import annotations

import json

import pytest

from shared.config import (
    CollectSettings,
    ConfigError,
    SenderSettings,
    function_settings,
)
from shared.domain.events import shop_key
from shared.receive.shopify.settings import ShopifySettings
from shared.receive.woocommerce.settings import WooCommerceSettings


def test_single_tenant_from_the_simple_variables():
    settings = ShopifySettings.from_env(
        {"TIKTOK_PIXEL_CODE": "PIX", "SHOPIFY_SHOP_DOMAIN": "Shop.myshopify.com", "SHOPIFY_WEBHOOK_SECRET": "new,old"}
    )
    tenants = settings.tenants()
    shop = settings.shops(tenants).get("shop.myshopify.com")
    assert shop is not None and shop.pixel_code == "PIX"
    assert [s.get_secret_value() for s in shop.secrets] == ["new", "old"]
    assert tenants.policy_for("PIX") == "opt-in"


def test_multi_tenant_json_with_per_shop_secrets():
    document = {
        "pixels": {"A": {"pixel_code": "A", "consent_policy": "opt-out"}, "B": {"pixel_code": "B"}},
        "shopify_shops": {"a.myshopify.com": {"domain": "a.myshopify.com", "pixel_code": "A"}},
        "woocommerce_sites": {"https://b.example": {"url": "https://b.example", "pixel_code": "B"}},
    }
    env = {
        "PIPELINE_TENANTS": json.dumps(document),
        "SHOPIFY_WEBHOOK_SECRET": json.dumps({"a.myshopify.com": ["s1", "s2"]}),
        "WOOCOMMERCE_WEBHOOK_SECRET": json.dumps({"b.example": "w1"}),
    }
    assert ShopifySettings.from_env(env).tenants().policy_for("A") == "opt-out"
    woo = WooCommerceSettings.from_env(env)
    site = woo.sites(woo.tenants()).get(shop_key("https://b.example/"))
    assert site is not None and site.secrets[0].get_secret_value() == "w1"


def test_missing_pixel_names_the_variable():
    with pytest.raises(ConfigError, match="TIKTOK_PIXEL_CODE"):
        CollectSettings.from_env({}).tenants()


def test_missing_secret_names_the_variable():
    with pytest.raises(ConfigError, match="SHOPIFY_WEBHOOK_SECRET"):
        settings = ShopifySettings.from_env({"TIKTOK_PIXEL_CODE": "P", "SHOPIFY_SHOP_DOMAIN": "s.myshopify.com"})
        settings.shops(settings.tenants())


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"CONSENT_POLICY": "maybe"}, "CONSENT_POLICY"),
        ({"CLICK_TTL_DAYS": "60"}, "CLICK_TTL_DAYS"),
        ({"PIPELINE_TENANTS": "{not json"}, "PIPELINE_TENANTS"),
    ],
)
def test_invalid_values_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        CollectSettings.from_env({"TIKTOK_PIXEL_CODE": "P", **env}).tenants()


def test_tenant_document_errors_name_the_path():
    bad = {
        "pixels": {"A": {"pixel_code": "A"}},
        "shopify_shops": {"s": {"domain": "s.myshopify.com", "pixel_code": "Z"}},
    }
    with pytest.raises(ConfigError, match="pixel_code"):
        settings = ShopifySettings.from_env({"PIPELINE_TENANTS": json.dumps(bad), "SHOPIFY_WEBHOOK_SECRET": "{}"})
        settings.shops(settings.tenants())


def test_sender_tokens_per_pixel():
    single = SenderSettings.from_env({"TIKTOK_PIXEL_CODE": "P", "TIKTOK_ACCESS_TOKEN": "tok"}).access_tokens()
    assert single["P"].get_secret_value() == "tok"
    many = SenderSettings.from_env({"TIKTOK_ACCESS_TOKEN": json.dumps({"A": "ta", "B": "tb"})}).access_tokens()
    assert {k: v.get_secret_value() for k, v in many.items()} == {"A": "ta", "B": "tb"}


def test_secrets_never_appear_in_reprs():
    settings = SenderSettings.from_env({"TIKTOK_PIXEL_CODE": "P", "TIKTOK_ACCESS_TOKEN": "very-secret-token"})
    assert "very-secret-token" not in repr(settings) and "very-secret-token" not in str(settings.access_tokens())


def test_every_function_declares_its_secrets_among_what_it_reads():
    for settings_class in function_settings().values():
        assert settings_class.env_names() >= settings_class.SECRET_ENV


def test_gpc_is_limited_by_default_and_set_per_pixel_or_by_consent_gpc():
    from shared.config import CollectSettings

    assert CollectSettings.from_env({"TIKTOK_PIXEL_CODE": "A"}).tenants().pixel("A").gpc == "limited"
    denying = CollectSettings.from_env({"TIKTOK_PIXEL_CODE": "A", "CONSENT_GPC": "deny"})
    assert denying.tenants().pixel("A").gpc == "deny"
    tenants = '{"pixels": {"A": {"pixel_code": "A", "gpc": "deny"}, "B": {"pixel_code": "B"}}}'
    parsed = CollectSettings.from_env({"PIPELINE_TENANTS": tenants}).tenants()
    assert (parsed.pixel("A").gpc, parsed.pixel("B").gpc) == ("deny", "limited")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TIKTOK_PIXEL_CODE": "A", "CONSENT_GPC": "maybe"}, "CONSENT_GPC: Input should be 'limited' or 'deny'"),
        ({"PIPELINE_TENANTS": '{"pixels": {"A": {"pixel_code": "A", "gpc": "no"}}}'},
         "PIPELINE_TENANTS: pixels.A.gpc: Input should be 'limited' or 'deny'"),
    ],
)  # fmt: skip
def test_a_bad_gpc_setting_is_one_line_naming_the_variable(env, message):
    from shared.config import CollectSettings, ConfigError

    with pytest.raises(ConfigError) as raised:
        CollectSettings.from_env(env).tenants()
    assert message in str(raised.value) and "\n" not in str(raised.value)
