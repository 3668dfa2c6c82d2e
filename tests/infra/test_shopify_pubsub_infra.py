"""Shopify webhooks over Pub/Sub, and the WooCommerce silence alert, as Terraform builds them.

Off unless ``shopify_pubsub_enabled``; when on: a topic Shopify's delivery
account may publish on (that topic only), a push subscription with retry and
dead letters to a function that only the push identity may invoke (the
function trusts the shop named in the attributes, so it must never be public),
and outputs with the ``pubsub://`` URI. The names match what
``scripts/localstack.py`` creates in the emulator.
"""

from __future__ import annotations

import ast
import re

from shared.outcome import Kind, Outcome
from tests.infra.conftest import ROOT
from tests.infra.hcl import Terraform, squash

COUNT = "var.shopify_pubsub_enabled ? 1 : 0"
SHOPIFY_RESOURCES = [
    ("google_pubsub_topic", "shopify"),
    ("google_pubsub_topic", "shopify_dead_letter"),
    ("google_pubsub_subscription", "shopify_push"),
    ("google_pubsub_subscription", "shopify_dead_letter"),
    ("google_cloudfunctions2_function", "shopify_pubsub"),
    ("google_pubsub_topic_iam_member", "shopify_delivery_publisher"),
    ("google_cloud_run_service_iam_member", "shopify_push_invoker"),
    ("google_pubsub_topic_iam_member", "shopify_dead_letter_publisher"),
    ("google_pubsub_subscription_iam_member", "shopify_dead_letter_subscriber"),
]
PUBSUB_FUNCTION = ("google_cloudfunctions2_function", "shopify_pubsub")


def ref(expression: object) -> str:
    return squash(str(expression))


def test_everything_is_off_unless_enabled(tf: Terraform) -> None:
    assert tf.variables["shopify_pubsub_enabled"]["default"] is False
    for address in SHOPIFY_RESOURCES:
        assert ref(tf.resource(*address).get("count")) == squash(COUNT), address


def test_shopifys_delivery_account_may_publish_on_the_shopify_topic_only(tf: Terraform) -> None:
    assert tf.locals["shopify_delivery_account"] == "delivery@shopify-pubsub-webhooks.iam.gserviceaccount.com"
    grants = [g for g in tf.grants() if g.principal == ("shopify_delivery",)]
    assert [(g.role, g.target) for g in grants] == [("roles/pubsub.publisher", ("google_pubsub_topic", "shopify"))]
    assert ref(tf.resource("google_pubsub_topic", "shopify")["name"]) == "local.shopify_topic"
    assert tf.locals["shopify_topic"] == "${var.name_prefix}-shopify-webhooks"


def test_the_push_subscription_delivers_to_the_pubsub_entry_point_with_an_oidc_token(tf: Terraform) -> None:
    push = tf.resource("google_pubsub_subscription", "shopify_push")
    assert ref(push["topic"]) == "google_pubsub_topic.shopify[0].id"
    config = tf.block(push, "push_config")
    assert ref(config["push_endpoint"]) == "google_cloudfunctions2_function.shopify_pubsub[0].service_config[0].uri"
    assert ref(tf.block(config, "oidc_token")["service_account_email"]) == "google_service_account.push.email"
    retry = tf.block(push, "retry_policy")
    assert (ref(retry["minimum_backoff"]), ref(retry["maximum_backoff"])) == (
        "var.retry_minimum_backoff", "var.retry_maximum_backoff"
    )  # fmt: skip
    policy = tf.block(push, "dead_letter_policy")
    assert ref(policy["dead_letter_topic"]) == "google_pubsub_topic.shopify_dead_letter[0].id"
    assert ref(policy["max_delivery_attempts"]) == "var.max_delivery_attempts"
    assert tf.block(push, "expiration_policy")["ttl"] == ""
    assert ref(push["ack_deadline_seconds"]) == "local.function_runtime.shopify_webhook.timeout_seconds"
    # Dead letters wait in a pull subscription of their own (a topic without one drops them).
    dead = tf.resource("google_pubsub_subscription", "shopify_dead_letter")
    assert ref(dead["topic"]) == "google_pubsub_topic.shopify_dead_letter[0].id" and "push_config" not in dead
    assert ref(dead["message_retention_duration"]) == "var.dead_letter_retention"


def test_the_pubsub_entry_point_is_never_public(tf: Terraform) -> None:
    invokers = [g for g in tf.grants() if g.target == PUBSUB_FUNCTION]
    assert [(g.principal, g.role) for g in invokers] == [(("push",), "roles/run.invoker")]
    config = tf.block(tf.resource(*PUBSUB_FUNCTION), "service_config")
    assert config["ingress_settings"] == "ALLOW_INTERNAL_ONLY"


def test_the_pubsub_function_is_the_shopify_bundle_identity_and_environment(tf: Terraform) -> None:
    function = tf.resource(*PUBSUB_FUNCTION)
    build = tf.block(function, "build_config")
    assert build["entry_point"] == "shopify_pubsub" and build["runtime"] == "python312"
    storage = tf.block(tf.block(build, "source"), "storage_source")
    assert ref(storage["object"]) == 'google_storage_bucket_object.bundle["shopify_webhook"].name'
    config = tf.block(function, "service_config")
    assert ref(config["service_account_email"]) == 'google_service_account.function["shopify_webhook"].email'
    assert "local.function_env.shopify_webhook" in ref(config["environment_variables"])
    secrets = tf.dynamic(config, "secret_environment_variables")
    assert 'secret.function=="shopify_webhook"' in ref(secrets["for_each"])
    assert function["name"] == "${var.name_prefix}-shopify-pubsub"


def test_the_entry_point_exists_in_the_shopify_functions_main() -> None:
    tree = ast.parse((ROOT / "functions" / "shopify_webhook" / "main.py").read_text())
    decorated = {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef)
        and any("functions_framework.http" in ast.unparse(d) for d in node.decorator_list)
    }  # fmt: skip
    assert {"shopify_webhook", "shopify_pubsub"} <= decorated


def test_the_local_stack_builds_the_same_names() -> None:
    from scripts import localstack

    assert localstack.SHOPIFY_PUBSUB_TOPIC == "shopify-webhooks"
    assert localstack.FUNCTION_FOLDERS["shopify_pubsub"] == "shopify_webhook"
    source = (ROOT / "scripts" / "localstack.py").read_text()
    assert 'push_suffix="-push"' in source


def test_outputs_give_the_pubsub_uri_and_the_registrations(tf: Terraform) -> None:
    uri = squash(tf.locals["shopify_pubsub_uri"])
    assert "pubsub://${var.project_id}:${google_pubsub_topic.shopify[0].name}" in uri
    assert ref(tf.outputs["shopify_pubsub_uri"]["value"]) == "local.shopify_pubsub_uri"
    registration = str(tf.outputs["shopify_pubsub_registration"]["value"])
    assert "[[webhooks.subscriptions]]" in registration and 'uri = \\"${local.shopify_pubsub_uri}\\"' in registration
    assert "webhookSubscriptionCreate" in registration


def test_the_outcome_metric_and_refusal_alert_cover_the_pubsub_function(tf: Terraform) -> None:
    service = "tiktok-shopify-pubsub"
    pattern = str(tf.locals["service_pattern"]).replace("${var.name_prefix}", "tiktok")
    assert re.fullmatch(pattern, service)
    assert re.fullmatch(tf.locals["outcome_alerts"]["webhook_signatures"]["function_regex"], service)


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
