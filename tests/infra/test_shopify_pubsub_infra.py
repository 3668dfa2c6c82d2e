"""Shopify webhooks over Pub/Sub, and the WooCommerce silence alert, as Terraform builds them.

Off unless ``shopify_pubsub_enabled``; when on: a topic Shopify's delivery
account may publish on (that topic only), a push subscription with retry and
dead letters to a function that only the push identity may invoke (the
function trusts the shop named in the attributes, so it must never be public),
and outputs with the ``pubsub://`` URI. The names match what
``scripts/localstack.py`` creates in the emulator.
"""

from __future__ import annotations

import re

from shared.outcome import Kind, Outcome
from tests.infra.conftest import ROOT
from tests.infra.hcl import Terraform, squash

COUNT = "var.shopify_pubsub_enabled ? 1 : 0"
# The topic, push subscription, dead letters and their grants: module.shopify_push (modules/push_pipeline).
SHOPIFY_RESOURCES = [
    ("google_pubsub_topic", "module.shopify_push.topic"),
    ("google_pubsub_topic", "module.shopify_push.dead_letter"),
    ("google_pubsub_subscription", "module.shopify_push.push"),
    ("google_pubsub_subscription", "module.shopify_push.dead_letter"),
    ("google_cloud_run_service_iam_member", "module.shopify_push.invoker"),
    ("google_pubsub_topic_iam_member", "module.shopify_push.dead_letter_publisher"),
    ("google_pubsub_subscription_iam_member", "module.shopify_push.dead_letter_subscriber"),
]
FUNCTION = ("google_cloudfunctions2_function", "function")
PUBSUB_FUNCTION = (*FUNCTION, "shopify_pubsub")  # the map's instance, as Terraform.grants names targets


def pubsub_entry(tf: Terraform) -> dict:
    """The entry point as the Shopify folder's entry in local.functions declares it."""
    return tf.locals["functions"]["shopify_webhook"]["entry_points"]["shopify_pubsub"]


def ref(expression: object) -> str:
    return squash(str(expression))


def test_everything_is_off_unless_enabled(tf: Terraform) -> None:
    assert tf.variables["shopify_pubsub_enabled"]["default"] is False
    # The module's resources exist once per instance of the call, which has the count.
    assert ref(tf.modules["shopify_push"].get("count")) == squash(COUNT)
    for address in SHOPIFY_RESOURCES:
        assert tf.resource(*address).get("count") is None, f"{address}: counted by the module call"
    assert {rtype for rtype, name in tf.resources if name.startswith("module.shopify_push.")} == {
        rtype for rtype, _ in SHOPIFY_RESOURCES
    }, "module.shopify_push holds a resource this test does not list"
    assert ref(tf.resource("google_pubsub_topic_iam_member", "shopify_delivery_publisher").get("count")) == squash(
        COUNT
    )
    # The function: an entry of the functions' map, deployed only when enabled.
    entry = pubsub_entry(tf)
    assert ref(entry["enabled"]) == "var.shopify_pubsub_enabled"
    assert "shopify_pubsub" not in tf.instances(tf.resource(*FUNCTION)["for_each"]), "deployed while disabled"
    assert "shopify_pubsub" in tf.instances(tf.resource(*FUNCTION)["for_each"], everything=True)


def test_shopifys_delivery_account_may_publish_on_the_shopify_topic_only(tf: Terraform) -> None:
    assert tf.locals["shopify_delivery_account"] == "delivery@shopify-pubsub-webhooks.iam.gserviceaccount.com"
    grants = [g for g in tf.grants() if g.principal == ("shopify_delivery",)]
    assert [(g.role, g.target) for g in grants] == [
        ("roles/pubsub.publisher", ("google_pubsub_topic", "module.shopify_push.topic"))
    ]
    assert ref(tf.resource("google_pubsub_topic", "module.shopify_push.topic")["name"]) == "local.shopify_topic"
    assert tf.locals["shopify_topic"] == "${var.name_prefix}-shopify-webhooks"


def test_the_push_subscription_delivers_to_the_pubsub_entry_point_with_an_oidc_token(tf: Terraform) -> None:
    push = tf.resource("google_pubsub_subscription", "module.shopify_push.push")
    assert ref(push["topic"]) == "module.shopify_push.google_pubsub_topic.topic.id"
    assert push["name"] == "${local.shopify_topic}-push"
    config = tf.block(push, "push_config")
    assert (
        ref(config["push_endpoint"])
        == 'google_cloudfunctions2_function.function["shopify_pubsub"].service_config[0].uri'
    )
    assert ref(tf.block(config, "oidc_token")["service_account_email"]) == "google_service_account.push.email"
    retry = tf.block(push, "retry_policy")
    assert (ref(retry["minimum_backoff"]), ref(retry["maximum_backoff"])) == (
        "var.retry_minimum_backoff", "var.retry_maximum_backoff"
    )  # fmt: skip
    policy = tf.block(push, "dead_letter_policy")
    assert ref(policy["dead_letter_topic"]) == "module.shopify_push.google_pubsub_topic.dead_letter.id"
    assert ref(policy["max_delivery_attempts"]) == "var.max_delivery_attempts"
    assert tf.block(push, "expiration_policy")["ttl"] == ""
    # The pushed function's own timeout, which is shopify_webhook's (its runtime overrides neither).
    assert ref(push["ack_deadline_seconds"]) == "local.function_runtime.shopify_pubsub.timeout_seconds"
    assert tf.view("cloud_functions")["shopify_pubsub"]["folder"] == "shopify_webhook"
    assert "timeout_seconds" not in pubsub_entry(tf)["runtime"]
    preconditions = push["lifecycle"][0]["precondition"]
    assert any("timeout_seconds<=600" in squash(p["condition"]) for p in preconditions)
    # Dead letters wait in a pull subscription of their own (a topic without one drops them).
    dead = tf.resource("google_pubsub_subscription", "module.shopify_push.dead_letter")
    assert ref(dead["topic"]) == "module.shopify_push.google_pubsub_topic.dead_letter.id" and "push_config" not in dead
    assert ref(dead["message_retention_duration"]) == "var.dead_letter_retention"


def test_the_pubsub_entry_point_is_never_public(tf: Terraform) -> None:
    invokers = [g for g in tf.grants() if g.target == PUBSUB_FUNCTION]
    assert [(g.principal, g.role) for g in invokers] == [(("push",), "roles/run.invoker")]
    config = tf.block(tf.resource(*FUNCTION), "service_config")
    assert ref(config["ingress_settings"]) == "local.function_runtime[each.key].ingress_settings"
    runtime = pubsub_entry(tf)["runtime"]
    assert runtime["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert tf.view("cloud_functions")["shopify_pubsub"]["public_http"] is False, "no allUsers grant"
    # Applied last, over the folder's defaults and var.function_settings (which could open it).
    assert squash(tf.locals["function_runtime"]).endswith(squash('lookup(fn, "runtime", {}))}'))


def test_the_pubsub_function_is_the_shopify_bundle_identity_and_environment(tf: Terraform) -> None:
    entry = tf.view("cloud_functions")["shopify_pubsub"]
    assert (entry["folder"], entry["entry_point"]) == ("shopify_webhook", "shopify_pubsub")
    function = tf.resource(*FUNCTION)
    build = tf.block(function, "build_config")
    assert ref(build["entry_point"]) == "each.value.entry_point" and build["runtime"] == "python312"
    storage = tf.block(tf.block(build, "source"), "storage_source")
    assert ref(storage["object"]) == "google_storage_bucket_object.bundle[each.value.folder].name"
    config = tf.block(function, "service_config")
    assert ref(config["service_account_email"]) == "google_service_account.function[each.value.folder].email"
    assert "local.function_env[each.key]" in ref(config["environment_variables"])
    env = tf.view("function_env")
    assert {k: v for k, v in env["shopify_pubsub"].items() if k != "THREADS"} == {
        k: v for k, v in env["shopify_webhook"].items() if k != "THREADS"
    }, "the Pub/Sub entry point reads the Shopify folder's environment"
    secrets = tf.dynamic(config, "secret_environment_variables")
    assert "secret.function==each.value.folder" in ref(secrets["for_each"])
    # <name_prefix>-shopify-pubsub, the service name monitoring.tf and the local stack know.
    assert function["name"] == '${var.name_prefix}-${replace(each.key, "_", "-")}'
    assert ref(function["description"]) == squash(
        'lookup(each.value, "description", "TikTok Events API pipeline: ${each.key}")'
    )
    assert entry["description"] == "TikTok Events API pipeline: Shopify webhooks delivered through Pub/Sub"


def test_the_entry_point_exists_in_the_shopify_functions_main() -> None:
    """Both targets are module attributes of the Shopify main.py, registered with functions-framework as HTTP."""
    import importlib.util

    from functions_framework import _function_registry

    spec = importlib.util.spec_from_file_location("shopify_main", ROOT / "functions" / "shopify_webhook" / "main.py")
    assert spec is not None and spec.loader is not None
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)
    for target in ("shopify_webhook", "shopify_pubsub"):
        assert callable(getattr(main, target)) and getattr(main, target).__name__ == target
        assert _function_registry.REGISTRY_MAP.get(target) == "http", target


def test_the_local_stack_builds_the_same_names() -> None:
    from scripts import localstack

    assert localstack.SHOPIFY_PUBSUB_TOPIC == "shopify-webhooks"
    assert localstack.FUNCTION_FOLDERS["shopify_pubsub"] == "shopify_webhook"
    source = (ROOT / "scripts" / "localstack.py").read_text()
    assert 'push_suffix="-push"' in source


def test_outputs_give_the_pubsub_uri_and_the_registrations(tf: Terraform) -> None:
    uri = squash(tf.locals["shopify_pubsub_uri"])
    assert "pubsub://${var.project_id}:${module.shopify_push[0].topic_name}" in uri
    assert ref(tf.module_output("shopify_push", "topic_name")) == "module.shopify_push.google_pubsub_topic.topic.name"
    assert ref(tf.outputs["shopify_pubsub_uri"]["value"]) == "local.shopify_pubsub_uri"
    registration = str(tf.outputs["shopify_pubsub_registration"]["value"])
    assert "[[webhooks.subscriptions]]" in registration and 'uri = \\"${local.shopify_pubsub_uri}\\"' in registration
    assert "webhookSubscriptionCreate" in registration


def test_the_outcome_metric_and_refusal_alert_cover_the_pubsub_function(tf: Terraform) -> None:
    service = "tiktok-shopify-pubsub"
    pattern = tf.render(tf.locals["service_pattern"])
    assert re.fullmatch(pattern, service)
    assert re.fullmatch(tf.render(tf.locals["outcome_alerts"]["webhook_signatures"]["function_regex"]), service)


# --- WooCommerce silence ---------------------------------------------------------------------


def test_the_silence_alert_watches_each_sites_deliveries_for_the_quiet_period(tf: Terraform) -> None:
    metric = tf.resource("google_logging_metric", "woocommerce_deliveries")
    assert "${var.name_prefix}-woocommerce-webhook" in metric["filter"]
    assert 'jsonPayload.outcome!=\\"rejected\\"' in metric["filter"], "unknown senders must not make series"
    assert metric["label_extractors"] == {"site": "EXTRACT(jsonPayload.site)"}
    policy = tf.resource("google_monitoring_alert_policy", "woocommerce_silence")
    absent = tf.block(tf.block(policy, "conditions"), "condition_absent")
    assert "${google_logging_metric.woocommerce_deliveries.name}" in absent["filter"]
    assert absent["duration"] == "${var.woocommerce_quiet_hours * 3600}s"
    aggregation = tf.block(absent, "aggregations")
    # One series per site, summed over revisions and instances: a deployment is no silence.
    assert aggregation["group_by_fields"] == ["metric.label.site"]
    assert aggregation["cross_series_reducer"] == "REDUCE_SUM"
    variable = tf.variables["woocommerce_quiet_hours"]
    assert 1 <= variable["default"] <= 23
    assert "Webhooks" in tf.block(policy, "documentation")["content"]


def test_woocommerce_logs_the_site_the_metric_extracts(capsys) -> None:
    Outcome(Kind.PUBLISHED, "Purchase published").log(site="woo.example")
    line = capsys.readouterr().out
    assert '"site": "woo.example"' in line and '"outcome": "published"' in line
    source = (ROOT / "shared" / "receive" / "woocommerce" / "handler.py").read_text()
    assert 'fields["site"] = site.site' in source, "the site label must be the configured site, set after the HMAC"
