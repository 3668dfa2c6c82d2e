"""Headless browsers are dropped as bots unless COLLECT_ALLOW_AUTOMATED_BROWSERS is set (off by default)."""

from __future__ import annotations

from shared.config import CollectSettings
from shared.receive.collect.admission import is_bot

HEADLESS = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0 Safari/537.36"


def test_headless_browsers_are_bots_by_default():
    assert is_bot(HEADLESS)
    assert CollectSettings.from_env({"TIKTOK_PIXEL_CODE": "C1"}).allow_automated_browsers is False


def test_the_setting_lets_headless_browsers_through_but_not_crawlers_or_http_libraries():
    settings = CollectSettings.from_env({"TIKTOK_PIXEL_CODE": "C1", "COLLECT_ALLOW_AUTOMATED_BROWSERS": "true"})
    assert settings.allow_automated_browsers is True
    assert not is_bot(HEADLESS, allow_automated=True)
    for agent in ("curl/8.5.0", "python-httpx/0.27", "Googlebot/2.1 (+http://www.google.com/bot.html)", ""):
        assert is_bot(agent, allow_automated=True), agent
