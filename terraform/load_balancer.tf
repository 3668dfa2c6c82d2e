# Optional external HTTPS load balancer in front of collect, with a Cloud Armor
# per-client rate limit (var.collect_load_balancer; off by default).
#
# collect is the one endpoint anyone may call at any rate (its key is public by
# design); the function's own limit (COLLECT_RATE_LIMIT_*) is per instance, so a
# client spread over many instances gets more. Cloud Armor counts every request
# at Google's edge, before an instance starts. When this is on, collect accepts
# traffic only through the load balancer (ingress ALLOW_INTERNAL_AND_GCLB, so the
# limit cannot be bypassed on the run.app URL) and reads the client address one
# X-Forwarded-For hop further (COLLECT_TRUSTED_PROXY_HOPS = 1, functions.tf):
# the load balancer appends `<client>, <forwarding rule address>`.

locals {
  collect_lb = var.collect_load_balancer ? toset(["collect"]) : toset([])
}

resource "google_compute_security_policy" "collect" {
  #checkov:skip=CKV_GCP_73:The only backend is collect, a Python function: no Java, no Log4j to shield; this policy is for rate limiting.
  for_each = local.collect_lb

  name        = "${var.name_prefix}-collect"
  description = "Per-client rate limit of the collect endpoint (TikTok Events API pipeline)."
  type        = "CLOUD_ARMOR"

  rule {
    action      = var.collect_rate_limit_action
    priority    = 1000
    description = "Per-client rate limit of collect"
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
    rate_limit_options {
      conform_action = "allow"
      exceed_action  = "deny(429)" # what the snippet and the in-process limit answer too
      enforce_on_key = "IP"        # the address that connected to Google's edge: cannot be forged
      rate_limit_threshold {
        count        = var.collect_rate_limit_count
        interval_sec = var.collect_rate_limit_interval_sec
      }
      ban_duration_sec = var.collect_rate_limit_action == "rate_based_ban" ? var.collect_rate_limit_ban_seconds : null
    }
  }

  rule {
    action      = "allow"
    priority    = 2147483647
    description = "default rule"
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
  }

  depends_on = [google_project_service.this]
}

# Serverless NEG: a gen2 function is a Cloud Run service of the same name.
resource "google_compute_region_network_endpoint_group" "collect" {
  for_each = local.collect_lb

  name                  = "${var.name_prefix}-collect"
  region                = var.region
  network_endpoint_type = "SERVERLESS"
  cloud_run {
    service = google_cloudfunctions2_function.function["collect"].name
  }
}

resource "google_compute_backend_service" "collect" {
  for_each = local.collect_lb

  name                  = "${var.name_prefix}-collect"
  description           = "The collect function, behind Cloud Armor."
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"
  security_policy       = google_compute_security_policy.collect[each.key].id

  backend {
    group = google_compute_region_network_endpoint_group.collect[each.key].id
  }

  # Cloud Armor's decisions (429s included) land in the load balancer's request log.
  log_config {
    enable      = true
    sample_rate = var.collect_load_balancer_log_sample_rate
  }
}

resource "google_compute_url_map" "collect" {
  for_each = local.collect_lb

  name            = "${var.name_prefix}-collect"
  default_service = google_compute_backend_service.collect[each.key].id
}

resource "google_compute_managed_ssl_certificate" "collect" {
  for_each = local.collect_lb

  name = "${var.name_prefix}-collect"
  managed {
    domains = [var.collect_domain]
  }

  lifecycle {
    precondition {
      condition     = var.collect_domain != null
      error_message = "collect_load_balancer = true needs collect_domain: the host name the managed certificate is issued for (point its DNS A record at the collect_load_balancer_ip output)."
    }
  }
}

resource "google_compute_ssl_policy" "collect" {
  for_each = local.collect_lb

  name            = "${var.name_prefix}-collect"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "collect" {
  for_each = local.collect_lb

  name             = "${var.name_prefix}-collect"
  url_map          = google_compute_url_map.collect[each.key].id
  ssl_certificates = [google_compute_managed_ssl_certificate.collect[each.key].id]
  ssl_policy       = google_compute_ssl_policy.collect[each.key].id
}

resource "google_compute_global_address" "collect" {
  for_each = local.collect_lb

  name = "${var.name_prefix}-collect"

  depends_on = [google_project_service.this]
}

resource "google_compute_global_forwarding_rule" "collect" {
  for_each = local.collect_lb

  name                  = "${var.name_prefix}-collect"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  port_range            = "443"
  ip_address            = google_compute_global_address.collect[each.key].address
  target                = google_compute_target_https_proxy.collect[each.key].id
}
