# APIs the pipeline needs. disable_on_destroy = false: destroying this stack must
# not switch off an API that something else in the project may use.
locals {
  services = toset(concat([
    "artifactregistry.googleapis.com",     # function images (build_config.docker_repository)
    "cloudbuild.googleapis.com",           # gen2 functions are built by Cloud Build
    "cloudfunctions.googleapis.com",       # the functions themselves
    "cloudresourcemanager.googleapis.com", # project number lookup, project IAM bindings
    "firestore.googleapis.com",            # click contexts, claims, records
    "iam.googleapis.com",                  # service accounts
    "logging.googleapis.com",              # build and function logs, the outcome metric
    "monitoring.googleapis.com",           # alert policies
    "pubsub.googleapis.com",               # events topic, push subscription, dead letters
    "run.googleapis.com",                  # gen2 functions run as Cloud Run services
    "secretmanager.googleapis.com",        # access token and webhook secrets
    "storage.googleapis.com",              # function source bundles
    ], var.collect_load_balancer ? [
    "compute.googleapis.com", # the load balancer and Cloud Armor in front of collect (load_balancer.tf)
    ] : [], var.reconcile_job.enabled ? [
    "cloudscheduler.googleapis.com", # the reconciliation job's schedule (reconcile.tf)
  ] : []))
}

resource "google_project_service" "this" {
  for_each = local.services

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

data "google_project" "this" {
  project_id = var.project_id

  depends_on = [google_project_service.this]
}
