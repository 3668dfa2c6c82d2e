# A topic pushed to one function, with retries and dead letters: the topic, its push
# subscription (OIDC token of var.push_service_account, the only identity that may
# invoke the function), a dead-letter topic with a pull subscription where messages
# Pub/Sub gave up pushing wait, and the grants Pub/Sub's service agent needs to move
# them there. Who may publish on the topic is the caller's decision (terraform/iam.tf).

resource "google_pubsub_topic" "topic" {
  #checkov:skip=CKV_GCP_83:Encrypted at rest with Google-managed keys; nothing here requires customer-managed keys, which would add a KMS key to run and pay for.
  name = var.topic_name
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Encrypted at rest with Google-managed keys; nothing here requires customer-managed keys, which would add a KMS key to run and pay for.
  name = "${var.topic_name}-dead-letter"
}

resource "google_pubsub_subscription" "push" {
  name  = "${var.topic_name}${var.push_suffix}"
  topic = google_pubsub_topic.topic.id

  # For push, the ack deadline is also the request timeout: the function's own.
  ack_deadline_seconds = var.ack_deadline_seconds

  # 7 days, Pub/Sub's default: what the functions remember of a message (the sender's
  # claims, CLAIM_TTL_HOURS; the Shopify order records, shared.receive.orders.ORDER_EVENT_TTL)
  # outlives any redelivery of it.
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = var.push_endpoint
    oidc_token {
      service_account_email = var.push_service_account
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
      condition     = var.ack_deadline_seconds >= 10 && var.ack_deadline_seconds <= 600
      error_message = "The timeout_seconds of ${var.service} must be from 10 to 600: it is the ack deadline of its push subscription ${var.topic_name}${var.push_suffix}."
    }
  }

  # Dead-lettering fails silently until the service agent may publish there.
  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_cloud_run_service_iam_member.invoker,
  ]
}

# A topic without a subscription drops what is published to it: dead letters wait
# here until someone inspects and re-drives them (make redrive; for Shopify, publish
# them again on its topic once the cause is fixed).
resource "google_pubsub_subscription" "dead_letter" {
  name  = "${var.topic_name}-dead-letter"
  topic = google_pubsub_topic.dead_letter.id

  ack_deadline_seconds       = 60
  message_retention_duration = var.dead_letter_retention

  expiration_policy {
    ttl = ""
  }
}

# Only the push identity may invoke the function.
resource "google_cloud_run_service_iam_member" "invoker" {
  location = var.region
  service  = var.service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.push_service_account}"
}

# To move a message to the dead-letter topic, Pub/Sub's service agent must be able
# to publish there and to acknowledge it on the push subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${var.pubsub_service_agent}"
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  subscription = google_pubsub_subscription.push.id
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${var.pubsub_service_agent}"
}
