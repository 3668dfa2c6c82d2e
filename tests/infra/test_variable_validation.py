"""Terraform's `validation` blocks catch bad settings at plan time, and the shipped examples pass them.

``terraform plan`` of a module holding only ``variables.tf`` evaluates every
validation block with no provider to download, so this runs offline in well
under a second per case.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT

TERRAFORM = shutil.which("terraform")
pytestmark = pytest.mark.skipif(TERRAFORM is None, reason="terraform is not installed")

PROJECT = "my-shop-tiktok"


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("variables-only")
    shutil.copy(ROOT / "terraform" / "variables.tf", folder / "variables.tf")
    subprocess.run([TERRAFORM, "init", "-input=false", "-no-color"], cwd=folder, check=True, capture_output=True)
    return folder


def plan(module: Path, *args: str, **variables: object) -> subprocess.CompletedProcess:
    values = {"project_id": PROJECT, **variables}
    flags = [f"-var={name}={value if isinstance(value, str) else json.dumps(value)}" for name, value in values.items()]
    return subprocess.run(
        [TERRAFORM, "plan", "-input=false", "-no-color", "-refresh=false", *args, *flags],
        cwd=module, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def refused(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result.stdout
    return " ".join(result.stderr.split())  # messages wrap


def tenants(**changes: object) -> str:
    document = {
        "pixels": {"CABC123": {"pixel_code": "CABC123", "consent_policy": "opt-in", "click_ttl_days": 7,
                               "allowed_origins": ["https://shop.example"]}},
        "shopify_shops": {"example.myshopify.com": {"domain": "example.myshopify.com", "pixel_code": "CABC123"}},
        "woocommerce_sites": {"https://woo.example": {"url": "https://woo.example", "pixel_code": "CABC123"}},
    }  # fmt: skip
    document.update(changes)
    return json.dumps(document)


def test_the_tfvars_example_passes_every_validation(module):
    result = plan(module, f"-var-file={ROOT / 'terraform' / 'terraform.tfvars.example'}")
    assert result.returncode == 0, result.stderr


def test_the_example_exposes_what_verifying_a_deployment_needs():
    example = (ROOT / "terraform" / "terraform.tfvars.example").read_text()
    for line in ("tiktok_test_event_code =", "include_test_orders    =", "# collect_trusted_proxy_hops ="):
        assert line in example


def test_the_readme_multi_tenant_example_passes(module):
    section = (ROOT / "README.md").read_text().split("### Several pixels and shops", 1)[1]
    document = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    result = plan(module, pipeline_tenants=json.dumps(document))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"consent_policy": "maybe"}, 'consent_policy must be "opt-in" or "opt-out"'),
        ({"pipeline_tenants": "{not json"}, 'must be a JSON object with a "pixels" member'),
        ({"pipeline_tenants": tenants(pixels={"CABC123": {"pixel_code": "CABC123", "consent_policy": "maybe"}})},
         'consent_policy of "opt-in" or "opt-out"'),
        ({"pipeline_tenants": tenants(pixels={"CABC123": {"pixel_code": "CABC123", "click_ttl_days": 90}})},
         "click_ttl_days must be a whole number from 1 to 28"),
        ({"pipeline_tenants": tenants(shopify_shops={"a.myshopify.com": {"domain": "a.myshopify.com",
                                                                         "pixel_code": "CNOPE"}})},
         "needs a pixel_code that is one of pipeline_tenants' pixels"),
        ({"pipeline_tenants": tenants(shopify_shops={"shop.example": {"domain": "shop.example",
                                                                      "pixel_code": "CABC123"}})},
         "*.myshopify.com domain"),
        ({"pipeline_tenants": tenants(pixels={"CABC123": {"pixel_code": "CABC123",
                                                          "allowed_origins": ["https://shop.example/"]}})},
         "each allowed origin scheme://host[:port]"),
        ({"collect_trusted_proxy_hops": 9}, "collect_trusted_proxy_hops must be a whole number from 0 to 5"),
        ({"click_ttl_days": 0}, "click_ttl_days must be a whole number from 1 to 28"),
        ({"tiktok_api_url": "http://insecure.example"}, "tiktok_api_url must be an https:// URL"),
        ({"reconcile_job": {"enabled": True, "schedule": "0 */12 * * *"}},
         "reconcile_job.schedule must run every hour"),
        ({"reconcile_job": {"schedule": "0 9 * * 1-5"}}, "reconcile_job.schedule must run every hour"),
        ({"reconcile_job": {"window_hours": 0}}, "reconcile_job.window_hours must be a whole number of hours"),
        ({"reconcile_job": {"window_hours": 673}}, "reconcile_job.window_hours must be a whole number of hours"),
        ({"reconcile_job": {"time_zone": "UTC+2 "}}, "reconcile_job.time_zone must be a tz database name"),
    ],
)  # fmt: skip
def test_a_bad_value_is_refused_at_plan_time_with_its_fix(module, variables, message):
    assert message in refused(plan(module, **variables))


def test_valid_tenants_and_proxy_hops_pass(module):
    result = plan(module, pipeline_tenants=tenants(), collect_trusted_proxy_hops=2, include_test_orders=True)
    assert result.returncode == 0, result.stderr


def test_the_reconcile_job_takes_any_subset_of_its_settings(module):
    result = plan(module, reconcile_job={"enabled": True})
    assert result.returncode == 0, result.stderr
    result = plan(module, reconcile_job={"enabled": True, "schedule": "15 */3 * * *", "time_zone": "Europe/Berlin",
                                         "window_hours": 168, "backfill": False, "repair": True})  # fmt: skip
    assert result.returncode == 0, result.stderr
