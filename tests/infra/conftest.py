"""Fixtures of the infrastructure tests: the parsed Terraform configuration and the repository paths."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = ROOT / "terraform"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.infra.hcl import Terraform  # noqa: E402


@pytest.fixture(scope="session")
def tf() -> Terraform:
    try:
        import hcl2
    except ImportError:
        pytest.fail("python-hcl2 is not installed: install requirements-dev.txt (it pins python-hcl2==8.1.4)")
    major = int(str(getattr(hcl2, "__version__", "0")).split(".")[0])
    if major < 7:
        pytest.fail(
            f"the hcl2 module here is version {getattr(hcl2, '__version__', '?')} from {hcl2.__file__}: that is "
            "checkov's fork (bc-python-hcl2), which shadows python-hcl2. Keep checkov in its own virtual "
            "environment (.venv-infra) and reinstall python-hcl2==8.1.4 in this one."
        )
    return Terraform.load(TERRAFORM_DIR)
