"""terraform/monitoring.tf watches what the code logs: outcome names, the log field, the service names.

The alerts are only as good as their match with the code: an outcome renamed in
Python, or a function renamed in Terraform, would leave an alert that can never
fire. These tests take the names from the code and the Terraform model and
check that every alert can match something real and that every outcome that
needs a person has an alert.
"""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout

from shared.infra import log
from shared.outcome import Kind
from tests.infra.hcl import Terraform

# Every outcome a function logs, and the alert that watches it, or why none needs to.
WATCHED: dict[Kind, str | None] = {
    Kind.DEAD: "dead_events",  # TikTok refused it for good: re-drive after fixing
    Kind.DEAD_MALFORMED: "dead_events",
    Kind.PARKED: "parked_orders",  # WooCommerce: replay the logged order
    Kind.REFUSED: "parked_orders",  # a signed order that could not even be parked (422)
    Kind.REJECTED: "webhook_signatures",  # 401 from a webhook: signature or shop
    Kind.ERROR_UNAVAILABLE: "unavailable",  # 503s: Firestore or Pub/Sub trouble
    Kind.ACCEPTED: None,  # the normal ends of a request: counted on the dashboard
    Kind.PUBLISHED: None,
    Kind.SENT: None,
    Kind.RECORDED: None,
    Kind.REDACTED: None,
    Kind.PREFLIGHT: None,
    Kind.DUPLICATE: None,  # a repeat, already done
    Kind.WITHHELD_CONSENT: None,  # the shopper's choice, on the dashboard
    Kind.SKIPPED: None,  # a shop's rule (test, POS, draft, cancelled)
    Kind.IGNORED: None,  # nothing to do by design (topics, statuses, pings)
    Kind.DROPPED_BOT: None,
    Kind.DROPPED_PREFETCH: None,
    Kind.DROPPED_PREVIEW: None,
    Kind.REJECTED_RATE_LIMIT: None,  # the client's doing; the dashboard shows a surge
    Kind.RETRY: None,  # transient: the dead-letter backlog alert catches what never recovers
}
# What the functions log as `outcome` when an event will not reach TikTok without a person.
NEEDS_A_PERSON = {kind: alert for kind, alert in WATCHED.items() if alert}


def _default(tf: Terraform, text: str) -> str:
    """``text`` with its ${var.*} and ${local.*} references replaced as Terraform would by default."""
    return tf.render(text)


def service_names(tf: Terraform) -> dict[str, str]:
    """Function -> its Cloud Run service name with the default prefix (functions.tf: prefix-name-with-dashes)."""
    name = tf.resource("google_cloudfunctions2_function", "function")["name"]
    assert name == '${var.name_prefix}-${replace(each.key, "_", "-")}', f"the function name changed: {name}"
    prefix = tf.variables["name_prefix"]["default"]
    return {key: f"{prefix}-{key.replace('_', '-')}" for key in tf.view("cloud_functions")}


def test_the_metric_counts_every_functions_outcome_field(tf: Terraform) -> None:
    metric = tf.resource("google_logging_metric", "outcomes")
    pattern = _default(tf, str(tf.locals["service_pattern"]))
    assert all(re.fullmatch(pattern, service) for service in service_names(tf).values())
    assert "jsonPayload.outcome:*" in metric["filter"]
    assert metric["label_extractors"]["outcome"] == "EXTRACT(jsonPayload.outcome)"
    # ...which is the field shared.infra.log writes.
    captured = io.StringIO()
    with redirect_stdout(captured):
        log.outcome("dead", "refused", event_id="e-1")
    assert json.loads(captured.getvalue())["outcome"] == "dead"


def test_every_outcome_kind_is_watched_or_says_why_not() -> None:
    """A new Kind must be decided on here: an outcome nobody alerts on by accident is a silent gap."""
    assert set(WATCHED) == set(Kind)


def test_every_outcome_that_needs_a_person_has_its_alert(tf: Terraform) -> None:
    alerts = tf.locals["outcome_alerts"]
    for outcome, alert in NEEDS_A_PERSON.items():
        assert re.fullmatch(alerts[alert]["outcome_regex"], outcome), f"{alert} does not match {outcome!r}"


def test_every_alert_matches_a_real_outcome_and_a_real_function(tf: Terraform) -> None:
    services = service_names(tf).values()
    for name, alert in tf.locals["outcome_alerts"].items():
        assert any(re.fullmatch(alert["outcome_regex"], o) for o in NEEDS_A_PERSON), f"{name} matches no outcome"
        assert any(re.fullmatch(_default(tf, alert["function_regex"]), s) for s in services), (
            f"{name} matches no function"
        )
        assert alert["documentation"] and alert["threshold"] >= 0


def test_no_alternative_of_an_alert_names_an_outcome_nothing_logs(tf: Terraform) -> None:
    """An outcome the code stopped logging (Shopify's ``in_progress``) leaves no dead branch behind."""
    for name, alert in tf.locals["outcome_alerts"].items():
        for branch in alert["outcome_regex"].split("|"):
            assert any(re.fullmatch(branch, o) for o in NEEDS_A_PERSON), f"{name}: {branch!r} matches no outcome"
            assert all(re.fullmatch(branch, o) is None or WATCHED[o] == name for o in Kind), (
                f"{name}: {branch!r} also matches an outcome another alert (or none) is meant to watch"
            )


def test_alert_conditions_read_the_metric_and_each_alerts_own_patterns(tf: Terraform) -> None:
    policy = tf.resource("google_monitoring_alert_policy", "outcome")
    assert str(policy["for_each"]) == "local.outcome_alerts"
    condition = tf.block(tf.block(policy, "conditions"), "condition_threshold")
    for needed in ("logging.googleapis.com/user/${google_logging_metric.outcomes.name}",
                   "${each.value.outcome_regex}", "${each.value.function_regex}"):  # fmt: skip
        assert needed in condition["filter"]
    assert "each.value.threshold" in str(condition["threshold_value"])


def test_every_alert_goes_to_the_configured_channels(tf: Terraform) -> None:
    policies = tf.of_type("google_monitoring_alert_policy")
    # reconcile_gap and reconcile_job: the reconciliation job's (tests/infra/test_reconcile_infra.py).
    assert set(policies) == {"outcome", "dead_letter_backlog", "woocommerce_silence", "reconcile_gap", "reconcile_job"}
    for name, policy in policies.items():
        assert str(policy["notification_channels"]) == "var.alert_notification_channels", name
        assert str(policy["enabled"]) == "var.alerts_enabled", name
        assert tf.block(policy, "documentation")["content"], name


def test_the_dead_letter_alert_watches_the_dead_letter_subscription(tf: Terraform) -> None:
    policy = tf.resource("google_monitoring_alert_policy", "dead_letter_backlog")
    condition = tf.block(tf.block(policy, "conditions"), "condition_threshold")
    assert "${module.events_push.dead_letter_subscription_name}" in condition["filter"]
    assert tf.module_output("events_push", "dead_letter_subscription_name") == (
        "module.events_push.google_pubsub_subscription.dead_letter.name"
    )
    assert "pubsub.googleapis.com/subscription/num_undelivered_messages" in condition["filter"]


def test_monitoring_api_is_enabled(tf: Terraform) -> None:
    services = str(tf.locals["services"])  # toset([...]): kept as its expression text
    assert '"monitoring.googleapis.com"' in services and '"logging.googleapis.com"' in services
