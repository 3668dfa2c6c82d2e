"""terraform/ is formatted, passes the checkov scan, and every variable is typed and described.

Terraform's providers cannot be downloaded here, so ``init``/``validate``/``plan``
do not run; formatting, static analysis and the HCL wiring tests stand in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.infra.conftest import ROOT, TERRAFORM_DIR
from tests.infra.hcl import Terraform
from tests.infra.provider_schema import pinned_providers

CHECKOV_ARGS = ["-d", "terraform", "--framework", "terraform", "--compact", "--quiet", "-o", "json", "--skip-download"]


def _terraform_bin() -> str:
    found = os.environ.get("TERRAFORM_BIN") or shutil.which("terraform")
    if not found:
        pytest.fail(
            "terraform is not installed (or not on PATH): the formatting check needs it. Install Terraform "
            ">= 1.5 (https://developer.hashicorp.com/terraform/install) or set TERRAFORM_BIN to its path."
        )
    return found


def _checkov_bin() -> Path:
    path = Path(os.environ.get("CHECKOV_BIN") or ROOT / ".venv-infra" / "bin" / "checkov")
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"checkov not found at {path}. `make test` installs it into .venv-infra from requirements-infra.txt "
            "(kept apart: checkov ships a fork of the hcl2 module that breaks python-hcl2); or point CHECKOV_BIN "
            "at a checkov executable."
        )
    return path


def test_terraform_files_are_formatted() -> None:
    result = subprocess.run(
        [_terraform_bin(), "fmt", "-check", "-recursive", "-diff", "-no-color", str(TERRAFORM_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"run `terraform fmt -recursive terraform/`:\n{result.stdout}{result.stderr}"


def test_checkov_finds_no_failed_check() -> None:
    checkov = _checkov_bin()
    result = subprocess.run([str(checkov), *CHECKOV_ARGS], cwd=ROOT, capture_output=True, text=True, timeout=600)
    try:
        reports = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"checkov printed no JSON (exit {result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    reports = reports if isinstance(reports, list) else [reports]
    terraform_reports = [r for r in reports if r.get("check_type") == "terraform"]
    assert terraform_reports, f"checkov scanned no Terraform (exit {result.returncode}): {result.stdout[:500]}"
    report = terraform_reports[0]
    summary = report["summary"]

    pinned = re.search(r"^checkov==(\S+)", (ROOT / "requirements-infra.txt").read_text(), re.MULTILINE)
    assert pinned and summary.get("checkov_version") == pinned[1], (
        f"checkov {summary.get('checkov_version')} ran, requirements-infra.txt pins {pinned and pinned[1]}"
    )
    assert summary["parsing_errors"] == 0, f"checkov could not parse some files: {report.get('results', {})}"
    assert summary["resource_count"] >= 30, f"checkov saw only {summary['resource_count']} resources"
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range'][0]}): {c['check_name']}"
        for c in report.get("results", {}).get("failed_checks", [])
    ]
    assert summary["failed"] == 0 and not failed, "checkov failed checks:\n" + "\n".join(failed)


def test_every_checkov_suppression_states_its_reason() -> None:
    found = 0
    for path in sorted(TERRAFORM_DIR.rglob("*.tf")):  # modules/ included
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "checkov:skip" not in line:
                continue
            found += 1
            m = re.fullmatch(r"\s*#checkov:skip=(CKV2?_[A-Z0-9]+_\d+):(.{20,})", line)
            assert m, f"{path.name}:{number}: write suppressions as `#checkov:skip=CKV_..:<reason>`: {line.strip()}"
    assert found, "no suppressions found: if none are needed any more, drop this test's expectation"


def test_every_variable_is_typed_and_described(tf: Terraform) -> None:
    assert tf.variables
    for name, body in tf.variables.items():
        assert body.get("type") is not None, f"variable {name} has no type"
        description = body.get("description")
        assert isinstance(description, str) and len(description) > 15, f"variable {name} has no real description"


def test_every_output_is_described(tf: Terraform) -> None:
    for name, body in tf.outputs.items():
        assert body.get("description"), f"output {name} has no description"


def test_every_local_module_is_typed_described_and_pinned_like_the_root(tf: Terraform) -> None:
    assert tf.children, "no module calls found: is the parser still reading pubsub.tf?"
    root_pins = pinned_providers(tf.raw["versions.tf"])
    for call, module in tf.children.items():
        for name, body in module.variables.items():
            assert body.get("type") is not None, f"module.{call}: variable {name} has no type"
            description = body.get("description")
            assert isinstance(description, str) and len(description) > 15, f"module.{call}: {name} is not described"
        for name, body in module.outputs.items():
            assert body.get("description"), f"module.{call}: output {name} has no description"
        pins = pinned_providers(module.raw["versions.tf"])
        assert pins and all(root_pins[name] == pin for name, pin in pins.items()), f"module.{call}: {pins}"
        assert re.search(r'required_version\s*=\s*">=\s*1\.5"', module.raw["versions.tf"])


def test_no_primitive_role_anywhere() -> None:
    for path in sorted(TERRAFORM_DIR.rglob("*.tf")):
        match = re.search(r"roles/(owner|editor|viewer)\b", path.read_text())
        assert match is None, f"{path.name} mentions {match[0]}: use predefined roles on single resources"


def test_no_secret_value_is_managed_by_terraform(tf: Terraform) -> None:
    versions = [name for (rtype, name) in tf.resources if rtype == "google_secret_manager_secret_version"]
    assert not versions, f"secret versions in Terraform put secret values in the state: {versions}"
    for filename, text in tf.raw.items():
        assert "secret_data" not in text, f"{filename} sets secret_data"


def test_apis_are_enabled_without_disabling_on_destroy(tf: Terraform) -> None:
    services = tf.resource("google_project_service", "this")
    assert services["disable_on_destroy"] is False
    listed = set(re.findall(r'"([a-z]+)\.googleapis\.com"', tf.raw["apis.tf"]))
    needed = {"cloudfunctions", "run", "cloudbuild", "artifactregistry", "pubsub", "firestore", "secretmanager",
              "storage", "iam"}  # fmt: skip
    assert needed <= listed, f"APIs not enabled: {sorted(needed - listed)}"


def test_required_versions_are_pinned(tf: Terraform) -> None:
    text = tf.raw["versions.tf"]
    assert re.search(r'required_version\s*=\s*">=\s*1\.5"', text)
    assert re.search(r'source\s*=\s*"hashicorp/google"\s*\n\s*version\s*=\s*"~>\s*7\.0"', text)
    assert re.search(r'source\s*=\s*"hashicorp/archive"\s*\n\s*version\s*=\s*"~>\s*2\.4"', text)


def test_backend_is_documented_but_not_declared() -> None:
    text = (TERRAFORM_DIR / "backend.tf").read_text()
    assert re.search(r'^#\s*backend\s+"gcs"', text, re.MULTILINE), "backend.tf should show the GCS backend block"
    assert "-backend-config=bucket=" in text
    declared = [line for line in text.splitlines() if re.match(r'\s*backend\s+"', line)]
    assert not declared, "the backend block stays commented: cloudbuild.yaml declares it for CI"


def test_tfvars_example_sets_only_declared_variables(tf: Terraform) -> None:
    text = (TERRAFORM_DIR / "terraform.tfvars.example").read_text()
    assigned = set(re.findall(r"^([a-z_]+)\s*=", text, re.MULTILINE))
    assert assigned, "terraform.tfvars.example sets nothing"
    assert assigned <= set(tf.variables), f"not variables: {sorted(assigned - set(tf.variables))}"
    required = {name for name, body in tf.variables.items() if "default" not in body}
    assert required <= assigned, f"the example omits required variables {sorted(required - assigned)}"
