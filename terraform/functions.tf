# The gen2 functions, their source bundles and their environment.

locals {
  repo_root = "${path.module}/.."

  # One entry per folder under functions/ (the keys of shared.config.function_settings()): its
  # bundle, runtime identity, environment and secrets.
  #   short_name   used in service account ids (30 characters at most)
  #   public_http  called from the internet (browsers, Shopify, WooCommerce): allUsers may invoke
  #   publishes    publishes envelopes to the events topic
  functions = {
    collect = {
      short_name  = "collect"
      public_http = true
      publishes   = true
    }
    shopify_webhook = {
      short_name  = "shopify"
      public_http = true
      publishes   = true
    }
    woocommerce_webhook = {
      short_name  = "woocommerce"
      public_http = true
      publishes   = true
    }
    sender = {
      short_name  = "sender"
      public_http = false # only our push subscription calls it, with an OIDC token
      publishes   = false
    }
  }

  # Every function deployed (google_cloudfunctions2_function.function), by name; its service
  # is <name_prefix>-<name with dashes>.
  #   folder       what it runs: the bundle of functions/<folder>, and that folder's runtime
  #                identity, environment, secrets and sizing (local.functions, function_env,
  #                secrets.tf, function_defaults)
  #   entry_point  the decorated function in the folder's main.py
  #   enabled      deployed at all
  #   runtime      sizing that differs from the folder's
  # shopify_pubsub is the Shopify folder's Pub/Sub entry point (var.shopify_pubsub_enabled),
  # a function of its own because Cloud Run grants invocation per service: shopify_webhook
  # must be public for Shopify's HTTPS deliveries, while this one trusts the shop named in
  # message attributes without an HMAC, so only the push subscription's identity may invoke
  # it (pubsub.tf), and only from inside Google Cloud (ingress).
  cloud_functions = {
    collect             = { folder = "collect", entry_point = "collect", enabled = true }
    shopify_webhook     = { folder = "shopify_webhook", entry_point = "shopify_webhook", enabled = true }
    woocommerce_webhook = { folder = "woocommerce_webhook", entry_point = "woocommerce_webhook", enabled = true }
    sender              = { folder = "sender", entry_point = "sender", enabled = true }
    shopify_pubsub = {
      folder      = "shopify_webhook"
      entry_point = "shopify_pubsub"
      enabled     = var.shopify_pubsub_enabled
      description = "TikTok Events API pipeline: Shopify webhooks delivered through Pub/Sub"
      runtime = {
        min_instance_count = 0 # Pub/Sub waits out a cold start: nobody is kept waiting
        # Pub/Sub push from the same project counts as internal traffic.
        ingress_settings = "ALLOW_INTERNAL_ONLY"
      }
    }
  }
  deployed_functions = { for name, fn in local.cloud_functions : name => fn if fn.enabled }

  # Sizing defaults of each folder; var.function_settings overrides them attribute by attribute.
  # The sender's concurrency is what lets it coalesce concurrent pushes into one
  # TikTok batch; its timeout is also the push subscription's ack deadline (<= 600 s).
  function_defaults = {
    collect = {
      available_memory                 = "512Mi"
      available_cpu                    = "1"
      timeout_seconds                  = 30
      min_instance_count               = 0
      max_instance_count               = 20
      max_instance_request_concurrency = 80
      ingress_settings                 = "ALLOW_ALL"
    }
    shopify_webhook = {
      available_memory                 = "512Mi"
      available_cpu                    = "1"
      timeout_seconds                  = 30
      min_instance_count               = 0 # cold starts are retried by Shopify; see var.function_settings
      max_instance_count               = 10
      max_instance_request_concurrency = 20
      ingress_settings                 = "ALLOW_ALL"
    }
    woocommerce_webhook = {
      available_memory                 = "512Mi"
      available_cpu                    = "1"
      timeout_seconds                  = 30
      min_instance_count               = 0 # cold starts are retried by WooCommerce; see var.function_settings
      max_instance_count               = 10
      max_instance_request_concurrency = 20
      ingress_settings                 = "ALLOW_ALL"
    }
    sender = {
      available_memory                 = "512Mi"
      available_cpu                    = "1"
      timeout_seconds                  = 120
      min_instance_count               = 0
      max_instance_count               = 10
      max_instance_request_concurrency = 80
      # Pub/Sub push from the same project counts as internal traffic.
      ingress_settings = "ALLOW_INTERNAL_ONLY"
    }
  }

  # Behind the load balancer (load_balancer.tf), collect takes traffic only through
  # it: on its own URL, Cloud Armor's limit could be bypassed and the trusted
  # X-Forwarded-For hop forged.
  lb_ingress = { collect = { for key, value in { ingress_settings = "ALLOW_INTERNAL_AND_GCLB" } : key => value if var.collect_load_balancer } }

  # Sizing of every function in local.cloud_functions (enabled or not, so that references hold).
  function_runtime = {
    for name, fn in local.cloud_functions : name => merge(
      local.function_defaults[fn.folder],
      try(local.lb_ingress[name], {}),
      { for key, value in try(var.function_settings[fn.folder], {}) : key => value if value != null },
      lookup(fn, "runtime", {}),
    )
  }

  # Plain environment of each function: exactly the variables its settings class in
  # shared/config.py reads (tests/infra checks every name), plus THREADS, which
  # functions-framework's gunicorn reads (threads per instance; its default, 4 per
  # CPU, would cap real concurrency far below max_instance_request_concurrency).
  # A null value is left unset so the code's default applies. Secrets are not here:
  # they come from Secret Manager (local.secrets in secrets.tf).
  function_env = {
    collect = {
      GOOGLE_CLOUD_PROJECT        = var.project_id
      FIRESTORE_DATABASE          = local.firestore_database
      FIRESTORE_COLLECTION_PREFIX = var.firestore_collection_prefix
      LOG_LEVEL                   = var.log_level
      TIKTOK_PIXEL_CODE           = var.pixel_code
      CONSENT_POLICY              = var.consent_policy
      CONSENT_GPC                 = var.consent_gpc
      PIPELINE_TENANTS            = var.pipeline_tenants
      DEFAULT_PHONE_REGION        = var.default_phone_region
      TIKTOK_TEST_EVENT_CODE      = var.tiktok_test_event_code
      PUBSUB_TOPIC                = module.events_push.topic_name
      COLLECT_ALLOWED_ORIGINS     = join(",", var.collect_allowed_origins)
      COLLECT_KEYS                = join(",", var.collect_keys)
      CLICK_TTL_DAYS              = tostring(var.click_ttl_days)
      # Browser purchases are refused unless the merchant sets the largest value a browser may report.
      COLLECT_BROWSER_PURCHASES          = var.collect_browser_purchase_max_value != null ? "true" : "false"
      COLLECT_BROWSER_PURCHASE_MAX_VALUE = var.collect_browser_purchase_max_value != null ? tostring(var.collect_browser_purchase_max_value) : null
      # The load balancer appends `<client>, <its address>` to X-Forwarded-For; an explicit value wins (a CDN in front).
      COLLECT_TRUSTED_PROXY_HOPS = var.collect_trusted_proxy_hops != null ? tostring(var.collect_trusted_proxy_hops) : var.collect_load_balancer ? "1" : null
      THREADS                    = tostring(local.function_runtime.collect.max_instance_request_concurrency)
    }
    shopify_webhook = {
      GOOGLE_CLOUD_PROJECT        = var.project_id
      FIRESTORE_DATABASE          = local.firestore_database
      FIRESTORE_COLLECTION_PREFIX = var.firestore_collection_prefix
      LOG_LEVEL                   = var.log_level
      TIKTOK_PIXEL_CODE           = var.pixel_code
      CONSENT_POLICY              = var.consent_policy
      CONSENT_GPC                 = var.consent_gpc
      PIPELINE_TENANTS            = var.pipeline_tenants
      DEFAULT_PHONE_REGION        = var.default_phone_region
      TIKTOK_TEST_EVENT_CODE      = var.tiktok_test_event_code
      PUBSUB_TOPIC                = module.events_push.topic_name
      SHOPIFY_SHOP_DOMAIN         = var.shopify_shop_domain
      SHOPIFY_INCLUDE_TEST_ORDERS = tostring(var.include_test_orders)
      SHOPIFY_API_VERSION         = var.shopify_api_version
      ORDER_MAX_EVENT_AGE_DAYS    = tostring(var.order_max_event_age_days)
      THREADS                     = tostring(local.function_runtime.shopify_webhook.max_instance_request_concurrency)
    }
    woocommerce_webhook = {
      GOOGLE_CLOUD_PROJECT        = var.project_id
      FIRESTORE_DATABASE          = local.firestore_database
      FIRESTORE_COLLECTION_PREFIX = var.firestore_collection_prefix
      LOG_LEVEL                   = var.log_level
      TIKTOK_PIXEL_CODE           = var.pixel_code
      CONSENT_POLICY              = var.consent_policy
      CONSENT_GPC                 = var.consent_gpc
      PIPELINE_TENANTS            = var.pipeline_tenants
      DEFAULT_PHONE_REGION        = var.default_phone_region
      TIKTOK_TEST_EVENT_CODE      = var.tiktok_test_event_code
      PUBSUB_TOPIC                = module.events_push.topic_name
      WOOCOMMERCE_SITE_URL        = var.woocommerce_site_url
      ORDER_MAX_EVENT_AGE_DAYS    = tostring(var.order_max_event_age_days)
      THREADS                     = tostring(local.function_runtime.woocommerce_webhook.max_instance_request_concurrency)
    }
    sender = {
      GOOGLE_CLOUD_PROJECT        = var.project_id
      FIRESTORE_DATABASE          = local.firestore_database
      FIRESTORE_COLLECTION_PREFIX = var.firestore_collection_prefix
      LOG_LEVEL                   = var.log_level
      TIKTOK_PIXEL_CODE           = var.pixel_code
      TIKTOK_API_URL              = var.tiktok_api_url
      # The order window the webhooks refuse outside of, enforced by the sender too; CLAIM_TTL_HOURS, unset,
      # follows it (shared.budgets.order_claim_ttl): an order is sent once in its life.
      ORDER_MAX_EVENT_AGE_DAYS = tostring(var.order_max_event_age_days)
      THREADS                  = tostring(local.function_runtime.sender.max_instance_request_concurrency)
    }
  }
}

# ---------------------------------------------------------------------------
# Source bundles
# ---------------------------------------------------------------------------
# What goes into a bundle is described once, in the docstring of scripts/bundle.py,
# which builds the same bundle locally; the three values below must equal its
# EXCLUDE_REGEX, SHARED_PACKAGE and ROOT_FILES (tests/infra/test_bundle.py parses
# this file and compares). In short: the function's folder at the zip root (so its
# main.py is the zip's main.py), the shared package as shared/, requirements.txt,
# minus anything whose path inside the bundle matches the exclude pattern.

locals {
  bundle_exclude_regex  = "(^|/)([.][^/]*|__pycache__|tests?)(/|$)|(^|/)(test_[^/]*|[^/]*_test|conftest)[.]py$|[.]py[cod]$"
  bundle_shared_package = "shared"
  bundle_root_files     = ["requirements.txt"]

  # function => [function folder, shared package, root files], each a map of
  # path inside the bundle => path under the repository root, exclusions applied.
  bundle_parts = {
    for name in keys(local.functions) : name => [
      {
        for f in fileset("${local.repo_root}/functions/${name}", "**") :
        f => "functions/${name}/${f}" if !can(regex(local.bundle_exclude_regex, f))
      },
      {
        for f in fileset("${local.repo_root}/${local.bundle_shared_package}", "**") :
        "${local.bundle_shared_package}/${f}" => "${local.bundle_shared_package}/${f}"
        if !can(regex(local.bundle_exclude_regex, "${local.bundle_shared_package}/${f}"))
      },
      { for f in local.bundle_root_files : f => f if !can(regex(local.bundle_exclude_regex, f)) },
    ]
  }
  bundle_files = { for name, parts in local.bundle_parts : name => merge(parts...) }
}

data "archive_file" "bundle" {
  for_each = local.functions

  type        = "zip"
  output_path = "${path.module}/build/${each.key}.zip"

  dynamic "source" {
    for_each = local.bundle_files[each.key]
    content {
      filename = source.key
      content  = file("${local.repo_root}/${source.value}")
    }
  }

  lifecycle {
    precondition {
      condition     = contains(keys(local.bundle_files[each.key]), "main.py")
      error_message = "functions/${each.key}/main.py is missing: the bundle would have no entry point."
    }
    precondition {
      condition     = length(local.bundle_files[each.key]) == sum([for part in local.bundle_parts[each.key] : length(part)])
      error_message = "Two sources provide the same path in the ${each.key} bundle (e.g. functions/${each.key}/shared/ or functions/${each.key}/requirements.txt): rename one."
    }
  }
}

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Access logs of a bucket that only Terraform and Cloud Functions read add cost and no insight; Cloud Audit Logs record admin access.
  name     = "${var.project_id}-${var.name_prefix}-fn-sources"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  # Bundle objects are named by their hash and never overwritten; versioning only
  # guards against accidental deletion, and such leftovers go after 30 days.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_storage_bucket_object" "bundle" {
  for_each = local.functions

  bucket = google_storage_bucket.sources.name
  # The zip's hash in the name: a code-only change is a new object, hence a new build.
  name         = "${each.key}/${data.archive_file.bundle[each.key].output_md5}.zip"
  source       = data.archive_file.bundle[each.key].output_path
  content_type = "application/zip"
}

# Images built from the bundles. Our own repository (instead of the automatic
# gcf-artifacts one) so the build service account can write to this repository only
# and old images are cleaned up.
resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:Images hold only code and dependencies, no data; Google-managed encryption suffices and customer-managed keys would add a KMS key to run and pay for.
  location      = var.region
  repository_id = "${var.name_prefix}-functions"
  format        = "DOCKER"
  description   = "Images of the TikTok Events API pipeline functions."

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 5
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s" # 30 days, and not among the 5 most recent
    }
  }

  depends_on = [google_project_service.this]
}

# ---------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------

resource "google_cloudfunctions2_function" "function" {
  for_each = local.deployed_functions

  name        = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  location    = var.region
  description = lookup(each.value, "description", "TikTok Events API pipeline: ${each.key}")

  build_config {
    runtime           = "python312"
    entry_point       = each.value.entry_point
    service_account   = google_service_account.builder.id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.bundle[each.value.folder].name
      }
    }
  }

  service_config {
    available_memory                 = local.function_runtime[each.key].available_memory
    available_cpu                    = local.function_runtime[each.key].available_cpu
    timeout_seconds                  = local.function_runtime[each.key].timeout_seconds
    min_instance_count               = local.function_runtime[each.key].min_instance_count
    max_instance_count               = local.function_runtime[each.key].max_instance_count
    max_instance_request_concurrency = local.function_runtime[each.key].max_instance_request_concurrency
    ingress_settings                 = local.function_runtime[each.key].ingress_settings
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function[each.value.folder].email

    environment_variables = { for key, value in local.function_env[each.value.folder] : key => value if value != null }

    # Resolved when an instance starts: after `gcloud secrets versions add`, new
    # instances see the new value (redeploy or wait for instances to recycle).
    dynamic "secret_environment_variables" {
      for_each = { for id, secret in local.secrets : secret.env => id if secret.function == each.value.folder }
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = google_secret_manager_secret.secret[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.pixel_code != null || var.pipeline_tenants != null
      error_message = "Set pixel_code (one pixel) or pipeline_tenants (several)."
    }
    precondition {
      condition     = local.function_runtime[each.key].max_instance_request_concurrency == 1 || tonumber(local.function_runtime[each.key].available_cpu) >= 1
      error_message = "${each.key}: a concurrency above 1 needs available_cpu of at least 1."
    }
    precondition {
      condition     = local.function_runtime[each.key].min_instance_count <= local.function_runtime[each.key].max_instance_count
      error_message = "${each.key}: min_instance_count is above max_instance_count."
    }
    precondition {
      condition     = each.key != "collect" || !var.collect_load_balancer || local.function_runtime.collect.ingress_settings == "ALLOW_INTERNAL_AND_GCLB"
      error_message = "collect_load_balancer = true needs collect's ingress_settings to stay ALLOW_INTERNAL_AND_GCLB: on its own URL a client could bypass Cloud Armor and forge the trusted X-Forwarded-For hop."
    }
  }

  # The runtime identity must already hold its grants when the first revision
  # starts (secrets are read at startup).
  depends_on = [
    google_project_iam_member.function_firestore,
    google_pubsub_topic_iam_member.receiver_publisher,
    google_secret_manager_secret_iam_member.function_secret,
    google_project_iam_member.builder_logs,
    google_project_iam_member.builder_sources,
    google_storage_bucket_iam_member.builder_sources,
    google_artifact_registry_repository_iam_member.builder_images,
  ]
}

# State written before the Pub/Sub entry point joined local.cloud_functions.
moved {
  from = google_cloudfunctions2_function.shopify_pubsub[0]
  to   = google_cloudfunctions2_function.function["shopify_pubsub"]
}
