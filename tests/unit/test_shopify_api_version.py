"""Shopify's API version: the calendar in the repository, the default, the start-up warning and the header watch.

No test reads today's date: every check is given its day.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from shared.config import DEFAULT_SHOPIFY_API_VERSION, ConfigError
from shared.infra.metrics import COUNTERS
from shared.receive.shopify import api_version
from shared.receive.shopify.api_version import (
    CALENDAR_FILE,
    DIFFERS_COUNTER,
    UNSUPPORTED_COUNTER,
    CalendarError,
    VersionWatch,
    check_support,
    load_calendar,
    newest_released,
    parse_calendar,
    support_problem,
)
from shared.receive.shopify.runtime import Runtime
from shared.receive.shopify.settings import ShopifySettings

SHOP_ENV = {"TIKTOK_PIXEL_CODE": "PIX", "SHOPIFY_SHOP_DOMAIN": "shop.myshopify.com", "SHOPIFY_WEBHOOK_SECRET": "s"}


def warnings(capsys) -> list[dict]:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("severity") == "WARNING"]


def counted(name: str) -> int:
    return COUNTERS.snapshot().get(name, 0)


# --- the calendar --------------------------------------------------------------------------------


def test_the_calendar_lists_every_stable_version_since_2025_with_its_dates():
    calendar = load_calendar()
    assert [r.version for r in calendar][:8] == [
        "2025-01", "2025-04", "2025-07", "2025-10", "2026-01", "2026-04", "2026-07", "2026-10",
    ]  # fmt: skip
    assert calendar[3].released == dt.date(2025, 10, 1) and calendar[3].supported_until == dt.date(2026, 10, 1)


def test_the_calendar_is_sorted_and_each_version_follows_the_last_by_one_quarter():
    calendar = load_calendar()
    versions = [r.version for r in calendar]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    for release in calendar:
        assert release.released == dt.date(int(release.version[:4]), int(release.version[5:]), 1)
        assert release.supported_until >= release.released.replace(year=release.released.year + 1)


def test_the_default_api_version_is_the_newest_release_in_the_calendar():
    calendar = load_calendar()
    newest = calendar[-1]
    assert newest.version == DEFAULT_SHOPIFY_API_VERSION
    # The newest entry is released by its own release date: the calendar lists no future version.
    assert newest_released(calendar, newest.released) == newest
    assert ShopifySettings.from_env(SHOP_ENV).api_version == newest.version


def test_the_calendar_is_in_the_shared_package_so_every_bundle_carries_it():
    assert CALENDAR_FILE.parent.parent.name == "shared" and CALENDAR_FILE.is_file()


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({}, "non-empty \"versions\""),
        ({"versions": [{"version": "2026-10", "released": "2026-10-02", "supported_until": "2027-10-02"}]},
         "first day of its month"),
        ({"versions": [{"version": "2026-10", "released": "2026-10-01", "supported_until": "2027-06-01"}]},
         "under 12 months"),
        ({"versions": [{"version": "2026-07", "released": "2026-07-01", "supported_until": "2027-07-01"},
                       {"version": "2027-01", "released": "2027-01-01", "supported_until": "2028-01-01"}]},
         "does not follow 2026-07"),
        ({"versions": [{"version": "2026-11", "released": "2026-11-01", "supported_until": "2027-11-01"}]},
         "not a quarterly version"),
        ({"versions": [{"version": "2026-10"}]}, "needs version, released and supported_until"),
    ],
)  # fmt: skip
def test_an_inconsistent_calendar_is_refused_naming_the_entry(document, problem):
    with pytest.raises(CalendarError, match=problem):
        parse_calendar(document)


# --- the support window, with injected dates -----------------------------------------------------


def test_a_version_inside_its_window_has_no_problem():
    calendar = load_calendar()
    assert support_problem("2025-10", dt.date(2026, 9, 30), calendar) is None


def test_a_version_past_its_window_names_the_end_and_the_version_to_use():
    problem = support_problem("2025-10", dt.date(2026, 12, 7), load_calendar())
    assert problem is not None
    assert "2025-10 left Shopify's support window on 2026-10-01" in problem
    assert "set shopify_api_version (SHOPIFY_API_VERSION) to 2026-10" in problem


def test_the_window_ends_on_its_last_day():
    calendar = load_calendar()
    assert support_problem("2025-10", dt.date(2026, 10, 1), calendar) is not None


def test_the_advised_version_is_the_newest_released_on_that_day():
    problem = support_problem("2025-04", dt.date(2026, 5, 1), load_calendar())
    assert problem is not None and "to 2026-04 " in problem


def test_a_version_older_than_the_calendar_is_out_of_support_and_a_newer_one_is_not_judged():
    calendar = load_calendar()
    assert "older than every version" in (support_problem("2024-10", dt.date(2025, 6, 1), calendar) or "")
    assert support_problem("2099-01", dt.date(2026, 12, 7), calendar) is None


def test_the_start_up_check_logs_one_warning_and_counts_it(capsys):
    before = counted(UNSUPPORTED_COUNTER)
    assert check_support("2025-10", dt.date(2026, 12, 7))
    [line] = warnings(capsys)
    assert line["message"] == "Shopify API version out of support" and line["api_version"] == "2025-10"
    assert counted(UNSUPPORTED_COUNTER) == before + 1


def test_the_start_up_check_is_silent_for_a_supported_version(capsys):
    before = counted(UNSUPPORTED_COUNTER)
    assert check_support("2026-10", dt.date(2026, 12, 7)) is None
    assert warnings(capsys) == [] and counted(UNSUPPORTED_COUNTER) == before


def test_an_unreadable_calendar_is_a_warning_not_a_failed_start(tmp_path: Path, capsys):
    broken = tmp_path / "calendar.json"
    broken.write_text("{not json")
    assert check_support("2025-10", dt.date(2026, 12, 7), broken) is None
    [line] = warnings(capsys)
    assert line["message"] == "the Shopify API version calendar is unreadable"


def test_the_runtime_checks_the_configured_version_once_at_start(capsys):
    before = counted(UNSUPPORTED_COUNTER)
    runtime = Runtime.from_env({**SHOP_ENV, "SHOPIFY_API_VERSION": "2025-07"}, today=dt.date(2026, 12, 7))
    assert runtime.api_versions.configured == "2025-07"
    [line] = warnings(capsys)
    assert line["api_version"] == "2025-07" and "2026-07-01" in line["reason"]
    assert counted(UNSUPPORTED_COUNTER) == before + 1
    Runtime.from_env({**SHOP_ENV, "SHOPIFY_API_VERSION": "2026-10"}, today=dt.date(2026, 12, 7))
    assert warnings(capsys) == []


def test_a_version_that_is_not_a_quarterly_release_is_refused_naming_the_variable():
    with pytest.raises(ConfigError, match="SHOPIFY_API_VERSION"):
        ShopifySettings.from_env({**SHOP_ENV, "SHOPIFY_API_VERSION": "2026-11"})


# --- X-Shopify-API-Version -----------------------------------------------------------------------


def test_a_different_header_version_is_logged_once_per_value_and_counted_each_time(capsys):
    watch = VersionWatch("2026-10")
    before = counted(DIFFERS_COUNTER)
    assert [watch.observe(v) for v in ("2026-10", None, "2026-07", "2026-07", "2026-04")] == [
        False, False, True, False, True,
    ]  # fmt: skip
    lines = warnings(capsys)
    assert [(line["api_version"], line["configured_api_version"]) for line in lines] == [
        ("2026-07", "2026-10"), ("2026-04", "2026-10"),
    ]  # fmt: skip
    assert counted(DIFFERS_COUNTER) == before + 3


def test_the_versions_one_instance_logs_are_bounded(capsys):
    watch = VersionWatch("2026-10", limit=2)
    logged = [watch.observe(f"2020-0{n}") for n in range(1, 6)]
    assert logged == [True, True, False, False, False]
    assert len(warnings(capsys)) == 2


def test_the_module_names_the_file_terraform_reads():
    assert api_version.CALENDAR_FILE.as_posix().endswith("shared/data/shopify_api_versions.json")
