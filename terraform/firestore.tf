# Firestore (native mode) and one TTL policy per collection.

locals {
  # The collections and the TTL field every document carries, listed once in the shared package's
  # data (shared.infra.store.COLLECTIONS and TTL_FIELD equal it: tests/infra checks both).
  firestore_schema      = jsondecode(file("${path.module}/../shared/data/firestore_collections.json"))
  firestore_collections = local.firestore_schema.collections
  firestore_ttl_field   = local.firestore_schema.ttl_field
  # "<collection>.<field>" for every timestamp exempt from single-field indexing (see google_firestore_field.unindexed).
  firestore_unindexed = local.firestore_schema.unindexed_fields
}

# Created here unless var.create_firestore_database is false: then the project's existing database
# named var.firestore_database is used as it is (Terraform neither creates, changes nor deletes it)
# and only its TTL policies below are added.
resource "google_firestore_database" "main" {
  count = var.create_firestore_database ? 1 : 0

  name        = var.firestore_database
  location_id = coalesce(var.firestore_location, var.region)
  type        = "FIRESTORE_NATIVE"

  delete_protection_state = var.firestore_delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  # terraform destroy leaves the data in place; deleting a database is a deliberate act.
  deletion_policy = "ABANDON"

  depends_on = [google_project_service.this]
}

# State written before create_firestore_database existed names the database without an index.
moved {
  from = google_firestore_database.main
  to   = google_firestore_database.main[0]
}

locals {
  # The database the functions and the TTL policies use: the one created above, or the existing one.
  firestore_database = var.create_firestore_database ? google_firestore_database.main[0].name : var.firestore_database
}

# TTL deletes documents whose expire_at has passed (typically within a day; the
# code also checks expiry on read). index_config {} drops the automatic
# single-field indexes on expire_at: nothing queries it, and indexing an
# ever-increasing timestamp creates write hotspots.
resource "google_firestore_field" "ttl" {
  for_each = toset(local.firestore_collections)

  database   = local.firestore_database
  collection = "${var.firestore_collection_prefix}${each.value}"
  field      = local.firestore_ttl_field

  index_config {}
  ttl_config {}

  depends_on = [google_project_service.this]
}

# The claims' and records' own timestamps, exempt from single-field indexing (index_config {}): Firestore
# caps a collection whose documents carry an ever-increasing indexed value at about 500 writes a second
# (docs/scale.md: the first limit on a sale day, near 2,500 orders a minute). Nothing range-queries them;
# the report selects a window's documents by their `day` field, whose equal values spread over the
# documents' ids, and filters the timestamps itself.
resource "google_firestore_field" "unindexed" {
  for_each = toset(local.firestore_unindexed)

  database   = local.firestore_database
  collection = "${var.firestore_collection_prefix}${split(".", each.value)[0]}"
  field      = split(".", each.value)[1]

  index_config {}

  depends_on = [google_project_service.this]
}
