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


# --- matched on the canonical form (NFKC, invisible characters, percent-decoding) ---------

HIDDEN = [
    "jo@exämple.de", "jo@例え.jp", "mail jo@例え。jp", "jo@xn--exmple-cua.de", "jo＠example.com", "jo﹫example.com",
    "j\u200bo@exa\u200bmple.com", "jo%2540example.com", "jo%EF%BC%A0example.com", "+１ (２１３) ３７３-４２５３",
    "%2B1%20213%20373%204253", "213\u2013373\u20134253", "call ٢١٣٣٧٣٤٢٥٣",
]  # fmt: skip


@pytest.mark.parametrize("text", HIDDEN)
def test_unicode_and_percent_encoded_shapes_are_redacted(text: str) -> None:
    assert looks_like_pii(text)
    scrubbed = scrub_text(text)
    assert "[redacted]" in scrubbed and not looks_like_pii(scrubbed)
    for part in ("jo", "exämple", "例え", "4253", "٤٢٥٣", "４２５３"):
        assert part not in scrubbed.replace("[redacted]", ""), (text, scrubbed)


@pytest.mark.parametrize("text", ["Ｔシャツ 2026-12-02", "50% off", "ﬁne print", "size ＸＬ"])
def test_text_without_personal_data_comes_back_as_it_came(text: str) -> None:
    assert scrub_text(text) == text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://shop.example/a/jo%40ex%C3%A4mple.de/x", "https://shop.example/a/[redacted]/x"),
        ("https://shop.example/a/jo@例え.jp", "https://shop.example/a/[redacted]"),
        ("https://shop.example/p?utm_term=jo%EF%BC%A0example.com&ttclid=E.C.P.ok",
         "https://shop.example/p?utm_term=%5Bredacted%5D&ttclid=E.C.P.ok"),
        ("https://shop.example/p?utm_content=%EF%BC%92%EF%BC%91%EF%BC%93%EF%BC%93%EF%BC%97%EF%BC%93%EF%BC%94%EF%BC%92%EF%BC%95%EF%BC%93",
         "https://shop.example/p?utm_content=%5Bredacted%5D"),
        ("https://shop.example/p?ttclid=jo%EF%B9%ABexample.com", "https://shop.example/p?ttclid=%5Bredacted%5D"),
    ],
)  # fmt: skip
def test_urls_are_scrubbed_of_unicode_and_encoded_shapes(url: str, expected: str) -> None:
    assert scrub_url(url) == expected


def test_an_address_as_the_host_is_no_url() -> None:
    assert scrub_url("https://jo＠example.com/p") is None
