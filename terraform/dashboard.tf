# The operator's dashboard: is the pipeline delivering, what does it withhold or
# lose, how well do delivered events match, and how busy is it. Charts read the
# outcome metric of monitoring.tf, the log-based metrics below (from the sender's
# log lines) and Pub/Sub's and Cloud Run's own metrics. README "Is it working?"
# says how to read each chart.
#
# What the metrics below assume of the sender's log lines (shared/send/process.py;
# tests/infra/test_dashboard.py ties them to the code):
# - one `outcome` line per event; a delivered one has outcome "sent", `source`
#   (shopify, woocommerce, collect), and `match_keys`: the NAMES of the match keys
#   the event carried (a list such as ["email", "ttclid"], never a value), as
#   shared/domain/match_keys.py names them. A filter `jsonPayload.match_keys:"ttclid"`
#   holds when the list has that element; no key name is part of another, so the
#   "has" operator cannot match the wrong key.
# - `match_score`: our 0..10 coverage score of those keys (a proxy, not TikTok's EMQ).
# - one "tiktok answered" line per TikTok request with `ms` (latency), `events`
#   (events in the request) and `verdict`.
# - a dead event's outcome line has `dead_kind` and TikTok's `code`.
# The reconcile job's chart reads its run line instead (monitoring.tf; tests/infra/test_reconcile_infra.py).

locals {
  metric_prefix = replace(var.name_prefix, "-", "_")
  sender_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.name_prefix}-sender\""

  # The keys that weigh in the coverage score (shared/domain/match_keys.py WEIGHTS): one share per key and source.
  # Name and address parts are in the logs and the report, not charted: they weigh nothing on their own.
  dashboard_match_keys = ["ttclid", "email", "phone", "external_id", "ttp", "ip_user_agent"]

  # The counts of the reconcile job's run line charted against each other: orders in the shop, sent, missing.
  reconcile_charted = ["orders", "sent", "missing"]

  outcome_metric_type = "logging.googleapis.com/user/${google_logging_metric.outcomes.name}"
  run_filter          = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=monitoring.regex.full_match(\"${local.service_pattern}\")"

  dashboard = {
    displayName = "${var.name_prefix}: TikTok Events API pipeline"
    gridLayout = {
      columns = 2
      widgets = [
        {
          title = "Outcomes by function (events or requests per minute)"
          xyChart = {
            chartOptions = { mode = "COLOR" }
            dataSets = [{
              plotType       = "STACKED_BAR"
              legendTemplate = "$${metric.labels.function} $${metric.labels.outcome}"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = "metric.type=\"${local.outcome_metric_type}\" AND resource.type=\"cloud_run_revision\""
                  aggregation = {
                    alignmentPeriod    = "60s"
                    perSeriesAligner   = "ALIGN_SUM"
                    crossSeriesReducer = "REDUCE_SUM"
                    groupByFields      = ["metric.label.function", "metric.label.outcome"]
                  }
                }
              }
            }]
            yAxis = { label = "per minute", scale = "LINEAR" }
          }
        },
        {
          title = "Delivered vs withheld vs skipped vs dead (all functions)"
          xyChart = {
            chartOptions = { mode = "COLOR" }
            dataSets = [{
              plotType       = "STACKED_BAR"
              legendTemplate = "$${metric.labels.outcome}"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = "metric.type=\"${local.outcome_metric_type}\" AND resource.type=\"cloud_run_revision\" AND metric.labels.outcome=monitoring.regex.full_match(\"sent|withheld.*|skipped.*|dead.*\")"
                  aggregation = {
                    alignmentPeriod    = "300s"
                    perSeriesAligner   = "ALIGN_SUM"
                    crossSeriesReducer = "REDUCE_SUM"
                    groupByFields      = ["metric.label.outcome"]
                  }
                }
              }
            }]
            yAxis = { label = "per 5 minutes", scale = "LINEAR" }
          }
        },
        {
          title = "Dead events by kind and TikTok code"
          xyChart = {
            chartOptions = { mode = "COLOR" }
            dataSets = [{
              plotType       = "STACKED_BAR"
              legendTemplate = "$${metric.labels.dead_kind} $${metric.labels.code}"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.dead_events.name}\" AND resource.type=\"cloud_run_revision\""
                  aggregation = {
                    alignmentPeriod    = "300s"
                    perSeriesAligner   = "ALIGN_SUM"
                    crossSeriesReducer = "REDUCE_SUM"
                    groupByFields      = ["metric.label.dead_kind", "metric.label.code"]
                  }
                }
              }
            }]
            yAxis = { label = "per 5 minutes", scale = "LINEAR" }
          }
        },
        {
          title = "Coverage score of delivered events by source (mean, 0..10; our proxy, not TikTok's EMQ)"
          xyChart = {
            chartOptions = { mode = "COLOR" }
            dataSets = [{
              plotType       = "LINE"
              legendTemplate = "$${metric.labels.source}"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.match_score.name}\" AND resource.type=\"cloud_run_revision\""
                  aggregation = {
                    alignmentPeriod    = "3600s"
                    perSeriesAligner   = "ALIGN_DELTA"
                    crossSeriesReducer = "REDUCE_MEAN"
                    groupByFields      = ["metric.label.source"]
                  }
                }
              }
            }]
            yAxis = { label = "score", scale = "LINEAR" }
          }
        },
        {
          title = "Share of delivered events carrying a ttclid, by source"
          xyChart = {
            chartOptions = { mode = "COLOR" }
            dataSets = [{
              plotType       = "LINE"
              legendTemplate = "$${metric.labels.source}"
              timeSeriesQuery = {
                timeSeriesFilterRatio = {
                  numerator = {
                    filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.match_key["ttclid"].name}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_SUM", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["metric.label.source"] }
                  }
                  denominator = {
                    filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.delivered.name}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_SUM", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["metric.label.source"] }
                  }
                }
              }
            }]
            yAxis = { label = "share (0..1)", scale = "LINEAR" }
          }
        },
        {
          title = "Share of delivered events carrying an email, by source"
          xyChart = {
            chartOptions = { mode = "COLOR" }
            dataSets = [{
              plotType       = "LINE"
              legendTemplate = "$${metric.labels.source}"
              timeSeriesQuery = {
                timeSeriesFilterRatio = {
                  numerator = {
                    filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.match_key["email"].name}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_SUM", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["metric.label.source"] }
                  }
                  denominator = {
                    filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.delivered.name}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_SUM", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["metric.label.source"] }
                  }
                }
              }
            }]
            yAxis = { label = "share (0..1)", scale = "LINEAR" }
          }
        },
        {
          title = "Share of delivered events carrying a phone, by source"
          xyChart = {
            chartOptions = { mode = "COLOR" }
            dataSets = [{
              plotType       = "LINE"
              legendTemplate = "$${metric.labels.source}"
              timeSeriesQuery = {
                timeSeriesFilterRatio = {
                  numerator = {
                    filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.match_key["phone"].name}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_SUM", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["metric.label.source"] }
                  }
                  denominator = {
                    filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.delivered.name}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_SUM", crossSeriesReducer = "REDUCE_SUM", groupByFields = ["metric.label.source"] }
                  }
                }
              }
            }]
            yAxis = { label = "share (0..1)", scale = "LINEAR" }
          }
        },
        {
          title = "Share of delivered events carrying an external_id, ttp or ip+user_agent (all sources)"
          xyChart = {
            chartOptions = { mode = "COLOR" }
            dataSets = [
              {
                plotType       = "LINE"
                legendTemplate = "external_id"
                timeSeriesQuery = {
                  timeSeriesFilterRatio = {
                    numerator = {
                      filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.match_key["external_id"].name}\" AND resource.type=\"cloud_run_revision\""
                      aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_SUM", crossSeriesReducer = "REDUCE_SUM" }
                    }
                    denominator = {
                      filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.delivered.name}\" AND resource.type=\"cloud_run_revision\""
                      aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_SUM", crossSeriesReducer = "REDUCE_SUM" }
                    }
                  }
                }
              },
              {
                plotType       = "LINE"
                legendTemplate = "ttp"
                timeSeriesQuery = {
                  timeSeriesFilterRatio = {
                    numerator = {
                      filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.match_key["ttp"].name}\" AND resource.type=\"cloud_run_revision\""
                      aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_SUM", crossSeriesReducer = "REDUCE_SUM" }
                    }
                    denominator = {
                      filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.delivered.name}\" AND resource.type=\"cloud_run_revision\""
                      aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_SUM", crossSeriesReducer = "REDUCE_SUM" }
                    }
                  }
                }
              },
              {
                plotType       = "LINE"
                legendTemplate = "ip+user_agent"
                timeSeriesQuery = {
                  timeSeriesFilterRatio = {
                    numerator = {
                      filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.match_key["ip_user_agent"].name}\" AND resource.type=\"cloud_run_revision\""
                      aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_SUM", crossSeriesReducer = "REDUCE_SUM" }
                    }
                    denominator = {
                      filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.delivered.name}\" AND resource.type=\"cloud_run_revision\""
                      aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_SUM", crossSeriesReducer = "REDUCE_SUM" }
                    }
                  }
                }
              },
            ]
            yAxis = { label = "share (0..1)", scale = "LINEAR" }
          }
        },
        {
          title = "TikTok request latency (p50, p95)"
          xyChart = {
            chartOptions = { mode = "COLOR" }
            dataSets = [
              {
                plotType       = "LINE"
                legendTemplate = "p50"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.tiktok_latency.name}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = { alignmentPeriod = "300s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_PERCENTILE_50" }
                  }
                }
              },
              {
                plotType       = "LINE"
                legendTemplate = "p95"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.tiktok_latency.name}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = { alignmentPeriod = "300s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_PERCENTILE_95" }
                  }
                }
              },
            ]
            yAxis = { label = "ms", scale = "LINEAR" }
          }
        },
        {
          title = "Events per TikTok request (mean; micro-batching at work when above 1)"
          xyChart = {
            chartOptions = { mode = "COLOR" }
            dataSets = [{
              plotType       = "LINE"
              legendTemplate = "events per request"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.tiktok_batch_size.name}\" AND resource.type=\"cloud_run_revision\""
                  aggregation = { alignmentPeriod = "300s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_MEAN" }
                }
              }
            }]
            yAxis = { label = "events", scale = "LINEAR" }
          }
        },
        {
          title = "Events waiting for the sender: backlog and oldest unacknowledged age"
          xyChart = {
            chartOptions = { mode = "COLOR" }
            dataSets = [
              {
                plotType       = "LINE"
                legendTemplate = "undelivered messages"
                targetAxis     = "Y1"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter      = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${module.events_push.push_subscription_name}\""
                    aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_MAX" }
                  }
                }
              },
              {
                plotType       = "LINE"
                legendTemplate = "oldest unacked (s)"
                targetAxis     = "Y2"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter      = "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${module.events_push.push_subscription_name}\""
                    aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_MAX" }
                  }
                }
              },
            ]
            yAxis  = { label = "messages", scale = "LINEAR" }
            y2Axis = { label = "seconds", scale = "LINEAR" }
          }
        },
        {
          title = "Dead-letter backlog (re-drive with make redrive)"
          xyChart = {
            chartOptions = { mode = "COLOR" }
            dataSets = [{
              plotType       = "LINE"
              legendTemplate = "dead-lettered messages"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter      = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${module.events_push.dead_letter_subscription_name}\""
                  aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_MAX" }
                }
              }
            }]
            yAxis = { label = "messages", scale = "LINEAR" }
          }
        },
        {
          title = "Instances by function"
          xyChart = {
            chartOptions = { mode = "COLOR" }
            dataSets = [{
              plotType       = "STACKED_AREA"
              legendTemplate = "$${resource.labels.service_name} $${metric.labels.state}"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = "metric.type=\"run.googleapis.com/container/instance_count\" AND ${local.run_filter}"
                  aggregation = {
                    alignmentPeriod    = "60s"
                    perSeriesAligner   = "ALIGN_MAX"
                    crossSeriesReducer = "REDUCE_SUM"
                    groupByFields      = ["resource.label.service_name", "metric.label.state"]
                  }
                }
              }
            }]
            yAxis = { label = "instances", scale = "LINEAR" }
          }
        },
        {
          title = "Orders in the shop vs sent (reconcile job: each run's trailing window, all shops)"
          xyChart = {
            chartOptions = { mode = "COLOR" }
            dataSets = [
              {
                plotType       = "LINE"
                legendTemplate = "orders in the shop"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.reconcile_window["orders"].name}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_MEAN" }
                  }
                }
              },
              {
                plotType       = "LINE"
                legendTemplate = "sent"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.reconcile_window["sent"].name}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_MEAN" }
                  }
                }
              },
              {
                plotType       = "LINE"
                legendTemplate = "missing (paid, nothing held)"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter      = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.reconcile_window["missing"].name}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = { alignmentPeriod = "3600s", perSeriesAligner = "ALIGN_DELTA", crossSeriesReducer = "REDUCE_MEAN" }
                  }
                }
              },
            ]
            yAxis = { label = "orders", scale = "LINEAR" }
          }
        },
      ]
    }
  }
}

resource "google_logging_metric" "delivered" {
  project     = var.project_id
  name        = "${local.metric_prefix}_delivered_events"
  description = "Events the sender delivered to TikTok (outcome sent), by source: the denominator of the match-key shares."
  filter      = "${local.sender_filter} AND jsonPayload.outcome=\"sent\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Delivered events"

    labels {
      key         = "source"
      value_type  = "STRING"
      description = "Where the event came from: shopify, woocommerce or collect."
    }
  }

  label_extractors = {
    source = "EXTRACT(jsonPayload.source)"
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "match_key" {
  for_each = toset(local.dashboard_match_keys)

  project     = var.project_id
  name        = "${local.metric_prefix}_match_key_${each.key}"
  description = "Delivered events that carried the match key ${each.key} (its presence, never its value), by source."
  filter      = "${local.sender_filter} AND jsonPayload.outcome=\"sent\" AND jsonPayload.match_keys:\"${each.key}\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Delivered events with ${each.key}"

    labels {
      key         = "source"
      value_type  = "STRING"
      description = "Where the event came from: shopify, woocommerce or collect."
    }
  }

  label_extractors = {
    source = "EXTRACT(jsonPayload.source)"
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "match_score" {
  project         = var.project_id
  name            = "${local.metric_prefix}_match_score"
  description     = "Coverage score (0..10, shared/domain/match_keys.py) of each delivered event, by source: our proxy, not TikTok's EMQ."
  filter          = "${local.sender_filter} AND jsonPayload.outcome=\"sent\" AND jsonPayload.match_score>=0"
  value_extractor = "EXTRACT(jsonPayload.match_score)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "Match-key coverage score"

    labels {
      key         = "source"
      value_type  = "STRING"
      description = "Where the event came from: shopify, woocommerce or collect."
    }
  }

  label_extractors = {
    source = "EXTRACT(jsonPayload.source)"
  }

  bucket_options {
    linear_buckets {
      num_finite_buckets = 11
      width              = 1
      offset             = 0
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "tiktok_latency" {
  project         = var.project_id
  name            = "${local.metric_prefix}_tiktok_latency"
  description     = "Time TikTok took to answer each Events API request (the sender's \"tiktok answered\" line, jsonPayload.ms)."
  filter          = "${local.sender_filter} AND jsonPayload.message=\"tiktok answered\" AND jsonPayload.ms>=0"
  value_extractor = "EXTRACT(jsonPayload.ms)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "ms"
    display_name = "TikTok request latency"

    labels {
      key         = "verdict"
      value_type  = "STRING"
      description = "How the sender read the answer: ok, retry or reject."
    }
  }

  label_extractors = {
    verdict = "EXTRACT(jsonPayload.verdict)"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 1.6
      scale              = 10
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "tiktok_batch_size" {
  project         = var.project_id
  name            = "${local.metric_prefix}_tiktok_batch_size"
  description     = "Events per TikTok Events API request (the sender's \"tiktok answered\" line, jsonPayload.events)."
  filter          = "${local.sender_filter} AND jsonPayload.message=\"tiktok answered\" AND jsonPayload.events>=1"
  value_extractor = "EXTRACT(jsonPayload.events)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "Events per TikTok request"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 11
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "dead_events" {
  project     = var.project_id
  name        = "${local.metric_prefix}_dead_events"
  description = "Events the sender dead-lettered, by why (dead_kind) and TikTok's code."
  filter      = "${local.sender_filter} AND jsonPayload.outcome=(\"dead\" OR \"dead_malformed\")"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Dead events"

    labels {
      key         = "dead_kind"
      value_type  = "STRING"
      description = "Why: rejected (TikTok refused it for good), missing_token, unsendable, malformed."
    }
    labels {
      key         = "code"
      value_type  = "STRING"
      description = "TikTok's answer code, when TikTok answered."
    }
  }

  label_extractors = {
    dead_kind = "EXTRACT(jsonPayload.dead_kind)"
    code      = "EXTRACT(jsonPayload.code)"
  }

  depends_on = [google_project_service.this]
}

# The reconcile job's run line (monitoring.tf; shared/reconcile/function.py): each count of its trailing window
# over every shop, one value per run. The line carries no per-shop counts yet: a chart by shop needs one line
# per shop.
resource "google_logging_metric" "reconcile_window" {
  for_each = toset(local.reconcile_charted)

  project         = var.project_id
  name            = "${local.metric_prefix}_reconcile_window_${each.key}"
  description     = "The reconcile job's count of ${each.key} orders in its trailing window, per run (its \"reconcile run\" line, jsonPayload.${each.key})."
  filter          = "${local.reconcile_run_filter} AND jsonPayload.${each.key}>=0"
  value_extractor = "EXTRACT(jsonPayload.${each.key})"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "Reconciliation: ${each.key} orders in the window"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_monitoring_dashboard" "pipeline" {
  project        = var.project_id
  dashboard_json = jsonencode(local.dashboard)

  depends_on = [google_project_service.this]
}
