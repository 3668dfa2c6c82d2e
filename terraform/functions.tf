# The gen2 functions, their source bundles and their environment.

locals {
  repo_root = "${path.module}/.."

  # Every function folder under functions/ (the keys of shared.config.function_settings()) is ONE entry
  # here, and everything else derives from it with for_each: its runtime identity and grants (iam.tf),
  # its secrets (secrets.tf), its bundle, its deployed functions and their sizing and environment
  # (below), its service name in the metric and alerts (monitoring.tf), its URL (outputs.tf, the
  # function_urls output). Adding a source is adding an entry (tests/infra/test_one_entry.py).
  #   short_name        used in service account ids (30 characters at most)
  #   public_http       its HTTP entry points are called from the internet (browsers, platforms): allUsers may invoke
  #   publishes         publishes envelopes to the events topic
  #   optional          deployed only when switched on: var.enabled_sources names it (a source most merchants
  #                     do not use), or its own variable does (local.switched_on: the reconcile job, reconcile.tf)
  #   watch_rejections  its refusals (outcome rejected: a signature, an unknown shop) raise the webhook alert
  #   entry_points      function name => the decorated function in main.py and, where it differs from the
  #                     folder's: enabled, public_http, description, runtime (sizing applied last)
  #   sizing            defaults that var.function_settings overrides attribute by attribute
  #   env_from          the shared environment its settings class reads (local.shared_env, by layer)
  #   env               its own plain environment; a null value is left unset so the code's default applies
  #   settings          further variables of its settings class an operator sets in var.source_settings
  #   secrets           Secret Manager secret id => env (the variable in its settings class's SECRET_ENV), and
  #                     how to make its value (help, value: the secret_setup_commands output)
  # Every variable of the plain environment is one its settings class in shared/ reads (tests/infra
  # checks every name); THREADS is added to each (functions-framework's gunicorn reads it: threads per
  # instance, whose default, 4 per CPU, would cap concurrency far below max_instance_request_concurrency).
  functions = {
    collect = {
      short_name       = "collect"
      public_http      = true
      publishes        = true
      optional         = false
      watch_rejections = false
      entry_points = {
        collect = { entry_point = "collect" }
      }
      sizing = {
        available_memory                 = "512Mi"
        available_cpu                    = "1"
        timeout_seconds                  = 30
        min_instance_count               = 0
        max_instance_count               = 20
        max_instance_request_concurrency = 80
        ingress_settings                 = "ALLOW_ALL"
      }
      env_from = ["base", "tenants", "receiver"]
      env = {
        COLLECT_ALLOWED_ORIGINS = join(",", var.collect_allowed_origins)
        COLLECT_KEYS            = join(",", var.collect_keys)
        CLICK_TTL_DAYS          = tostring(var.click_ttl_days)
        # Browser purchases are refused unless the merchant sets the largest value a browser may report.
        COLLECT_BROWSER_PURCHASES          = var.collect_browser_purchase_max_value != null ? "true" : "false"
        COLLECT_BROWSER_PURCHASE_MAX_VALUE = var.collect_browser_purchase_max_value != null ? tostring(var.collect_browser_purchase_max_value) : null
        # The load balancer appends `<client>, <its address>` to X-Forwarded-For; an explicit value wins (a CDN in front).
        COLLECT_TRUSTED_PROXY_HOPS = var.collect_trusted_proxy_hops != null ? tostring(var.collect_trusted_proxy_hops) : var.collect_load_balancer ? "1" : null
      }
      settings = []
      secrets = {
        "collect-signing-secret" = {
          env   = "COLLECT_SIGNING_SECRET"
          help  = "Any random string; the store's theme or wp-config.php signs customer ids with the same value (docs/collect.md, \"Signed customer ids\"): read it back with gcloud secrets versions access latest."
          value = "openssl rand -hex 32 | tr -d '\\n'"
        }
      }
    }
    shopify_webhook = {
      short_name       = "shopify"
      public_http      = true
      publishes        = true
      optional         = false
      watch_rejections = true
      # shopify_pubsub is the folder's Pub/Sub entry point (var.shopify_pubsub_enabled), a function of
      # its own because Cloud Run grants invocation per service: shopify_webhook must be public for
      # Shopify's HTTPS deliveries, while this one trusts the shop named in message attributes without
      # an HMAC, so only the push subscription's identity may invoke it (pubsub.tf), and only from
      # inside Google Cloud (ingress).
      entry_points = {
        shopify_webhook = { entry_point = "shopify_webhook" }
        shopify_pubsub = {
          entry_point = "shopify_pubsub"
          enabled     = var.shopify_pubsub_enabled
          public_http = false
          description = "TikTok Events API pipeline: Shopify webhooks delivered through Pub/Sub"
          runtime = {
            min_instance_count = 0 # Pub/Sub waits out a cold start: nobody is kept waiting
            # Pub/Sub push from the same project counts as internal traffic.
            ingress_settings = "ALLOW_INTERNAL_ONLY"
          }
        }
      }
      sizing = {
        available_memory                 = "512Mi"
        available_cpu                    = "1"
        timeout_seconds                  = 30
        min_instance_count               = 0 # cold starts are retried by Shopify; see var.function_settings
        max_instance_count               = 10
        max_instance_request_concurrency = 20
        ingress_settings                 = "ALLOW_ALL"
      }
      env_from = ["base", "tenants", "receiver", "orders"]
      env = {
        SHOPIFY_SHOP_DOMAIN         = var.shopify_shop_domain
        SHOPIFY_INCLUDE_TEST_ORDERS = tostring(var.include_test_orders)
        SHOPIFY_API_VERSION         = var.shopify_api_version
      }
      settings = []
      secrets = {
        "shopify-webhook-secret" = {
          env   = "SHOPIFY_WEBHOOK_SECRET"
          help  = "The key that signs Shopify webhooks: the app's client secret for webhooks an app registers (shopify_app_toml; a legacy custom app's curl calls), or the key shown under Settings > Notifications > Webhooks once webhooks are created in the shop admin (then any placeholder now, the key after creating them: docs/deploy.md, step 7a):"
          value = "printf %s \"$SHOPIFY_WEBHOOK_SECRET\""
        }
      }
    }
    woocommerce_webhook = {
      short_name       = "woocommerce"
      public_http      = true
      publishes        = true
      optional         = false
      watch_rejections = true
      entry_points = {
        woocommerce_webhook = { entry_point = "woocommerce_webhook" }
      }
      sizing = {
        available_memory                 = "512Mi"
        available_cpu                    = "1"
        timeout_seconds                  = 30
        min_instance_count               = 0 # cold starts are retried by WooCommerce; see var.function_settings
        max_instance_count               = 10
        max_instance_request_concurrency = 20
        ingress_settings                 = "ALLOW_ALL"
      }
      env_from = ["base", "tenants", "receiver", "orders"]
      env = {
        WOOCOMMERCE_SITE_URL = var.woocommerce_site_url
      }
      settings = []
      secrets = {
        "woocommerce-webhook-secret" = {
          env   = "WOOCOMMERCE_WEBHOOK_SECRET"
          help  = "Any random string; woocommerce_webhook_registration hands the same value to WooCommerce:"
          value = "openssl rand -hex 32 | tr -d '\\n'"
        }
      }
    }
    # Orders any backend posts, signed (docs/signed-orders.md). Optional: deployed when
    # var.enabled_sources names it; its site comes from var.source_settings (SIGNED_ORDERS_SITE) or
    # from PIPELINE_TENANTS' signed_order_sites.
    signed_orders = {
      short_name       = "signed-orders"
      public_http      = true
      publishes        = true
      optional         = true
      watch_rejections = true
      entry_points = {
        signed_orders = { entry_point = "signed_orders" }
      }
      sizing = {
        available_memory                 = "512Mi"
        available_cpu                    = "1"
        timeout_seconds                  = 30
        min_instance_count               = 0 # a backend retries a delivery that timed out; see var.function_settings
        max_instance_count               = 10
        max_instance_request_concurrency = 20
        ingress_settings                 = "ALLOW_ALL"
      }
      env_from = ["base", "tenants", "receiver", "orders"]
      env      = {}
      settings = ["SIGNED_ORDERS_SITE", "SIGNED_ORDERS_TOLERANCE_SECONDS", "SIGNED_ORDERS_MAX_BODY_BYTES"]
      secrets = {
        "signed-orders-secret" = {
          env   = "SIGNED_ORDERS_SECRET"
          help  = "Any random string; the backend that posts signed orders signs them with the same value (docs/signed-orders.md): read it back with gcloud secrets versions access latest."
          value = "openssl rand -hex 32 | tr -d '\\n'"
        }
      }
    }
    sender = {
      short_name  = "sender"
      public_http = false # only our push subscription calls it, with an OIDC token
      # A push held back by TikTok's throttling longer than the sender's hold is published to the events topic
      # again and acknowledged, so throttling alone spends no delivery attempt (shared/send/throttle.py).
      publishes        = true
      optional         = false
      watch_rejections = false
      entry_points = {
        sender = { entry_point = "sender" }
      }
      # Its concurrency is what lets it coalesce concurrent pushes into one TikTok batch; its
      # timeout is also the push subscription's ack deadline (<= 600 s).
      sizing = {
        available_memory                 = "512Mi"
        available_cpu                    = "1"
        timeout_seconds                  = 120
        min_instance_count               = 0
        max_instance_count               = 10
        max_instance_request_concurrency = 80
        # Pub/Sub push from the same project counts as internal traffic.
        ingress_settings = "ALLOW_INTERNAL_ONLY"
      }
      # The order window the webhooks refuse outside of, enforced by the sender too; CLAIM_TTL_HOURS, unset,
      # follows it (shared.budgets.order_claim_ttl): an order is sent once in its life. PUBSUB_TOPIC: where a
      # throttled push is published again.
      env_from = ["base", "receiver", "orders"]
      env = {
        TIKTOK_PIXEL_CODE = var.pixel_code
        TIKTOK_API_URL    = var.tiktok_api_url
      }
      settings = []
      secrets = {
        "tiktok-access-token" = {
          env   = "TIKTOK_ACCESS_TOKEN"
          help  = "TikTok Events Manager > the pixel > Settings > Generate access token:"
          value = "printf %s \"$TIKTOK_ACCESS_TOKEN\""
        }
      }
    }
    # Reconciliation (shared/reconcile, docs/operations.md "Accuracy: orders in the shop vs sent"): Cloud
    # Scheduler POSTs hourly (reconcile.tf), and each shop's orders of the trailing window are listed through
    # its API, compared with the pipeline's records and the missing paid ones backfilled through the order
    # flow. Optional: deployed with var.reconcile_job.enabled (local.switched_on), since without a shop's API
    # credentials it would fail every hour. Only the scheduler's identity may invoke it, from inside Google
    # Cloud (ingress). Its secrets are the shops' API credentials: each one the merchant does not use holds a
    # blank, which the job reads as unset (the secret_setup_commands below write one when the variable is
    # unset), so no credential needs a placeholder that would be tried.
    reconcile = {
      short_name       = "reconcile"
      public_http      = false
      publishes        = true # backfill publishes the missing orders' envelopes, as their webhooks would
      optional         = true
      watch_rejections = false
      entry_points = {
        reconcile = { entry_point = "reconcile" }
      }
      # One run at a time: a run lists every shop's orders of the window (bounded by RECONCILE_MAX_ORDERS) and
      # answers once done, so its timeout is long (HTTP functions allow 3600 s; Cloud Scheduler waits 1800 s at
      # most, reconcile.tf).
      sizing = {
        available_memory                 = "512Mi"
        available_cpu                    = "1"
        timeout_seconds                  = 900
        min_instance_count               = 0
        max_instance_count               = 1
        max_instance_request_concurrency = 1
        # Cloud Scheduler in the same project counts as internal traffic.
        ingress_settings = "ALLOW_INTERNAL_ONLY"
      }
      env_from = ["base", "tenants", "receiver", "orders"]
      env = {
        RECONCILE_WINDOW_HOURS = tostring(var.reconcile_job.window_hours)
        RECONCILE_BACKFILL     = tostring(var.reconcile_job.backfill)
        RECONCILE_REPAIR       = tostring(var.reconcile_job.repair)
        SHOPIFY_API_VERSION    = var.shopify_api_version
        # The shops and sites, read as their webhooks read them (shared.reconcile.settings.tenants_of).
        SHOPIFY_SHOP_DOMAIN         = var.shopify_shop_domain
        SHOPIFY_INCLUDE_TEST_ORDERS = tostring(var.include_test_orders)
        WOOCOMMERCE_SITE_URL        = var.woocommerce_site_url
        # Its one line per run is INFO when all is well, and the job-not-running alert watches for it: a
        # quieter var.log_level would silence it.
        LOG_LEVEL = var.log_level == "DEBUG" ? "DEBUG" : "INFO"
        # Local stand-in shops (make run) only: a deployment calls the shops themselves.
        SHOPIFY_ADMIN_URL   = null
        WOOCOMMERCE_API_URL = null
      }
      settings = [
        "SHOPIFY_CLIENT_ID", "RECONCILE_SHOPIFY_WEBHOOK_URL", "RECONCILE_SHOPIFY_TOPICS", "RECONCILE_WOOCOMMERCE_WEBHOOK_URL",
        "RECONCILE_MAX_ORDERS", "RECONCILE_TIMEOUT_SECONDS", "RECONCILE_MAX_RETRIES",
      ]
      secrets = {
        "shopify-admin-token" = {
          env   = "SHOPIFY_ADMIN_TOKEN"
          help  = "Reconciliation: an admin-created Shopify app's Admin API access token (shpat_..., read_orders; several shops: a JSON object by shop domain). Not used (client credentials, or no Shopify): a blank, which this writes while SHOPIFY_ADMIN_TOKEN is unset:"
          value = "printf %s \"$${SHOPIFY_ADMIN_TOKEN:- }\""
        }
        "shopify-client-secret" = {
          env   = "SHOPIFY_CLIENT_SECRET"
          help  = "Reconciliation: the Dev Dashboard app's client secret, with SHOPIFY_CLIENT_ID in source_settings (docs/deploy.md, \"Reconciliation credentials\"). Not used (an Admin API token, or no Shopify): a blank, which this writes while SHOPIFY_CLIENT_SECRET is unset:"
          value = "printf %s \"$${SHOPIFY_CLIENT_SECRET:- }\""
        }
        "woocommerce-api-key" = {
          env   = "WOOCOMMERCE_API_KEY"
          help  = "Reconciliation: a WooCommerce REST API key's consumer key (ck_..., permission Read; Read/Write to repair webhooks). No WooCommerce: a blank, which this writes while WOOCOMMERCE_API_KEY is unset:"
          value = "printf %s \"$${WOOCOMMERCE_API_KEY:- }\""
        }
        "woocommerce-api-secret" = {
          env   = "WOOCOMMERCE_API_SECRET"
          help  = "Reconciliation: that REST API key's consumer secret (cs_...). No WooCommerce: a blank, which this writes while WOOCOMMERCE_API_SECRET is unset:"
          value = "printf %s \"$${WOOCOMMERCE_API_SECRET:- }\""
        }
      }
    }
  }

  # The environment several settings classes of shared/config.py read, by the class that declares it:
  # base (_EnvSettings), tenants (TenantSettings), receiver (ReceiverSettings), orders (the order
  # window: OrderReceiverSettings, and the sender).
  shared_env = {
    base = {
      GOOGLE_CLOUD_PROJECT        = var.project_id
      FIRESTORE_DATABASE          = local.firestore_database
      FIRESTORE_COLLECTION_PREFIX = var.firestore_collection_prefix
      LOG_LEVEL                   = var.log_level
    }
    tenants = {
      TIKTOK_PIXEL_CODE      = var.pixel_code
      CONSENT_POLICY         = var.consent_policy
      CONSENT_GPC            = var.consent_gpc
      PIPELINE_TENANTS       = var.pipeline_tenants
      DEFAULT_PHONE_REGION   = var.default_phone_region
      TIKTOK_TEST_EVENT_CODE = var.tiktok_test_event_code
    }
    receiver = {
      PUBSUB_TOPIC = module.events_push.topic_name
    }
    orders = {
      ORDER_MAX_EVENT_AGE_DAYS = tostring(var.order_max_event_age_days)
    }
  }

  # The folders deployed: every entry that is not optional, the optional ones var.enabled_sources names, and
  # those whose own switch is on (local.switched_on, reconcile.tf).
  deployed_folders = { for name, fn in local.functions : name => fn if !fn.optional || contains(var.enabled_sources, name) || lookup(local.switched_on, name, false) }

  # Every function that may be deployed (google_cloudfunctions2_function.function), by name: each entry
  # point of each folder; its service is <name_prefix>-<name with dashes>, and it runs the bundle,
  # runtime identity, environment and secrets of its folder.
  cloud_functions = merge([
    for folder, fn in local.functions : {
      for name, entry in fn.entry_points : name => merge(entry, {
        folder      = folder
        enabled     = contains(keys(local.deployed_folders), folder) && lookup(entry, "enabled", true)
        public_http = lookup(entry, "public_http", fn.public_http)
      })
    }
  ]...)
  deployed_functions = { for name, fn in local.cloud_functions : name => fn if fn.enabled }

  # Behind the load balancer (load_balancer.tf), collect takes traffic only through
  # it: on its own URL, Cloud Armor's limit could be bypassed and the trusted
  # X-Forwarded-For hop forged.
  lb_ingress = { collect = { for key, value in { ingress_settings = "ALLOW_INTERNAL_AND_GCLB" } : key => value if var.collect_load_balancer } }

  # Sizing of every function in local.cloud_functions (enabled or not, so that references hold).
  function_runtime = {
    for name, fn in local.cloud_functions : name => merge(
      local.functions[fn.folder].sizing,
      try(local.lb_ingress[name], {}),
      { for key, value in try(var.function_settings[fn.folder], {}) : key => value if value != null },
      lookup(fn, "runtime", {}),
    )
  }

  # Plain environment of every function: its folder's shared layers, its own, what var.source_settings
  # gives it, and THREADS. Secrets are not here: they come from Secret Manager (local.secrets in secrets.tf).
  function_env = {
    for name, fn in local.cloud_functions : name => merge(concat(
      [for layer in local.functions[fn.folder].env_from : local.shared_env[layer]],
      [local.functions[fn.folder].env],
      [{ for key in local.functions[fn.folder].settings : key => try(var.source_settings[fn.folder][key], null) }],
      [{ THREADS = tostring(local.function_runtime[name].max_instance_request_concurrency) }],
    )...)
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
  for_each = local.deployed_folders

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
  for_each = local.deployed_folders

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

    environment_variables = { for key, value in local.function_env[each.key] : key => value if value != null }

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
    # Settings keyed by function are checked here, against local.functions, so that variables.tf names none.
    precondition {
      condition     = alltrue([for name in keys(var.function_settings) : contains(keys(local.functions), name)])
      error_message = "function_settings keys must be among ${join(", ", keys(local.functions))}."
    }
    precondition {
      condition     = alltrue([for name in var.enabled_sources : try(local.functions[name].optional, false) && !contains(keys(local.switched_on), name)])
      error_message = "enabled_sources may name only optional sources: ${join(", ", [for name, fn in local.functions : name if fn.optional && !contains(keys(local.switched_on), name)])} (${join(", ", keys(local.switched_on))}: switched on by a variable of its own)."
    }
    precondition {
      condition = alltrue([
        for name, settings in var.source_settings :
        contains(keys(local.deployed_folders), name) && alltrue([for key in keys(settings) : contains(try(local.functions[name].settings, []), key)])
      ])
      error_message = "source_settings: each key must be a deployed function (an optional one also in enabled_sources), each variable one it takes (${join("; ", [for name, fn in local.functions : "${name}: ${join(", ", fn.settings)}" if length(fn.settings) > 0])})."
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
