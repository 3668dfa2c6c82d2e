"""Several pixels locally: the sandbox holds a token per pixel as TikTok does, and the README's example delivers."""

from __future__ import annotations

import json
import re
import shlex
import time

import httpx
import pytest

from sandbox import TRACK_PATH, create_app
from sandbox.__main__ import parse_args
from tests.helpers import ROOT
from tests.stack.test_first_run import clean_env, make, start_local_stack, stop_local_stack
from tests.unit.test_sandbox import make_body, make_event

TOKENS = {"CPIXELA": "token-a", "CPIXELB": "token-b"}


def send(client, pixel: str, token: str, event_id: str) -> dict:
    body = make_body(make_event(event_id), event_source_id=pixel)
    return client.post(TRACK_PATH, json=body, headers={"Access-Token": token}).get_json()


def test_each_token_of_a_map_is_accepted_for_its_own_pixel_only():
    client = create_app(TOKENS).test_client()
    assert send(client, "CPIXELA", "token-a", "a1")["code"] == 0
    assert send(client, "CPIXELB", "token-b", "b1")["code"] == 0
    refused = send(client, "CPIXELB", "token-a", "b2")
    assert refused["code"] == 40001 and "CPIXELB" in refused["message"]  # valid token, another pixel's
    assert send(client, "CPIXELA", "token-c", "a2")["code"] == 40105  # no pixel's token
    assert send(client, "CPIXELC", "token-a", "c1")["code"] == 40001  # a pixel nobody has a token for
    stored = client.get("/sandbox/events").get_json()["events"]
    assert sorted((e["event_source_id"], e["event_id"]) for e in stored) == [("CPIXELA", "a1"), ("CPIXELB", "b1")]


def test_a_token_map_and_a_pixel_list_both_apply():
    client = create_app(TOKENS, {"CPIXELA"}).test_client()
    assert send(client, "CPIXELA", "token-a", "a1")["code"] == 0
    assert send(client, "CPIXELB", "token-b", "b1")["code"] == 40001


def test_the_command_line_reads_a_json_token_map_as_the_sender_does():
    assert parse_args(["--token", json.dumps(TOKENS)], environ={}).token == TOKENS
    assert parse_args([], environ={"TIKTOK_ACCESS_TOKEN": json.dumps(TOKENS)}).token == TOKENS
    assert parse_args(["--token", "plain"], environ={}).token == "plain"
    for bad in ("{not json", "{}", '{"CPIXELA": ""}', '{"CPIXELA": 7}'):
        with pytest.raises(SystemExit):
            parse_args(["--token", bad], environ={})


def test_an_empty_token_in_a_map_is_refused_at_start():
    with pytest.raises(ValueError, match="non-empty"):
        create_app({"CPIXELA": ""})


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
        woo_order = re.search(r"WooCommerce order.updated for order (\d+)", demo.stdout).group(1)
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
