"""The repository stands alone: what `make test`, `make run` and `make bench` read is inside it.

The project grew beside a folder of reference notes and sample payloads (../shared);
a copy of the repository with nothing beside it must still pass the tests that read
files (price list, fixtures, provider schema, golden files, Terraform).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Tests whose inputs are files of the repository, and none of which needs the emulators.
FILE_READING_TESTS = [
    "tests/unit/test_bench_cost.py",  # bench/prices.md
    "tests/unit/test_shopify_mapping.py",  # tests/fixtures/shopify
    "tests/unit/test_woocommerce.py",  # tests/fixtures/woocommerce
    "tests/unit/test_hashing.py",
    "tests/infra/test_provider_schema.py",  # tests/infra/provider_schema.json.gz, terraform/
]
CODE_FOLDERS = ("bench", "functions", "sandbox", "scripts", "shared", "tests")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def _lay_alone(destination: Path) -> str:
    """The repository at ``destination``: a clone of HEAD if the tree is clean, else the files a commit would hold."""
    if not _git("status", "--porcelain", "--untracked-files=normal").strip():
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(destination)], check=True)
        return "clone of HEAD"
    # Uncommitted work: copy what a commit of the tree would hold (tracked and new, not ignored files).
    for name in _git("ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0"):
        source = ROOT / name
        if name and source.is_file():  # tracked files deleted in the tree are not copied
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return "copy of the working tree"


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("the standalone check needs git and the repository's .git folder")
    folder = tmp_path_factory.mktemp("alone")
    repo = folder / "repo"
    how = _lay_alone(repo)
    assert sorted(p.name for p in folder.iterdir()) == ["repo"], "the copy must have nothing beside it"
    return repo, how


def test_the_file_reading_tests_pass_in_a_copy_with_nothing_beside_it(alone: tuple[Path, str]) -> None:
    repo, how = alone
    for test in FILE_READING_TESTS:
        assert (repo / test).is_file(), f"{test} is not in the {how}: is it committed (or at least not ignored)?"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *FILE_READING_TESTS],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"in a {how} at {repo}, with nothing beside it:\n{output[-6000:]}"
    assert " passed" in output and " failed" not in output, output[-2000:]
    assert str(ROOT) not in output.replace(str(repo), ""), (
        f"the copy's tests named the original tree:\n{output[-3000:]}"
    )


def _outside_paths(source: str, name: str) -> list[str]:
    """String literals (docstrings aside) and ROOT.parent expressions that lead out of the repository."""
    tree = ast.parse(source, name)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
            if text.startswith("../") or "/../" in text or "shared/reference" in text or "shared/fixtures" in text:
                found.append(f"{name}:{node.lineno}: {text[:80]!r}")
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "parent"
            and isinstance(node.value, ast.Name)
            and node.value.id in {"ROOT", "REPO", "REPO_ROOT"}
        ):
            found.append(f"{name}:{node.lineno}: {node.value.id}.parent")
    return sorted(found, key=lambda hit: int(hit.split(":")[1]))


def test_no_code_reads_a_path_outside_the_repository() -> None:
    files = [
        ROOT / name
        for name in _git("ls-files", "--cached", "--others", "--exclude-standard", *CODE_FOLDERS).splitlines()
        if name.endswith(".py") and (ROOT / name).is_file() and ROOT / name != Path(__file__).resolve()
    ]
    assert len(files) > 20, f"only {len(files)} Python files found: is git listing the tree?"
    found = [hit for path in files for hit in _outside_paths(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "paths leading out of the repository (copy what they read into it):\n" + "\n".join(found)


def test_the_scan_finds_paths_that_lead_out_of_the_repository() -> None:
    planted = '''"""Docstrings may mention ../shared/reference/gcp.md."""
ROOT = Path(__file__).parent
PRICES = ROOT.parent / "shared" / "reference" / "gcp.md"  # ../shared in a comment is fine
NOTES = "../shared/reference/webhooks.md"
'''
    assert _outside_paths(planted, "bench/x.py") == [
        "bench/x.py:3: ROOT.parent",
        "bench/x.py:4: '../shared/reference/webhooks.md'",
    ]
