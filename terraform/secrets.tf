# Secret Manager secrets. Terraform creates the secrets but never their values:
# a value in Terraform would sit in the state file and the plan output. Add (and
# rotate) values out of band, before the first full apply, e.g.
#
#   printf %s "$TIKTOK_ACCESS_TOKEN" | gcloud secrets versions add tiktok-access-token --data-file=- --project=PROJECT_ID
#
# (the `secret_setup_commands` output prints them all). The functions read version
# "latest" when an instance starts.

locals {
  # secret id => the one function that reads it and the environment variable it
  # arrives in (the variable is in that function's settings class SECRET_ENV).
  secrets = {
    "tiktok-access-token" = {
      function = "sender"
      env      = "TIKTOK_ACCESS_TOKEN"
    }
    "shopify-webhook-secret" = {
      function = "shopify_webhook"
      env      = "SHOPIFY_WEBHOOK_SECRET"
    }
    "woocommerce-webhook-secret" = {
      function = "woocommerce_webhook"
      env      = "WOOCOMMERCE_WEBHOOK_SECRET"
    }
    "collect-signing-secret" = {
      function = "collect"
      env      = "COLLECT_SIGNING_SECRET"
    }
  }
}

resource "google_secret_manager_secret" "secret" {
  for_each = local.secrets

  secret_id = each.key
  labels = {
    function = replace(each.value.function, "_", "-")
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}
