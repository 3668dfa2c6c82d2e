"""terraform/ against the google and archive providers' real schemas, offline (what `terraform validate` would say)."""

from __future__ import annotations

import importlib.util
import textwrap
import time

import pytest

from tests.infra.conftest import ROOT, TERRAFORM_DIR
from tests.infra.provider_schema import (
    SCHEMA_FILE,
    Finding,
    check_directory,
    check_texts,
    declared,
    load_schema,
    pinned_providers,
    satisfies,
)


def _findings(hcl: str, file: str = "planted.tf") -> list[Finding]:
    return check_texts({file: textwrap.dedent(hcl)})


def _only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, "\n".join(map(str, findings)) or "no finding"
    return findings[0]


# A subscription as terraform/pubsub.tf writes one, correct as given.
SUBSCRIPTION = """
resource "google_pubsub_subscription" "sender_push" {
  name  = "events-sender"
  topic = google_pubsub_topic.events.id

  push_config {
    push_endpoint = "https://example.test/"
    oidc_token {
      service_account_email = google_service_account.push.email
    }
  }

  lifecycle {
    create_before_destroy = true
  }
  depends_on = [google_pubsub_topic.events]
}
"""


def test_bundled_schema_was_generated_from_the_provider_versions_pinned_in_versions_tf() -> None:
    pins = pinned_providers((TERRAFORM_DIR / "versions.tf").read_text())
    providers = load_schema()["providers"]
    assert set(pins) <= set(providers), f"versions.tf pins {sorted(pins)}, the bundled schema has {sorted(providers)}"
    for name, pin in pins.items():
        bundled = providers[name]
        assert pin["source"] == bundled["source"], (
            f"{name}: versions.tf says {pin['source']}, the schema is of {bundled['source']}"
        )
        assert satisfies(bundled["version"], pin["version"]), (
            f"{name}: the bundled schema is of {bundled['source']} {bundled['version']}, outside versions.tf's "
            f"{pin['version']!r}: pick the matching cdktn-provider-{name} release in scripts/provider_schema.py "
            "and rerun it"
        )


def test_every_resource_and_data_source_in_terraform_conforms_to_the_provider_schema() -> None:
    started = time.perf_counter()
    findings = check_directory(TERRAFORM_DIR)
    elapsed = time.perf_counter() - started
    assert not findings, "terraform/ does not match the provider schema:\n" + "\n".join(map(str, findings))
    checked = sum(len(declared(p.read_text())) for p in TERRAFORM_DIR.rglob("*.tf"))
    assert checked >= 30, f"only {checked} resource/data blocks found in terraform/: is the parser still reading it?"
    assert elapsed < 5, f"the schema check took {elapsed:.1f} s"


def test_the_correct_sample_passes() -> None:
    assert _findings(SUBSCRIPTION) == []


def test_a_misspelled_argument_is_reported_with_file_line_resource_and_argument() -> None:
    # The misspelling also leaves the required `topic` missing: both are reported.
    findings = _findings(SUBSCRIPTION.replace("  topic = ", "  topc = "), "pubsub.tf")
    messages = [str(f) for f in findings]
    assert (
        "terraform/pubsub.tf:4: google_pubsub_subscription.sender_push.topc: "
        "unsupported argument 'topc' (did you mean 'topic'?)" in messages
    )
    assert (
        "terraform/pubsub.tf:2: google_pubsub_subscription.sender_push: missing required argument 'topic'" in messages
    )
    assert len(findings) == 2, messages


def test_a_misspelled_argument_in_a_nested_block_is_reported() -> None:
    finding = _only(_findings(SUBSCRIPTION.replace("push_endpoint = ", 'push_endpoint = "x"\n    push_endpont = ')))
    assert (finding.address, finding.path) == ("google_pubsub_subscription.sender_push", "push_config.push_endpont")
    assert "did you mean 'push_endpoint'" in finding.message
    assert finding.line == 8


def test_a_missing_required_argument_is_reported() -> None:
    finding = _only(_findings(SUBSCRIPTION.replace('  name  = "events-sender"\n', ""), "pubsub.tf"))
    assert (
        str(finding)
        == "terraform/pubsub.tf:2: google_pubsub_subscription.sender_push: missing required argument 'name'"
    )


def test_a_missing_required_argument_of_a_nested_block_is_reported() -> None:
    finding = _only(
        _findings(SUBSCRIPTION.replace("service_account_email = google_service_account.push.email", 'audience = "x"'))
    )
    assert finding.path == "push_config.oidc_token"
    assert finding.message == "missing required argument 'service_account_email'"


def test_a_nested_block_at_the_wrong_depth_is_reported() -> None:
    # oidc_token belongs inside push_config, not directly in the subscription.
    wrong = SUBSCRIPTION.replace(
        "  lifecycle {",
        "  oidc_token {\n    service_account_email = google_service_account.push.email\n  }\n  lifecycle {",
    )
    finding = _only(_findings(wrong, "pubsub.tf"))
    assert finding.file == "pubsub.tf"
    assert finding.address == "google_pubsub_subscription.sender_push"
    assert finding.path == "oidc_token"
    assert finding.message == "unsupported block 'oidc_token'"
    assert finding.line == 13


def test_a_block_written_as_an_argument_and_an_argument_written_as_a_block_are_reported() -> None:
    wrong = SUBSCRIPTION.replace("  push_config {", "  retry_policy = {}\n  topic_x {\n  }\n  push_config {").replace(
        'name  = "events-sender"', "name {\n  }"
    )
    messages = {f.path: f.message for f in _findings(wrong)}
    assert messages["retry_policy"] == "'retry_policy' is a block, not an argument: write `retry_policy { ... }`"
    assert messages["name"] == "'name' is an argument, not a block: write `name = ...`"
    assert messages["topic_x"].startswith("unsupported block 'topic_x'")


def test_setting_a_read_only_attribute_is_reported() -> None:
    finding = _only(_findings(SUBSCRIPTION.replace("  depends_on", "  effective_labels = {}\n  depends_on")))
    assert finding.path == "effective_labels"
    assert finding.message == "'effective_labels' is read-only (computed by the provider): it cannot be set"


def test_an_unknown_resource_type_and_data_source_are_reported() -> None:
    findings = _findings(
        SUBSCRIPTION.replace("google_pubsub_subscription", "google_pubsub_subscriptions")
        + 'data "google_projects_x" "this" {}\n'
    )
    assert [(f.address, f.message) for f in findings] == [
        (
            "google_pubsub_subscriptions.sender_push",
            "unknown resource type 'google_pubsub_subscriptions' (did you mean 'google_pubsub_subscription'?)",
        ),
        ("data.google_projects_x.this", "unknown data source 'google_projects_x' (did you mean 'google_projects'?)"),
    ]


def test_a_provider_without_a_bundled_schema_is_reported_not_skipped() -> None:
    finding = _only(_findings('resource "aws_s3_bucket" "b" {\n  bucket = "x"\n}\n'))
    assert "no schema bundled for provider 'aws'" in finding.message


ALERT = """
resource "google_monitoring_alert_policy" "outcome" {
  for_each     = local.alerts
  display_name = each.key
  combiner     = "OR"

  dynamic "conditions" {
    for_each = each.value.conditions
    content {
      display_name = conditions.key
      condition_threshold {
        filter     = conditions.value
        comparison = "COMPARISON_GT"
        duration   = "0s"
      }
    }
  }
  provider = google
}
"""


def test_a_required_block_given_through_a_dynamic_block_counts_and_its_content_is_checked() -> None:
    assert _findings(ALERT) == []
    findings = _findings(ALERT.replace('comparison = "COMPARISON_GT"', 'comparsion = "COMPARISON_GT"'))
    assert [(f.line, f.path, f.message) for f in findings] == [
        (
            13,
            "conditions.condition_threshold.comparsion",
            "unsupported argument 'comparsion' (did you mean 'comparison'?)",
        ),
        (11, "conditions.condition_threshold", "missing required argument 'comparison'"),
    ]
    finding = _only(_findings(ALERT.replace("      display_name = conditions.key\n", "")))
    assert (finding.path, finding.message) == ("conditions", "missing required argument 'display_name'")


def test_a_missing_required_block_and_a_dynamic_block_of_an_unknown_type_are_reported() -> None:
    findings = _findings(ALERT.replace('dynamic "conditions"', 'dynamic "condition"'))
    assert [f.message for f in findings] == [
        "dynamic block of unsupported block type 'condition' (did you mean 'conditions'?)",
        "missing required block 'conditions'",
    ]


def test_the_provider_block_is_checked_too() -> None:
    provider = 'provider "google" {\n  project = var.project_id\n  alias = "eu"\n  default_labels = {}\n}\n'
    assert _findings(provider) == []
    finding = _only(_findings(provider.replace("project =", "projet =")))
    assert str(finding) == (
        "terraform/planted.tf:2: provider.google.projet: unsupported argument 'projet' (did you mean 'project'?)"
    )


def test_lifecycle_arguments_are_checked_too() -> None:
    finding = _only(_findings(SUBSCRIPTION.replace("create_before_destroy", "create_before_destory")))
    assert (finding.path, finding.message) == (
        "lifecycle.create_before_destory",
        "unsupported argument 'create_before_destory' (did you mean 'create_before_destroy'?)",
    )


def test_the_archive_provider_is_checked_as_well() -> None:
    good = """
    data "archive_file" "b" {
      type        = "zip"
      output_path = "x.zip"
      source {
        content  = "x"
        filename = "a"
      }
    }
    """
    assert _findings(good) == []
    findings = _findings(good.replace("filename", "file_name"))
    assert [(f.address, f.path, f.message) for f in findings] == [
        ("data.archive_file.b", "source.file_name", "unsupported argument 'file_name' (did you mean 'filename'?)"),
        ("data.archive_file.b", "source", "missing required argument 'filename'"),
    ]


@pytest.mark.parametrize(
    ("version", "constraint", "expected"),
    [
        ("7.46.1", "~> 7.0", True),
        ("8.0.0", "~> 7.0", False),
        ("6.9.0", "~> 7.0", False),
        ("2.8.1", "~> 2.4", True),
        ("2.3.0", "~> 2.4", False),
        ("2.4.9", "~> 2.4.1", True),
        ("2.5.0", "~> 2.4.1", False),
        ("1.9.0", ">= 1.5, < 2", True),
        ("2.0.0", ">= 1.5, < 2", False),
    ],
)
def test_version_constraints_follow_terraform(version: str, constraint: str, expected: bool) -> None:
    assert satisfies(version, constraint) is expected


def test_the_committed_schema_is_compact() -> None:
    assert SCHEMA_FILE.stat().st_size < 1_000_000, "keep tests/infra/provider_schema.json.gz small"


def _extractor():
    spec = importlib.util.spec_from_file_location("provider_schema_extractor", ROOT / "scripts" / "provider_schema.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DOCS = "https://registry.terraform.io/providers/hashicorp/google/7.1.0/docs"


def _prop(name: str, type_ref: dict, anchor: str | None = None, optional: bool = True, block: bool = False) -> dict:
    summary = f"{anchor} block." if block else "Some argument."
    remarks = f"Docs at Terraform Registry: {{@link {DOCS}/resources/x_thing#{anchor} XThing#{anchor}}}"
    return {"name": name, "optional": optional, "type": type_ref, "docs": {"summary": summary, "remarks": remarks}}


def test_the_extractor_reads_arguments_nested_blocks_and_read_only_attributes_from_a_jsii_assembly() -> None:
    p = "@cdktn/provider-google.xThing."
    assembly = {
        "types": {
            p + "XThing": {
                "kind": "class",
                "base": "cdktn.TerraformResource",
                "docs": {"summary": f"Represents a {{@link {DOCS}/resources/x_thing google_x_thing}}."},
                "initializer": {
                    "parameters": [{"name": "scope"}, {"name": "config", "type": {"fqn": p + "XThingConfig"}}]
                },
                "properties": [
                    {"name": "tfResourceType", "static": True},
                    {"name": "displayName"},
                    {"name": "displayNameInput"},
                    {"name": "selfLink"},
                    {"name": "pushConfig"},
                    {"name": "pushConfigInput"},
                ],
            },
            p + "XThingConfig": {
                "kind": "interface",
                "properties": [
                    _prop("displayName", {"primitive": "string"}, "display_name", optional=False),
                    _prop("ipv6Range", {"primitive": "string"}, "ipv6_range"),
                    _prop(
                        "pushConfig",
                        {
                            "union": {
                                "types": [
                                    {"fqn": "cdktn.IResolvable"},
                                    {"collection": {"kind": "array", "elementtype": {"fqn": p + "XThingPushConfig"}}},
                                ]
                            }
                        },
                        "push_config",
                        optional=False,
                        block=True,
                    ),
                ],
            },
            p + "XThingPushConfig": {
                "kind": "interface",
                "properties": [_prop("endpoint", {"primitive": "string"}, "endpoint")],
            },
            p + "XThingPushConfigOutputReference": {
                "kind": "class",
                "properties": [
                    {"name": "endpoint"},
                    {"name": "endpointInput"},
                    {"name": "internalValue"},
                    {"name": "uri"},
                ],
            },
        }
    }
    extracted = _extractor().extract(assembly)
    assert extracted["source"] == "hashicorp/google" and extracted["version"] == "7.1.0"
    assert extracted["resource"] == {
        "google_x_thing": {
            "attributes": {"display_name": "required", "ipv6_range": "optional", "self_link": "computed"},
            "blocks": {"push_config": {"required": True, "attributes": {"endpoint": "optional", "uri": "computed"}}},
        }
    }
    assert extracted["data"] == {}
    assert extracted["provider"] == {}
