# ---------------------------------------------------------------------------
# Project and placement
# ---------------------------------------------------------------------------

variable "project_id" {
  type        = string
  description = "Google Cloud project id that hosts the pipeline."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project id (6-30 lowercase letters, digits or hyphens, starting with a letter), not a project name or number."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, the source bucket and the Artifact Registry repository, e.g. us-central1 or europe-west1."
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a region such as us-central1 (not a zone such as us-central1-a)."
  }
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name (functions, service accounts, topics, bucket). The default gives the topic name tiktok-events that the code defaults to; change it only to run a second copy (e.g. staging) in the same project."
  default     = "tiktok"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,10}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-12 lowercase letters, digits or hyphens, starting with a letter: service account ids are limited to 30 characters."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes labels (provider default_labels)."
  default     = {}
}

# ---------------------------------------------------------------------------
# Firestore
# ---------------------------------------------------------------------------

variable "firestore_database" {
  type        = string
  description = "Firestore database id. \"(default)\" unless the project's default database is used for something else (then name a database of its own, e.g. \"tiktok-events\", which Terraform creates beside it). A project that already has this database in Native mode: set create_firestore_database = false (docs/deploy.md, step 3)."
  default     = "(default)"

  validation {
    condition     = var.firestore_database == "(default)" || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.firestore_database))
    error_message = "firestore_database must be \"(default)\" or 4-63 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "create_firestore_database" {
  type        = bool
  description = "Create the Firestore database firestore_database. false: the project already has it (gcloud firestore databases list shows it, in FIRESTORE_NATIVE mode), and Terraform uses it as it is, adding only the TTL policies of the pipeline's collections; firestore_location and firestore_delete_protection then do not apply."
  default     = true
}

variable "firestore_location" {
  type        = string
  description = "Firestore location: a region (e.g. us-central1) or a multi-region (nam5, eur3). Null uses var.region. Cannot be changed after creation."
  default     = null
}

variable "firestore_delete_protection" {
  type        = bool
  description = "Protect the Firestore database from deletion (also outside Terraform). Turn off only to tear down a test project."
  default     = true
}

variable "firestore_collection_prefix" {
  type        = string
  description = "Prefix of every Firestore collection name (FIRESTORE_COLLECTION_PREFIX). Empty in production; lets a staging copy share a database. TTL policies are created for the prefixed names."
  default     = ""

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]*$", var.firestore_collection_prefix))
    error_message = "firestore_collection_prefix may contain only letters, digits, underscores and hyphens (the same rule as shared/config.py)."
  }
}

# ---------------------------------------------------------------------------
# Tenant: pixel, consent, shops
# ---------------------------------------------------------------------------

variable "pixel_code" {
  type        = string
  description = "TikTok pixel code (TIKTOK_PIXEL_CODE) of the single-tenant setup. Required unless pipeline_tenants is set."
  default     = null

  validation {
    condition     = var.pixel_code == null || can(regex("^[A-Za-z0-9_-]{1,64}$", var.pixel_code))
    error_message = "pixel_code must be 1-64 letters, digits, underscores or hyphens, as shown in TikTok Events Manager."
  }
}

variable "consent_policy" {
  type        = string
  description = "What to do with events that carry no consent signal (CONSENT_POLICY): opt-in withholds them, opt-out sends them. Choose with the merchant's legal advice."
  default     = "opt-in"

  validation {
    condition     = contains(["opt-in", "opt-out"], var.consent_policy)
    error_message = "consent_policy must be \"opt-in\" or \"opt-out\"."
  }
}

variable "consent_gpc" {
  type        = string
  description = "What Global Privacy Control (the browser's Sec-GPC: 1, an opt-out of the sale and sharing of data) does for the single-tenant pixel (CONSENT_GPC): limited sends with limited_data_use, deny withholds as a denial. Under pipeline_tenants, each pixel's gpc."
  default     = "limited"

  validation {
    condition     = contains(["limited", "deny"], var.consent_gpc)
    error_message = "consent_gpc must be \"limited\" or \"deny\"."
  }
}

variable "pipeline_tenants" {
  type        = string
  description = "Optional JSON document describing several pixels, Shopify shops and WooCommerce sites (PIPELINE_TENANTS; see the README, \"Several pixels and shops\"). When set, it replaces pixel_code, consent_policy, shopify_shop_domain, woocommerce_site_url and the collect settings, and each secret holds a JSON object keyed by pixel, shop or site."
  default     = null

  validation {
    condition     = var.pipeline_tenants == null || can(jsondecode(var.pipeline_tenants).pixels)
    error_message = "pipeline_tenants must be a JSON object with a \"pixels\" member."
  }

  # What the functions would otherwise refuse at their first request (503 until fixed), caught at plan time.
  validation {
    condition = var.pipeline_tenants == null || alltrue([
      for code, pixel in try(jsondecode(var.pipeline_tenants).pixels, {}) :
      can(regex("^[A-Za-z0-9_-]{1,64}$", pixel.pixel_code)) && contains(["opt-in", "opt-out"], try(pixel.consent_policy, "opt-in"))
    ])
    error_message = "Each pipeline_tenants pixel needs a pixel_code (1-64 letters, digits, _ or -) and a consent_policy of \"opt-in\" or \"opt-out\" (or none: opt-in)."
  }

  validation {
    condition = var.pipeline_tenants == null || alltrue([
      for code, pixel in try(jsondecode(var.pipeline_tenants).pixels, {}) :
      try(pixel.click_ttl_days, 7) >= 1 && try(pixel.click_ttl_days, 7) <= 28 && floor(try(pixel.click_ttl_days, 7)) == try(pixel.click_ttl_days, 7)
    ])
    error_message = "Each pipeline_tenants pixel's click_ttl_days must be a whole number from 1 to 28."
  }

  validation {
    condition = var.pipeline_tenants == null || alltrue([
      for code, pixel in try(jsondecode(var.pipeline_tenants).pixels, {}) : contains(["limited", "deny"], try(pixel.gpc, "limited"))
    ])
    error_message = "Each pipeline_tenants pixel's gpc must be \"limited\" or \"deny\" (or none: limited)."
  }

  validation {
    condition = var.pipeline_tenants == null || alltrue([
      for code, pixel in try(jsondecode(var.pipeline_tenants).pixels, {}) :
      can(tobool(try(pixel.browser_purchases, false))) && (
        try(pixel.browser_purchase_max_value, null) == null
        ? !try(tobool(pixel.browser_purchases), false)
        : try(tonumber(pixel.browser_purchase_max_value) > 0 && tonumber(pixel.browser_purchase_max_value) <= 1000000000000000, false)
      )
    ])
    error_message = "Each pipeline_tenants pixel's browser_purchases must be true or false, and with true it needs a browser_purchase_max_value above 0 and at most 1e15 (the largest order value a browser may report)."
  }

  validation {
    condition = var.pipeline_tenants == null || alltrue(flatten([
      for section in ["shopify_shops", "woocommerce_sites"] : [
        for name, entry in try(jsondecode(var.pipeline_tenants)[section], {}) :
        contains(keys(try(jsondecode(var.pipeline_tenants).pixels, {})), try(entry.pixel_code, ""))
      ]
    ]))
    error_message = "Each shop in shopify_shops and each site in woocommerce_sites needs a pixel_code that is one of pipeline_tenants' pixels."
  }

  validation {
    condition = var.pipeline_tenants == null || alltrue(flatten([
      [for name, shop in try(jsondecode(var.pipeline_tenants).shopify_shops, {}) : can(regex("^[a-z0-9][a-z0-9-]*[.]myshopify[.]com$", lower(try(shop.domain, ""))))],
      [for name, site in try(jsondecode(var.pipeline_tenants).woocommerce_sites, {}) : can(regex("^https?://[^/?#\\s]+(/[^?#\\s]*)?$", try(site.url, "")))],
      [for code, pixel in try(jsondecode(var.pipeline_tenants).pixels, {}) : alltrue([for origin in try(pixel.allowed_origins, []) : can(regex("^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$", origin))])],
    ]))
    error_message = "In pipeline_tenants, each shop's domain must be its *.myshopify.com domain, each site's url an http(s) URL without query, and each allowed origin scheme://host[:port]."
  }
}

variable "tiktok_test_event_code" {
  type        = string
  description = "Test Events code from TikTok Events Manager for the default pixel (TIKTOK_TEST_EVENT_CODE). While set, every event goes to the Test Events tab instead of production reporting: set it to verify a new deployment, then remove it."
  default     = null

  validation {
    condition     = var.tiktok_test_event_code == null || can(regex("^[A-Za-z0-9_-]{1,64}$", var.tiktok_test_event_code))
    error_message = "tiktok_test_event_code must be the 1-64 character code shown in Events Manager > Test Events."
  }
}

variable "include_test_orders" {
  type        = bool
  description = "Send Shopify test orders (test: true, e.g. Bogus Gateway) as real events for the single-tenant shop (SHOPIFY_INCLUDE_TEST_ORDERS). Turn it on with tiktok_test_event_code to verify a deployment with a Shopify test order, then off again. With pipeline_tenants, set include_test_orders per shop there."
  default     = false
}

variable "default_phone_region" {
  type        = string
  description = "ISO 3166 country code used to normalise phone numbers written without a country code (DEFAULT_PHONE_REGION)."
  default     = "US"

  validation {
    condition     = can(regex("^[A-Z]{2}$", var.default_phone_region))
    error_message = "default_phone_region must be a two-letter upper-case country code such as US or GB."
  }
}

variable "shopify_shop_domain" {
  type        = string
  description = "The shop's permanent myshopify.com domain (SHOPIFY_SHOP_DOMAIN), as Shopify sends it in X-Shopify-Shop-Domain, e.g. example.myshopify.com. Null when the merchant has no Shopify shop or pipeline_tenants lists the shops."
  default     = null

  validation {
    condition     = var.shopify_shop_domain == null || can(regex("^[a-z0-9][a-z0-9-]*[.]myshopify[.]com$", var.shopify_shop_domain))
    error_message = "shopify_shop_domain must be the shop's *.myshopify.com domain (not a custom storefront domain, no scheme)."
  }
}

variable "woocommerce_site_url" {
  type        = string
  description = "The WooCommerce site's URL (WOOCOMMERCE_SITE_URL) as WooCommerce sends it in X-WC-Webhook-Source, e.g. https://shop.example.com/. Null when the merchant has no WooCommerce site or pipeline_tenants lists the sites."
  default     = null

  validation {
    condition     = var.woocommerce_site_url == null || can(regex("^https://[^/?#\\s]+(/[^?#\\s]*)?$", var.woocommerce_site_url))
    error_message = "woocommerce_site_url must be an https:// URL without query or fragment."
  }
}

# ---------------------------------------------------------------------------
# collect (browser events)
# ---------------------------------------------------------------------------

variable "collect_allowed_origins" {
  type        = list(string)
  description = "Origins (scheme://host[:port], no path, no trailing slash) whose pages may post browser events to collect (COLLECT_ALLOWED_ORIGINS). Empty admits no browser origin."
  default     = []

  validation {
    condition     = alltrue([for origin in var.collect_allowed_origins : can(regex("^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$", origin))])
    error_message = "Each collect_allowed_origins entry must look like https://shop.example.com (scheme and host, optional port, nothing after)."
  }
}

variable "collect_keys" {
  type        = list(string)
  description = "Public keys that admit collect requests without an Origin header (COLLECT_KEYS; Shopify custom pixels run in a sandbox that strips it). Not secrets: they appear in the storefront."
  default     = []

  validation {
    condition     = alltrue([for key in var.collect_keys : can(regex("^[A-Za-z0-9_-]{8,128}$", key))])
    error_message = "Each collect key must be 8-128 letters, digits, underscores or hyphens (no commas: the list is passed comma-separated)."
  }
}

variable "collect_browser_purchase_max_value" {
  type        = number
  description = "Purchase-type events (Purchase, CompletePayment, PlaceAnOrder) are refused from the browser: orders come from the order webhooks. A site without webhooks sets the largest order value a browser may report (COLLECT_BROWSER_PURCHASES=true with COLLECT_BROWSER_PURCHASE_MAX_VALUE); a purchase over it is skipped. Null: refused. With pipeline_tenants, set browser_purchases and browser_purchase_max_value per pixel there."
  default     = null

  validation {
    condition     = var.collect_browser_purchase_max_value == null || try(var.collect_browser_purchase_max_value > 0 && var.collect_browser_purchase_max_value <= 1000000000000000, false)
    error_message = "collect_browser_purchase_max_value must be above 0 and at most 1e15, in your events' currency (e.g. 500), or null to refuse browser purchases."
  }
}

variable "click_ttl_days" {
  type        = number
  description = "Days a click context (ttclid, _ttp) stays joinable to a later order (CLICK_TTL_DAYS); TikTok attributes within 28 days at most."
  default     = 7

  validation {
    condition     = var.click_ttl_days >= 1 && var.click_ttl_days <= 28 && floor(var.click_ttl_days) == var.click_ttl_days
    error_message = "click_ttl_days must be a whole number from 1 to 28."
  }
}

variable "order_max_event_age_days" {
  type        = number
  description = "Order window (ORDER_MAX_EVENT_AGE_DAYS, the webhooks and the sender alike): an order event paid further back than this is never sent (skipped, rule outside_window), which is what keeps a paid order to one Purchase for its whole life; TikTok attributes nothing outside its click window (7 days by default, 28 at most). The sender's claims then live this many days plus two."
  default     = 7

  validation {
    condition     = var.order_max_event_age_days >= 1 && var.order_max_event_age_days <= 28 && floor(var.order_max_event_age_days) == var.order_max_event_age_days
    error_message = "order_max_event_age_days must be a whole number from 1 to 28."
  }
}

variable "collect_trusted_proxy_hops" {
  type        = number
  description = "Proxies in front of collect that append to X-Forwarded-For (COLLECT_TRUSTED_PROXY_HOPS), so collect takes the shopper's address from the right place. Null: 1 with collect_load_balancer (it appends one hop), else unset (0: the function URL is called directly). Set it only for proxies of your own in front (a CDN: add 1)."
  default     = null

  validation {
    condition     = var.collect_trusted_proxy_hops == null || try(var.collect_trusted_proxy_hops >= 0 && var.collect_trusted_proxy_hops <= 5 && floor(var.collect_trusted_proxy_hops) == var.collect_trusted_proxy_hops, false)
    error_message = "collect_trusted_proxy_hops must be a whole number from 0 to 5."
  }
}

# ---------------------------------------------------------------------------
# collect behind a load balancer with Cloud Armor (terraform/load_balancer.tf)
# ---------------------------------------------------------------------------

variable "collect_load_balancer" {
  type        = bool
  description = "Put an external HTTPS load balancer with a Cloud Armor per-client rate limit in front of collect. collect then accepts traffic only through it (ingress ALLOW_INTERNAL_AND_GCLB) and trusts one X-Forwarded-For hop (COLLECT_TRUSTED_PROXY_HOPS = 1). Needs collect_domain; the load balancer, its address and Cloud Armor are billed (see the README)."
  default     = false
}

variable "collect_domain" {
  type        = string
  description = "Host name that serves collect through the load balancer (e.g. collect.shop.example.com), for its Google-managed certificate. Point its DNS A record at the collect_load_balancer_ip output; the certificate is issued once DNS resolves (up to an hour or so). Required when collect_load_balancer is true."
  default     = null

  validation {
    condition     = var.collect_domain == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?[.])+[a-z]{2,63}$", var.collect_domain))
    error_message = "collect_domain must be a lowercase host name such as collect.shop.example.com (no scheme, port or path)."
  }
}

variable "collect_rate_limit_count" {
  type        = number
  description = "Requests one client address may send to collect within collect_rate_limit_interval_sec before Cloud Armor answers 429. The default, 600 a minute, matches the function's own COLLECT_RATE_LIMIT_PER_MINUTE default, which applies per instance."
  default     = 600

  validation {
    condition     = var.collect_rate_limit_count >= 1 && var.collect_rate_limit_count <= 10000 && floor(var.collect_rate_limit_count) == var.collect_rate_limit_count
    error_message = "collect_rate_limit_count must be a whole number from 1 to 10000 (Cloud Armor's limit for rate-based bans)."
  }
}

variable "collect_rate_limit_interval_sec" {
  type        = number
  description = "Window, in seconds, over which Cloud Armor counts collect_rate_limit_count."
  default     = 60

  validation {
    condition     = contains([10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, 3600], var.collect_rate_limit_interval_sec)
    error_message = "collect_rate_limit_interval_sec must be one of Cloud Armor's intervals: 10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700 or 3600."
  }
}

variable "collect_rate_limit_action" {
  type        = string
  description = "throttle: requests above the limit get 429 while the client stays above it. rate_based_ban: a client above the limit gets 429 for collect_rate_limit_ban_seconds, whatever it does meanwhile."
  default     = "throttle"

  validation {
    condition     = contains(["throttle", "rate_based_ban"], var.collect_rate_limit_action)
    error_message = "collect_rate_limit_action must be \"throttle\" or \"rate_based_ban\"."
  }
}

variable "collect_rate_limit_ban_seconds" {
  type        = number
  description = "How long a client that exceeded the limit stays refused, when collect_rate_limit_action is rate_based_ban."
  default     = 600

  validation {
    condition     = var.collect_rate_limit_ban_seconds >= 60 && var.collect_rate_limit_ban_seconds <= 86400 && floor(var.collect_rate_limit_ban_seconds) == var.collect_rate_limit_ban_seconds
    error_message = "collect_rate_limit_ban_seconds must be whole seconds from 60 to 86400."
  }
}

variable "collect_load_balancer_log_sample_rate" {
  type        = number
  description = "Share of collect requests the load balancer logs (with Cloud Armor's decision, the client address and user agent; never the body). 1 logs all of them, and costs Cloud Logging ingestion at high traffic."
  default     = 0.1

  validation {
    condition     = var.collect_load_balancer_log_sample_rate >= 0 && var.collect_load_balancer_log_sample_rate <= 1
    error_message = "collect_load_balancer_log_sample_rate must be from 0 to 1."
  }
}

# ---------------------------------------------------------------------------
# sender (TikTok Events API)
# ---------------------------------------------------------------------------

variable "tiktok_api_url" {
  type        = string
  description = "TikTok Events API endpoint the sender posts to (TIKTOK_API_URL)."
  default     = "https://business-api.tiktok.com/open_api/v1.3/event/track/"

  validation {
    condition     = can(regex("^https://", var.tiktok_api_url))
    error_message = "tiktok_api_url must be an https:// URL."
  }
}

variable "log_level" {
  type        = string
  description = "Log threshold of every function (LOG_LEVEL); the reconciliation job logs at INFO at least, since its alert watches its INFO line per run."
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

# ---------------------------------------------------------------------------
# Function sizing
# ---------------------------------------------------------------------------

variable "function_settings" {
  type = map(object({
    available_memory                 = optional(string)
    available_cpu                    = optional(string)
    timeout_seconds                  = optional(number)
    min_instance_count               = optional(number)
    max_instance_count               = optional(number)
    max_instance_request_concurrency = optional(number)
    ingress_settings                 = optional(string)
  }))
  description = <<-EOT
    Per-function overrides of the sizing defaults in functions.tf (each entry's sizing in
    local.functions), keyed by function folder (a key that is none is refused at plan time);
    omitted attributes keep the default. Defaults: every function 1 vCPU, 512Mi, min_instance_count 0;
    collect 80 concurrent requests, up to 20 instances, 30 s; webhooks 20 concurrent, up to
    10 instances, 30 s; sender 80 concurrent (its micro-batching coalesces concurrent pushes,
    so keep it high), up to 10 instances, 120 s, internal ingress (only Pub/Sub calls it); the
    reconciliation job one run at a time on one instance, 900 s (at most 1800: Cloud Scheduler's wait),
    internal ingress.
    min_instance_count 0 means a cold start of a few seconds after idle periods: Shopify
    and WooCommerce retry deliveries that time out and the handlers are idempotent, so
    nothing is lost; set 1 on a webhook to avoid the delay at the price of one instance
    billed while idle. A concurrency above 1 needs at least 1 vCPU (Cloud Run rule).
  EOT
  default     = {}

  # Which keys exist is checked against local.functions, by a precondition in functions.tf.
  validation {
    condition     = alltrue([for name in keys(var.function_settings) : can(regex("^[a-z][a-z0-9_]*$", name))])
    error_message = "function_settings keys must be function folders such as shopify_webhook (lowercase letters, digits and underscores)."
  }

  validation {
    condition     = alltrue([for s in values(var.function_settings) : can(regex("^[0-9]+(Mi|Gi)$", coalesce(s.available_memory, "512Mi")))])
    error_message = "available_memory must look like 512Mi or 1Gi."
  }

  validation {
    condition     = alltrue([for s in values(var.function_settings) : can(regex("^[0-9]+([.][0-9]+)?$", coalesce(s.available_cpu, "1")))])
    error_message = "available_cpu must be a number of vCPUs written as a string, such as \"1\" or \"2\"."
  }

  validation {
    condition     = alltrue([for s in values(var.function_settings) : coalesce(s.min_instance_count, 0) >= 0 && coalesce(s.max_instance_count, 1) >= 1])
    error_message = "min_instance_count must be 0 or more and max_instance_count 1 or more."
  }

  validation {
    condition     = alltrue([for s in values(var.function_settings) : coalesce(s.timeout_seconds, 60) >= 1 && coalesce(s.timeout_seconds, 60) <= 3600])
    error_message = "timeout_seconds must be from 1 to 3600 (the sender's is further limited to 600 by the Pub/Sub ack deadline)."
  }

  validation {
    condition     = alltrue([for s in values(var.function_settings) : coalesce(s.max_instance_request_concurrency, 1) >= 1 && coalesce(s.max_instance_request_concurrency, 1) <= 1000])
    error_message = "max_instance_request_concurrency must be from 1 to 1000."
  }

  validation {
    condition     = alltrue([for s in values(var.function_settings) : contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], coalesce(s.ingress_settings, "ALLOW_ALL"))])
    error_message = "ingress_settings must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

# ---------------------------------------------------------------------------
# Optional sources (any entry of local.functions with optional = true)
# ---------------------------------------------------------------------------

variable "enabled_sources" {
  type        = set(string)
  description = "Optional sources to deploy, by function folder (the entries of local.functions in functions.tf with optional = true, but for the reconciliation job, which reconcile_job switches on; the plan names them if one is wrong). Empty: none, so a merchant who does not use a source gets no function, service account, bundle or secret for it. Each also takes its settings from source_settings or PIPELINE_TENANTS, and a secret (the secret_setup_commands output)."
  default     = []

  validation {
    condition     = alltrue([for name in var.enabled_sources : can(regex("^[a-z][a-z0-9_]*$", name))])
    error_message = "enabled_sources takes function folders such as a_source (lowercase letters, digits and underscores)."
  }
}

variable "source_settings" {
  type        = map(map(string))
  description = "Further plain environment of a source, by function folder: variable name => value, among the names that source's entry in functions.tf lists as its settings (the plan names them if one is wrong). For a source without variables of its own, e.g. its single-tenant site, and for the reconciliation job's further settings (SHOPIFY_CLIENT_ID, RECONCILE_SHOPIFY_WEBHOOK_URL, ...: docs/deploy.md, \"Reconciliation job\"). Never a secret: those come from Secret Manager."
  default     = {}

  validation {
    condition = alltrue(flatten([
      for name, settings in var.source_settings : concat(
        [can(regex("^[a-z][a-z0-9_]*$", name))],
        [for key, value in settings : can(regex("^[A-Z][A-Z0-9_]*$", key)) && length(value) > 0 && !can(regex("(SECRET|TOKEN|PASSWORD)", key))],
      )
    ]))
    error_message = "source_settings is keyed by function folder (lowercase), then by environment variable (UPPER_CASE) with a non-empty value; secrets (names with SECRET, TOKEN or PASSWORD) are never plain variables: add them to Secret Manager."
  }
}

# ---------------------------------------------------------------------------
# Pub/Sub delivery to the sender
# ---------------------------------------------------------------------------

variable "max_delivery_attempts" {
  type        = number
  description = "Deliveries of one message to the sender before Pub/Sub moves it to the dead-letter topic."
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100 && floor(var.max_delivery_attempts) == var.max_delivery_attempts
    error_message = "max_delivery_attempts must be a whole number from 5 to 100 (Pub/Sub's limits)."
  }
}

variable "retry_minimum_backoff" {
  type        = string
  description = "Shortest wait before Pub/Sub redelivers a message the sender refused, as seconds with an s suffix."
  default     = "10s"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?s$", var.retry_minimum_backoff)) && try(tonumber(trimsuffix(var.retry_minimum_backoff, "s")) <= 600, false)
    error_message = "retry_minimum_backoff must be a duration such as 10s, at most 600s."
  }
}

variable "retry_maximum_backoff" {
  type        = string
  description = "Longest wait between redeliveries (exponential backoff ceiling), as seconds with an s suffix."
  default     = "600s"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?s$", var.retry_maximum_backoff)) && try(tonumber(trimsuffix(var.retry_maximum_backoff, "s")) <= 600, false)
    error_message = "retry_maximum_backoff must be a duration such as 600s, at most 600s."
  }
}

variable "dead_letter_retention" {
  type        = string
  description = "How long the dead-letter subscription keeps unacknowledged messages for inspection and re-driving (Pub/Sub allows up to 31 days; beyond 24 hours the retained bytes are billed as storage)."
  default     = "2678400s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.dead_letter_retention)) && try(tonumber(trimsuffix(var.dead_letter_retention, "s")) >= 600 && tonumber(trimsuffix(var.dead_letter_retention, "s")) <= 2678400, false)
    error_message = "dead_letter_retention must be whole seconds such as 2678400s, from 600s (10 minutes) to 2678400s (31 days)."
  }
}

# ---------------------------------------------------------------------------
# Operations (terraform/monitoring.tf)
# ---------------------------------------------------------------------------

variable "alerts_enabled" {
  type        = bool
  description = "Whether the alert policies (dead events, parked orders, refused webhook signatures, 503s, dead-letter backlog) are enabled. They are created either way."
  default     = true
}

variable "alert_notification_channels" {
  type        = list(string)
  description = "Cloud Monitoring notification channels that receive the alerts, as ids (projects/PROJECT/notificationChannels/ID). Empty: incidents show in the console only."
  default     = []

  validation {
    condition     = alltrue([for channel in var.alert_notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", channel))])
    error_message = "alert_notification_channels takes ids such as projects/my-project/notificationChannels/1234567890."
  }
}

# ---------------------------------------------------------------------------
# Webhook registration helpers (outputs only)
# ---------------------------------------------------------------------------

variable "shopify_webhook_topics" {
  type        = list(string)
  description = "Shopify webhook topics the shopify_app_toml and registration outputs subscribe to (the compliance topics customers/data_request, customers/redact and shop/redact are added in shopify_app_toml); must include the shop's purchase topic (orders/paid by default). orders/cancelled keeps a cancelled order's Purchase from going out; refunds/create records refunds."
  default     = ["orders/create", "orders/paid", "orders/cancelled", "refunds/create"]

  validation {
    condition     = length(var.shopify_webhook_topics) > 0 && alltrue([for t in var.shopify_webhook_topics : can(regex("^[a-z_]+/[a-z_]+$", t))])
    error_message = "shopify_webhook_topics must be a non-empty list of topics such as orders/paid."
  }
}

variable "shopify_api_version" {
  type        = string
  description = "Shopify API version of the webhook subscriptions (YYYY-MM, a quarterly release): the shopify_app_toml and registration outputs use it, and the Shopify function compares it with each delivery's X-Shopify-API-Version (SHOPIFY_API_VERSION). Default: the newest release in shared/data/shopify_api_versions.json; a plan warns (shopify_api_version.tf) once it is past Shopify's 12-month support window, after which Shopify sends the oldest version it still supports."
  default     = "2026-10"

  validation {
    condition     = can(regex("^20[0-9]{2}-(01|04|07|10)$", var.shopify_api_version))
    error_message = "shopify_api_version must be a quarterly Shopify release such as 2026-10."
  }
}

# ---------------------------------------------------------------------------
# Shopify webhooks over Pub/Sub, WooCommerce silence (pubsub.tf, monitoring.tf)
# ---------------------------------------------------------------------------

variable "shopify_pubsub_enabled" {
  type        = bool
  description = "Create the Shopify delivery topic (pubsub://PROJECT:<name_prefix>-shopify-webhooks), Shopify's publisher grant on it, and its push subscription to the shopify-pubsub function. Register it with the shopify_pubsub_registration output; recommended on Google Cloud (docs/shopify.md)."
  default     = false
}

variable "woocommerce_quiet_hours" {
  type        = number
  description = "Alert when a WooCommerce site that has been delivering orders sends none for this many hours (WooCommerce disables a webhook after more than 5 failed deliveries and never retries). Set it above the longest normal gap between a site's orders; Cloud Monitoring watches absence for at most 23.5 hours."
  default     = 12

  validation {
    condition     = var.woocommerce_quiet_hours >= 1 && var.woocommerce_quiet_hours <= 23 && floor(var.woocommerce_quiet_hours) == var.woocommerce_quiet_hours
    error_message = "woocommerce_quiet_hours must be a whole number of hours from 1 to 23 (Cloud Monitoring's limit for metric absence)."
  }
}

# ---------------------------------------------------------------------------
# Reconciliation job (reconcile.tf; docs/operations.md, "Accuracy: orders in the shop vs sent")
# ---------------------------------------------------------------------------

variable "reconcile_job" {
  type = object({
    enabled      = optional(bool, false)
    schedule     = optional(string, "0 * * * *")
    time_zone    = optional(string, "Etc/UTC")
    window_hours = optional(number, 72)
    backfill     = optional(bool, true)
    repair       = optional(bool, false)
  })
  description = <<-EOT
    The reconciliation job: Cloud Scheduler runs the reconcile function on `schedule` (cron, in `time_zone`),
    which lists each shop's and site's orders of the last `window_hours` through their APIs, compares them with
    what the pipeline holds, sends the missing paid ones through the order flow when `backfill`
    (RECONCILE_BACKFILL), and sets disabled WooCommerce webhooks active again when `repair` (RECONCILE_REPAIR;
    needs a Read/Write key). Off unless `enabled`: it needs the shops' API credentials (docs/deploy.md,
    "Reconciliation job"), and without them it would fail every run. The schedule runs every hour
    ("M * * * *") or every N hours ("M */N * * *", N up to 11): its alert fires when no run was logged for
    twice that period, and Cloud Monitoring watches absence for at most 23.5 hours.
  EOT
  default = {
    enabled      = false
    schedule     = "0 * * * *"
    time_zone    = "Etc/UTC"
    window_hours = 72
    backfill     = true
    repair       = false
  }

  validation {
    condition     = can(regex("^([0-9]|[1-5][0-9]) ([*]|[*]/([1-9]|1[01])) [*] [*] [*]$", var.reconcile_job.schedule))
    error_message = "reconcile_job.schedule must run every hour (\"M * * * *\") or every N hours (\"M */N * * *\", N from 1 to 11), M a minute from 0 to 59: the job-not-running alert waits twice that period."
  }

  validation {
    condition     = can(regex("^[A-Za-z]+(/[A-Za-z0-9_+-]+)*$", var.reconcile_job.time_zone))
    error_message = "reconcile_job.time_zone must be a tz database name such as Etc/UTC or Europe/Berlin."
  }

  validation {
    condition     = var.reconcile_job.window_hours >= 1 && var.reconcile_job.window_hours <= 672 && floor(var.reconcile_job.window_hours) == var.reconcile_job.window_hours
    error_message = "reconcile_job.window_hours must be a whole number of hours from 1 to 672 (28 days; RECONCILE_WINDOW_HOURS)."
  }
}
