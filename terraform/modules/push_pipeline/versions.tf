terraform {
  # The same floor as the root module (terraform/versions.tf).
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
  }
}
