"""Terraform refuses a browser-purchase setting the collect function would refuse at start."""

from __future__ import annotations

import pytest

from tests.infra.test_variable_validation import TERRAFORM, module, plan, refused, tenants  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(TERRAFORM is None, reason="terraform is not installed")


def pixel(**settings: object) -> str:
    return tenants(pixels={"CABC123": {"pixel_code": "CABC123", **settings}})


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"pipeline_tenants": pixel(browser_purchases=True)}, "with true it needs a browser_purchase_max_value"),
        ({"pipeline_tenants": pixel(browser_purchases=True, browser_purchase_max_value=0)},
         "above 0 and at most 1e15"),
        ({"pipeline_tenants": pixel(browser_purchases=True, browser_purchase_max_value=1e16)},
         "above 0 and at most 1e15"),
        ({"pipeline_tenants": pixel(browser_purchases="maybe", browser_purchase_max_value=500)},
         "browser_purchases must be true or false"),
        ({"collect_browser_purchase_max_value": -5}, "collect_browser_purchase_max_value must be above 0"),
        ({"collect_browser_purchase_max_value": 1e16}, "collect_browser_purchase_max_value must be above 0"),
    ],
)  # fmt: skip
def test_a_browser_purchase_setting_without_a_sane_maximum_is_refused_at_plan_time(module, variables, message):  # noqa: F811
    assert message in refused(plan(module, **variables))


@pytest.mark.parametrize(
    "variables",
    [
        {"pipeline_tenants": pixel(browser_purchases=True, browser_purchase_max_value=500)},
        {"pipeline_tenants": pixel(browser_purchases=False)},
        {"pipeline_tenants": pixel()},
        {"collect_browser_purchase_max_value": 750},
    ],
)
def test_browser_purchases_off_or_bounded_pass(module, variables):  # noqa: F811
    result = plan(module, **variables)
    assert result.returncode == 0, result.stderr
