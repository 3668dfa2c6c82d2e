"""Browser fixtures: a real headless Chromium (Debian's chromium + chromium-driver), the demo page, collect.

- ``demo_site`` (module): ``snippets/`` served on a free loopback port, so the
  demo page loads ``snippets/collect.js`` exactly as a merchant would ship it.
- ``demo_collect`` (module): a collect process of the stack's code and settings
  (same Firestore prefix and Pub/Sub topic, so events flow through the stack's
  sender to its sandbox) that also allows the demo page's origin.
- ``browser`` (per test): a fresh Chromium profile (no cookies shared between
  tests) with a normal desktop user agent, because collect drops ``HeadlessChrome``
  as a bot.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import localstack
import pytest

from tests.helpers import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# What the demo collect verifies customer ids with (the store's server would sign with it).
BROWSER_SIGNING_SECRET = "browser-signing-secret"
DESKTOP_CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        pass


@dataclass
class DemoSite:
    origin: str

    def page(self, **params: str) -> str:
        from urllib.parse import urlencode

        return f"{self.origin}/demo/index.html?{urlencode(params)}"


@pytest.fixture(scope="module")
def demo_site() -> Iterator[DemoSite]:
    handler = functools.partial(_QuietHandler, directory=str(ROOT / "snippets"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield DemoSite(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def demo_collect(stack: Any, demo_site: DemoSite) -> Iterator[str]:
    """The stack's collect code and settings, plus the demo page's (free-port) origin."""
    port = localstack.free_port()
    env = stack.stack.function_env("collect")
    env["COLLECT_ALLOWED_ORIGINS"] = f"{env['COLLECT_ALLOWED_ORIGINS']},{demo_site.origin}"
    env["COLLECT_SIGNING_SECRET"] = BROWSER_SIGNING_SECRET
    # Started (and logged to .run/collect-browser.log) the way the stack starts its functions.
    process = localstack._start(
        [stack.stack.python, "-m", "functions_framework", "--target", "collect",
         "--source", str(ROOT / "functions" / "collect" / "main.py"), "--host", "127.0.0.1", "--port", str(port)],
        env, "collect-browser",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        localstack.wait_http(url + "healthz", timeout=60, process=process)
        yield url
    finally:
        localstack.stop_process(process)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("Chromium is missing: apt-get install -y chromium chromium-driver (make test does it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="collect-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                     f"--user-data-dir={profile}", f"--user-agent={DESKTOP_CHROME}"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
