"""cloudbuild.yaml tests first, then deploys with Terraform against the GCS state.

PyYAML is not a project dependency, so the file is read as text: the checks are
about which commands run in which order, which the text shows directly.
"""

from __future__ import annotations

import re

import pytest

from tests.infra.conftest import ROOT

TEXT = (ROOT / "cloudbuild.yaml").read_text()
STEP_IDS = re.findall(r"^  - id: (\S+)$", TEXT, re.MULTILINE)


def _step(step_id: str) -> str:
    assert step_id in STEP_IDS, f"cloudbuild.yaml has no step {step_id!r} (steps: {STEP_IDS})"
    start = TEXT.index(f"  - id: {step_id}\n")
    following = [TEXT.index(f"  - id: {s}\n") for s in STEP_IDS if TEXT.index(f"  - id: {s}\n") > start]
    return TEXT[start : min(following, default=len(TEXT))]


def test_tests_run_before_anything_is_deployed() -> None:
    assert STEP_IDS[0] == "test"
    assert STEP_IDS.index("terraform-init") < STEP_IDS.index("terraform-plan") < STEP_IDS.index("terraform-apply")
    test = _step("test")
    assert "name: gcr.io/google.com/cloudsdktool/google-cloud-cli:emulators" in test
    assert re.search(r"^\s+make test$", test, re.MULTILINE)
    assert "python3-venv" in test, "the image needs python3-venv for the Makefile's virtual environments"
    assert "releases.hashicorp.com/terraform/${_TF_VERSION}/" in test and "sha256sum -c" in test
    assert "waitFor" not in TEXT, "steps run one after the other: nothing deploys before the tests pass"


def test_terraform_uses_the_gcs_state_and_the_build_project() -> None:
    init = _step("terraform-init")
    assert "-backend-config=bucket=${_STATE_BUCKET}" in init
    assert 'backend "gcs"' in init, "backend.tf keeps the block commented: CI must declare it"
    plan = _step("terraform-plan")
    assert "-var=project_id=$PROJECT_ID" in plan and "-var=region=${_REGION}" in plan
    assert "-out=tfplan" in plan and "-input=false" in plan
    apply = _step("terraform-apply")
    assert re.search(r"- apply\n(\s+- -\S+\n)*\s+- tfplan\n", apply), "apply exactly the reviewed plan"
    for step in ("terraform-init", "terraform-plan", "terraform-apply"):
        assert "dir: terraform" in _step(step)
        assert "name: hashicorp/terraform:${_TF_VERSION}" in _step(step)


@pytest.mark.parametrize("name", ["_REGION", "_STATE_BUCKET"])
def test_substitutions_are_declared(name: str) -> None:
    assert re.search(rf"^  {name}:", TEXT, re.MULTILINE)


def test_every_dollar_is_a_known_substitution_or_escaped() -> None:
    declared = set(re.findall(r"^  (_[A-Z0-9_]+):", TEXT, re.MULTILINE))
    body = TEXT.split("\nsteps:\n", 1)[1]
    for match in re.finditer(r"\$(\$|\{[^}]*\}|[A-Z_]+)", body):
        token = match[1]
        if token == "$":
            continue
        name = token.strip("{}")
        assert name in declared | {"PROJECT_ID", "BUILD_ID", "PROJECT_NUMBER", "LOCATION"}, (
            f"${token} is not a substitution: Cloud Build would reject or blank it (write $$ for a shell $)"
        )
