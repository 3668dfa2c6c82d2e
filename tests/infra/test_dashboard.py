"""terraform/dashboard.tf charts what exists: its metrics, the real services and subscriptions, the code's log fields.

A dashboard fails quietly: a chart whose metric or filter names nothing real is
simply empty. These tests render ``local.dashboard`` as Terraform would with the
default variables, check that it is valid JSON, and tie every chart to a metric
this configuration defines (or a real GCP metric type), every filter to the real
function and subscription names, and the log-based metrics to the fields the
sender logs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared.destinations import registry
from shared.domain import match_keys
from shared.outcome import Kind
from shared.send import process
from tests.infra.hcl import DERIVED, Expr, Terraform
from tests.infra.test_monitoring import service_names

# Real GCP metric types the dashboard may chart, with the monitored resource type each is written for.
GCP_METRICS = {
    "pubsub.googleapis.com/subscription/num_undelivered_messages": "pubsub_subscription",
    "pubsub.googleapis.com/subscription/oldest_unacked_message_age": "pubsub_subscription",
    "run.googleapis.com/container/instance_count": "cloud_run_revision",
}
USER_PREFIX = "logging.googleapis.com/user/"
_LITERAL_DOLLAR = "\x00"


class Renderer:
    """Evaluates the interpolations dashboard.tf uses, with default variables; anything else fails loudly."""

    def __init__(self, tf: Terraform) -> None:
        self.tf = tf

    def resource_name(self, rtype: str, name: str, key: str | None) -> str:
        body = self.tf.resource(rtype, name)
        if key is not None:
            assert key in self.tf.instances(body.get("for_each")), f"{rtype}.{name} has no instance {key!r}"
        return self.text(body["name"], each_key=key)

    def _resolve(self, expression: str, each_key: str | None) -> str:
        if expression == "var.name_prefix":
            return str(self.tf.variables["name_prefix"]["default"])
        if expression == "each.key" and each_key is not None:
            return each_key
        if (m := re.fullmatch(r"local\.(\w+)", expression)) and m[1] in DERIVED:
            return str(self.tf.view(m[1]))
        if m := re.fullmatch(r"local\.(\w+)", expression):
            return self.text(self.tf.locals[m[1]], each_key)
        if m := re.fullmatch(r'replace\(var\.name_prefix, "-", "_"\)', expression):
            return self._resolve("var.name_prefix", each_key).replace("-", "_")
        if m := re.fullmatch(r'(google_\w+)\.(\w+)(?:\["([^"]+)"\])?\.name', expression):
            return self.resource_name(m[1], m[2], m[3])
        if m := re.fullmatch(r"module\.(\w+)\.(google_\w+)\.(\w+)\.name", expression):
            return self.resource_name(m[2], f"module.{m[1]}.{m[3]}", None)
        if m := re.fullmatch(r"module\.(\w+)\.(\w+)", expression):
            return self._resolve(str(self.tf.module_output(m[1], m[2])), each_key)
        raise AssertionError(f"test_dashboard cannot evaluate ${{{expression}}}; extend its Renderer")

    def text(self, value: Any, each_key: str | None = None) -> str:
        if isinstance(value, Expr):  # a bare expression such as local.outcome_metric
            return self._resolve(str(value), each_key)
        text = str(value).replace("$${", _LITERAL_DOLLAR)
        text = re.sub(r"\$\{([^{}]+)\}", lambda m: self._resolve(m[1], each_key), text)
        return text.replace('\\"', '"').replace("\\\\", "\\").replace(_LITERAL_DOLLAR, "${")

    def value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value


@pytest.fixture(scope="module")
def rendered(tf: Terraform) -> dict[str, Any]:
    return json.loads(json.dumps(Renderer(tf).value(tf.locals["dashboard"])))


def log_metrics(tf: Terraform) -> dict[str, dict[str, Any]]:
    """Every log-based metric of the configuration, by its rendered name (one per for_each instance)."""
    renderer = Renderer(tf)
    found = {}
    for body in tf.of_type("google_logging_metric").values():
        for key in tf.instances(body.get("for_each")):
            found[renderer.text(body["name"], key)] = {**body, "filter": renderer.text(body["filter"], key)}
    return found


def queries(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(widget title, data set, one timeSeriesFilter-shaped query) for every query of every chart."""
    found = []
    for widget in dashboard["gridLayout"]["widgets"]:
        for data_set in widget["xyChart"]["dataSets"]:
            query = data_set["timeSeriesQuery"]
            if "timeSeriesFilter" in query:
                found.append((widget["title"], data_set, query["timeSeriesFilter"]))
            else:
                ratio = query["timeSeriesFilterRatio"]
                found += [(widget["title"], data_set, ratio[part]) for part in ("numerator", "denominator")]
    return found


def metric_type(query_filter: str) -> str:
    (found,) = re.findall(r'metric\.type="([^"]+)"', query_filter)
    return found


def test_the_dashboard_json_is_valid_and_every_widget_is_a_titled_chart(tf: Terraform, rendered: dict) -> None:
    dashboard = tf.resource("google_monitoring_dashboard", "pipeline")
    assert str(dashboard["dashboard_json"]) == "jsonencode(local.dashboard)"
    assert rendered["displayName"].startswith(str(tf.variables["name_prefix"]["default"]))
    widgets = rendered["gridLayout"]["widgets"]
    assert len(widgets) >= 10
    for widget in widgets:
        assert widget["title"] and widget["xyChart"]["dataSets"], widget
    assert "${" not in json.dumps(rendered).replace("${metric.labels.", "").replace("${resource.labels.", "")


def test_every_chart_reads_a_metric_that_exists(tf: Terraform, rendered: dict) -> None:
    metrics = log_metrics(tf)
    for title, _, query in queries(rendered):
        kind = metric_type(query["filter"])
        if kind.startswith(USER_PREFIX):
            assert kind.removeprefix(USER_PREFIX) in metrics, f"{title}: no log-based metric {kind}"
            assert 'resource.type="cloud_run_revision"' in query["filter"], title
        else:
            assert kind in GCP_METRICS, f"{title}: {kind} is neither defined here nor a known GCP metric"
            assert f'resource.type="{GCP_METRICS[kind]}"' in query["filter"], title


def test_charts_group_and_label_only_by_labels_their_metric_has(tf: Terraform, rendered: dict) -> None:
    metrics = log_metrics(tf)
    for title, data_set, query in queries(rendered):
        kind = metric_type(query["filter"])
        if not kind.startswith(USER_PREFIX):
            continue
        descriptor = metrics[kind.removeprefix(USER_PREFIX)]["metric_descriptor"][0]
        labels = {label["key"] for label in descriptor.get("labels", [])}
        used = {f.removeprefix("metric.label.") for f in query["aggregation"].get("groupByFields", [])}
        used |= set(re.findall(r"\$\{metric\.labels\.(\w+)\}", data_set.get("legendTemplate", "")))
        used |= set(re.findall(r"metric\.labels\.(\w+)", query["filter"]))
        assert used <= labels, f"{title}: {used - labels} not labels of {kind}"
        is_distribution = descriptor["value_type"] == "DISTRIBUTION"
        reducer = query["aggregation"].get("crossSeriesReducer", "")
        assert is_distribution == (reducer.startswith("REDUCE_PERCENTILE") or reducer == "REDUCE_MEAN"), title


def test_filters_name_the_real_services_and_subscriptions(tf: Terraform, rendered: dict) -> None:
    services = service_names(tf)
    renderer = Renderer(tf)
    events = renderer.resource_name("google_pubsub_subscription", "module.events_push.push", None)
    dead_letter = renderer.resource_name("google_pubsub_subscription", "module.events_push.dead_letter", None)
    assert (events, dead_letter) == ("tiktok-events-sender", "tiktok-events-dead-letter")
    subscriptions = set()
    for title, _, query in queries(rendered):
        subscriptions |= set(re.findall(r'resource\.labels\.subscription_id="([^"]+)"', query["filter"]))
        for pattern in re.findall(r'service_name=monitoring\.regex\.full_match\("([^"]+)"\)', query["filter"]):
            assert all(re.fullmatch(pattern, s) for s in services.values()), f"{title}: {pattern} misses a function"
    assert subscriptions == {events, dead_letter}
    sender = f'resource.labels.service_name="{services["sender"]}"'
    reconcile = f'resource.labels.service_name="{services["reconcile"]}"'
    for name, metric in log_metrics(tf).items():
        if name.endswith("_pipeline_outcomes") or name.endswith("_woocommerce_deliveries"):
            continue  # monitoring.tf's own, tested in test_monitoring.py
        if "_reconcile_" in name:  # the reconciliation job's run line (tests/infra/test_reconcile_infra.py)
            assert reconcile in metric["filter"], f"{name} does not read the reconcile job's lines"
            continue
        assert sender in metric["filter"], f"{name} does not read the sender's lines"


def test_the_match_key_metrics_follow_the_code(tf: Terraform) -> None:
    charted = tf.locals["dashboard_match_keys"]
    assert set(charted) == set(match_keys.WEIGHTS), "chart exactly the keys that weigh in the coverage score"
    assert set(charted) <= set(match_keys.KEYS)
    # The metrics match `jsonPayload.match_keys:"<key>"` (has): safe only while no key name contains another.
    for key in match_keys.KEYS:
        assert not [other for other in match_keys.KEYS if other != key and key in other], key
    metrics = log_metrics(tf)
    for key in charted:
        (metric,) = [m for m in metrics.values() if m["filter"].endswith(f'jsonPayload.match_keys:"{key}"')]
        assert f'jsonPayload.outcome="{Kind.SENT}"' in metric["filter"]
        assert metric["label_extractors"]["source"] == "EXTRACT(jsonPayload.source)"


def test_the_sender_logs_the_fields_the_metrics_extract() -> None:
    source = (Path(process.__file__)).read_text()
    # The "tiktok answered" line: INFO (so it is written at the deployed LOG_LEVEL), with ms, events and verdict.
    # The sender names no destination: the line is "<destination> answered", and the sender's destination is TikTok.
    assert registry.SENDER.name == "tiktok"
    line = re.search(r'log\.(\w+)\(\s*f"\{name\} answered",(.*?)\n\s*\)', source, re.DOTALL)
    assert line and line[1] == "info", "the TikTok request line must stay at INFO for the dashboard"
    for field in ("ms=", "events=", "verdict="):
        assert field in line[2]
    # A delivered event's outcome line names its keys and score; a dead one its kind and code.
    assert '"match_keys": list(keys), "match_score": coverage' in source
    assert '{"dead_kind": record.kind, "code": record.code' in source


def test_terraform_outputs_the_dashboard_url(tf: Terraform) -> None:
    value = str(tf.outputs["dashboard_url"]["value"])
    assert value.startswith("https://console.cloud.google.com/monitoring/dashboards/")
    assert "google_monitoring_dashboard.pipeline.id" in value and "var.project_id" in value
