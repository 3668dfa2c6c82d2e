"""Terraform and the Shopify function read one release calendar; the generated shopify.app.toml is valid TOML.

The plan-time check is run for real (``terraform plan`` of the variables and the
check alone, offline) with versions whose verdict no date can change: one that
left support in 2026 and one newer than the calendar.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
import tomllib
from pathlib import Path

import pytest

from shared.config import DEFAULT_SHOPIFY_API_VERSION
from shared.receive.shopify.api_version import CALENDAR_FILE, load_calendar
from shared.receive.shopify.request import PRIVACY_TOPICS
from shared.receive.shopify.routing import TOPICS
from tests.infra.conftest import TERRAFORM_DIR
from tests.infra.hcl import Terraform, squash

TERRAFORM = shutil.which("terraform")


def test_terraforms_default_is_the_calendars_newest_release_and_the_codes(tf: Terraform) -> None:
    newest = load_calendar()[-1].version
    assert tf.variables["shopify_api_version"]["default"] == newest == DEFAULT_SHOPIFY_API_VERSION


def test_the_check_block_reads_the_calendar_the_function_bundle_carries(tf: Terraform) -> None:
    text = tf.raw["shopify_api_version.tf"]
    read = re.search(r'file\("\$\{path\.module\}/([^"]+)"\)', squash(tf.locals["shopify_api_calendar"]))
    assert read, f"local.shopify_api_calendar does not read a file: {tf.locals['shopify_api_calendar']}"
    assert (TERRAFORM_DIR / read[1]).resolve() == CALENDAR_FILE.resolve()
    assert squash(tf.locals["shopify_api_calendar"]).startswith("jsondecode(file(")
    assert 'check "shopify_api_version_supported"' in text
    condition = squash(text.split('check "shopify_api_version_supported"', 1)[1])
    assert "timecmp(plantimestamp()," in condition and "local.shopify_api_supported_until" in condition


def test_the_function_is_told_the_configured_version(tf: Terraform) -> None:
    assert squash(tf.view("function_env")["shopify_webhook"]["SHOPIFY_API_VERSION"]) == "var.shopify_api_version"


def _plan_check(tmp_path: Path, version: str) -> subprocess.CompletedProcess:
    module = tmp_path / "terraform"
    module.mkdir()
    for name in ("variables.tf", "shopify_api_version.tf"):
        shutil.copy(TERRAFORM_DIR / name, module / name)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    shutil.copy(CALENDAR_FILE, tmp_path / "shared" / "data" / CALENDAR_FILE.name)
    subprocess.run([TERRAFORM, "init", "-input=false", "-no-color"], cwd=module, check=True, capture_output=True)
    return subprocess.run(
        [TERRAFORM, "plan", "-input=false", "-no-color", "-refresh=false", "-var=project_id=my-shop-tiktok",
         f"-var=shopify_api_version={version}"],
        cwd=module, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.skipif(TERRAFORM is None, reason="terraform is not installed")
def test_a_plan_warns_about_a_version_past_its_support_window(tmp_path: Path) -> None:
    result = _plan_check(tmp_path, "2025-01")
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, "the check warns, it never stops a plan"
    assert "Check block assertion failed" in output
    assert "shopify_api_version 2025-01 is past Shopify's support window (supported until 2026-01-01" in output
    assert f'Set shopify_api_version = "{load_calendar()[-1].version}"' in output


@pytest.mark.skipif(TERRAFORM is None, reason="terraform is not installed")
def test_a_plan_does_not_judge_a_version_newer_than_the_calendar(tmp_path: Path) -> None:
    result = _plan_check(tmp_path, "2099-01")
    assert result.returncode == 0 and "Check block assertion failed" not in result.stdout + result.stderr


# --- the generated shopify.app.toml ------------------------------------------------------------------


def _render(template: str, values: dict[str, str]) -> str:
    """What Terraform prints for a `<<-EOT` heredoc, with each ${expression} replaced by its value in ``values``."""
    assert template.startswith("<<-EOT\n") and template.rstrip().endswith("EOT"), template[:40]
    template = textwrap.dedent(template.removeprefix("<<-EOT\n").rstrip().removesuffix("EOT"))

    def value(match: re.Match) -> str:
        expression = squash(match[1])
        assert expression in values, f"shopify_app_toml uses ${{{match[1]}}}, which this test does not render"
        return values[expression]

    return re.sub(r"\$\{([^}]*)\}", value, template)


def test_shopify_app_toml_is_valid_toml_with_the_topics_the_code_handles(tf: Terraform) -> None:
    template = tf.outputs["shopify_app_toml"]["value"]
    topics = tf.variables["shopify_webhook_topics"]["default"]
    assert "orders/paid" in topics and set(topics) <= TOPICS, "every subscribed topic must be one the function plans"
    url = "https://tiktok-shopify-webhook-abc-ew.a.run.app"
    rendered = _render(template, {
        "local.shopify_toml_scopes": "read_orders",
        "var.shopify_api_version": "2026-10",
        "local.shopify_toml_topics": ", ".join(f'"{t}"' for t in topics),
        "local.shopify_toml_uri": url,
        "local.shopify_toml_compliance": ", ".join(f'"{t}"' for t in tf.locals["shopify_compliance_topics"]),
        'local.function_urls["shopify_webhook"]': url,
    })  # fmt: skip
    document = tomllib.loads(rendered)
    assert document["access_scopes"] == {"scopes": "read_orders"}
    webhooks = document["webhooks"]
    assert webhooks["api_version"] == "2026-10"
    orders, privacy = webhooks["subscriptions"]
    assert orders == {"topics": topics, "uri": url}
    assert privacy == {"compliance_topics": sorted(PRIVACY_TOPICS), "uri": url}
    assert set(tf.locals["shopify_compliance_topics"]) == PRIVACY_TOPICS


def test_shopify_app_toml_points_orders_at_pubsub_when_it_is_on_and_privacy_at_https(tf: Terraform) -> None:
    assert squash(tf.locals["shopify_toml_uri"]) == squash(
        'var.shopify_pubsub_enabled ? local.shopify_pubsub_uri : local.function_urls["shopify_webhook"]'
    )
    assert squash(tf.locals["shopify_pubsub_uri"]).startswith(
        squash('var.shopify_pubsub_enabled ? "pubsub://${var.project_id}:${module.shopify_push[0].topic_name}"')
    )
    assert "read_orders" in tf.locals["shopify_toml_scopes"]
