"""A function (a new source of orders) is one entry of ``local.functions`` in terraform/functions.tf.

Everything per function derives from that map with for_each: its service account
and grants, its secrets, its bundle, its deployed functions with their sizing and
environment, the service names the metric and alerts match, its URL. These tests
prove it three ways: every per-function resource iterates the map (or a view
derived from it), no other local is keyed by function, and no other file names a
function except the platform features listed in :data:`DOCUMENTED` (with why).
Finally a new entry is added to the parsed model and followed through every view
and every IAM grant.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import hcl2
import pytest

from shared.config import function_settings
from tests.infra.conftest import TERRAFORM_DIR
from tests.infra.hcl import DERIVED, Terraform, normalize, squash

# Each per-function resource, and the view of local.functions it iterates (hcl.DERIVED says how each derives).
PER_FUNCTION = {
    ("google_service_account", "function"): "local.deployed_folders",
    ("google_project_iam_member", "function_firestore"): "local.deployed_folders",
    ("google_pubsub_topic_iam_member", "receiver_publisher"): (
        "{for name, fn in local.deployed_folders : name => fn if fn.publishes}"
    ),
    ("google_secret_manager_secret", "secret"): "local.secrets",
    ("google_secret_manager_secret_iam_member", "function_secret"): "local.secrets",
    ("google_cloud_run_service_iam_member", "public_invoker"): (
        "{for name, fn in local.deployed_functions : name => fn if fn.public_http}"
    ),
    ("google_storage_bucket_object", "bundle"): "local.deployed_folders",
    ("google_cloudfunctions2_function", "function"): "local.deployed_functions",
}
PER_FUNCTION_DATA = {("archive_file", "bundle"): "local.deployed_folders"}

# Where a file other than the map names a function, and why: platform features, not per-function plumbing.
# A function not listed here (signed_orders, and any source added after it) may be named nowhere else.
DOCUMENTED = {
    ("functions.tf", "collect"): "the load balancer's ingress switch (lb_ingress) and its precondition",
    ("functions.tf", "shopify_pubsub"): "the moved block of state written before it joined the map",
    ("load_balancer.tf", "collect"): "the optional load balancer and Cloud Armor in front of collect",
    ("pubsub.tf", "sender"): "the events topic's push subscription delivers to the sender",
    ("pubsub.tf", "shopify_pubsub"): "the Shopify topic's push subscription (var.shopify_pubsub_enabled)",
    ("variables.tf", "shopify_pubsub"): "var.shopify_pubsub_enabled, that entry point's switch, describes it",
    ("dashboard.tf", "sender"): "the charts of the sender's TikTok requests and match keys",
    ("monitoring.tf", "woocommerce_webhook"): "WooCommerce's parked-orders alert and its silence metric",
    ("outputs.tf", "collect"): "collect_url and collect_public_url, which docs and the snippets name",
    ("outputs.tf", "sender"): "sender_url",
    ("outputs.tf", "shopify_webhook"): "shopify_webhook_url and Shopify's registration outputs (curl, app toml)",
    ("outputs.tf", "woocommerce_webhook"): "woocommerce_webhook_url and woocommerce_webhook_registration",
    ("reconcile.tf", "reconcile"): "the reconciliation job: its switch (switched_on), the Cloud Scheduler job that "
    "calls the function and the one identity that may invoke it",
    ("monitoring.tf", "reconcile"): "the reconciliation job's run line: its metrics and alerts (its service name)",
}

NAMES = tuple(function_settings())


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield str(key)
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)
    elif isinstance(value, str):
        yield value


def _names_a_function(text: str, name: str) -> bool:
    """Does ``text`` (a parsed HCL value, comments gone) address function ``name``: an index, an attribute,
    a string literal, or its service name?"""
    dashed = re.escape(name.replace("_", "-"))
    patterns = [rf'\["{name}"\]', rf"\.{name}\.", rf'"{name}"', rf"^{name}$", rf"\}}-{dashed}\b"]
    if "_" in name:  # a dashed name is no English word: anywhere it stands alone
        patterns.append(rf"(?<![\w-]){dashed}(?![\w-])")
    return any(re.search(pattern, text) for pattern in patterns)


def mentions(tf: Terraform) -> dict[tuple[str, str], int]:
    """(file, function) -> how many parsed values of that file name the function, the map itself left out."""
    found: dict[tuple[str, str], int] = {}
    for path in sorted(TERRAFORM_DIR.rglob("*.tf")):
        parsed = normalize(hcl2.loads(path.read_text()))
        if path.name == "functions.tf":
            for block in parsed.get("locals", []):
                block.pop("functions", None)
        relative = path.relative_to(TERRAFORM_DIR).as_posix()
        for name in {*tf.view("cloud_functions"), *tf.locals["functions"]}:
            count = sum(_names_a_function(text, name) for text in _strings(parsed))
            if count:
                found[(relative, name)] = count
    return found


def test_every_per_function_resource_iterates_the_one_map(tf: Terraform) -> None:
    for address, for_each in PER_FUNCTION.items():
        assert squash(tf.resource(*address)["for_each"]) == squash(for_each), address
    for address, for_each in PER_FUNCTION_DATA.items():
        assert squash(tf.data[address]["for_each"]) == squash(for_each), address
    # ...and each of those views derives from local.functions and nothing else keyed by function.
    for view in ("deployed_folders", "deployed_functions", "cloud_functions", "secrets", "function_env"):
        assert squash(tf.locals[view]) == squash(DERIVED[view]), view
    # No other resource iterates something keyed by function.
    views = {f"local.{view}" for view in DERIVED} | {"local.functions"}
    for (rtype, name), body in tf.resources.items():
        if (rtype, name) in PER_FUNCTION or name.startswith("module."):
            continue
        for_each = squash(str(body.get("for_each", "")))
        assert not any(re.search(rf"{re.escape(v)}\b", for_each) for v in views), f"{rtype}.{name}: add to PER_FUNCTION"


def test_no_other_local_is_keyed_by_function(tf: Terraform) -> None:
    """The maps that used to sit beside local.functions (defaults, environment, secrets) are gone for good."""
    names = set(tf.locals["functions"]) | set(tf.view("cloud_functions"))
    keyed = {key for key, value in tf.locals.items() if isinstance(value, dict) and names & set(value)}
    assert keyed == {"functions", "lb_ingress", "switched_on"}, (
        f"locals keyed by function beside local.functions: {sorted(keyed)}"
    )
    assert set(tf.locals["lb_ingress"]) == {"collect"}  # DOCUMENTED: the load balancer's switch
    assert set(tf.locals["switched_on"]) == {"reconcile"}  # DOCUMENTED: the reconciliation job's switch
    # A switch only switches on what is optional: every other entry is deployed whatever it says.
    assert all(tf.locals["functions"][name]["optional"] is True for name in tf.locals["switched_on"])


def test_no_file_names_a_function_except_the_documented_platform_features(tf: Terraform) -> None:
    found = mentions(tf)
    undocumented = sorted(set(found) - set(DOCUMENTED))
    assert not undocumented, (
        f"named outside local.functions: {undocumented}. Derive it from the map, or document why in DOCUMENTED"
    )
    stale = sorted(set(DOCUMENTED) - set(found))
    assert not stale, f"DOCUMENTED lists mentions that are gone: {stale}"
    # The source added as one entry is named nowhere but in its entry.
    assert not [key for key in found if key[1] == "signed_orders"]


def test_variables_name_no_function(tf: Terraform) -> None:
    """Settings keyed by function are checked against the map (preconditions), not against a list in variables.tf."""
    text = (TERRAFORM_DIR / "variables.tf").read_text()
    for name in tf.locals["functions"]:
        assert f'"{name}"' not in text, name
    preconditions = [
        squash(p["condition"])
        for p in tf.resource("google_cloudfunctions2_function", "function")["lifecycle"][0]["precondition"]
    ]
    for variable in ("var.function_settings", "var.enabled_sources", "var.source_settings"):
        assert any(variable in p and "local.functions" in p for p in preconditions), variable


def _with_new_entry(tf: Terraform) -> Terraform:
    """The model with one more entry, shaped like the last source added (a copy of signed_orders, renamed)."""
    grown = copy.copy(tf)
    grown.locals = copy.deepcopy(tf.locals)
    entry = copy.deepcopy(grown.locals["functions"]["signed_orders"])
    entry["short_name"] = "demo"
    entry["entry_points"] = {"demo_source": {"entry_point": "demo_source"}}
    entry["settings"] = ["DEMO_SITE"]
    entry["secrets"] = {"demo-secret": {**entry["secrets"]["signed-orders-secret"], "env": "DEMO_SECRET"}}
    grown.locals["functions"]["demo_source"] = entry
    return grown


def test_one_entry_is_all_a_new_source_needs(tf: Terraform) -> None:
    grown = _with_new_entry(tf)
    # Optional: nothing of it by default.
    assert "demo_source" not in grown.view("deployed_folders")
    assert "demo_source" not in grown.instances(
        grown.resource("google_cloudfunctions2_function", "function")["for_each"]
    )
    assert "demo-secret" not in grown.view("secrets")
    # Enabled: a function with its bundle, identity, environment, secret, URL and service name.
    assert grown.view("deployed_functions", everything=True)["demo_source"]["folder"] == "demo_source"
    for address, for_each in {**PER_FUNCTION, **PER_FUNCTION_DATA}.items():
        keys = grown.instances(for_each, everything=True)
        if address[0].startswith("google_secret_manager"):
            assert "demo-secret" in keys, address
        else:
            assert "demo_source" in keys, address
    env = grown.view("function_env")["demo_source"]
    assert {"GOOGLE_CLOUD_PROJECT", "PUBSUB_TOPIC", "ORDER_MAX_EVENT_AGE_DAYS", "DEMO_SITE", "THREADS"} <= set(env)
    assert "DEMO_SECRET" not in env, "a secret is never a plain variable"
    assert grown.view("secrets", everything=True)["demo-secret"] == {**entry_secret(grown), "function": "demo_source"}
    service = f"{grown.variables['name_prefix']['default']}-demo-source"
    assert re.fullmatch(grown.render(grown.locals["service_pattern"]), service)
    alert = grown.locals["outcome_alerts"]["webhook_signatures"]["function_regex"]
    assert re.fullmatch(grown.render(alert), service), "its refused signatures raise the webhook alert"
    # Its identity holds exactly what a receiver needs, on exactly its own secret; anyone may call it.
    grants = {(g.role, g.target) for g in grown.grants() if g.principal == ("function", "demo_source")}
    assert grants == {
        ("roles/datastore.user", ("project",)),
        ("roles/pubsub.publisher", ("google_pubsub_topic", "module.events_push.topic")),
        ("roles/secretmanager.secretAccessor", ("google_secret_manager_secret", "secret", "demo-secret")),
    }
    public = {g.target for g in grown.grants() if g.principal == ("allUsers",)}
    assert ("google_cloudfunctions2_function", "function", "demo_source") in public


def entry_secret(tf: Terraform) -> dict[str, Any]:
    return tf.locals["functions"]["demo_source"]["secrets"]["demo-secret"]


@pytest.mark.parametrize("name", NAMES)
def test_each_entry_has_every_attribute_the_views_read(tf: Terraform, name: str) -> None:
    entry = tf.locals["functions"][name]
    assert set(entry) == {
        "short_name", "public_http", "publishes", "optional", "watch_rejections", "entry_points", "sizing",
        "env_from", "env", "settings", "secrets",
    }  # fmt: skip
    assert set(entry["env_from"]) <= set(tf.locals["shared_env"])
    for attribute in ("public_http", "publishes", "optional", "watch_rejections"):
        assert isinstance(entry[attribute], bool), f"{name}.{attribute}: a literal, so a reviewer sees it"
    for function, point in entry["entry_points"].items():
        assert point["entry_point"], function
        assert set(point) <= {"entry_point", "enabled", "public_http", "description", "runtime"}, function


def test_the_grep_a_reviewer_runs_finds_the_entry_alone() -> None:
    """`grep -rlE 'signed[_-]orders' --include=*.tf terraform` lists functions.tf only."""
    files = [p.name for p in TERRAFORM_DIR.rglob("*.tf") if re.search(r"signed[_-]orders", p.read_text())]
    assert files == ["functions.tf"], files
