"""Bounded reading and parsing of input anyone can send (shared.domain.untrusted)."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.untrusted import BodyTooLarge, UnsafeInput, ascii_int, clean_text, parse_json, read_body


class CountingStream(io.RawIOBase):
    """A stream of ``size`` bytes that counts how many were read, like a chunked upload."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.read_bytes = 0

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.read_bytes if n < 0 else min(n, self.size - self.read_bytes)
        self.read_bytes += n
        return b"x" * n


def test_a_body_within_the_limit_is_read_whole() -> None:
    stream = CountingStream(1000)
    assert read_body(stream.read, 1000) == b"x" * 1000


def test_a_large_chunked_body_is_refused_after_reading_at_most_the_limit_plus_one() -> None:
    stream = CountingStream(30 * 1024 * 1024)
    with pytest.raises(BodyTooLarge) as refused:
        read_body(stream.read, 65536)
    assert stream.read_bytes <= 65537
    assert refused.value.status == 413


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    stream = CountingStream(30 * 1024 * 1024)
    with pytest.raises(BodyTooLarge):
        read_body(stream.read, 65536, declared_length=30 * 1024 * 1024)
    assert stream.read_bytes == 0


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{", "not valid JSON"),
        (b'{"n": ' + b"9" * 5000 + b"}", "longer than 40 digits"),
        (b'{"n": -' + b"9" * 41 + b"}", "longer than 40 digits"),
        (b'{"t": 1e999}', "finite"),
        (b'{"t": -1e999}', "finite"),
        (b'{"t": NaN}', "NaN"),
        (b'{"t": Infinity}', "Infinity"),
        (b"[" * 1000 + b"]" * 1000, "nested deeper"),
        (b"[" * 100000 + b"]" * 100000, "nested deeper"),
        (b'{"a": "\\ud800"}', "surrogate"),
        (b'{"\\udc00": 1}', "surrogate"),
        (b'"\\ud800"', "surrogate"),
    ],
)
def test_hostile_json_is_refused_with_a_reason_that_does_not_quote_it(raw: bytes, problem: str) -> None:
    with pytest.raises(UnsafeInput) as refused:
        parse_json(raw)
    assert problem in str(refused.value)
    assert "999" not in str(refused.value) and "ud800" not in str(refused.value)


def test_depth_counts_the_top_level_value_as_one() -> None:
    assert parse_json(b"[[[1]]]", max_depth=3) == [[[1]]]
    with pytest.raises(UnsafeInput):
        parse_json(b"[[[[1]]]]", max_depth=3)
    assert parse_json(b'{"a": {"b": [1]}}', max_depth=3) == {"a": {"b": [1]}}


def test_surrogates_can_be_replaced_so_a_signed_order_is_not_lost() -> None:
    document = parse_json(b'{"ua": "Mozilla\\ud800", "\\udc00k": ["x\\ud800", {"y": "\\udbff"}]}', surrogates="replace")
    assert document == {"ua": "Mozilla\ufffd", "\ufffdk": ["x\ufffd", {"y": "\ufffd"}]}
    json.dumps(document, ensure_ascii=False).encode("utf-8")  # serialisable again


def test_ordinary_json_is_unchanged_and_integers_stay_exact() -> None:
    raw = b'{"id": 820982911946154508, "total": "199.65", "price": 12.5, "items": [{"q": 2}], "ok": true}'
    assert parse_json(raw) == json.loads(raw)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("²", None), ("١٢", None), ("12", 12), (12, 12), (-1, None), (True, None), ("1" * 20, None), (" 7 ", 7),
     ("", None), (1.5, None)],
)  # fmt: skip
def test_ascii_int_takes_only_ascii_digits(value: object, expected: int | None) -> None:
    assert ascii_int(value) == expected


def test_clean_text_replaces_only_lone_surrogates() -> None:
    assert clean_text("a\ud800b😀") == "a\ufffdb😀"
    assert clean_text("plain") == "plain"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_either_parse_or_are_refused_as_unsafe_input(raw: bytes) -> None:
    try:
        document = parse_json(raw)
    except UnsafeInput:
        return
    json.dumps(document, ensure_ascii=False).encode("utf-8")


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
)
def test_any_json_value_within_the_bounds_round_trips(value: object) -> None:
    raw = json.dumps(value)
    try:
        assert parse_json(raw, max_int_digits=400) == json.loads(raw)
    except UnsafeInput as refused:  # only nesting or a lone surrogate may refuse generated text
        assert "nested" in str(refused) or "surrogate" in str(refused)
