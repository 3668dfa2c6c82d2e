"""Several pixels locally: the sandbox holds a token per pixel as TikTok does, and the README's example delivers."""

from __future__ import annotations

import json
import re
import shlex
import time

import httpx
import pytest

from tests.helpers import ROOT
from tests.stack.test_first_run import clean_env, make, start_local_stack, stop_local_stack

# --- the README's example on the local stack ----------------------------------------------


def readme_tenants_example() -> dict[str, str]:
    """PIPELINE_TENANTS and the secret variables exactly as the README's "Several pixels and shops" shows them."""
    section = ROOT.joinpath("README.md").read_text().split("### Several pixels and shops", 1)[1].split("\n## ", 1)[0]
    tenants = section.split("```json\n", 1)[1].split("```", 1)[0]
    secrets = section.split("```sh\n", 1)[1].split("```", 1)[0]
    settings = {"PIPELINE_TENANTS": json.dumps(json.loads(tenants))}
    for line in secrets.strip().splitlines():
        name, _, value = line.partition("=")
        settings[name] = shlex.split(value)[0]
    return settings


@pytest.mark.stack
@pytest.mark.starts_own_processes(reason="starts `make run` with the README's tenants")
def test_the_readme_multi_tenant_example_runs_locally_and_delivers_for_two_pixels(tmp_path):
    settings = readme_tenants_example()
    pixels = sorted(json.loads(settings["PIPELINE_TENANTS"])["pixels"])
    assert len(pixels) == 2 and set(json.loads(settings["TIKTOK_ACCESS_TOKEN"])) == set(pixels)
    running = start_local_stack(tmp_path, **settings)
    try:
        banner = running.output.text
        expected = (
            "pixel CABC123: consent opt-in",
            "pixel CDEF456: consent opt-out",
            "Shopify shop example.myshopify.com -> CABC123",
            "WooCommerce site woo.example -> CDEF456",
        )
        for line in expected:
            assert line in banner, banner
        assert "NO TOKEN" not in banner and "CLOCALPIXEL0001" not in banner  # the ignored single-tenant default

        demo = make("demo", clean_env(LOCAL_STACK_FILE=str(running.stack_file)), timeout=120)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        shop_order = re.search(r"Shopify orders/paid for order (\d+)", demo.stdout).group(1)
        woo_order = re.search(r"WooCommerce order\.created for order (\d+)", demo.stdout).group(1)
        sandbox = running.url("sandbox")
        shop_events = httpx.get(f"{sandbox}/sandbox/events", params={"pixel": "CABC123"}).json()["events"]
        assert [e["event_id"] for e in shop_events] == [f"shopify:example.myshopify.com:order:{shop_order}:Purchase"]
        for _ in range(120):  # the demo waited for the Shopify event; the WooCommerce one may trail it
            woo_events = httpx.get(f"{sandbox}/sandbox/events", params={"pixel": "CDEF456"}).json()["events"]
            if woo_events:
                break
            time.sleep(0.25)
        assert [e["event_id"] for e in woo_events] == [f"woocommerce:woo.example:order:{woo_order}:Purchase"]
        codes = [r["code"] for r in httpx.get(f"{sandbox}/sandbox/requests").json()["requests"]]
        assert codes and set(codes) == {0}, "each pixel's events went out with that pixel's own token"
    finally:
        stop_local_stack(running)
