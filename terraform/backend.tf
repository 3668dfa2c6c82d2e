# Remote state. Terraform keeps local state (terraform/terraform.tfstate, ignored
# by git) until a backend is declared here. For anything shared, keep state in a
# GCS bucket with object versioning, created once outside this configuration:
#
#   gcloud storage buckets create gs://STATE_BUCKET --project=PROJECT_ID \
#     --location=REGION --uniform-bucket-level-access --public-access-prevention
#   gcloud storage buckets update gs://STATE_BUCKET --versioning
#
# then uncomment the block below and pass the rest as partial configuration, so
# no bucket name is committed:
#
#   terraform init -backend-config=bucket=STATE_BUCKET -backend-config=prefix=tiktok-events
#
# cloudbuild.yaml does exactly this with the _STATE_BUCKET substitution (and,
# while this block stays commented, declares the same empty backend itself).
#
# terraform {
#   backend "gcs" {}
# }
