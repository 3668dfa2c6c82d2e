locals {
  function_urls = { for name, fn in google_cloudfunctions2_function.function : name => fn.service_config[0].uri }

  shopify_shop = coalesce(var.shopify_shop_domain, "SHOP.myshopify.com")
  woo_site     = trimsuffix(coalesce(var.woocommerce_site_url, "https://SHOP.EXAMPLE"), "/")

  shopify_curl_commands = join("\n", [
    for topic in var.shopify_webhook_topics :
    "curl -sS -X POST 'https://${local.shopify_shop}/admin/api/${var.shopify_api_version}/webhooks.json' -H \"X-Shopify-Access-Token: $SHOPIFY_ADMIN_TOKEN\" -H 'Content-Type: application/json' -d '{\"webhook\":{\"topic\":\"${topic}\",\"address\":\"${local.function_urls["shopify_webhook"]}\",\"format\":\"json\"}}'"
  ])
}

output "collect_url" {
  description = "Endpoint the storefront script posts browser events to."
  value       = local.function_urls["collect"]
}

output "shopify_webhook_url" {
  description = "Delivery URL to register for the Shopify order webhooks."
  value       = local.function_urls["shopify_webhook"]
}

output "woocommerce_webhook_url" {
  description = "Delivery URL to register for the WooCommerce order webhooks."
  value       = local.function_urls["woocommerce_webhook"]
}

output "sender_url" {
  description = "The sender's URL (internal ingress; only the push subscription calls it)."
  value       = local.function_urls["sender"]
}

output "dead_letter_subscription" {
  description = "Pull subscription holding messages the sender failed to handle max_delivery_attempts times."
  value       = module.events_push.dead_letter_subscription_id
}

output "service_accounts" {
  description = "Runtime service account of each function, plus the push and build identities (and the scheduler's, with the reconciliation job)."
  value = merge(
    { for name, sa in google_service_account.function : name => sa.email },
    { push = google_service_account.push.email, builder = google_service_account.builder.email },
    { for sa in google_service_account.scheduler : "scheduler" => sa.email },
  )
}

output "secret_setup_commands" {
  description = "Add each secret's value out of band (never through Terraform): one command per secret of a deployed function (functions.tf, each entry's secrets). Every one needs a version before the functions first deploy, even one for a platform the merchant does not use (any value will do there, except the reconciliation job's credentials: a blank, which their commands write while the variable they read is unset); run again to rotate."
  value = join("", [
    for id, secret in local.secrets :
    "# ${secret.help}\n${secret.value} | gcloud secrets versions add ${google_secret_manager_secret.secret[id].secret_id} --data-file=- --project=${var.project_id}\n"
  ])
}

output "function_urls" {
  description = "URL of every deployed function, by name: what a source's platform or backend posts to (functions.tf, local.functions), including sources without an output of their own."
  value       = local.function_urls
}

output "shopify_webhook_registration" {
  description = "How to subscribe the shop to its webhooks on each path of docs/deploy.md, step 7: by hand in the shop admin (no app), a Dev Dashboard app (the shopify_app_toml output), or the Admin API of a legacy custom app made in the admin before 2026."
  value       = <<-EOT
    # (a) No app: Shopify admin > Settings > Notifications > Webhooks > Create webhook, once per topic
    #     (${join(", ", var.shopify_webhook_topics)}), format JSON, API version ${var.shopify_api_version}, URL:
    #     ${local.function_urls["shopify_webhook"]}
    #     The key shown under the list ("Your webhooks will be signed with ...") is the shopify-webhook-secret.
    # (b) A Dev Dashboard app: `terraform output -raw shopify_app_toml` into its shopify.app.toml, then `shopify app deploy`.
    # (c) Only a legacy custom app made in the admin before 2026 (SHOPIFY_ADMIN_TOKEN: its Admin API access token;
    #     its client secret signs the webhooks), one call per topic:
    ${local.shopify_curl_commands}
  EOT
}

locals {
  # Shopify's mandatory privacy topics (shared.receive.shopify.request.PRIVACY_TOPICS), in shopify_app_toml.
  shopify_compliance_topics = ["customers/data_request", "customers/redact", "shop/redact"]
  shopify_toml_topics       = join(", ", [for topic in var.shopify_webhook_topics : "\"${topic}\""])
  shopify_toml_compliance   = join(", ", [for topic in local.shopify_compliance_topics : "\"${topic}\""])
  # Order topics go to the Pub/Sub topic when it exists; the privacy topics always over HTTPS (HMAC-signed).
  shopify_toml_uri = var.shopify_pubsub_enabled ? local.shopify_pubsub_uri : local.function_urls["shopify_webhook"]
  # Orders, cancellations and refunds need read_orders; customers/create needs read_customers.
  shopify_toml_scopes = join(",", concat(
    [for topic in ["customers/create"] : "read_customers" if contains(var.shopify_webhook_topics, topic)],
    ["read_orders"],
  ))
}

output "shopify_app_toml" {
  description = "The [access_scopes] and [webhooks] sections of a Dev Dashboard app's shopify.app.toml (docs/deploy.md, step 7b): the topics, the api_version and the URI (HTTPS, or pubsub:// with shopify_pubsub_enabled). Replace those sections of the file `shopify app config link` wrote, then `shopify app deploy`."
  value       = <<-EOT
    # Generated by `terraform output -raw shopify_app_toml` (terraform/outputs.tf): replace the
    # [access_scopes] and [webhooks] sections of shopify.app.toml with these, then `shopify app deploy`.
    [access_scopes]
    scopes = "${local.shopify_toml_scopes}"

    [webhooks]
    api_version = "${var.shopify_api_version}"

    [[webhooks.subscriptions]]
    topics = [${local.shopify_toml_topics}]
    uri = "${local.shopify_toml_uri}"

    [[webhooks.subscriptions]]
    compliance_topics = [${local.shopify_toml_compliance}]
    uri = "${local.function_urls["shopify_webhook"]}"
  EOT
}

output "woocommerce_webhook_registration" {
  description = "Registers the order.created and order.updated webhooks through the WooCommerce REST API (WC_CONSUMER_KEY/WC_CONSUMER_SECRET: a read/write REST API key from WooCommerce > Settings > Advanced > REST API), signed with the secret stored in Secret Manager."
  value       = <<-EOT
    WC_WEBHOOK_SECRET="$(gcloud secrets versions access latest --secret=${google_secret_manager_secret.secret["woocommerce-webhook-secret"].secret_id} --project=${var.project_id})"
    for topic in order.created order.updated; do
      curl -sS -X POST "${local.woo_site}/wp-json/wc/v3/webhooks" \
        -u "$WC_CONSUMER_KEY:$WC_CONSUMER_SECRET" -H "Content-Type: application/json" \
        -d "{\"name\":\"TikTok Events API $topic\",\"topic\":\"$topic\",\"delivery_url\":\"${local.function_urls["woocommerce_webhook"]}\",\"secret\":\"$WC_WEBHOOK_SECRET\",\"status\":\"active\"}"
    done
  EOT
}

output "outcome_metric_type" {
  description = "The log-based metric counting every function's outcomes, for dashboards and further alerts (labels: outcome, function)."
  value       = "logging.googleapis.com/user/${google_logging_metric.outcomes.name}"
}

output "collect_load_balancer_ip" {
  description = "Address of the load balancer in front of collect (null when collect_load_balancer is false): point collect_domain's DNS A record here."
  value       = one([for address in google_compute_global_address.collect : address.address])
}

output "collect_public_url" {
  description = "The URL the storefront snippet should post to: https://collect_domain/ behind the load balancer, else the function's own URL."
  value       = var.collect_load_balancer ? "https://${var.collect_domain}/" : local.function_urls["collect"]
}

locals {
  shopify_pubsub_uri = var.shopify_pubsub_enabled ? "pubsub://${var.project_id}:${module.shopify_push[0].topic_name}" : null
}

output "shopify_pubsub_uri" {
  description = "The pubsub:// address to register as the Shopify webhooks' endpoint (null unless shopify_pubsub_enabled)."
  value       = local.shopify_pubsub_uri
}

output "shopify_pubsub_registration" {
  description = "Subscribes the shop's webhooks to the Shopify topic: a shopify.app.toml section deployed with `shopify app deploy`, or the Admin GraphQL API (null unless shopify_pubsub_enabled). No secret is involved: IAM authenticates Shopify."
  value = var.shopify_pubsub_enabled ? join("\n", [
    "# In the app's shopify.app.toml, then `shopify app deploy`:",
    "[webhooks]",
    "api_version = \"${var.shopify_api_version}\"",
    "",
    "[[webhooks.subscriptions]]",
    "topics = [${join(", ", [for topic in var.shopify_webhook_topics : "\"${topic}\""])}]",
    "uri = \"${local.shopify_pubsub_uri}\"",
    "",
    "# Or the Admin GraphQL API (SHOPIFY_ADMIN_TOKEN: the custom app's Admin API access token), one call per topic:",
    join("\n", [
      for topic in var.shopify_webhook_topics :
      "curl -sS -X POST 'https://${local.shopify_shop}/admin/api/${var.shopify_api_version}/graphql.json' -H \"X-Shopify-Access-Token: $SHOPIFY_ADMIN_TOKEN\" -H 'Content-Type: application/json' -d '{\"query\":\"mutation { webhookSubscriptionCreate(topic: ${upper(replace(topic, "/", "_"))}, webhookSubscription: {uri: \\\"${local.shopify_pubsub_uri}\\\", format: JSON}) { webhookSubscription { id } userErrors { field message } } }\"}'"
    ]),
  ]) : null
}

output "dashboard_url" {
  description = "The Cloud Monitoring dashboard of the pipeline (terraform/dashboard.tf; README \"Is it working?\")."
  value       = "https://console.cloud.google.com/monitoring/dashboards/custom/${element(split("/", google_monitoring_dashboard.pipeline.id), 3)}?project=${var.project_id}"
}
