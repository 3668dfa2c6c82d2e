"""Structured logs: Cloud Logging's shape, and no raw PII even if a caller slips."""

from __future__ import annotations

import json

from shared.infra import log


def test_lines_are_json_with_severity_and_message(capsys):
    log.outcome("sent", "event delivered", event_id="e1", count=2)
    record = json.loads(capsys.readouterr().out.strip())
    assert record["severity"] == "INFO" and record["message"] == "event delivered"
    assert record["outcome"] == "sent" and record["event_id"] == "e1" and record["count"] == 2


def test_personal_fields_and_email_addresses_never_reach_the_log(capsys):
    log.warning("bad order from jane.doe@example.com", email="jane.doe@example.com", phone="+12133734253",
                detail={"first_name": "Jane", "order": 5})  # fmt: skip
    out = capsys.readouterr().out
    assert "jane.doe" not in out and "+12133734253" not in out and "Jane" not in out
    assert json.loads(out)["detail"] == {"order": 5}


def test_dead_outcomes_are_warnings(capsys):
    log.outcome("dead", "refused by TikTok", code=40002)
    assert json.loads(capsys.readouterr().out)["severity"] == "WARNING"


def test_a_lone_surrogate_in_any_field_or_message_still_writes_a_utf8_line(capsys):
    log.info("user agent \ud800", user_agent="Mozilla\udc00", nested={"k": ["\ud800"]})
    line = capsys.readouterr().out
    line.encode("utf-8")
    record = json.loads(line)
    assert record["user_agent"] == "Mozilla\ufffd" and record["nested"] == {"k": ["\ufffd"]}


def test_bound_fields_are_scrubbed_like_any_other(capsys):
    with log.request_context({}, email="jane.doe@example.com", note="from jane.doe@example.com"):
        log.info("x")
    record = json.loads(capsys.readouterr().out)
    assert "email" not in record and record["note"] == "from [email]"


SPOOFING = {
    "line separator": "\u2028",
    "paragraph separator": "\u2029",
    "right-to-left override": "\u202e",
    "left-to-right isolate": "\u2066",
    "zero-width space": "\u200b",
    "next line (C1)": "\x85",
    "C1 control": "\x9b",
    "delete": "\x7f",
    "byte order mark": "\ufeff",
    "newline (C0)": "\n",
    "carriage return (C0)": "\r",
}


def test_characters_that_split_or_reorder_a_line_in_a_viewer_come_out_escaped(capsys):
    """One entry must display as one line, in order: a forged second entry cannot ride in a field."""
    for name, character in SPOOFING.items():
        text = f'order 1{character}{{"severity": "ERROR"}}'
        log.info(f"message {text}", field=text, **{f"key{character}": "v"})
        out = capsys.readouterr().out
        assert out.endswith("\n") and out.count("\n") == 1, name
        line = out[:-1]
        assert character not in line, f"{name} written raw"
        assert f"\\u{ord(character):04x}" in line or repr(character)[1:-1] in line, name
        record = json.loads(line)  # still the same JSON: the escape decodes back to the character
        assert record["field"] == text and record["message"] == f"message {text}", name


def test_ordinary_non_ascii_text_is_written_as_it_is(capsys):
    log.info("Zoë's order in Köln, 東京", shop="Zürich")
    line = capsys.readouterr().out
    assert "Zoë's order in Köln, 東京" in line and "Zürich" in line
