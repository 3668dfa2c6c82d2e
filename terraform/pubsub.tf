# Pub/Sub: two topics pushed to a function each, both built by modules/push_pipeline
# (topic, push subscription with an OIDC token, dead-letter topic and subscription,
# the grants Pub/Sub's service agent needs). Not Eventarc triggers, whose
# subscriptions cannot be given a dead-letter policy from Terraform. Names follow
# scripts/localstack.py, which builds the same topology in the emulator:
# <topic>, <topic><push suffix>, <topic>-dead-letter (topic and subscription).

locals {
  events_topic = "${var.name_prefix}-events"
  # Pub/Sub's own service agent: it forwards dead letters and mints push OIDC tokens.
  pubsub_service_agent = "service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  # Shopify publishes each webhook on this topic (pubsub://PROJECT:TOPIC) as its own delivery account.
  shopify_topic = "${var.name_prefix}-shopify-webhooks"
  # The account Shopify publishes every Pub/Sub webhook as (shopify.dev, "Google Cloud Pub/Sub").
  shopify_delivery_account = "delivery@shopify-pubsub-webhooks.iam.gserviceaccount.com"
}

# Receivers publish envelopes to the events topic (iam.tf); its push subscription
# delivers them to the sender.
module "events_push" {
  source = "./modules/push_pipeline"

  topic_name           = local.events_topic
  push_suffix          = "-sender"
  push_endpoint        = google_cloudfunctions2_function.function["sender"].service_config[0].uri
  service              = google_cloudfunctions2_function.function["sender"].name
  region               = var.region
  push_service_account = google_service_account.push.email
  pubsub_service_agent = local.pubsub_service_agent

  ack_deadline_seconds  = local.function_runtime.sender.timeout_seconds
  retry_minimum_backoff = var.retry_minimum_backoff
  retry_maximum_backoff = var.retry_maximum_backoff
  max_delivery_attempts = var.max_delivery_attempts
  dead_letter_retention = var.dead_letter_retention

  depends_on = [google_project_service.this]
}

# Shopify webhooks over Pub/Sub (var.shopify_pubsub_enabled): Shopify's delivery
# account publishes on this topic (iam.tf); the push subscription hands each webhook
# to the shopify_pubsub function (functions.tf). No public endpoint, no 5-second
# answer budget, and a delivery that fails waits here and is retried instead of
# counting towards Shopify deleting the subscription.
module "shopify_push" {
  count  = var.shopify_pubsub_enabled ? 1 : 0
  source = "./modules/push_pipeline"

  topic_name           = local.shopify_topic
  push_suffix          = "-push"
  push_endpoint        = google_cloudfunctions2_function.function["shopify_pubsub"].service_config[0].uri
  service              = google_cloudfunctions2_function.function["shopify_pubsub"].name
  region               = var.region
  push_service_account = google_service_account.push.email
  pubsub_service_agent = local.pubsub_service_agent

  ack_deadline_seconds  = local.function_runtime.shopify_pubsub.timeout_seconds
  retry_minimum_backoff = var.retry_minimum_backoff
  retry_maximum_backoff = var.retry_maximum_backoff
  max_delivery_attempts = var.max_delivery_attempts
  dead_letter_retention = var.dead_letter_retention

  depends_on = [google_project_service.this]
}

# State written before modules/push_pipeline names these resources in the root module.
moved {
  from = google_pubsub_topic.events
  to   = module.events_push.google_pubsub_topic.topic
}

moved {
  from = google_pubsub_topic.dead_letter
  to   = module.events_push.google_pubsub_topic.dead_letter
}

moved {
  from = google_pubsub_subscription.sender_push
  to   = module.events_push.google_pubsub_subscription.push
}

moved {
  from = google_pubsub_subscription.dead_letter
  to   = module.events_push.google_pubsub_subscription.dead_letter
}

moved {
  from = google_cloud_run_service_iam_member.push_invoker
  to   = module.events_push.google_cloud_run_service_iam_member.invoker
}

moved {
  from = google_pubsub_topic_iam_member.dead_letter_publisher
  to   = module.events_push.google_pubsub_topic_iam_member.dead_letter_publisher
}

moved {
  from = google_pubsub_subscription_iam_member.dead_letter_subscriber
  to   = module.events_push.google_pubsub_subscription_iam_member.dead_letter_subscriber
}

moved {
  from = google_pubsub_topic.shopify[0]
  to   = module.shopify_push[0].google_pubsub_topic.topic
}

moved {
  from = google_pubsub_topic.shopify_dead_letter[0]
  to   = module.shopify_push[0].google_pubsub_topic.dead_letter
}

moved {
  from = google_pubsub_subscription.shopify_push[0]
  to   = module.shopify_push[0].google_pubsub_subscription.push
}

moved {
  from = google_pubsub_subscription.shopify_dead_letter[0]
  to   = module.shopify_push[0].google_pubsub_subscription.dead_letter
}

moved {
  from = google_cloud_run_service_iam_member.shopify_push_invoker[0]
  to   = module.shopify_push[0].google_cloud_run_service_iam_member.invoker
}

moved {
  from = google_pubsub_topic_iam_member.shopify_dead_letter_publisher[0]
  to   = module.shopify_push[0].google_pubsub_topic_iam_member.dead_letter_publisher
}

moved {
  from = google_pubsub_subscription_iam_member.shopify_dead_letter_subscriber[0]
  to   = module.shopify_push[0].google_pubsub_subscription_iam_member.dead_letter_subscriber
}
