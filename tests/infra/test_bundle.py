"""scripts/bundle.py and Terraform build the same bundle, and each bundle imports on its own.

The last test is the slow one (one fresh virtual environment with requirements.txt,
about a minute); it is part of the normal run because it is the only check that a
deployed function can import ``shared`` and find its entry point.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from shared.config import function_settings
from tests.infra.conftest import ROOT
from tests.infra.hcl import Terraform, squash

FUNCTIONS = tuple(function_settings())


def _load_bundle_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bundle_under_test", ROOT / "scripts" / "bundle.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bundle = _load_bundle_module()


def _fileset(folder: Path) -> list[str]:
    """Terraform's fileset(folder, "**"): every file below folder, /-separated, relative."""
    if not folder.is_dir():
        return []
    return sorted(
        os.path.relpath(os.path.join(d, f), folder).replace(os.sep, "/")
        for d, _, files in os.walk(folder)
        for f in files
    )


def terraform_selection(tf: Terraform, root: Path, function: str) -> dict[str, str]:
    """What terraform/functions.tf's bundle_parts/bundle_files select, re-implemented from the parsed values."""
    exclude = re.compile(tf.locals["bundle_exclude_regex"])
    shared = tf.locals["bundle_shared_package"]
    parts = [
        {f: f"functions/{function}/{f}" for f in _fileset(root / "functions" / function)},
        {f"{shared}/{f}": f"{shared}/{f}" for f in _fileset(root / shared)},
        {f: f for f in tf.locals["bundle_root_files"]},
    ]
    selected: dict[str, str] = {}
    for part in parts:
        selected.update({inside: source for inside, source in part.items() if not exclude.search(inside)})
    return selected


def _relative(files: dict[str, Path], root: Path) -> dict[str, str]:
    return {inside: source.relative_to(root).as_posix() for inside, source in files.items()}


def test_terraform_and_bundle_py_share_the_same_rules(tf: Terraform) -> None:
    assert tf.locals["bundle_exclude_regex"] == bundle.EXCLUDE_REGEX
    assert tf.locals["bundle_shared_package"] == bundle.SHARED_PACKAGE
    assert tf.locals["bundle_root_files"] == list(bundle.ROOT_FILES)
    # Python's re and Terraform's RE2 must read the pattern the same way, and HCL
    # and Python must not unescape it differently: no escapes, no lookaround.
    assert "\\" not in bundle.EXCLUDE_REGEX, "write [.] rather than \\. so HCL and Python agree"
    assert "(?" not in bundle.EXCLUDE_REGEX, "RE2 has no lookaround or inline flags"


def test_terraform_applies_the_rules_to_paths_inside_the_bundle(tf: Terraform) -> None:
    assert squash(tf.locals["bundle_parts"]) == squash(
        "{for name in keys(local.functions) : name => ["
        '{for f in fileset("${local.repo_root}/functions/${name}", "**") : f => "functions/${name}/${f}"'
        " if !can(regex(local.bundle_exclude_regex, f))}, "
        '{for f in fileset("${local.repo_root}/${local.bundle_shared_package}", "**") : '
        '"${local.bundle_shared_package}/${f}" => "${local.bundle_shared_package}/${f}"'
        ' if !can(regex(local.bundle_exclude_regex, "${local.bundle_shared_package}/${f}"))}, '
        "{for f in local.bundle_root_files : f => f if !can(regex(local.bundle_exclude_regex, f))}]}"
    ), "functions.tf changed how bundles are assembled: update scripts/bundle.py and terraform_selection() to match"
    assert squash(tf.locals["bundle_files"]) == squash(
        "{for name, parts in local.bundle_parts : name => merge(parts ...)}"
    )
    archive = tf.data[("archive_file", "bundle")]
    assert archive["for_each"] == "local.deployed_folders"
    source = tf.dynamic(archive, "source")
    assert source["for_each"] == "local.bundle_files[each.key]"
    assert source["content"][0]["filename"] == "source.key"
    assert squash(source["content"][0]["content"]) == squash('file("${local.repo_root}/${source.value}")')
    assert tf.locals["repo_root"] == "${path.module}/.."


@pytest.fixture
def cluttered_repo(tmp_path: Path) -> Path:
    """A repository tree with everything a working copy accumulates next to the real sources."""
    files = {
        "functions/demo/main.py": "x = 1\n",
        "functions/demo/helpers.py": "",
        "functions/demo/data/topics.json": "{}",
        "functions/demo/__pycache__/main.cpython-311.pyc": "",
        "functions/demo/tests/test_main.py": "",
        "functions/demo/test_demo.py": "",
        "functions/demo/demo_test.py": "",
        "functions/demo/conftest.py": "",
        "functions/demo/.env": "SECRET=1",
        "functions/demo/.pytest_cache/v/cache/lastfailed": "{}",
        "functions/demo/stale.pyc": "",
        "functions/other/main.py": "",
        "shared/__init__.py": "",
        "shared/config.py": "",
        "shared/contest.py": "",
        "shared/__pycache__/config.cpython-311.pyc": "",
        "shared/test/fixture.py": "",
        "shared/.DS_Store": "",
        "requirements.txt": "functions-framework\n",
        "README.md": "",
        "tests/test_everything.py": "",
    }
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_bundle_py_selects_what_terraform_selects(tf: Terraform, cluttered_repo: Path) -> None:
    chosen = _relative(bundle.bundle_files("demo", cluttered_repo), cluttered_repo)
    assert chosen == terraform_selection(tf, cluttered_repo, "demo")
    assert chosen == {
        "main.py": "functions/demo/main.py",
        "helpers.py": "functions/demo/helpers.py",
        "data/topics.json": "functions/demo/data/topics.json",
        "shared/__init__.py": "shared/__init__.py",
        "shared/config.py": "shared/config.py",
        "shared/contest.py": "shared/contest.py",
        "requirements.txt": "requirements.txt",
    }


@pytest.mark.parametrize("name", FUNCTIONS)
def test_bundle_py_selects_what_terraform_selects_in_this_repository(tf: Terraform, name: str) -> None:
    chosen = _relative(bundle.bundle_files(name), ROOT)
    assert chosen == terraform_selection(tf, ROOT, name)
    assert chosen["main.py"] == f"functions/{name}/main.py"
    assert chosen["shared/__init__.py"] == "shared/__init__.py"
    assert chosen["requirements.txt"] == "requirements.txt"
    assert not [p for p in chosen if "__pycache__" in p or "/tests/" in p or p.startswith("tests/")]


def test_a_path_provided_twice_is_refused(cluttered_repo: Path) -> None:
    (cluttered_repo / "functions/demo/requirements.txt").write_text("flask\n")
    with pytest.raises(bundle.BundleError, match="requirements.txt"):
        bundle.bundle_files("demo", cluttered_repo)


def test_a_function_without_main_py_is_refused(cluttered_repo: Path) -> None:
    (cluttered_repo / "functions/demo/main.py").unlink()
    with pytest.raises(bundle.BundleError, match="main.py"):
        bundle.bundle_files("demo", cluttered_repo)


def test_an_unknown_function_is_refused_with_the_known_ones(cluttered_repo: Path) -> None:
    with pytest.raises(bundle.BundleError, match="demo, other"):
        bundle.bundle_files("nope", cluttered_repo)


def test_the_command_writes_a_directory_and_a_reproducible_zip(tmp_path: Path) -> None:
    script = str(ROOT / "scripts" / "bundle.py")
    for out in ("dir", "a.zip", "b.zip"):
        result = subprocess.run([sys.executable, script, "sender", str(tmp_path / out)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    in_dir = sorted(p.relative_to(tmp_path / "dir").as_posix() for p in (tmp_path / "dir").rglob("*") if p.is_file())
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert sorted(archive.namelist()) == in_dir
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    assert (tmp_path / "dir" / "main.py").read_bytes() == (ROOT / "functions/sender/main.py").read_bytes()
    again = subprocess.run([sys.executable, script, "sender", str(tmp_path / "dir")], capture_output=True, text=True)
    assert again.returncode == 1 and "not an empty directory" in again.stderr


# --------------------------------------------------------------------------
# Each bundle imports alone, with only requirements.txt installed
# --------------------------------------------------------------------------

# What a single-tenant deployment sets (terraform.tfvars.example); secrets as
# Secret Manager would inject them.
SAMPLE_ENV = {
    "GOOGLE_CLOUD_PROJECT": "bundle-test",
    "FIRESTORE_DATABASE": "(default)",
    "LOG_LEVEL": "INFO",
    "TIKTOK_PIXEL_CODE": "CBUNDLETEST00001",
    "CONSENT_POLICY": "opt-in",
    "DEFAULT_PHONE_REGION": "US",
    "PUBSUB_TOPIC": "tiktok-events",
    "COLLECT_ALLOWED_ORIGINS": "https://shop.example.test",
    "CLICK_TTL_DAYS": "7",
    "COLLECT_BROWSER_PURCHASES": "false",  # true only with collect_browser_purchase_max_value
    "CONSENT_GPC": "limited",  # or deny
    "ORDER_MAX_EVENT_AGE_DAYS": "7",  # order_max_event_age_days
    "COLLECT_TRUSTED_PROXY_HOPS": "1",  # set only behind the load balancer (collect_load_balancer)
    "SHOPIFY_SHOP_DOMAIN": "bundle-test.myshopify.com",
    "SHOPIFY_INCLUDE_TEST_ORDERS": "false",  # include_test_orders
    "SHOPIFY_API_VERSION": "2026-10",  # shopify_api_version
    "WOOCOMMERCE_SITE_URL": "https://woo.example.test",
    "TIKTOK_API_URL": "https://business-api.tiktok.com/open_api/v1.3/event/track/",
    "TIKTOK_ACCESS_TOKEN": "bundle-test-token",
    "SHOPIFY_WEBHOOK_SECRET": "bundle-test-secret",
    "WOOCOMMERCE_WEBHOOK_SECRET": "bundle-test-secret",
    "COLLECT_SIGNING_SECRET": "bundle-test-secret",
    "SIGNED_ORDERS_SITE": "shop.example.test",  # source_settings
    "SIGNED_ORDERS_SECRET": "bundle-test-secret",
    "RECONCILE_WINDOW_HOURS": "72",  # reconcile_job
    "RECONCILE_BACKFILL": "true",
    "RECONCILE_REPAIR": "false",
    "SHOPIFY_ADMIN_TOKEN": "bundle-test-token",
    "SHOPIFY_CLIENT_SECRET": " ",  # a credential the merchant does not use: a blank (secret_setup_commands)
    "WOOCOMMERCE_API_KEY": "ck_bundle_test",
    "WOOCOMMERCE_API_SECRET": "cs_bundle_test",
}
# Set by Terraform only when the operator asks for them (null or empty by default).
OPTIONAL_ENV = {"PIPELINE_TENANTS", "TIKTOK_TEST_EVENT_CODE", "COLLECT_KEYS", "FIRESTORE_COLLECTION_PREFIX",
                "COLLECT_BROWSER_PURCHASE_MAX_VALUE", "SIGNED_ORDERS_TOLERANCE_SECONDS",
                "SIGNED_ORDERS_MAX_BODY_BYTES",
                # the reconcile job's source_settings, and its local stand-in shops (never set by Terraform)
                "SHOPIFY_CLIENT_ID", "RECONCILE_SHOPIFY_WEBHOOK_URL", "RECONCILE_SHOPIFY_TOPICS",
                "RECONCILE_WOOCOMMERCE_WEBHOOK_URL", "RECONCILE_MAX_ORDERS", "RECONCILE_TIMEOUT_SECONDS",
                "RECONCILE_MAX_RETRIES", "SHOPIFY_ADMIN_URL", "WOOCOMMERCE_API_URL"}  # fmt: skip

# Runs inside the bundle with the fresh venv: loads main.py exactly as the
# runtime does (functions_framework.create_app with the Terraform entry point).
_IMPORT_CHECK = r"""
import os, sys
repo, entry = os.path.realpath(sys.argv[1]), sys.argv[2]
bundle = os.path.realpath(os.getcwd())

def inside(path, root):
    path = os.path.realpath(path)
    return path == root or path.startswith(root + os.sep)

leaks = [p for p in sys.path if p and inside(p, repo) and not inside(p, bundle)]
if leaks:
    sys.exit(f"the repository is on sys.path: {leaks}")
from functions_framework import create_app
create_app(entry, os.path.join(bundle, "main.py"))
main = sys.modules["main"]
if not callable(getattr(main, entry, None)):
    sys.exit(f"main.py defines no callable {entry!r}")
# Every shared module must import from the bundle with only requirements.txt
# installed, whether or not this main.py uses it yet.
import importlib, pkgutil
import shared
for info in pkgutil.iter_modules(shared.__path__):
    importlib.import_module(f"shared.{info.name}")
for name, module in sorted(sys.modules.items()):
    if (name == "main" or name == "shared" or name.startswith("shared.")) and not inside(module.__file__, bundle):
        sys.exit(f"{name} was imported from {module.__file__}, not from the bundle")
print("ok")
"""


def _runtime_env(
    tf: Terraform, function: str, name: str, entry: str, venv: Path, bundle_dir: Path, home: Path
) -> dict[str, str]:
    plain = tf.view("function_env")[function]
    secrets = [s["env"] for s in tf.view("secrets", everything=True).values() if s["function"] == name]
    keys = set(plain) | set(secrets)
    unknown = keys - set(SAMPLE_ENV) - OPTIONAL_ENV - {"THREADS"}
    assert not unknown, f"give {sorted(unknown)} a sample value in SAMPLE_ENV (or list it in OPTIONAL_ENV)"
    env = {key: SAMPLE_ENV[key] for key in keys if key in SAMPLE_ENV}
    env["THREADS"] = str(tf.locals["functions"][name]["sizing"]["max_instance_request_concurrency"])
    return {
        **env,
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "PYTHONPATH": str(bundle_dir),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(home),
        "FUNCTION_TARGET": entry,
        "K_SERVICE": f"tiktok-{name.replace('_', '-')}",
        "PORT": "8080",
        # No Google credentials here: clients created at import talk to a closed
        # local port instead of looking for credentials (nothing is called).
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:9",
    }


def test_every_bundle_imports_its_entry_point_in_a_clean_venv(tf: Terraform, tmp_path: Path) -> None:
    script = ROOT / "scripts" / "bundle.py"
    bundles: dict[str, Path] = {}
    for name in FUNCTIONS:
        out = tmp_path / "bundles" / name
        result = subprocess.run([sys.executable, str(script), name, str(out)], capture_output=True, text=True)
        assert result.returncode == 0, f"bundle.py {name}: {result.stderr}"
        bundles[name] = out

    requirements = {(b / "requirements.txt").read_bytes() for b in bundles.values()}
    assert len(requirements) == 1, "bundles differ in requirements.txt: one shared venv would not be representative"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip_env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(bundles[FUNCTIONS[0]] / "requirements.txt")],
        capture_output=True, text=True, env=pip_env, timeout=1200,
    )  # fmt: skip
    assert install.returncode == 0, (
        f"pip install -r requirements.txt failed:\n{install.stdout[-3000:]}{install.stderr[-3000:]}"
    )

    failures = []
    # Every function that may be deployed (terraform/functions.tf, local.cloud_functions) in the bundle of its folder.
    for function, deployed in tf.view("cloud_functions").items():
        name, entry = deployed["folder"], deployed["entry_point"]
        bundle_dir = bundles[name]
        result = subprocess.run(
            [str(venv / "bin" / "python"), "-s", "-c", _IMPORT_CHECK, str(ROOT), entry],
            cwd=bundle_dir,
            env=_runtime_env(tf, function, name, entry, venv, bundle_dir, tmp_path),
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode != 0 or result.stdout.strip() != "ok":
            failures.append(
                f"--- {function} (functions/{name}, {entry}):\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
            )
    assert not failures, "bundles that do not import on their own:\n" + "\n".join(failures)
