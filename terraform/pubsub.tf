# Pub/Sub: receivers publish envelopes to the events topic; our own push
# subscription delivers them to the sender (not an Eventarc trigger, whose
# subscription cannot be given a dead-letter policy from Terraform). Names follow
# scripts/localstack.py, which builds the same topology in the emulator:
# <topic>, <topic>-sender, <topic>-dead-letter (topic and subscription).

locals {
  events_topic = "${var.name_prefix}-events"
  # Pub/Sub's own service agent: it forwards dead letters and mints push OIDC tokens.
  pubsub_service_agent = "service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic" "events" {
  #checkov:skip=CKV_GCP_83:Encrypted at rest with Google-managed keys; nothing here requires customer-managed keys, which would add a KMS key to run and pay for.
  name = local.events_topic

  depends_on = [google_project_service.this]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Encrypted at rest with Google-managed keys; nothing here requires customer-managed keys, which would add a KMS key to run and pay for.
  name = "${local.events_topic}-dead-letter"

  depends_on = [google_project_service.this]
}

resource "google_pubsub_subscription" "sender_push" {
  name  = "${local.events_topic}-sender"
  topic = google_pubsub_topic.events.id

  # For push, the ack deadline is also the request timeout: it must cover the
  # sender's own timeout or Pub/Sub redelivers while the sender still works.
  ack_deadline_seconds = local.function_runtime.sender.timeout_seconds

  # 7 days, Pub/Sub's default; the sender's claims (CLAIM_TTL_HOURS, 9 days by
  # default: order_max_event_age_days plus two) outlive any redelivery of a message.
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.function["sender"].service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.push.email
    }
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  # The default expires a subscription after 31 idle days: a quiet shop would lose it.
  expiration_policy {
    ttl = ""
  }

  lifecycle {
    precondition {
      condition     = local.function_runtime.sender.timeout_seconds >= 10 && local.function_runtime.sender.timeout_seconds <= 600
      error_message = "The sender's timeout_seconds must be from 10 to 600: it is the push subscription's ack deadline."
    }
  }

  # Dead-lettering fails silently until the service agent may publish there.
  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_cloud_run_service_iam_member.push_invoker,
  ]
}

# A topic without a subscription drops what is published to it: dead letters wait
# here until someone inspects and re-drives them (make redrive).
resource "google_pubsub_subscription" "dead_letter" {
  name  = "${local.events_topic}-dead-letter"
  topic = google_pubsub_topic.dead_letter.id

  ack_deadline_seconds       = 60
  message_retention_duration = var.dead_letter_retention

  expiration_policy {
    ttl = ""
  }
}

# ---------------------------------------------------------------------------
# Shopify webhooks over Pub/Sub (var.shopify_pubsub_enabled)
# ---------------------------------------------------------------------------
# Shopify publishes each webhook on this topic (pubsub://PROJECT:TOPIC) as its own
# delivery account; our push subscription hands it to the shopify_pubsub function
# (functions.tf), which only the push identity may invoke. No public endpoint, no
# 5-second answer budget, and a delivery that fails waits here and is retried
# instead of counting towards Shopify deleting the subscription. Names follow
# scripts/localstack.py (create_shopify_topology): <topic>, <topic>-push,
# <topic>-dead-letter (topic and subscription).

locals {
  shopify_topic = "${var.name_prefix}-shopify-webhooks"
  # The account Shopify publishes every Pub/Sub webhook as (shopify.dev, "Google Cloud Pub/Sub").
  shopify_delivery_account = "delivery@shopify-pubsub-webhooks.iam.gserviceaccount.com"
}

resource "google_pubsub_topic" "shopify" {
  #checkov:skip=CKV_GCP_83:Encrypted at rest with Google-managed keys; nothing here requires customer-managed keys, which would add a KMS key to run and pay for.
  count = var.shopify_pubsub_enabled ? 1 : 0

  name = local.shopify_topic

  depends_on = [google_project_service.this]
}

resource "google_pubsub_topic" "shopify_dead_letter" {
  #checkov:skip=CKV_GCP_83:Encrypted at rest with Google-managed keys; nothing here requires customer-managed keys, which would add a KMS key to run and pay for.
  count = var.shopify_pubsub_enabled ? 1 : 0

  name = "${local.shopify_topic}-dead-letter"

  depends_on = [google_project_service.this]
}

resource "google_pubsub_subscription" "shopify_push" {
  count = var.shopify_pubsub_enabled ? 1 : 0

  name  = "${local.shopify_topic}-push"
  topic = google_pubsub_topic.shopify[0].id

  # For push, the ack deadline is also the request timeout: the function's own.
  ack_deadline_seconds = local.function_runtime.shopify_webhook.timeout_seconds

  # 7 days: the order records (8 days, shared.receive.orders.ORDER_EVENT_TTL) outlive any
  # redelivery, and SHOPIFY_MAX_ORDER_AGE_DAYS (at most 7) refuses what waited longer.
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.shopify_pubsub[0].service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.push.email
    }
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.shopify_dead_letter[0].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  lifecycle {
    precondition {
      condition     = local.function_runtime.shopify_webhook.timeout_seconds >= 10 && local.function_runtime.shopify_webhook.timeout_seconds <= 600
      error_message = "With shopify_pubsub_enabled, shopify_webhook's timeout_seconds must be from 10 to 600: it is the push subscription's ack deadline."
    }
  }

  depends_on = [
    google_pubsub_topic_iam_member.shopify_dead_letter_publisher,
    google_cloud_run_service_iam_member.shopify_push_invoker,
  ]
}

# Shopify messages Pub/Sub gave up pushing wait here (inspect with gcloud pubsub
# subscriptions pull; publish them again on the Shopify topic once the cause is fixed).
resource "google_pubsub_subscription" "shopify_dead_letter" {
  count = var.shopify_pubsub_enabled ? 1 : 0

  name  = "${local.shopify_topic}-dead-letter"
  topic = google_pubsub_topic.shopify_dead_letter[0].id

  ack_deadline_seconds       = 60
  message_retention_duration = var.dead_letter_retention

  expiration_policy {
    ttl = ""
  }
}
