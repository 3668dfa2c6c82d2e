"""The reconciliation job as Terraform deploys it: opt-in, internal, called by Cloud Scheduler alone, watched.

Off unless ``reconcile_job.enabled``: without the shops' API credentials it would fail every run. When on:
the reconcile folder's entry of ``local.functions`` (identity, grants, secrets, bundle like any function),
internal ingress, one run at a time; a Cloud Scheduler job that POSTs to it with an OIDC token of an identity
that may invoke that one service and nothing else, and waits at least as long as the function may run; the
alerts and the dashboard chart read the one line per run that ``shared/reconcile/function.py`` writes, so
that line is produced here by the code itself and every filter is evaluated against it.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import subprocess
from collections import Counter
from contextlib import redirect_stdout
from typing import Any

import pytest

from shared.reconcile import Webhook
from shared.reconcile.compare import MISSING, STATES
from shared.reconcile.function import JOB_FIELD, LOG_MESSAGE, log_run
from shared.reconcile.job import Run, ShopResult, shops
from shared.reconcile.settings import ReconcileSettings
from tests.infra.hcl import Expr, Terraform, squash
from tests.infra.test_monitoring import service_names

FUNCTION = ("google_cloudfunctions2_function", "function")
COUNT = "var.reconcile_job.enabled ? 1 : 0"
# Everything around the function that exists only while the job is enabled.
COUNTED = [
    ("google_service_account", "scheduler"),
    ("google_cloud_run_service_iam_member", "scheduler_invoker"),
    ("google_cloud_scheduler_job", "reconcile"),
    ("google_monitoring_alert_policy", "reconcile_job"),
]
# Cloud Run functions (gen2): an HTTP function runs at most 60 minutes. Cloud Scheduler: an HTTP target's
# attempt_deadline is 15 s to 30 minutes. Cloud Monitoring: metric absence is watched for 23.5 hours at most.
HTTP_FUNCTION_MAX_TIMEOUT = 3600
SCHEDULER_HTTP_MAX_DEADLINE = 1800
ABSENCE_MAX_SECONDS = 84_600
SECRET_IDS = {"shopify-admin-token", "shopify-client-secret", "woocommerce-api-key", "woocommerce-api-secret"}


def ref(expression: object) -> str:
    return squash(str(expression))


def entry(tf: Terraform) -> dict[str, Any]:
    return tf.locals["functions"]["reconcile"]


def defaults(tf: Terraform) -> dict[str, Any]:
    return tf.variables["reconcile_job"]["default"]


def job(tf: Terraform) -> dict[str, Any]:
    return tf.resource("google_cloud_scheduler_job", "reconcile")


def function_timeout(tf: Terraform) -> int:
    return entry(tf)["sizing"]["timeout_seconds"]


def attempt_deadline(tf: Terraform, timeout: int) -> int:
    """local.reconcile_attempt_deadline for a function timeout, as Terraform computes it."""
    assert ref(tf.locals["reconcile_attempt_deadline"]) == (
        "min(local.function_runtime.reconcile.timeout_seconds+60,local.reconcile_deadline_max_seconds)"
    )
    assert tf.locals["reconcile_deadline_max_seconds"] == SCHEDULER_HTTP_MAX_DEADLINE
    return min(timeout + 60, SCHEDULER_HTTP_MAX_DEADLINE)


def period_hours(tf: Terraform, schedule: str) -> int:
    """local.reconcile_period_hours for a schedule, as Terraform computes it (regex, else 1)."""
    expression = str(tf.locals["reconcile_period_hours"])  # not squashed: the pattern's spaces matter
    m = re.fullmatch(r'try\(tonumber\(regex\("(.+)",\s*var\.reconcile_job\.schedule\)\[0\]\),\s*1\)', expression)
    assert m, expression
    found = re.search(m[1].replace("\\\\", "\\"), schedule)
    return int(found[1]) if found else 1


def schedule_is_valid(tf: Terraform, schedule: str) -> bool:
    (validation,) = [v for v in tf.variables["reconcile_job"]["validation"] if "schedule" in v["condition"]]
    m = re.fullmatch(r'can\(regex\("(.+)",\s*var\.reconcile_job\.schedule\)\)', str(validation["condition"]))
    assert m, validation["condition"]
    return re.search(m[1].replace("\\\\", "\\"), schedule) is not None


# --------------------------------------------------------------------------
# Opt-in
# --------------------------------------------------------------------------


def test_nothing_of_the_job_is_deployed_unless_enabled(tf: Terraform) -> None:
    assert defaults(tf)["enabled"] is False
    assert ref(tf.locals["switched_on"]["reconcile"]) == "var.reconcile_job.enabled"
    assert entry(tf)["optional"] is True, "a switch only switches on an optional entry"
    # The function with its identity, grants, secrets and bundle: only when switched on.
    for view in ("deployed_folders", "deployed_functions"):
        assert "reconcile" not in tf.view(view), view
        assert "reconcile" in tf.view(view, everything=True), view
    assert not SECRET_IDS & set(tf.view("secrets")), "a merchant without the job is asked for no credential"
    assert set(tf.view("secrets", everything=True)) >= SECRET_IDS
    # What surrounds it: counted by the same switch.
    for address in COUNTED:
        assert ref(tf.resource(*address).get("count")) == squash(COUNT), address
    alerts = tf.resource("google_monitoring_alert_policy", "reconcile_gap")
    assert ref(alerts["for_each"]) == squash(
        "{for field, gap in local.reconcile_gaps : field => gap if var.reconcile_job.enabled}"
    )
    # Cloud Scheduler's API is enabled with it (apis.tf).
    assert 'var.reconcile_job.enabled?["cloudscheduler.googleapis.com"]:[]' in squash(tf.locals["services"])


def test_the_switch_is_the_jobs_own_variable_not_enabled_sources(tf: Terraform) -> None:
    preconditions = [squash(p["condition"]) for p in tf.resource(*FUNCTION)["lifecycle"][0]["precondition"]]
    assert any("var.enabled_sources" in p and "!contains(keys(local.switched_on),name)" in p for p in preconditions)


def test_the_variables_defaults_are_the_codes_and_its_bounds_too(tf: Terraform) -> None:
    variable = tf.variables["reconcile_job"]
    # The type's optional() defaults and the written default agree, so `{ enabled = true }` is the same job.
    declared = dict(re.findall(r"(\w+)\s*=\s*optional\(\w+,\s*([^()]+?)\)", str(variable["type"])))
    assert {k: json.loads(v) for k, v in declared.items()} == defaults(tf)
    fields = ReconcileSettings.model_fields
    assert defaults(tf)["window_hours"] == fields["window_hours"].default
    assert defaults(tf)["backfill"] is fields["backfill"].default
    assert defaults(tf)["repair"] is fields["repair"].default
    bounds = {type(m).__name__: m for m in fields["window_hours"].metadata}
    condition = next(squash(v["condition"]) for v in variable["validation"] if "window_hours" in v["condition"])
    assert f"var.reconcile_job.window_hours>={bounds['Ge'].ge}" in condition
    assert f"var.reconcile_job.window_hours<={bounds['Le'].le}" in condition
    # The plain environment carries them to the settings class.
    env = tf.view("function_env")["reconcile"]
    assert ref(env["RECONCILE_WINDOW_HOURS"]) == "tostring(var.reconcile_job.window_hours)"
    assert ref(env["RECONCILE_BACKFILL"]) == "tostring(var.reconcile_job.backfill)"
    assert ref(env["RECONCILE_REPAIR"]) == "tostring(var.reconcile_job.repair)"


@pytest.mark.parametrize(
    ("schedule", "valid", "hours"),
    [("0 * * * *", True, 1), ("15 */3 * * *", True, 3), ("59 */11 * * *", True, 11), ("0 */12 * * *", False, None),
     ("0 9 * * *", False, None), ("*/30 * * * *", False, None), ("0 * * * 1-5", False, None)],
)  # fmt: skip
def test_the_schedule_runs_every_hour_or_every_n_hours(tf: Terraform, schedule: str, valid: bool, hours: int) -> None:
    assert schedule_is_valid(tf, schedule) is valid
    if valid:
        assert period_hours(tf, schedule) == hours
        # The job-not-running alert waits twice the period, within what Cloud Monitoring can watch.
        assert 2 * hours * 3600 <= ABSENCE_MAX_SECONDS


def test_the_window_covers_the_time_between_two_runs(tf: Terraform) -> None:
    preconditions = [squash(p["condition"]) for p in job(tf)["lifecycle"][0]["precondition"]]
    assert "var.reconcile_job.window_hours>=local.reconcile_period_hours" in preconditions
    assert defaults(tf)["window_hours"] >= period_hours(tf, defaults(tf)["schedule"])


# --------------------------------------------------------------------------
# The function: internal, one run at a time, its environment and secrets
# --------------------------------------------------------------------------


def test_the_function_is_internal_and_runs_one_job_at_a_time(tf: Terraform) -> None:
    fn = entry(tf)
    assert fn["public_http"] is False and fn["watch_rejections"] is False
    assert fn["entry_points"] == {"reconcile": {"entry_point": "reconcile"}}
    sizing = fn["sizing"]
    assert sizing["ingress_settings"] == "ALLOW_INTERNAL_ONLY", "only Cloud Scheduler (same project) reaches it"
    assert sizing["max_instance_count"] == 1 and sizing["max_instance_request_concurrency"] == 1
    assert sizing["min_instance_count"] == 0 and sizing["available_memory"] == "512Mi"
    assert 60 <= sizing["timeout_seconds"] <= HTTP_FUNCTION_MAX_TIMEOUT


def test_its_run_line_is_written_whatever_the_log_level(tf: Terraform) -> None:
    """The job-not-running alert waits for an INFO line: a quieter log_level must not silence it."""
    env = tf.view("function_env")["reconcile"]
    assert ref(env["LOG_LEVEL"]) == 'var.log_level=="DEBUG"?"DEBUG":"INFO"'
    assert run_line(a_run())["severity"] == "INFO"


def test_single_tenant_shops_reach_the_job_as_the_webhooks_read_them(tf: Terraform) -> None:
    env = tf.view("function_env")["reconcile"]
    webhooks = tf.view("function_env")
    pairs = (("SHOPIFY_SHOP_DOMAIN", "shopify_webhook"), ("WOOCOMMERCE_SITE_URL", "woocommerce_webhook"),
             ("SHOPIFY_INCLUDE_TEST_ORDERS", "shopify_webhook"),
             ("SHOPIFY_API_VERSION", "shopify_webhook"))  # fmt: skip
    for variable, function in pairs:
        assert ref(env[variable]) == ref(webhooks[function][variable]), variable
    # Local stand-in shops are never a deployment's.
    assert env["SHOPIFY_ADMIN_URL"] is None and env["WOOCOMMERCE_API_URL"] is None


def test_a_credential_the_merchant_does_not_use_is_a_blank_the_job_reads_as_unset(tf: Terraform) -> None:
    secrets = {sid: s for sid, s in tf.view("secrets", everything=True).items() if s["function"] == "reconcile"}
    assert set(secrets) == SECRET_IDS
    assert {s["env"] for s in secrets.values()} == set(ReconcileSettings.SECRET_ENV)
    for secret in secrets.values():
        # What secret_setup_commands runs (HCL's $${ is a literal ${): the value, or one space while unset.
        command = secret["value"].replace("$${", "${").replace('\\"', '"')
        variable = secret["env"]
        unset = subprocess.run(["bash", "-c", command], env={}, capture_output=True, text=True, check=True).stdout
        given = subprocess.run(["bash", "-c", command], env={variable: "v-1"}, capture_output=True, text=True,
                               check=True).stdout  # fmt: skip
        assert (unset, given) == (" ", "v-1"), variable
        assert "blank" in secret["help"] and variable in secret["help"]
    # ...and the job takes such a blank for no credential: the shop is skipped and named, never called.
    environ = {
        "TIKTOK_PIXEL_CODE": "CABC123",
        "SHOPIFY_SHOP_DOMAIN": "a.myshopify.com",
        "WOOCOMMERCE_SITE_URL": "https://woo.example",
        **dict.fromkeys(ReconcileSettings.SECRET_ENV, " "),
    }
    found = shops(ReconcileSettings.from_env(environ), environ)
    assert {(shop.source, shop.orders) for shop in found} == {("shopify", None), ("woocommerce", None)}
    assert all(shop.problem and shop.problem.startswith("no credentials") for shop in found)


# --------------------------------------------------------------------------
# Cloud Scheduler: the only caller
# --------------------------------------------------------------------------


def test_only_the_schedulers_identity_may_invoke_the_job_and_it_may_invoke_nothing_else(tf: Terraform) -> None:
    grants = tf.grants()
    invokers = {g.principal for g in grants if g.role == "roles/run.invoker" and g.target == (*FUNCTION, "reconcile")}
    assert invokers == {("scheduler",)}
    assert [(g.role, g.target) for g in grants if g.principal == ("scheduler",)] == [
        ("roles/run.invoker", (*FUNCTION, "reconcile"))
    ]
    invoker = tf.resource("google_cloud_run_service_iam_member", "scheduler_invoker")
    assert ref(invoker["service"]) == 'google_cloudfunctions2_function.function["reconcile"].name'
    assert ref(invoker["location"]) == "var.region"
    account = tf.resource("google_service_account", "scheduler")
    assert account["account_id"] == "${var.name_prefix}-scheduler"
    assert 12 + 1 + len("scheduler") <= 30  # name_prefix is at most 12 characters


def test_the_scheduler_posts_to_the_function_with_an_oidc_token_of_its_identity(tf: Terraform) -> None:
    target = tf.block(job(tf), "http_target")
    uri = 'google_cloudfunctions2_function.function["reconcile"].service_config[0].uri'
    assert target["http_method"] == "POST"
    assert ref(target["uri"]) == uri
    token = tf.block(target, "oidc_token")
    assert ref(token["service_account_email"]) == "google_service_account.scheduler[0].email"
    assert ref(token["audience"]) == uri
    assert "oauth_token" not in target, "a Cloud Run service takes an OIDC token, not an OAuth one"
    assert ref(job(tf)["schedule"]) == "var.reconcile_job.schedule"
    assert ref(job(tf)["time_zone"]) == "var.reconcile_job.time_zone"
    assert ref(job(tf)["region"]) == "var.region"
    assert "google_cloud_run_service_iam_member.scheduler_invoker" in ref(job(tf)["depends_on"])


def test_the_attempt_deadline_covers_the_functions_timeout(tf: Terraform) -> None:
    assert job(tf)["attempt_deadline"] == "${local.reconcile_attempt_deadline}s"
    default = function_timeout(tf)
    assert default <= attempt_deadline(tf, default) <= SCHEDULER_HTTP_MAX_DEADLINE
    # Any timeout the plan accepts (var.function_settings may raise it) is covered, within Scheduler's maximum.
    (precondition,) = [p for p in job(tf)["lifecycle"][0]["precondition"] if "timeout_seconds" in p["condition"]]
    assert ref(precondition["condition"]) == (
        "local.function_runtime.reconcile.timeout_seconds<=local.reconcile_deadline_max_seconds"
    )
    for timeout in (1, 60, default, 1740, 1800):
        assert timeout <= attempt_deadline(tf, timeout) <= SCHEDULER_HTTP_MAX_DEADLINE, timeout
        assert attempt_deadline(tf, timeout) >= 15, "Cloud Scheduler's minimum"


def test_a_failed_run_is_retried_within_the_hour(tf: Terraform) -> None:
    retry = tf.block(job(tf), "retry_config")
    for key in ("retry_count", "min_backoff_duration", "max_backoff_duration", "max_doublings"):
        assert ref(retry[key]) == f"local.reconcile_retry.{key}", key
    policy = tf.locals["reconcile_retry"]
    assert 1 <= policy["retry_count"] <= 3
    seconds = [int(policy[k].removesuffix("s")) for k in ("min_backoff_duration", "max_backoff_duration")]
    doublings = [min(i, policy["max_doublings"]) for i in range(policy["retry_count"])]
    backoffs = [min(seconds[0] * 2**n, seconds[1]) for n in doublings]
    worst = (policy["retry_count"] + 1) * attempt_deadline(tf, function_timeout(tf)) + sum(backoffs)
    assert worst <= 3600, f"a failing run and its retries take {worst} s, beyond the hourly schedule"


# --------------------------------------------------------------------------
# The run line: what the alerts and the chart read, as the code writes it
# --------------------------------------------------------------------------


def a_run(**changes: Any) -> Run:
    """A run over one shop whose counts are all set (no gap unless ``changes`` say so)."""
    result = ShopResult("shopify", "a.myshopify.com", orders=12)
    result.states = Counter({"sent": 9, "withheld_consent": 1, "skipped": 1, "ignored": 1})
    result.webhooks = [Webhook("orders/paid", "active")]
    for name, value in changes.items():
        setattr(result, name, value)
    now = dt.datetime(2026, 12, 7, 12, tzinfo=dt.timezone.utc)
    return Run(now - dt.timedelta(hours=72), now, True, False, [result])


def run_line(done: Run) -> dict[str, Any]:
    """The job's line for ``done`` as Cloud Logging stores it: severity lifted out, the rest in jsonPayload."""
    captured = io.StringIO()
    with redirect_stdout(captured):
        log_run(done, [])
    (line,) = [json.loads(text) for text in captured.getvalue().splitlines()]
    return {"severity": line.pop("severity"), "jsonPayload": line}


def entry_of(tf: Terraform, line: dict[str, Any]) -> dict[str, Any]:
    """The log entry of ``line`` as the reconcile function's Cloud Run service writes it."""
    return {**line, "resource": {"type": "cloud_run_revision",
                                 "labels": {"service_name": service_names(tf)["reconcile"]}}}  # fmt: skip


# What shared.infra.entry.misconfigured logs for the job: ERROR, and no run line.
MISCONFIGURED = {"severity": "ERROR", "jsonPayload": {"message": "reconcile is misconfigured", "reason": "..."}}
_SEVERITIES = ["DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"]


def matches(query: str, log_entry: dict[str, Any]) -> bool:
    """The Logging query language, as far as these filters use it: terms joined by AND."""
    for term in query.split(" AND "):
        m = re.fullmatch(r'([\w.]+)(=|>=|>|:)(?:"([^"]*)"|(\*)|([\w.]+))', term.strip())
        assert m, f"the test cannot read the filter term {term!r}"
        path, operator, text, present, bare = m.groups()
        value: Any = log_entry
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if operator == ":" and present:
            ok = value is not None
        elif path == "severity":
            ok = value in _SEVERITIES and _SEVERITIES.index(value) >= _SEVERITIES.index(text or bare)
            ok = ok if operator == ">=" else value == (text or bare)
        elif operator == "=":
            ok = value == text
        else:
            threshold = float(bare)
            ok = isinstance(value, int | float) and (value > threshold if operator == ">" else value >= threshold)
        if not ok:
            return False
    return True


def rendered(tf: Terraform, text: str, each_key: str | None = None) -> str:
    from tests.infra.test_dashboard import Renderer

    return Renderer(tf).text(text, each_key)


def test_the_run_filter_matches_the_line_the_job_writes_and_uses_its_constants(tf: Terraform) -> None:
    query = rendered(tf, tf.locals["reconcile_run_filter"])
    assert f'jsonPayload.message="{LOG_MESSAGE}"' in query and f"jsonPayload.{JOB_FIELD}:*" in query
    for done in (a_run(), a_run(missing_unsent=1), a_run(error="ApiError: 401")):
        assert matches(query, entry_of(tf, run_line(done)))
    # Another function's line, or another line of the job, is not a run.
    sender = {"type": "cloud_run_revision", "labels": {"service_name": service_names(tf)["sender"]}}
    assert not matches(query, {**run_line(a_run()), "resource": sender})
    assert not matches(query, entry_of(tf, MISCONFIGURED))
    metric = tf.resource("google_logging_metric", "reconcile_runs")
    assert ref(metric["filter"]) == "local.reconcile_run_filter"


@pytest.mark.parametrize(
    ("field", "gap"),
    [("missing_unsent", {"missing_unsent": 2}),
     ("unhealthy_webhooks", {"webhooks": [Webhook("order.created", "disabled")]})],
)  # fmt: skip
def test_each_gap_alert_fires_on_a_run_with_that_gap_only(tf: Terraform, field: str, gap: dict[str, Any]) -> None:
    assert set(tf.locals["reconcile_gaps"]) == {"missing_unsent", "unhealthy_webhooks"}
    metric = tf.resource("google_logging_metric", "reconcile_gap")
    assert ref(metric["for_each"]) == "local.reconcile_gaps"
    query = rendered(tf, metric["filter"], field)
    with_gap, without = run_line(a_run(**gap)), run_line(a_run())
    assert with_gap["jsonPayload"][field] > 0 and without["jsonPayload"][field] == 0
    assert with_gap["severity"] == "WARNING", "a gap is a WARNING line"
    assert matches(query, entry_of(tf, with_gap)) and not matches(query, entry_of(tf, without))
    # The alert counts those runs.
    policy = tf.resource("google_monitoring_alert_policy", "reconcile_gap")
    condition = tf.block(tf.block(policy, "conditions"), "condition_threshold")
    assert "${google_logging_metric.reconcile_gap[each.key].name}" in condition["filter"]
    assert condition["comparison"] == "COMPARISON_GT" and condition["threshold_value"] == 0


def test_the_job_alert_fires_on_an_error_line_or_when_no_run_is_logged(tf: Terraform) -> None:
    errors = rendered(tf, tf.resource("google_logging_metric", "reconcile_errors")["filter"])
    failed = run_line(a_run(error="ApiError: Shopify shop a.myshopify.com: SHOPIFY_ADMIN_TOKEN was refused (401)"))
    assert failed["severity"] == "ERROR"
    assert matches(errors, entry_of(tf, failed))
    assert matches(errors, entry_of(tf, MISCONFIGURED))
    assert not matches(errors, entry_of(tf, run_line(a_run(missing_unsent=3))))
    policy = tf.resource("google_monitoring_alert_policy", "reconcile_job")
    assert policy["combiner"] == "OR"
    conditions = policy["conditions"]
    (absent,) = [c["condition_absent"][0] for c in conditions if "condition_absent" in c]
    (threshold,) = [c["condition_threshold"][0] for c in conditions if "condition_threshold" in c]
    assert "${google_logging_metric.reconcile_runs.name}" in absent["filter"]
    assert absent["duration"] == "${2 * local.reconcile_period_hours * 3600}s"
    assert "group_by_fields" not in absent["aggregations"][0], "summed over revisions: a deployment is no silence"
    assert "${google_logging_metric.reconcile_errors.name}" in threshold["filter"]
    assert threshold["comparison"] == "COMPARISON_GT" and threshold["threshold_value"] == 0


def test_every_reconcile_alert_says_what_to_do_and_where(tf: Terraform) -> None:
    section = rendered(tf, tf.locals["reconcile_section"])
    assert section == 'docs/operations.md, "Accuracy: orders in the shop vs sent"'
    texts = [gap["documentation"] for gap in tf.locals["reconcile_gaps"].values()]
    texts.append(tf.block(tf.resource("google_monitoring_alert_policy", "reconcile_job"), "documentation")["content"])
    for text in texts:
        assert "${local.reconcile_section}" in text
    operations = (tf.directory.parent / "docs" / "operations.md").read_text()
    assert "## Accuracy: orders in the shop vs sent" in operations
    for policy in ("reconcile_gap", "reconcile_job"):
        body = tf.resource("google_monitoring_alert_policy", policy)
        assert str(body["notification_channels"]) == "var.alert_notification_channels"
        assert str(body["enabled"]) == "var.alerts_enabled"


def test_the_dashboard_charts_orders_in_the_shop_against_sent(tf: Terraform) -> None:
    charted = tf.locals["reconcile_charted"]
    assert {"orders", "sent", MISSING} <= set(charted)
    line = run_line(a_run())["jsonPayload"]
    assert set(charted) <= set(line), "a charted count the run line does not carry"
    assert set(STATES) <= set(line)
    metric = tf.resource("google_logging_metric", "reconcile_window")
    assert ref(metric["for_each"]) == "toset(local.reconcile_charted)"
    for field in charted:
        query = rendered(tf, metric["filter"], field)
        assert matches(query, entry_of(tf, run_line(a_run())))
        assert rendered(tf, metric["value_extractor"], field) == f"EXTRACT(jsonPayload.{field})"
        assert isinstance(line[field], int)
    widgets = tf.locals["dashboard"]["gridLayout"]["widgets"]
    (widget,) = [w for w in widgets if "Orders in the shop vs sent" in w["title"]]
    filters = [d["timeSeriesQuery"]["timeSeriesFilter"]["filter"] for d in widget["xyChart"]["dataSets"]]
    for field in ("orders", "sent"):
        assert any(f'google_logging_metric.reconcile_window["{field}"].name' in f for f in filters), field


def test_the_log_level_override_is_the_only_shared_variable_the_job_changes(tf: Terraform) -> None:
    env = tf.view("function_env")["reconcile"]
    shared = {key for layer in entry(tf)["env_from"] for key in tf.locals["shared_env"][layer]}
    overridden = {key for key in shared & set(entry(tf)["env"])}
    assert overridden == {"LOG_LEVEL"}
    assert isinstance(env["GOOGLE_CLOUD_PROJECT"], Expr)
