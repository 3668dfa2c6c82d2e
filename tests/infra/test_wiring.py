"""terraform/ is wired to the code: environment, secrets, Pub/Sub topology, TTL policies, IAM.

The expectations come from the code wherever it says them (``function_settings()``
and each class's ``env_names()``/``SECRET_ENV``, ``shared.infra.store.COLLECTIONS``
and ``TTL_FIELD``, the sender's claim TTL), so a change on either side that
breaks the other fails here.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

import pytest

from shared import report
from shared.config import SenderSettings, function_settings
from shared.infra import store
from tests.infra.conftest import ROOT
from tests.infra.hcl import Expr, Terraform, squash

FUNCTIONS = tuple(function_settings())
# The decorated function in each functions/<name>/main.py.
ENTRY_POINTS = {name: name for name in FUNCTIONS}
# Called from the internet without Google credentials (browsers, Shopify, WooCommerce, signing backends).
PUBLIC_HTTP = {"collect", "shopify_webhook", "woocommerce_webhook", "signed_orders"}
# Deployed only when the operator asks (var.enabled_sources, or a switch of their own: local.switched_on, such as
# var.reconcile_job.enabled): what a merchant who does not use them expects.
OPTIONAL = {"signed_orders", "reconcile"}

# Read by functions-framework itself rather than by a settings class
# (test_threads_is_read_by_functions_framework proves it).
FRAMEWORK_ENV = {"THREADS"}

# Values that only the deployment knows: its project and the resources it creates.
INFRA_OWNED = {
    "GOOGLE_CLOUD_PROJECT": "var.project_id",
    "FIRESTORE_DATABASE": "local.firestore_database",
    "FIRESTORE_COLLECTION_PREFIX": "var.firestore_collection_prefix",
    "PUBSUB_TOPIC": "module.events_push.topic_name",
    "TIKTOK_API_URL": "var.tiktok_api_url",
}
# Merchant decisions the deployment states explicitly instead of inheriting a code default.
DEPLOYMENT_CHOICES = {"CONSENT_POLICY", "CLICK_TTL_DAYS", "COLLECT_ALLOWED_ORIGINS", "LOG_LEVEL"}

# Every role a function's runtime identity may hold.
ROLE_ALLOW_LIST = {
    "collect": {"roles/datastore.user", "roles/pubsub.publisher", "roles/secretmanager.secretAccessor"},
    "shopify_webhook": {"roles/datastore.user", "roles/pubsub.publisher", "roles/secretmanager.secretAccessor"},
    "woocommerce_webhook": {"roles/datastore.user", "roles/pubsub.publisher", "roles/secretmanager.secretAccessor"},
    "signed_orders": {"roles/datastore.user", "roles/pubsub.publisher", "roles/secretmanager.secretAccessor"},
    # Publishes a push held back by TikTok's throttling to the events topic again (shared/send/throttle.py).
    "sender": {"roles/datastore.user", "roles/pubsub.publisher", "roles/secretmanager.secretAccessor"},
    # Reads Firestore, publishes the orders it backfills as their webhooks would, reads the shops' API credentials.
    "reconcile": {"roles/datastore.user", "roles/pubsub.publisher", "roles/secretmanager.secretAccessor"},
}

FUNCTION = ("google_cloudfunctions2_function", "function")
# The events topic's push subscription to the sender (terraform/pubsub.tf, modules/push_pipeline).
SENDER_PUSH = ("google_pubsub_subscription", "module.events_push.push")


def required_env(name: str) -> set[str]:
    """What Terraform must set for ``name``: settings without a code default, plus infra-owned values and choices."""
    cls = function_settings()[name]
    no_default = {f.alias for f in cls.model_fields.values() if f.alias and f.default is None}
    return (no_default | set(INFRA_OWNED) | DEPLOYMENT_CHOICES) & cls.env_names()


def service_config(tf: Terraform) -> dict[str, Any]:
    return tf.block(tf.resource(*FUNCTION), "service_config")


def plain_env(tf: Terraform, name: str) -> dict[str, Any]:
    """The plain environment variables Terraform gives function ``name`` (values as HCL expressions)."""
    expression = service_config(tf)["environment_variables"]
    assert squash(expression) == squash(
        "{for key, value in local.function_env[each.key] : key => value if value != null}"
    ), f"environment_variables no longer comes from local.function_env[each.key]: {expression}"
    return tf.view("function_env")[name]


def secret_env(tf: Terraform, name: str) -> dict[str, str]:
    """Secret environment variables of function ``name`` once deployed: variable -> Secret Manager secret id."""
    dynamic = tf.dynamic(service_config(tf), "secret_environment_variables")
    assert squash(dynamic["for_each"]) == squash(
        "{for id, secret in local.secrets : secret.env => id if secret.function == each.value.folder}"
    ), f"secret_environment_variables no longer iterates local.secrets of this function: {dynamic['for_each']}"
    content = dynamic["content"][0]
    assert content["key"] == "secret_environment_variables.key"
    assert (
        squash(content["secret"]) == "google_secret_manager_secret.secret[secret_environment_variables.value].secret_id"
    )
    assert content["version"] == "latest"
    folder = tf.view("cloud_functions")[name]["folder"]
    secrets = tf.view("secrets", everything=True)
    return {secret["env"]: secret_id for secret_id, secret in secrets.items() if secret["function"] == folder}


def ref(expression: Any) -> str:
    assert isinstance(expression, Expr), f"expected a reference, found the literal {expression!r}"
    return squash(expression)


# --------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------


def test_terraform_deploys_exactly_the_functions_of_the_code(tf: Terraform) -> None:
    folders = {p.name for p in (ROOT / "functions").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert set(tf.locals["functions"]) == set(FUNCTIONS) == folders
    assert ref(tf.resource(*FUNCTION)["for_each"]) == "local.deployed_functions"
    # Each folder is deployed as the function of its name; others (shopify_pubsub) are further entry points.
    everything = tf.instances(tf.resource(*FUNCTION)["for_each"], everything=True)
    assert set(FUNCTIONS) <= set(everything), "every folder can be deployed"
    assert {name: everything[name]["folder"] for name in FUNCTIONS} == {name: name for name in FUNCTIONS}
    # By default, every folder but the optional sources, which a merchant who does not use them never gets.
    deployed = tf.instances(tf.resource(*FUNCTION)["for_each"])
    assert set(deployed) == set(FUNCTIONS) - OPTIONAL, "by default exactly the folders that are not optional"
    assert {name for name, fn in tf.locals["functions"].items() if fn["optional"] is not False} == OPTIONAL
    assert tf.variables["enabled_sources"]["default"] == []
    for name, fn in tf.view("cloud_functions").items():
        assert fn["folder"] in folders, f"{name} runs functions/{fn['folder']}, which does not exist"
        assert (
            tf.locals["functions"][fn["folder"]]["optional"] is True or fn["enabled"] is True or name not in FUNCTIONS
        ), f"{name} is a folder that is not optional: always deployed"


def test_each_function_has_its_entry_point_and_the_python312_runtime(tf: Terraform) -> None:
    build = tf.block(tf.resource(*FUNCTION), "build_config")
    assert build["runtime"] == "python312"
    assert ref(build["entry_point"]) == "each.value.entry_point"
    entry_points = {name: fn["entry_point"] for name, fn in tf.view("cloud_functions").items()}
    assert {name: entry_points[name] for name in FUNCTIONS} == ENTRY_POINTS


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_variable_terraform_sets_is_read_by_the_function(tf: Terraform, name: str) -> None:
    set_by_terraform = set(plain_env(tf, name)) | set(secret_env(tf, name))
    reader = function_settings()[name]
    unread = set_by_terraform - reader.env_names() - FRAMEWORK_ENV
    assert not unread, f"{name}: Terraform sets {sorted(unread)}, which {reader.__name__} never reads"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_variable_the_function_needs_is_set(tf: Terraform, name: str) -> None:
    set_by_terraform = set(plain_env(tf, name)) | set(secret_env(tf, name))
    missing = required_env(name) - set_by_terraform
    assert not missing, f"{name}: Terraform does not set {sorted(missing)}"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_secrets_arrive_from_secret_manager_only(tf: Terraform, name: str) -> None:
    cls = function_settings()[name]
    assert set(secret_env(tf, name)) == set(cls.SECRET_ENV)
    every_secret = set().union(*(c.SECRET_ENV for c in function_settings().values()))
    leaked = every_secret & set(plain_env(tf, name))
    assert not leaked, f"{name}: {sorted(leaked)} must not be plain environment variables"


def test_secret_manager_holds_exactly_the_secrets_the_code_reads(tf: Terraform) -> None:
    secrets = tf.view("secrets", everything=True)
    every_secret = set().union(*(c.SECRET_ENV for c in function_settings().values()))
    assert {s["env"] for s in secrets.values()} == every_secret
    assert set(secrets) == {
        "tiktok-access-token",
        "shopify-webhook-secret",
        "woocommerce-webhook-secret",
        "collect-signing-secret",
        "signed-orders-secret",
        # The reconcile job's shop API credentials (blank where the merchant does not use one).
        "shopify-admin-token",
        "shopify-client-secret",
        "woocommerce-api-key",
        "woocommerce-api-secret",
    }
    for secret_id, secret in secrets.items():
        assert secret["env"] in function_settings()[secret["function"]].SECRET_ENV, secret_id
        assert secret["help"] and secret["value"], f"{secret_id}: say how to make its value (secret_setup_commands)"
    assert ref(tf.resource("google_secret_manager_secret", "secret")["for_each"]) == "local.secrets"
    # A source that is not deployed has no secret to fill in; by default that is every optional one.
    by_default = tf.view("secrets")
    assert {s["function"] for s in by_default.values()} == set(FUNCTIONS) - OPTIONAL


@pytest.mark.parametrize("name", FUNCTIONS)
def test_infra_owned_settings_point_at_the_resources(tf: Terraform, name: str) -> None:
    env = plain_env(tf, name)
    for variable, expected in INFRA_OWNED.items():
        if variable in function_settings()[name].env_names():
            assert ref(env[variable]) == expected, f"{name}: {variable} = {env[variable]!r}, expected {expected}"


@pytest.mark.parametrize("name", [*FUNCTIONS, "shopify_pubsub"])
def test_threads_follow_the_request_concurrency(tf: Terraform, name: str) -> None:
    expected = f"tostring(local.function_runtime.{name}.max_instance_request_concurrency)"
    assert ref(plain_env(tf, name).get("THREADS", "")) == expected
    assert "[{THREADS=tostring(local.function_runtime[name].max_instance_request_concurrency)}]" in squash(
        tf.locals["function_env"]
    ), "THREADS must follow each function's own concurrency, after everything else"
    assert ref(service_config(tf)["max_instance_request_concurrency"]) == (
        "local.function_runtime[each.key].max_instance_request_concurrency"
    )


def test_threads_is_read_by_functions_framework() -> None:
    from functions_framework._http import gunicorn

    assert 'os.environ.get("THREADS"' in inspect.getsource(gunicorn), (
        "functions-framework no longer reads THREADS: drop it from local.function_env and FRAMEWORK_ENV"
    )


def sizing(tf: Terraform, name: str) -> dict[str, Any]:
    """The sizing defaults of folder ``name`` (its entry in local.functions)."""
    return tf.locals["functions"][name]["sizing"]


def test_sender_is_sized_for_micro_batching_and_internal(tf: Terraform) -> None:
    sender = sizing(tf, "sender")
    assert sender["max_instance_request_concurrency"] >= 20, (
        "the sender batches concurrent pushes: keep concurrency high"
    )
    assert float(sender["available_cpu"]) >= 1, "a concurrency above 1 needs at least 1 vCPU"
    assert sender["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    for name in PUBLIC_HTTP:
        assert sizing(tf, name)["ingress_settings"] == "ALLOW_ALL", name
    for name in tf.locals["functions"]:
        assert sizing(tf, name)["min_instance_count"] == 0, (
            f"{name}: scale to zero by default (see var.function_settings)"
        )
    # Overrides apply per folder, attribute by attribute, over the folder's sizing; an entry point's own runtime last.
    assert squash(tf.locals["function_runtime"]) == squash(
        "{for name, fn in local.cloud_functions : name => merge(local.functions[fn.folder].sizing,"
        " try(local.lb_ingress[name], {}),"
        " {for key, value in try(var.function_settings[fn.folder], {}) : key => value if value != null},"
        ' lookup(fn, "runtime", {}))}'
    )


def test_function_source_is_the_bundle_object_named_by_its_hash(tf: Terraform) -> None:
    storage = tf.block(tf.block(tf.block(tf.resource(*FUNCTION), "build_config"), "source"), "storage_source")
    assert ref(storage["bucket"]) == "google_storage_bucket.sources.name"
    assert ref(storage["object"]) == "google_storage_bucket_object.bundle[each.value.folder].name"
    bundle = tf.resource("google_storage_bucket_object", "bundle")
    assert ref(bundle["for_each"]) == "local.deployed_folders"
    assert re.search(
        r"\$\{data\.archive_file\.bundle\[each\.key\]\.output_(md5|sha|sha256|base64sha256)\}", bundle["name"]
    ), f"the object name must contain the zip's hash so code changes redeploy: {bundle['name']}"
    assert ref(bundle["source"]) == "data.archive_file.bundle[each.key].output_path"


def test_source_bucket_is_private(tf: Terraform) -> None:
    bucket = tf.resource("google_storage_bucket", "sources")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"


def test_each_function_runs_as_its_own_service_account(tf: Terraform) -> None:
    assert ref(service_config(tf)["service_account_email"]) == (
        "google_service_account.function[each.value.folder].email"
    )
    accounts = tf.resource("google_service_account", "function")
    assert ref(accounts["for_each"]) == "local.deployed_folders"
    short_names = [fn["short_name"] for fn in tf.locals["functions"].values()]
    assert len(set(short_names)) == len(short_names)
    # name_prefix is at most 12 characters (variables.tf); account ids at most 30.
    assert all(12 + 1 + len(short) <= 30 for short in short_names)


# --------------------------------------------------------------------------
# Pub/Sub
# --------------------------------------------------------------------------


def _dead_letter_topic(tf: Terraform) -> str:
    policy = tf.block(tf.resource(*SENDER_PUSH), "dead_letter_policy")
    m = re.fullmatch(r"module\.events_push\.google_pubsub_topic\.(\w+)\.id", ref(policy["dead_letter_topic"]))
    assert m, policy
    return f"module.events_push.{m[1]}"


def _id(rtype: str, name: str) -> str:
    """How a resource named by Terraform.load (module.<call>.<name> inside a module) is referenced by its id."""
    call, _, own = name.rpartition(".")
    return f"{call}.{rtype}.{own}.id" if call else f"{rtype}.{name}.id"


def test_push_subscription_delivers_events_to_the_sender_with_an_oidc_token(tf: Terraform) -> None:
    push = tf.resource(*SENDER_PUSH)
    assert ref(push["topic"]) == "module.events_push.google_pubsub_topic.topic.id"
    assert ref(tf.resource("google_pubsub_topic", "module.events_push.topic")["name"]) == "local.events_topic"
    config = tf.block(push, "push_config")
    assert ref(config["push_endpoint"]) == 'google_cloudfunctions2_function.function["sender"].service_config[0].uri'
    assert ref(tf.block(config, "oidc_token")["service_account_email"]) == "google_service_account.push.email"
    retry = tf.block(push, "retry_policy")
    assert ref(retry["minimum_backoff"]) == "var.retry_minimum_backoff"
    assert ref(retry["maximum_backoff"]) == "var.retry_maximum_backoff"
    assert tf.block(push, "expiration_policy")["ttl"] == "", "an idle subscription must never expire"


def test_no_eventarc_trigger_feeds_the_sender(tf: Terraform) -> None:
    assert "event_trigger" not in tf.resource(*FUNCTION), "the sender is fed by our own push subscription"


def test_dead_letters_go_to_a_topic_with_its_own_subscription(tf: Terraform) -> None:
    dead_letter = _dead_letter_topic(tf)
    assert dead_letter != "module.events_push.topic"
    readers = [
        name
        for name, sub in tf.of_type("google_pubsub_subscription").items()
        if ref(sub["topic"]) == _id("google_pubsub_topic", dead_letter)
    ]
    assert readers, "a topic without a subscription drops what is published to it"
    for name in readers:
        sub = tf.resource("google_pubsub_subscription", name)
        assert "push_config" not in sub, f"{name}: dead letters wait in a pull subscription"
        assert "dead_letter_policy" not in sub
        assert ref(sub["message_retention_duration"]) == "var.dead_letter_retention"
    assert tf.variables["dead_letter_retention"]["default"] == "2678400s"


def test_max_delivery_attempts_is_validated_to_pubsub_limits(tf: Terraform) -> None:
    policy = tf.block(tf.resource(*SENDER_PUSH), "dead_letter_policy")
    assert ref(policy["max_delivery_attempts"]) == "var.max_delivery_attempts"
    variable = tf.variables["max_delivery_attempts"]
    assert variable["default"] == 10
    condition = squash(variable["validation"][0]["condition"])
    assert "var.max_delivery_attempts>=5" in condition and "var.max_delivery_attempts<=100" in condition


def test_ack_deadline_covers_the_sender_timeout(tf: Terraform) -> None:
    push = tf.resource(*SENDER_PUSH)
    assert ref(push["ack_deadline_seconds"]) == "local.function_runtime.sender.timeout_seconds"
    assert ref(service_config(tf)["timeout_seconds"]) == "local.function_runtime[each.key].timeout_seconds"
    assert 10 <= sizing(tf, "sender")["timeout_seconds"] <= 600
    preconditions = push["lifecycle"][0]["precondition"]
    assert any("timeout_seconds<=600" in squash(p["condition"]) for p in preconditions)


def test_sender_claims_outlive_every_redelivery(tf: Terraform) -> None:
    retention = tf.resource(*SENDER_PUSH)["message_retention_duration"]
    seconds = int(re.fullmatch(r"(\d+)s", retention)[1])
    claim_hours = SenderSettings.model_fields["claim_ttl_hours"].default
    assert seconds < claim_hours * 3600, "a message could be redelivered after the sender forgot it was sent"


def test_the_sender_enforces_the_order_window_the_webhooks_read_from_the_same_variable(tf: Terraform) -> None:
    # An order is sent once in its life only if the sender refuses outside the same window the webhooks
    # do, and its claim (CLAIM_TTL_HOURS, left to follow it) outlives that window.
    # The reconcile job backfills through the webhooks' order flow: the same window.
    readers = {name for name in FUNCTIONS if "ORDER_MAX_EVENT_AGE_DAYS" in function_settings()[name].env_names()}
    assert readers == {"shopify_webhook", "woocommerce_webhook", "signed_orders", "sender", "reconcile"}
    for name in readers:
        assert ref(plain_env(tf, name)["ORDER_MAX_EVENT_AGE_DAYS"]) == "tostring(var.order_max_event_age_days)", name
    assert "CLAIM_TTL_HOURS" not in plain_env(tf, "sender"), "set, it would not follow the window"
    variable = tf.variables["order_max_event_age_days"]
    assert variable["default"] == SenderSettings.model_fields["max_event_age_days"].default
    condition = squash(variable["validation"][0]["condition"])
    assert "var.order_max_event_age_days>=1" in condition and "var.order_max_event_age_days<=28" in condition


def test_receivers_publish_to_the_topic_the_subscription_reads(tf: Terraform) -> None:
    for name in FUNCTIONS:
        if "PUBSUB_TOPIC" in function_settings()[name].env_names():
            assert ref(plain_env(tf, name)["PUBSUB_TOPIC"]) == "module.events_push.topic_name"
    assert ref(tf.module_output("events_push", "topic_name")) == "module.events_push.google_pubsub_topic.topic.name"
    assert ref(tf.resource(*SENDER_PUSH)["topic"]) == "module.events_push.google_pubsub_topic.topic.id"


def test_pubsub_service_agent_is_the_projects_own(tf: Terraform) -> None:
    assert tf.locals["pubsub_service_agent"] == (
        "service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    )


# --------------------------------------------------------------------------
# Firestore
# --------------------------------------------------------------------------


def test_every_collection_has_a_ttl_policy_on_the_ttl_field(tf: Terraform) -> None:
    # Listed once, in the shared package's data: Terraform reads the file, the store's constants equal it.
    data = json.loads((ROOT / "shared" / "data" / "firestore_collections.json").read_text())
    assert "jsondecode(file(" in squash(tf.locals["firestore_schema"])
    assert tf.evaluate(tf.locals["firestore_schema"]) == data  # that very file, read by Terraform
    assert ref(tf.locals["firestore_collections"]) == "local.firestore_schema.collections"
    assert ref(tf.locals["firestore_ttl_field"]) == "local.firestore_schema.ttl_field"
    assert data["collections"] == list(store.COLLECTIONS) and data["ttl_field"] == store.TTL_FIELD
    assert tf.evaluate(tf.locals["firestore_collections"]) == list(store.COLLECTIONS)
    assert tf.evaluate(tf.locals["firestore_ttl_field"]) == store.TTL_FIELD
    field = tf.resource("google_firestore_field", "ttl")
    instances = tf.instances(field["for_each"])
    assert set(instances) == set(store.COLLECTIONS)
    assert ref(field["field"]) == "local.firestore_ttl_field"
    assert field["collection"] == "${var.firestore_collection_prefix}${each.value}"
    assert ref(field["database"]) == "local.firestore_database"
    assert field.get("ttl_config") == [{}], "ttl_config {} turns the TTL policy on"


def test_the_claims_timestamps_are_unindexed_and_nothing_range_queries_them(tf: Terraform) -> None:
    # An indexed, ever-increasing field caps a collection at ~500 writes a second (docs/scale.md).
    data = json.loads((ROOT / "shared" / "data" / "firestore_collections.json").read_text())
    unindexed = set(data["unindexed_fields"])
    assert {"event_claims.created_at", "event_claims.sent_at", "order_events.created_at"} <= unindexed
    assert {name.split(".")[0] for name in unindexed} <= set(store.COLLECTIONS)
    field = tf.resource("google_firestore_field", "unindexed")
    assert set(tf.instances(field["for_each"])) == unindexed
    assert field.get("index_config") == [{}], "index_config {} drops the automatic single-field indexes"
    assert field["collection"] == '${var.firestore_collection_prefix}${split(".", each.value)[0]}'
    # The report reads those collections by day, never by a range on an unindexed field.
    for collection, time_field, by_day, _fields in report.QUERIES:
        assert by_day or f"{collection}.{time_field}" not in unindexed, collection


def test_firestore_is_a_native_mode_database(tf: Terraform) -> None:
    database = tf.resource("google_firestore_database", "main")
    assert database["type"] == "FIRESTORE_NATIVE"


def test_the_database_the_functions_use_is_the_one_created_or_the_existing_one(tf: Terraform) -> None:
    database = tf.resource("google_firestore_database", "main")
    assert squash(database["count"]) == squash("var.create_firestore_database ? 1 : 0")
    assert ref(database["name"]) == "var.firestore_database"
    assert squash(tf.locals["firestore_database"]) == squash(
        "var.create_firestore_database ? google_firestore_database.main[0].name : var.firestore_database"
    ), "with the database created here, everything must depend on it; without, use the existing one by its id"
    assert tf.variables["create_firestore_database"]["default"] is True
    # State from before the flag names the database without an index: moved, never destroyed and recreated.
    assert re.search(
        r"moved\s*\{\s*from\s*=\s*google_firestore_database\.main\s+to\s*=\s*google_firestore_database\.main\[0\]",
        tf.raw["firestore.tf"],
    )
    assert database["deletion_policy"] == "ABANDON", "turning the flag off must forget the database, not delete it"


# --------------------------------------------------------------------------
# IAM
# --------------------------------------------------------------------------


def _expected_grants(tf: Terraform) -> set[tuple]:
    """Every grant with every optional part on (Terraform.grants): each function deployed, each switch true."""
    secret_of_env = {s["env"]: secret_id for secret_id, s in tf.view("secrets", everything=True).items()}
    expected: set[tuple] = set()
    for name, cls in function_settings().items():
        me = ("function", name)
        if "FIRESTORE_DATABASE" in cls.env_names():
            expected.add((me, "roles/datastore.user", ("project",)))
        if "PUBSUB_TOPIC" in cls.env_names():
            expected.add((me, "roles/pubsub.publisher", ("google_pubsub_topic", "module.events_push.topic")))
        for env in cls.SECRET_ENV:
            expected.add(
                (
                    me,
                    "roles/secretmanager.secretAccessor",
                    ("google_secret_manager_secret", "secret", secret_of_env[env]),
                )
            )
        if name in PUBLIC_HTTP:
            expected.add((("allUsers",), "roles/run.invoker", (*FUNCTION, name)))
    expected |= {
        (("push",), "roles/run.invoker", (*FUNCTION, "sender")),
        # The reconciliation job (var.reconcile_job.enabled; tests/infra/test_reconcile_infra.py).
        (("scheduler",), "roles/run.invoker", (*FUNCTION, "reconcile")),
        (("pubsub_agent",), "roles/pubsub.publisher", ("google_pubsub_topic", _dead_letter_topic(tf))),
        (("pubsub_agent",), "roles/pubsub.subscriber", SENDER_PUSH),
        # Shopify webhooks over Pub/Sub (shopify_pubsub_enabled; tests/infra/test_shopify_pubsub_infra.py).
        (("shopify_delivery",), "roles/pubsub.publisher", ("google_pubsub_topic", "module.shopify_push.topic")),
        (("push",), "roles/run.invoker", (*FUNCTION, "shopify_pubsub")),
        (("pubsub_agent",), "roles/pubsub.publisher", ("google_pubsub_topic", "module.shopify_push.dead_letter")),
        (("pubsub_agent",), "roles/pubsub.subscriber", ("google_pubsub_subscription", "module.shopify_push.push")),
        (("builder",), "roles/logging.logWriter", ("project",)),
        (("builder",), "roles/storage.objectViewer", ("project",)),
        (("builder",), "roles/storage.objectViewer", ("google_storage_bucket", "sources")),
        (("builder",), "roles/artifactregistry.writer", ("google_artifact_registry_repository", "functions")),
    }
    return expected


def test_every_grant_is_one_the_pipeline_needs_and_none_is_missing(tf: Terraform) -> None:
    actual = [(g.principal, g.role, g.target) for g in tf.grants()]
    assert len(actual) == len(set(actual)), "a grant is declared twice"
    expected = _expected_grants(tf)
    extra, missing = set(actual) - expected, expected - set(actual)
    assert not extra and not missing, f"unexpected grants: {sorted(extra)}\nmissing grants: {sorted(missing)}"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_runtime_roles_stay_within_the_functions_allow_list(tf: Terraform, name: str) -> None:
    roles = {g.role for g in tf.grants() if g.principal == ("function", name)}
    assert roles, f"{name} holds no role at all"
    assert roles <= ROLE_ALLOW_LIST[name], f"{name} holds {sorted(roles - ROLE_ALLOW_LIST[name])}"


def test_only_the_http_functions_are_public(tf: Terraform) -> None:
    public = {g.target[-1] for g in tf.grants() if g.principal == ("allUsers",)}
    assert public == PUBLIC_HTTP
    assert {g.role for g in tf.grants() if g.principal == ("allUsers",)} == {"roles/run.invoker"}
    flags = {name for name, fn in tf.locals["functions"].items() if fn["public_http"] is True}
    assert flags == PUBLIC_HTTP
    # Only deployed functions can be granted; an entry point that is no HTTP endpoint says so itself.
    invoker = tf.resource("google_cloud_run_service_iam_member", "public_invoker")
    assert squash(invoker["for_each"]) == squash(
        "{for name, fn in local.deployed_functions : name => fn if fn.public_http}"
    )


def test_project_level_grants_are_narrow(tf: Terraform) -> None:
    for grant in tf.grants():
        if grant.target != ("project",):
            continue
        assert grant.role in {"roles/datastore.user", "roles/logging.logWriter", "roles/storage.objectViewer"}, grant
        if grant.role == "roles/storage.objectViewer":
            assert grant.condition and "gcf-v2-sources-" in grant.condition["expression"], (
                f"{grant.resource}: project-wide object read must be limited to the functions' source bucket"
            )


def test_iam_uses_for_each_so_each_grant_is_visible(tf: Terraform) -> None:
    for (rtype, name), body in tf.resources.items():
        if rtype.endswith("_iam_member") and body.get("for_each") is None:
            principal = tf.principal(body["member"], None, None)
            assert principal[0] in {"push", "builder", "scheduler", "pubsub_agent", "shopify_delivery"}, (
                f"{rtype}.{name}: grants to several principals go through for_each"
            )


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------


def test_outputs_give_the_endpoints_and_the_webhook_registrations(tf: Terraform) -> None:
    urls = tf.locals["function_urls"]
    assert squash(urls) == squash(
        "{for name, fn in google_cloudfunctions2_function.function : name => fn.service_config[0].uri}"
    )
    for output, function in (("collect_url", "collect"), ("shopify_webhook_url", "shopify_webhook"),
                             ("woocommerce_webhook_url", "woocommerce_webhook")):  # fmt: skip
        assert ref(tf.outputs[output]["value"]) == f'local.function_urls["{function}"]'
    shopify = tf.outputs["shopify_webhook_registration"]["value"]
    assert "${local.shopify_curl_commands}" in shopify and '${local.function_urls["shopify_webhook"]}' in shopify
    curl = squash(tf.locals["shopify_curl_commands"])
    assert (
        "fortopicinvar.shopify_webhook_topics" in curl and "/admin/api/${var.shopify_api_version}/webhooks.json" in curl
    )
    assert '${local.function_urls["shopify_webhook"]}' in curl
    assert "orders/paid" in tf.variables["shopify_webhook_topics"]["default"]
    woo = tf.outputs["woocommerce_webhook_registration"]["value"]
    assert "/wp-json/wc/v3/webhooks" in woo and "order.created order.updated" in woo
    assert '${local.function_urls["woocommerce_webhook"]}' in woo
    assert "gcloud secrets versions access latest --secret=" in woo, "WooCommerce must sign with the stored secret"
    # One command per secret there is (each with its entry's help and value), naming the secret Terraform made.
    setup = squash(tf.outputs["secret_setup_commands"]["value"])
    assert setup.startswith(squash('join("", [for id, secret in local.secrets :')), setup
    assert (
        squash(
            '"# ${secret.help}\\n${secret.value} | gcloud secrets versions add'
            ' ${google_secret_manager_secret.secret[id].secret_id} --data-file=- --project=${var.project_id}\\n"'
        )
        in setup
    ), setup
    # Every deployed function's URL, for a source without an output of its own.
    assert ref(tf.outputs["function_urls"]["value"]) == "local.function_urls"
