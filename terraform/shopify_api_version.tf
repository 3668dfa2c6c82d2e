# The Shopify API version the webhook subscriptions are registered with (var.shopify_api_version),
# against Shopify's release calendar: shared/data/shopify_api_versions.json, in the shared package so
# the Shopify function reads the same file at start (shared/receive/shopify/api_version.py). Shopify
# supports each stable version for at least 12 months; past that it delivers webhooks in the oldest
# version it still supports, so the bodies change shape without anyone having chosen it.

locals {
  shopify_api_calendar = jsondecode(file("${path.module}/../shared/data/shopify_api_versions.json")).versions
  # The calendar's newest release: what the variable's default should be (tests/infra checks it).
  shopify_api_newest = local.shopify_api_calendar[length(local.shopify_api_calendar) - 1].version
  # End of support of the configured version; null when the calendar does not list it.
  shopify_api_supported_until = one([
    for release in local.shopify_api_calendar : release.supported_until if release.version == var.shopify_api_version
  ])
}

# A warning at plan and apply time, never an error: the deployment still works, Shopify just sends
# another version than the one configured. A version newer than the calendar is not judged (the
# calendar is older than the release); one older than all of it is out of support.
check "shopify_api_version_supported" {
  assert {
    condition = (
      local.shopify_api_supported_until == null
      ? tonumber(replace(var.shopify_api_version, "-", "")) > tonumber(replace(local.shopify_api_newest, "-", ""))
      : timecmp(plantimestamp(), "${local.shopify_api_supported_until}T00:00:00Z") < 0
    )
    error_message = "shopify_api_version ${var.shopify_api_version} is past Shopify's support window (${local.shopify_api_supported_until == null ? "older than every version in" : "supported until ${local.shopify_api_supported_until} in"} shared/data/shopify_api_versions.json): Shopify delivers webhooks in the oldest version it still supports instead. Set shopify_api_version = \"${local.shopify_api_newest}\", apply, and deploy the webhook subscriptions again (docs/deploy.md, step 11)."
  }
}
