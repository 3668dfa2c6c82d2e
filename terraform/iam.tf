# Identities and every grant they hold. One resource per role and kind of target,
# for_each over principals, so each grant is one visible plan line. Nothing is
# granted a primitive role (owner, editor, viewer).

# ---------------------------------------------------------------------------
# Service accounts
# ---------------------------------------------------------------------------

# One runtime identity per function, so a function can reach only what it needs.
resource "google_service_account" "function" {
  for_each = local.deployed_folders

  account_id   = "${var.name_prefix}-${each.value.short_name}"
  display_name = "TikTok pipeline: ${each.key} (runtime)"

  depends_on = [google_project_service.this]
}

# Identity in the OIDC token Pub/Sub attaches to pushes (to the sender, and to
# shopify_pubsub when enabled): the only one that may invoke them (pubsub.tf).
resource "google_service_account" "push" {
  account_id   = "${var.name_prefix}-push"
  display_name = "TikTok pipeline: Pub/Sub push to the sender"

  depends_on = [google_project_service.this]
}

# Identity Cloud Build uses to build the function images. Set explicitly because
# the project default build account may lack permissions (projects created after
# mid-2024) or hold far more than a build needs (legacy accounts with Editor).
resource "google_service_account" "builder" {
  account_id   = "${var.name_prefix}-builder"
  display_name = "TikTok pipeline: function image builds"

  depends_on = [google_project_service.this]
}

# ---------------------------------------------------------------------------
# Runtime grants
# ---------------------------------------------------------------------------

# Firestore has no IAM below the database: roles/datastore.user at project level is
# the narrowest grant that lets a function read and write documents (it grants no
# admin operations such as indexes, TTL policies or database deletion).
resource "google_project_iam_member" "function_firestore" {
  for_each = local.deployed_folders

  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.function[each.key].email}"
}

# Receivers publish envelopes to the events topic, and only there. The sender is
# fed by push and needs no Pub/Sub role at all.
resource "google_pubsub_topic_iam_member" "receiver_publisher" {
  for_each = { for name, fn in local.deployed_folders : name => fn if fn.publishes }

  topic  = module.events_push.topic_id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.function[each.key].email}"
}

# Each secret is readable by the one function that uses it.
resource "google_secret_manager_secret_iam_member" "function_secret" {
  for_each = local.secrets

  secret_id = google_secret_manager_secret.secret[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.value.function].email}"
}

# ---------------------------------------------------------------------------
# Invocation
# ---------------------------------------------------------------------------

# Browsers, Shopify, WooCommerce and signing backends call these without Google
# credentials: the functions authenticate requests themselves (allowed origins and
# collect keys, HMAC signatures of the webhook secrets). Needs an organisation policy that
# allows allUsers (Domain Restricted Sharing blocks it).
resource "google_cloud_run_service_iam_member" "public_invoker" {
  #checkov:skip=CKV_GCP_102:Public by design: browser beacons and e-commerce webhooks cannot carry Google credentials; each function authenticates its callers (origin/collect key, HMAC).
  for_each = { for name, fn in local.deployed_functions : name => fn if fn.public_http }

  location = var.region
  service  = google_cloudfunctions2_function.function[each.key].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# The push identity may invoke the sender and shopify_pubsub, and Pub/Sub's service
# agent may move dead letters: granted with each push subscription (pubsub.tf,
# modules/push_pipeline).

# ---------------------------------------------------------------------------
# Build grants
# ---------------------------------------------------------------------------

# Cloud Build writes build logs as the build identity. No finer scope exists for
# writing log entries.
resource "google_project_iam_member" "builder_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.builder.email}"
}

# The build reads the bundle from the staging copy Cloud Functions makes in its
# own bucket (gcf-v2-sources-PROJECT_NUMBER-REGION), which appears on the first
# deployment, so it cannot be granted on the bucket itself: the condition limits
# the project-level grant to that bucket.
resource "google_project_iam_member" "builder_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = "serviceAccount:${google_service_account.builder.email}"

  condition {
    title       = "gcf-v2-sources-only"
    description = "Read the Cloud Functions source staging bucket of this region only."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}\")"
  }
}

# ... and reads our bundle objects.
resource "google_storage_bucket_iam_member" "builder_sources" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.builder.email}"
}

# Pushes the built image (and the build cache) to our repository only.
resource "google_artifact_registry_repository_iam_member" "builder_images" {
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.builder.email}"
}

# ---------------------------------------------------------------------------
# Shopify webhooks over Pub/Sub (var.shopify_pubsub_enabled)
# ---------------------------------------------------------------------------

# Shopify's delivery account may publish on the Shopify topic, and nowhere else.
# Needs an organisation policy that allows members outside the organisation
# (Domain Restricted Sharing blocks it).
resource "google_pubsub_topic_iam_member" "shopify_delivery_publisher" {
  count = var.shopify_pubsub_enabled ? 1 : 0

  topic  = module.shopify_push[0].topic_id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${local.shopify_delivery_account}"
}
