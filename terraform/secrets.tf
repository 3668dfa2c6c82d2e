# Secret Manager secrets. Terraform creates the secrets but never their values:
# a value in Terraform would sit in the state file and the plan output. Add (and
# rotate) values out of band, before the first full apply, e.g.
#
#   printf %s "$TIKTOK_ACCESS_TOKEN" | gcloud secrets versions add tiktok-access-token --data-file=- --project=PROJECT_ID
#
# (the `secret_setup_commands` output prints them all). The functions read version
# "latest" when an instance starts.

locals {
  # secret id => the one function folder that reads it (function), the environment variable it arrives
  # in (env, in that folder's settings class SECRET_ENV) and how to make its value: the secrets of the
  # deployed entries of local.functions (functions.tf), so a source that is not deployed has none.
  secrets = merge([
    for name, fn in local.deployed_folders : { for id, secret in fn.secrets : id => merge(secret, { function = name }) }
  ]...)
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
