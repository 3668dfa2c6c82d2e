# The reconciliation job (docs/operations.md, "Accuracy: orders in the shop vs sent"): Cloud Scheduler
# POSTs to the reconcile function on var.reconcile_job.schedule, with an OIDC token of an identity of its
# own, the only one that may invoke that function. The function is its entry in local.functions
# (functions.tf) and gets its identity, grants, secrets and bundle from it like any other; what is here is
# the platform feature around it: its switch, the schedule and the caller. Its alerts are in monitoring.tf,
# its chart in dashboard.tf. Nothing of it exists unless var.reconcile_job.enabled: without the shops' API
# credentials the job would fail every run.

locals {
  # Optional folders switched on by a variable of their own instead of var.enabled_sources (functions.tf,
  # local.deployed_folders).
  switched_on = { reconcile = var.reconcile_job.enabled }

  # Hours between two runs: the schedule runs every hour ("M * * * *") or every N hours ("M */N * * *"), as
  # the variable's validation requires.
  reconcile_period_hours = try(tonumber(regex("^[0-9]+ [*]/([0-9]+) ", var.reconcile_job.schedule)[0]), 1)

  # Cloud Scheduler waits at most 30 minutes for an HTTP target's answer (attempt_deadline, 15 s to 1800 s);
  # the deadline covers the function's own timeout and a cold start, so a run that ends in time is seen to.
  reconcile_deadline_max_seconds = 1800
  reconcile_attempt_deadline     = min(local.function_runtime.reconcile.timeout_seconds + 60, local.reconcile_deadline_max_seconds)

  # A run that failed (503: a shop's API or Firestore could not be read) is tried again, within the hour even
  # when every attempt takes the whole default timeout. Runs are idempotent (the sender's claim on each
  # order's event id), so a retry that overlaps the next run sends nothing twice.
  reconcile_retry = {
    retry_count          = 2
    min_backoff_duration = "60s"
    max_backoff_duration = "300s"
    max_doublings        = 2
  }
}

# Identity in the OIDC token Cloud Scheduler attaches to each run: the only one that may invoke the job.
resource "google_service_account" "scheduler" {
  count = var.reconcile_job.enabled ? 1 : 0

  account_id   = "${var.name_prefix}-scheduler"
  display_name = "TikTok pipeline: Cloud Scheduler runs of the reconcile job"

  depends_on = [google_project_service.this]
}

# The scheduler's identity may invoke the reconcile function's service, and nothing else.
resource "google_cloud_run_service_iam_member" "scheduler_invoker" {
  count = var.reconcile_job.enabled ? 1 : 0

  location = var.region
  service  = google_cloudfunctions2_function.function["reconcile"].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler[0].email}"
}

resource "google_cloud_scheduler_job" "reconcile" {
  count = var.reconcile_job.enabled ? 1 : 0

  name             = "${var.name_prefix}-reconcile"
  description      = "TikTok Events API pipeline: every shop's orders of the last ${var.reconcile_job.window_hours} hours accounted for (docs/operations.md)."
  region           = var.region
  schedule         = var.reconcile_job.schedule
  time_zone        = var.reconcile_job.time_zone
  attempt_deadline = "${local.reconcile_attempt_deadline}s"

  retry_config {
    retry_count          = local.reconcile_retry.retry_count
    min_backoff_duration = local.reconcile_retry.min_backoff_duration
    max_backoff_duration = local.reconcile_retry.max_backoff_duration
    max_doublings        = local.reconcile_retry.max_doublings
  }

  # The function reads no body: the run's window and switches are its environment.
  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.function["reconcile"].service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.scheduler[0].email
      audience              = google_cloudfunctions2_function.function["reconcile"].service_config[0].uri
    }
  }

  lifecycle {
    precondition {
      condition     = local.function_runtime.reconcile.timeout_seconds <= local.reconcile_deadline_max_seconds
      error_message = "function_settings: reconcile's timeout_seconds must be at most ${local.reconcile_deadline_max_seconds}: Cloud Scheduler waits 30 minutes at most for an HTTP target's answer."
    }
    precondition {
      condition     = var.reconcile_job.window_hours >= local.reconcile_period_hours
      error_message = "reconcile_job.window_hours (${var.reconcile_job.window_hours}) must cover the time between two runs (${local.reconcile_period_hours} h), or orders created between windows are never looked at."
    }
  }

  # The first run must find the function invokable by its identity.
  depends_on = [google_project_service.this, google_cloud_run_service_iam_member.scheduler_invoker]
}
