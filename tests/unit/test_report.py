"""The reconciliation report without Firestore: its windows, one outcome per event, its text, one-line errors of
the command.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

from shared import report
from tests.helpers import ROOT

T1 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.timezone.utc)
T2 = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.timezone.utc)

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc)


def shop_id(n: int) -> str:
    return f"shopify:s.myshopify.com:order:{n}:Purchase"


def test_windows_take_relative_and_iso_times_in_utc():
    assert report.window("24h", "now", NOW) == (NOW - dt.timedelta(hours=24), NOW)
    assert report.window("7d", "30m", NOW) == (NOW - dt.timedelta(days=7), NOW - dt.timedelta(minutes=30))
    start, end = report.window("2026-12-01", "2026-12-02T06:00+01:00", NOW)
    assert start == dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    assert end == dt.datetime(2026, 12, 2, 5, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(("since", "until", "says"), [
    ("yesterday", "now", "--since 'yesterday' is not a time"),
    ("24h", "2026-13-01", "--until '2026-13-01' is not a time"),
    ("1h", "2h", "must be before --until"),
    ("2026-12-02", "2026-12-02", "must be before --until"),
])  # fmt: skip
def test_bad_windows_say_what_is_wrong(since, until, says):
    with pytest.raises(report.ReportError, match=says):
        report.window(since, until, NOW)


def test_each_event_gets_the_furthest_outcome_it_reached_and_received_is_their_sum():
    orders = [
        {"event_id": shop_id(1), "state": "published", "created_at": T1},  # then sent
        {"event_id": shop_id(2), "state": "published", "created_at": T1},  # then dead
        {"event_id": shop_id(3), "state": "published", "created_at": T2},  # nothing from the sender yet
        {"event_id": shop_id(4), "outcome": "withheld_consent", "consent": "no_consent", "created_at": T2},
        {"event_id": shop_id(5), "outcome": "skipped", "rule": "test_order", "created_at": T2},
        {"event_id": shop_id(6), "blocked_by": "orders/cancelled", "created_at": T2},
        {"kind": "cancelled", "created_at": T2},  # a cancellation's own record: no event
        # withheld first, granted later and sent: sent
        {"event_id": shop_id(7), "outcome": "withheld_consent", "created_at": T1},
        {"event_id": shop_id(7), "state": "published", "created_at": T2},
    ]
    claims = [
        {"event_id": shop_id(1), "state": "sent", "source": "shopify", "match_keys": ["email", "ttclid"],
         "created_at": T1},
        {"event_id": shop_id(7), "state": "sent", "source": "redrive", "match_keys": ["email"], "created_at": T2},
        {"event_id": "browser-1", "state": "sent", "source": "collect", "match_keys": ["ttp", "ip_user_agent"],
         "created_at": T2},
        {"event_id": "browser-2", "state": "sending", "source": "collect", "created_at": T2},
    ]  # fmt: skip
    dead = [
        {"event_id": shop_id(2), "state": "dead", "code": 40002, "source": "shopify", "dead_at": T1},
        {"event_id": "browser-3", "state": "redriven", "code": 40002, "source": "collect", "dead_at": T2},
    ]
    summary = report.summarize(report.classify(orders, claims, dead))

    shopify = summary["shopify"]
    assert shopify["outcomes"] == {"received": 7, "sent": 2, "withheld_consent": 1, "skipped": 2, "dead": 1,
                                   "pending": 1}  # fmt: skip
    assert shopify["skipped_by_rule"] == {"cancelled": 1, "test_order": 1}
    assert shopify["dead_by_code"] == {"40002": 1}
    assert shopify["match_keys"]["email"] == 1.0 and shopify["match_keys"]["ttclid"] == 0.5
    assert shopify["match_keys"]["phone"] == 0.0 and set(shopify["match_keys"]) == set(report.match_keys.KEYS)
    assert shopify["coverage_score"] == 3.5  # (2 + 3 + 2) / 2
    assert shopify["days"]["2026-12-01"]["outcomes"]["received"] == 3  # 1, 2 and 7 (first seen on the 1st)
    assert shopify["days"]["2026-12-02"]["outcomes"]["received"] == 4

    collect = summary["collect"]
    assert collect["outcomes"] == {"received": 3, "sent": 1, "withheld_consent": 0, "skipped": 0, "dead": 0,
                                   "pending": 2}  # fmt: skip
    assert collect["match_keys"]["ip_user_agent"] == 1.0 and collect["coverage_score"] == 2
    assert set(report.summarize(report.classify(orders, claims, dead), ["collect"])) == {"collect"}


def test_a_cancellations_tombstone_on_the_purchase_counts_as_skipped_by_the_cancelled_rule():
    orders = [
        {"event_id": shop_id(1), "blocked_by": "orders/cancelled", "created_at": T1},  # written before the upgrade
        {"kind": "cancelled", "created_at": T2},  # the cancellation's own record: no event
    ]
    claims = [
        # shared.receive.orders.block_purchase: the Purchase's sender claim, taken by the cancellation.
        {"event_id": shop_id(2), "state": "cancelled", "source": "shopify", "created_at": T2},
        {"event_id": shop_id(3), "state": "sent", "source": "shopify", "match_keys": ["email"], "created_at": T2},
    ]  # fmt: skip
    shopify = report.summarize(report.classify(orders, claims, []))["shopify"]
    assert shopify["outcomes"] == {"received": 3, "sent": 1, "withheld_consent": 0, "skipped": 2, "dead": 0,
                                   "pending": 0}  # fmt: skip
    assert shopify["skipped_by_rule"] == {"cancelled": 2}
    assert shopify["match_keys"]["email"] == 1.0  # shares of what was sent: a tombstone sent nothing


def test_the_text_report_says_what_each_figure_is():
    claims = [{"event_id": "b-1", "state": "sent", "source": "collect", "match_keys": ["ttclid"], "created_at": T2}]
    text = report.render({"since": "a", "until": "b", "documents_read": 1, "truncated": False,
                          "sources": report.summarize(report.classify([], claims, []))})  # fmt: skip
    assert "1 documents read" in text and "collect" in text and "ttclid 100%" in text
    assert "not TikTok's Event Match Quality" in text


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FIRESTORE_", "PUBSUB_", "GOOGLE_"))}
    return subprocess.run(  # noqa: S603 (our own module)
        [sys.executable, "-m", "shared.report", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**clean, "LOCAL_STACK_FILE": "/nonexistent/stack.json", **env},
    )  # fmt: skip


@pytest.mark.parametrize(("args", "env", "says"), [
    (["--source", "etsy"], {}, "unknown source 'etsy': choose from shopify, woocommerce, signed_orders, collect"),
    (["--since", "last week"], {}, "--since 'last week' is not a time"),
    (["--since", "1h", "--until", "2h"], {}, "must be before --until"),
    (["--timeout", "2"], {"FIRESTORE_EMULATOR_HOST": "127.0.0.1:9", "GOOGLE_CLOUD_PROJECT": "p"},
     "could not read Firestore (project p, database (default), emulator 127.0.0.1:9)"),
])  # fmt: skip
def test_bad_input_and_an_unreachable_firestore_exit_non_zero_with_one_line(args, env, says):
    done = run_cli(*args, **env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and says in done.stderr and "Traceback" not in done.stderr
