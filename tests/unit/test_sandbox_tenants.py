"""The sandbox holds a token per pixel as TikTok does: each token is accepted for its own pixel only."""

from __future__ import annotations

import json

import pytest

from sandbox import TRACK_PATH, create_app
from sandbox.__main__ import parse_args
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
