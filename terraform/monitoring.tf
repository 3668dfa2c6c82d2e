# Operations: every function logs one line per request or message with its
# `outcome` (shared/infra/log.py); one log-based counter turns those lines into a
# metric labelled by outcome and function, and alert policies watch the outcomes
# that mean an event will not reach TikTok unless a person acts. README
# "Operations" says what to do for each.

locals {
  outcome_metric = "${replace(var.name_prefix, "-", "_")}_pipeline_outcomes"

  # Service names of the functions without the prefix (gen2 functions run as Cloud Run services of the
  # same name): every function that may be deployed (functions.tf, local.cloud_functions), so that
  # enabling one changes no filter; and those whose refusals the webhook alert watches.
  function_services  = join("|", [for name in keys(local.cloud_functions) : replace(name, "_", "-")])
  rejecting_services = join("|", [for name, fn in local.cloud_functions : replace(name, "_", "-") if local.functions[fn.folder].watch_rejections])
  service_pattern    = "^${var.name_prefix}-(${local.function_services})$"

  # outcome_regex and function_regex are RE2, matched in full against the metric's labels.
  outcome_alerts = {
    dead_events = {
      display_name   = "Events TikTok refused for good"
      outcome_regex  = "dead.*"
      function_regex = ".*"
      threshold      = 0
      documentation  = "The sender dead-lettered events (TikTok refused them for good, a pixel has no access token, or a message was malformed). They are kept in Firestore `dead_events` with TikTok's code and message. Fix the cause (token, pixel, payload), then re-drive: `make redrive ARGS=--list`, then `--all` or `--event-id`."
    }
    parked_orders = {
      display_name   = "WooCommerce orders parked during an outage, or refused"
      outcome_regex  = "parked|refused"
      function_regex = ".*woocommerce-webhook"
      threshold      = 0
      documentation  = "Firestore or Pub/Sub was unavailable while a WooCommerce order arrived. WooCommerce does not retry, so the hashed order was logged at ERROR (`outcome: parked`). Once the dependency is back, replay the log lines: see docs/woocommerce.md, \"When Google Cloud is down\". An order that could not even be parked is logged at ERROR as `outcome: refused` (answered 422); its order id is in the line: resend it from WooCommerce once the cause is fixed."
    }
    webhook_signatures = {
      display_name   = "Webhook deliveries refused (signature or shop)"
      outcome_regex  = "rejected"
      function_regex = ".*-(${local.rejecting_services})"
      threshold      = 5
      documentation  = "More than 5 webhook deliveries in 5 minutes failed the HMAC check or came from an unknown shop or site (over Pub/Sub: named an unknown shop, had no topic or could not be read; such messages are acknowledged, so they are lost unless the cause is fixed and the shop resends). After a secret rotation, add the new secret next to the old one (comma-separated, see README) before the platform switches; Shopify deletes a subscription after repeated failures."
    }
    unavailable = {
      display_name   = "Requests answered 503 (Firestore or Pub/Sub unavailable)"
      outcome_regex  = "error_unavailable"
      function_regex = ".*"
      threshold      = 20
      documentation  = "More than 20 requests in 5 minutes were answered 503 (`error_unavailable`: collect, Shopify over HTTPS or Pub/Sub) because Firestore or Pub/Sub failed or was slow. Browsers and Shopify retry; check the Firestore and Pub/Sub status and the functions' error logs."
    }
  }
}

resource "google_logging_metric" "outcomes" {
  project     = var.project_id
  name        = local.outcome_metric
  description = "Outcome lines of the TikTok pipeline's functions (jsonPayload.outcome), by outcome and function."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=~\"${local.service_pattern}\" AND jsonPayload.outcome:*"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "TikTok pipeline outcomes"

    labels {
      key         = "outcome"
      value_type  = "STRING"
      description = "What happened: sent, published, accepted, duplicate, withheld_consent, dead, parked, rejected, ..."
    }
    labels {
      key         = "function"
      value_type  = "STRING"
      description = "The function (Cloud Run service) that logged it."
    }
  }

  label_extractors = {
    outcome  = "EXTRACT(jsonPayload.outcome)"
    function = "EXTRACT(resource.labels.service_name)"
  }

  depends_on = [google_project_service.this]
}

resource "google_monitoring_alert_policy" "outcome" {
  for_each = local.outcome_alerts

  project               = var.project_id
  display_name          = "${var.name_prefix}: ${each.value.display_name}"
  combiner              = "OR"
  enabled               = var.alerts_enabled
  notification_channels = var.alert_notification_channels

  conditions {
    display_name = each.value.display_name
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.outcomes.name}\" AND metric.labels.outcome = monitoring.regex.full_match(\"${each.value.outcome_regex}\") AND metric.labels.function = monitoring.regex.full_match(\"${each.value.function_regex}\")"
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = each.value.documentation
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "dead_letter_backlog" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: messages in the dead-letter subscription"
  combiner              = "OR"
  enabled               = var.alerts_enabled
  notification_channels = var.alert_notification_channels

  conditions {
    display_name = "Undelivered messages in ${module.events_push.dead_letter_subscription_name}"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${module.events_push.dead_letter_subscription_name}\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "300s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = "Pub/Sub gave up pushing some events to the sender (max_delivery_attempts) and moved them to the dead-letter subscription: the sender was failing or unreachable. Fix it, then re-drive them: `make redrive ARGS=--list`; messages stay for dead_letter_retention."
    mime_type = "text/markdown"
  }
}

# WooCommerce delivers each order once and disables a webhook after more than 5
# consecutive failed deliveries, without telling anyone: from then on its site is
# silent. One series per site that has delivered signed orders (rejected lines are
# left out, so unknown senders make no series), summed over revisions and
# instances so a new deployment does not look like silence; the alert fires when a
# series stops for var.woocommerce_quiet_hours. docs/woocommerce.md says how to
# re-enable a disabled webhook.
resource "google_logging_metric" "woocommerce_deliveries" {
  project     = var.project_id
  name        = "${replace(var.name_prefix, "-", "_")}_woocommerce_deliveries"
  description = "Signed WooCommerce deliveries by site (the woocommerce-webhook function's outcome lines with a site)."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.name_prefix}-woocommerce-webhook\" AND jsonPayload.outcome:* AND jsonPayload.site:* AND jsonPayload.outcome!=\"rejected\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "WooCommerce deliveries"

    labels {
      key         = "site"
      value_type  = "STRING"
      description = "The WooCommerce site (host) that delivered."
    }
  }

  label_extractors = {
    site = "EXTRACT(jsonPayload.site)"
  }

  depends_on = [google_project_service.this]
}

resource "google_monitoring_alert_policy" "woocommerce_silence" {
  project               = var.project_id
  display_name          = "${var.name_prefix}: a WooCommerce site stopped delivering"
  combiner              = "OR"
  enabled               = var.alerts_enabled
  notification_channels = var.alert_notification_channels

  conditions {
    display_name = "No WooCommerce delivery from a site for ${var.woocommerce_quiet_hours} h"
    condition_absent {
      filter   = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.woocommerce_deliveries.name}\""
      duration = "${var.woocommerce_quiet_hours * 3600}s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.site"]
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = "A WooCommerce site that had been delivering orders sent none for ${var.woocommerce_quiet_hours} hours. If the shop did sell in that time, WooCommerce has most likely disabled the webhook after more than 5 failed deliveries (it never retries them). In WordPress: WooCommerce > Settings > Advanced > Webhooks, open each TikTok webhook, set Status back to Active and save; orders from the gap are not resent, so resend them (edit and update each order, or see docs/woocommerce.md, \"When the webhook was disabled\"). A quiet shop (no orders) also triggers this: raise woocommerce_quiet_hours."
    mime_type = "text/markdown"
  }
}

# ---------------------------------------------------------------------------
# The reconciliation job (reconcile.tf; docs/operations.md, "Accuracy: orders in the shop vs sent")
# ---------------------------------------------------------------------------
# The reconcile function logs one line per run (shared/reconcile/function.py, log_run; tests/infra ties
# these filters to it): message "reconcile run", the field `reconcile`, and the run's counts over every
# shop (orders, sent, missing, ..., missing_unsent, unhealthy_webhooks); INFO when all is well, WARNING when
# paid orders remain unsent or a webhook is unhealthy, ERROR when a shop's API or Firestore could not be read.
# The metrics exist either way (they cost nothing and the dashboard charts them); the alerts only while the
# job is enabled, since one of them fires when it does not run.

locals {
  reconcile_filter     = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.name_prefix}-reconcile\""
  reconcile_run_filter = "${local.reconcile_filter} AND jsonPayload.message=\"reconcile run\" AND jsonPayload.reconcile:*"
  reconcile_section    = "docs/operations.md, \"Accuracy: orders in the shop vs sent\""

  # Counts of the run line that need a person when above 0: one metric (runs that found some) and one alert each.
  reconcile_gaps = {
    missing_unsent = {
      display_name  = "Paid orders missing from the pipeline that reconciliation could not send"
      documentation = "The reconcile job found paid orders in a shop that the pipeline holds nothing of, and they are still unsent (`missing_unsent` in its `reconcile run` line; `missing_orders` names them): their webhooks never arrived. Read the line: `gcloud logging read 'jsonPayload.message=\"reconcile run\"' --limit=1`. With `reconcile_job.backfill` off the job only compares: run `make reconcile ARGS=\"--since 3d --backfill\"`. Backfilled and still missing: `failed` or `error_unavailable` means Firestore or Pub/Sub failed and the next run retries; `rejected` names the field that could not be mapped. See ${local.reconcile_section}, \"What to do for each gap\"."
    }
    unhealthy_webhooks = {
      display_name  = "Shop webhooks not active (reconciliation)"
      documentation = "The reconcile job found an order webhook that is not active (`unhealthy_webhooks` in its `reconcile run` line): WooCommerce disabled or paused it after failed deliveries, or (checked when RECONCILE_SHOPIFY_WEBHOOK_URL names our endpoint) Shopify deleted the app's subscription of a topic. Orders stop arriving until it is fixed; the job backfills them meanwhile. WooCommerce: fix the cause (the webhook's delivery log), then set it Active, or let the job do it (`reconcile_job.repair` with a Read/Write key). Shopify: deploy the app's webhooks again (docs/deploy.md, step 7). See ${local.reconcile_section}, \"What to do for each gap\"."
    }
  }
}

# Every run line: the job-not-running alert watches for it.
resource "google_logging_metric" "reconcile_runs" {
  project     = var.project_id
  name        = "${replace(var.name_prefix, "-", "_")}_reconcile_runs"
  description = "Runs of the reconcile job (its \"reconcile run\" line)."
  filter      = local.reconcile_run_filter

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Reconciliation runs"
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "reconcile_gap" {
  for_each = local.reconcile_gaps

  project     = var.project_id
  name        = "${replace(var.name_prefix, "-", "_")}_reconcile_runs_with_${each.key}"
  description = "Runs of the reconcile job whose line has ${each.key} above 0."
  filter      = "${local.reconcile_run_filter} AND jsonPayload.${each.key}>0"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Reconciliation runs with ${each.key}"
  }

  depends_on = [google_project_service.this]
}

# Every ERROR the job's service logs: a run that could not read a shop or Firestore, invalid settings
# ("reconcile is misconfigured"), a crash, or a request that failed or timed out (Cloud Run's request log).
resource "google_logging_metric" "reconcile_errors" {
  project     = var.project_id
  name        = "${replace(var.name_prefix, "-", "_")}_reconcile_errors"
  description = "ERROR lines of the reconcile job's service."
  filter      = "${local.reconcile_filter} AND severity>=ERROR"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Reconciliation errors"
  }

  depends_on = [google_project_service.this]
}

resource "google_monitoring_alert_policy" "reconcile_gap" {
  for_each = { for field, gap in local.reconcile_gaps : field => gap if var.reconcile_job.enabled }

  project               = var.project_id
  display_name          = "${var.name_prefix}: ${each.value.display_name}"
  combiner              = "OR"
  enabled               = var.alerts_enabled
  notification_channels = var.alert_notification_channels

  conditions {
    display_name = each.value.display_name
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.reconcile_gap[each.key].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = each.value.documentation
    mime_type = "text/markdown"
  }
}

# The job failing or not running: no run line for twice the schedule's period (summed over revisions, so a
# new deployment does not look like silence), or any ERROR line.
resource "google_monitoring_alert_policy" "reconcile_job" {
  count = var.reconcile_job.enabled ? 1 : 0

  project               = var.project_id
  display_name          = "${var.name_prefix}: reconciliation job failing or not running"
  combiner              = "OR"
  enabled               = var.alerts_enabled
  notification_channels = var.alert_notification_channels

  conditions {
    display_name = "No reconcile run for ${2 * local.reconcile_period_hours} h"
    condition_absent {
      filter   = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.reconcile_runs.name}\""
      duration = "${2 * local.reconcile_period_hours * 3600}s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  conditions {
    display_name = "The reconcile job logged an ERROR"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.reconcile_errors.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = "The reconcile job logged no `reconcile run` line for twice its schedule's period, or logged an ERROR, so webhooks lost meanwhile are not backfilled. Not running: the Cloud Scheduler job `${var.name_prefix}-reconcile` is paused or its calls fail (its log: `gcloud logging read 'resource.type=\"cloud_scheduler_job\"' --limit=5`). An ERROR: `reconcile is misconfigured` names the variable to fix; a `reconcile run` line at ERROR lists in `errors` the shop whose API or Firestore could not be read (a refused credential is named: add its new value with the secret_setup_commands output, docs/deploy.md, \"Reconciliation job\"). Cloud Scheduler retries a failed run twice; the next run covers the whole window again. See ${local.reconcile_section}."
    mime_type = "text/markdown"
  }
}
