"""Personal data removed from free text before it is published (shared.domain.scrub)."""

from __future__ import annotations

import pytest

from shared.domain.scrub import looks_like_pii, scrub_text, scrub_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://shop.example/products/tee?ttclid=E.C.P.abc&utm_source=tiktok&utm_campaign=x",
         "https://shop.example/products/tee?ttclid=E.C.P.abc&utm_source=tiktok&utm_campaign=x"),
        ("https://shop.example/thanks?email=jo%40example.com&ttclid=abc", "https://shop.example/thanks?ttclid=abc"),
        ("https://shop.example/thanks?phone=%2B15551234567&name=Jo+Doe", "https://shop.example/thanks"),
        ("https://shop.example/account/jo@example.com/orders", "https://shop.example/account/[redacted]/orders"),
        ("https://shop.example/p?utm_term=jo@example.com", "https://shop.example/p?utm_term=%5Bredacted%5D"),
        ("https://jo:secret@shop.example:8443/p#email=jo@example.com", "https://shop.example:8443/p"),
        ("HTTPS://Shop.Example/Path", "https://shop.example/Path"),
    ],
)  # fmt: skip
def test_urls_keep_only_what_attribution_needs(url: str, expected: str) -> None:
    assert scrub_url(url) == expected


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "mailto:jo@example.com", "not a url", "https://", "http://[::1"]
)
def test_what_is_not_a_web_url_is_dropped(url: str) -> None:
    assert scrub_url(url) is None


@pytest.mark.parametrize(
    "text",
    ["jo@example.com", "jo%40example.com", "+1 (555) 123-4567", "555 123 4567", "0049 30 1234567", "+447911123456",
     "call 5551234567 now"],
)  # fmt: skip
def test_email_and_phone_shaped_runs_are_redacted(text: str) -> None:
    assert looks_like_pii(text)
    scrubbed = scrub_text(text)
    assert "[redacted]" in scrubbed
    assert "@" not in scrubbed and "%40" not in scrubbed and "4567" not in scrubbed and "3456" not in scrubbed


@pytest.mark.parametrize("text", ["order 12345", "2026-12-02", "$1234.50", "size 42, qty 3", "summer-sale-2026"])
def test_ordinary_values_are_left_alone(text: str) -> None:
    assert not looks_like_pii(text)
    assert scrub_text(text) == text
