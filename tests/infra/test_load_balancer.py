"""The optional load balancer in front of collect: off by default, and when on, Cloud Armor limits each client.

Terraform cannot be evaluated offline, so the switch is followed by hand: every
load balancer resource iterates ``local.collect_lb``, whose two branches are
checked here, and each reference along the chain (forwarding rule, proxy, URL
map, backend service, security policy, serverless NEG, the collect function) is
asserted, so a resource that is created but not wired in fails.
"""

from __future__ import annotations

import re

import pytest

from shared.config import CollectSettings
from tests.infra.hcl import Expr, Terraform, squash

LB_RESOURCES = {
    "google_compute_security_policy",
    "google_compute_region_network_endpoint_group",
    "google_compute_backend_service",
    "google_compute_url_map",
    "google_compute_managed_ssl_certificate",
    "google_compute_ssl_policy",
    "google_compute_target_https_proxy",
    "google_compute_global_address",
    "google_compute_global_forwarding_rule",
}


def ref(expression: object) -> str:
    assert isinstance(expression, Expr), f"expected a reference, found the literal {expression!r}"
    return squash(expression)


def switch(expression: object, enabled: bool) -> str:
    """The branch of ``var.collect_load_balancer ? A : B`` taken when the variable is ``enabled``."""
    text = ref(expression)
    prefix = "var.collect_load_balancer?"
    assert text.startswith(prefix), f"not switched by var.collect_load_balancer: {expression!r}"
    depth, quoted = 0, False
    for index, char in enumerate(text[len(prefix) :], start=len(prefix)):
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "([{":
            depth += 1
        elif not quoted and char in ")]}":
            depth -= 1
        elif not quoted and depth == 0 and char == ":":
            return text[len(prefix) : index] if enabled else text[index + 1 :]
    raise AssertionError(f"no else branch in {expression!r}")


def lb_instances(tf: Terraform, enabled: bool) -> set[str]:
    branch = switch(tf.locals["collect_lb"], enabled)
    m = re.fullmatch(r'toset\(\[((?:"\w+",?)*)\]\)', branch)
    assert m, f"local.collect_lb branch is not a literal set: {branch}"
    return set(re.findall(r'"(\w+)"', m[1]))


def rule_with_rate_limit(tf: Terraform) -> dict:
    rules = [r for r in tf.resource("google_compute_security_policy", "collect")["rule"] if "rate_limit_options" in r]
    assert len(rules) == 1, rules
    return rules[0]


def test_off_by_default_creates_no_load_balancer_resource(tf: Terraform) -> None:
    assert tf.variables["collect_load_balancer"]["default"] is False
    assert tf.variables["collect_domain"]["default"] is None
    assert lb_instances(tf, enabled=False) == set()
    present = {rtype for (rtype, _), file in tf.resource_files.items() if file == "load_balancer.tf"}
    assert present == LB_RESOURCES
    for (rtype, name), file in tf.resource_files.items():
        if rtype.startswith("google_compute_"):
            assert file == "load_balancer.tf", f"{rtype}.{name} belongs with the load balancer"
            assert ref(tf.resources[(rtype, name)]["for_each"]) == "local.collect_lb", f"{rtype}.{name}"


def hops_without_override(tf: Terraform) -> Expr:
    """COLLECT_TRUSTED_PROXY_HOPS when collect_trusted_proxy_hops is unset (its default): the load balancer's switch."""
    text = ref(tf.view("function_env")["collect"]["COLLECT_TRUSTED_PROXY_HOPS"])
    override = "var.collect_trusted_proxy_hops!=null?tostring(var.collect_trusted_proxy_hops):"
    assert text.startswith(override), text
    assert tf.variables["collect_trusted_proxy_hops"]["default"] is None
    return Expr(text[len(override) :])


def test_off_by_default_leaves_collect_as_it_was(tf: Terraform) -> None:
    assert switch(hops_without_override(tf), enabled=False) == "null", "unset: the code's default 0"
    assert tf.locals["functions"]["collect"]["sizing"]["ingress_settings"] == "ALLOW_ALL"
    services = squash(tf.locals["services"])
    # Further APIs behind switches of their own may follow (the reconciliation job's Cloud Scheduler).
    m = re.fullmatch(
        r"toset\(concat\((\[.*?\]),var\.collect_load_balancer\?(\[.*?\]):(\[\])(?:,var\.[\w.]+\?\[[^\]]*\]:\[\])*\)\)",
        services,
    )
    assert m, services
    assert '"compute.googleapis.com"' not in m[1] and m[2] == '["compute.googleapis.com"]'


def test_on_creates_one_of_each_resource(tf: Terraform) -> None:
    assert lb_instances(tf, enabled=True) == {"collect"}


def test_on_attaches_the_rate_limit_policy_to_the_backend_of_collect(tf: Terraform) -> None:
    backend = tf.resource("google_compute_backend_service", "collect")
    assert ref(backend["security_policy"]) == "google_compute_security_policy.collect[each.key].id"
    assert backend["load_balancing_scheme"] == "EXTERNAL_MANAGED"
    assert ref(tf.block(backend, "backend")["group"]) == (
        "google_compute_region_network_endpoint_group.collect[each.key].id"
    )
    neg = tf.resource("google_compute_region_network_endpoint_group", "collect")
    assert neg["network_endpoint_type"] == "SERVERLESS"
    assert ref(neg["region"]) == "var.region"
    # A gen2 function is served by the Cloud Run service of the same name.
    assert ref(tf.block(neg, "cloud_run")["service"]) == 'google_cloudfunctions2_function.function["collect"].name'


def test_on_the_chain_from_the_address_reaches_the_backend(tf: Terraform) -> None:
    rule = tf.resource("google_compute_global_forwarding_rule", "collect")
    assert rule["load_balancing_scheme"] == "EXTERNAL_MANAGED" and rule["port_range"] == "443"
    assert ref(rule["ip_address"]) == "google_compute_global_address.collect[each.key].address"
    assert ref(rule["target"]) == "google_compute_target_https_proxy.collect[each.key].id"
    proxy = tf.resource("google_compute_target_https_proxy", "collect")
    assert ref(proxy["url_map"]) == "google_compute_url_map.collect[each.key].id"
    assert [squash(c) for c in proxy["ssl_certificates"]] == [
        "google_compute_managed_ssl_certificate.collect[each.key].id"
    ]
    assert ref(proxy["ssl_policy"]) == "google_compute_ssl_policy.collect[each.key].id"
    policy = tf.resource("google_compute_ssl_policy", "collect")
    assert policy["min_tls_version"] == "TLS_1_2"
    url_map = tf.resource("google_compute_url_map", "collect")
    assert ref(url_map["default_service"]) == "google_compute_backend_service.collect[each.key].id"
    certificate = tf.resource("google_compute_managed_ssl_certificate", "collect")
    assert [squash(d) for d in tf.block(certificate, "managed")["domains"]] == ["var.collect_domain"]
    preconditions = certificate["lifecycle"][0]["precondition"]
    assert any(squash(p["condition"]) == "var.collect_domain!=null" for p in preconditions)


def test_on_the_rate_limit_uses_the_variables_per_client_address(tf: Terraform) -> None:
    rule = rule_with_rate_limit(tf)
    assert ref(rule["action"]) == "var.collect_rate_limit_action"
    assert tf.block(tf.block(rule, "match"), "config")["src_ip_ranges"] == ["*"]
    options = tf.block(rule, "rate_limit_options")
    assert options["conform_action"] == "allow"
    assert options["exceed_action"] == "deny(429)"
    assert options["enforce_on_key"] == "IP"
    threshold = tf.block(options, "rate_limit_threshold")
    assert ref(threshold["count"]) == "var.collect_rate_limit_count"
    assert ref(threshold["interval_sec"]) == "var.collect_rate_limit_interval_sec"
    assert ref(options["ban_duration_sec"]) == (
        'var.collect_rate_limit_action=="rate_based_ban"?var.collect_rate_limit_ban_seconds:null'
    )
    rules = tf.resource("google_compute_security_policy", "collect")["rule"]
    default = [r for r in rules if r["priority"] == 2147483647]
    assert len(default) == 1 and default[0]["action"] == "allow", "Cloud Armor needs its default rule"


def test_rate_limit_defaults_match_the_collect_endpoints_own_limit(tf: Terraform) -> None:
    per_minute = CollectSettings.model_fields["rate_limit_per_minute"].default
    count = tf.variables["collect_rate_limit_count"]["default"]
    interval = tf.variables["collect_rate_limit_interval_sec"]["default"]
    assert count * 60 / interval == per_minute
    assert tf.variables["collect_rate_limit_action"]["default"] == "throttle"
    assert "COLLECT_RATE_LIMIT_PER_MINUTE default" in tf.variables["collect_rate_limit_count"]["description"]


@pytest.mark.parametrize("enabled", [False, True])
def test_collect_trusts_one_forwarded_hop_exactly_when_behind_the_load_balancer(tf: Terraform, enabled: bool) -> None:
    hops = switch(hops_without_override(tf), enabled)
    assert hops == ('"1"' if enabled else "null")
    assert "trusted_proxy_hops" in CollectSettings.model_fields
    assert CollectSettings.model_fields["trusted_proxy_hops"].alias == "COLLECT_TRUSTED_PROXY_HOPS"


def test_on_collect_takes_traffic_only_through_the_load_balancer(tf: Terraform) -> None:
    ingress = tf.locals["lb_ingress"]
    assert set(ingress) == {"collect"}
    assert squash(ingress["collect"]) == squash(
        '{for key, value in {ingress_settings = "ALLOW_INTERNAL_AND_GCLB"} : key => value if var.collect_load_balancer}'
    )
    assert squash(tf.locals["function_runtime"]) == squash(
        "{for name, fn in local.cloud_functions : name => merge(local.functions[fn.folder].sizing,"
        " try(local.lb_ingress[name], {}),"
        " {for key, value in try(var.function_settings[fn.folder], {}) : key => value if value != null},"
        ' lookup(fn, "runtime", {}))}'
    )
    assert "runtime" not in tf.view("cloud_functions")["collect"], "nothing may override its ingress after lb_ingress"
    preconditions = tf.resource("google_cloudfunctions2_function", "function")["lifecycle"][0]["precondition"]
    assert any(
        squash(p["condition"])
        == squash(
            'each.key != "collect" || !var.collect_load_balancer'
            ' || local.function_runtime.collect.ingress_settings == "ALLOW_INTERNAL_AND_GCLB"'
        )
        for p in preconditions
    ), "an operator override must not reopen collect's own URL behind the load balancer"


def test_outputs_give_the_load_balancer_address_and_the_url_for_the_snippet(tf: Terraform) -> None:
    assert squash(tf.outputs["collect_load_balancer_ip"]["value"]) == (
        "one([foraddressingoogle_compute_global_address.collect:address.address])"
    )
    url = tf.outputs["collect_public_url"]["value"]
    assert switch(url, True) == '"https://${var.collect_domain}/"'
    assert switch(url, False) == 'local.function_urls["collect"]'


@pytest.mark.parametrize(
    ("variable", "valid", "invalid"),
    [
        ("collect_rate_limit_interval_sec", [10, 60, 3600], [1, 59, 7200]),
        ("collect_rate_limit_count", [1, 600, 10000], [0, 10001, 1.5]),
        ("collect_rate_limit_action", ["throttle", "rate_based_ban"], ["deny", ""]),
    ],
)
def test_rate_limit_variables_are_validated(tf: Terraform, variable: str, valid: list, invalid: list) -> None:
    condition = squash(tf.variables[variable]["validation"][0]["condition"])
    if m := re.fullmatch(r"contains\(\[(.+)\],var\.\w+\)", condition):
        allowed = [int(v) if v.isdigit() else v.strip('"') for v in m[1].split(",")]
        assert all(v in allowed for v in valid) and not any(v in allowed for v in invalid)
        return
    name = rf"var\.{variable}"
    m = re.fullmatch(rf"{name}>=(\d+)&&{name}<=(\d+)&&floor\({name}\)=={name}", condition)
    assert m, condition
    low, high = int(m[1]), int(m[2])
    assert all(low <= v <= high and v == int(v) for v in valid)
    assert not any(low <= v <= high and v == int(v) for v in invalid)
