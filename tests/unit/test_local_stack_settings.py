"""The local stack's settings are checked before anything starts, and a stack file left by a dead stack is not
trusted.
"""

from __future__ import annotations

import json
import subprocess
import sys

import localstack


def test_every_bad_variable_gets_its_own_line_and_secrets_are_never_echoed():
    env = {**localstack.dev_settings({}), "CONSENT_POLICY": "maybe", "CLICK_TTL_DAYS": "99",
           "TIKTOK_API_URL": "ftp://nowhere",
           "SHOPIFY_WEBHOOK_SECRET": '{"other.myshopify.com": ["s3cr3t-value"]}'}  # fmt: skip
    lines = localstack.check_settings(env)
    named = sorted(line.split(":", 1)[0] for line in lines)
    assert named == ["CLICK_TTL_DAYS", "CONSENT_POLICY", "SHOPIFY_WEBHOOK_SECRET", "TIKTOK_API_URL"], lines
    assert all("Fix:" in line for line in lines)
    assert not any("s3cr3t-value" in line for line in lines)


def test_the_default_settings_and_a_valid_tenant_document_pass():
    assert localstack.check_settings(localstack.dev_settings({})) == []
    tenants = {"pixels": {"CA1": {"pixel_code": "CA1"}}, "shopify_shops": {"a.myshopify.com": {
        "domain": "a.myshopify.com", "pixel_code": "CA1"}}, "woocommerce_sites": {}}  # fmt: skip
    settings = localstack.dev_settings({"PIPELINE_TENANTS": json.dumps(tenants)})
    assert "TIKTOK_PIXEL_CODE" not in settings and "CONSENT_POLICY" not in settings  # ignored with tenants
    assert json.loads(settings["TIKTOK_ACCESS_TOKEN"]) == {"CA1": "local-sandbox-token-CA1"}
    assert localstack.check_settings(settings) == []


def test_a_file_left_by_a_dead_stack_is_not_trusted(tmp_path):
    from shared.infra import localenv

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = tmp_path / "stack.json"
    localenv.write_stack(path, {"PUBSUB_EMULATOR_HOST": "127.0.0.1:1"}, {}, pid=int(dead.stdout))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    environ = {"LOCAL_STACK_FILE": str(path)}
    assert localenv.use_local_stack(environ) is None and "PUBSUB_EMULATOR_HOST" not in environ
    localenv.write_stack(path, {"PUBSUB_EMULATOR_HOST": "127.0.0.1:1", "GOOGLE_CLOUD_PROJECT": "p"}, {})
    environ = {"LOCAL_STACK_FILE": str(path), "GOOGLE_CLOUD_PROJECT": "mine"}
    assert localenv.use_local_stack(environ) is not None
    assert environ["PUBSUB_EMULATOR_HOST"] == "127.0.0.1:1" and environ["GOOGLE_CLOUD_PROJECT"] == "mine"
