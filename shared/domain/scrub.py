"""Free text that may hold personal data, made safe to publish.

Hashed identifiers travel in their own fields; what must never travel is raw
personal data hidden in text we forward as it is: a landing URL such as
``/thanks?email=jo@example.com``, a referrer, a custom property someone named
``customer_email``. These rules apply everywhere text leaves a receiver
(Pub/Sub, and so TikTok) and are documented in docs/collect.md ("What is
forwarded").

URLs keep scheme, host, path and only the query parameters that attribution
needs (``ttclid`` and ``utm_*``); any other parameter, the fragment and any
``user:password@`` are removed, and an email- or phone-shaped path segment
or kept value is replaced. Free text has email- and phone-shaped runs
replaced by ``[redacted]``.

Matching is done on the text's canonical form (NFKC, invisible format
characters removed, ideographic full stops and Unicode dashes folded, and, when
it holds ``%``, also percent-decoded), so a fullwidth ``＠`` (U+FF20), a small
``﹫`` (U+FE6B), a domain in any script (``jo@exämple.de``, ``jo@例え.jp``),
a zero-width space inside an address or fullwidth or percent-encoded digits
hide nothing. Text with no match is returned as it came; text with one is
returned in that canonical form with every match replaced.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"
# Query parameters attribution needs; everything else may identify a person.
KEPT_QUERY_PARAMETERS = frozenset({"ttclid"})
KEPT_QUERY_PREFIXES = ("utm_",)

# An address: a local part, @ (or %40), a domain in any script whose top level is letters or punycode.
_EMAIL = re.compile(
    r"[^\s@/?&=#:;,<>()\[\]\"']+(?:@|%40)[\w-]+(?:\.[\w-]+)*\.(?:[^\W\d_]{2,}|xn--[a-z0-9-]{2,})", re.IGNORECASE
)
# What NFKC leaves apart but reads the same: IDNA's full stops, Unicode dashes and minus.
_FOLDED = str.maketrans({"\u3002": ".", "\uff61": ".", **{chr(c): "-" for c in (*range(0x2010, 0x2016), 0x2212)}})
_MAX_DECODINGS = 3
# A phone number: led by + (or 00) with 7 to 15 digits, or 9 to 15 digits without,
# optionally split by spaces, dots, dashes or brackets. Shorter runs (dates,
# quantities, prices) are left alone; a long digit run such as a barcode is not.
_PHONE = re.compile(
    r"(?<![\w.+])(?:(?:\+|%2B|00)\s?(?:\d[\s().\-]{0,2}){6,14}|\(?(?:\d[\s().\-]{0,2}){8,14})\d(?!\w)",
    re.IGNORECASE,
)


def _canonical(text: str) -> str:
    """NFKC, format characters (zero-width, bidi, soft hyphen) removed, full stops and dashes folded."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return text.translate(_FOLDED)


def _matches(text: str) -> bool:
    return bool(_EMAIL.search(text) or _PHONE.search(text))


def _forms(text: str) -> Iterator[str]:
    """The canonical form of ``text``, then of each percent-decoding of it that changes it."""
    form = _canonical(text)
    yield form
    for _ in range(_MAX_DECODINGS):
        if "%" not in form or (decoded := _canonical(unquote(form, errors="replace"))) == form:
            return
        form = decoded
        yield form


def looks_like_pii(text: str) -> bool:
    """True when ``text`` holds an email- or phone-shaped run, in its canonical or percent-decoded form."""
    return any(_matches(form) for form in _forms(text))


def scrub_text(text: str) -> str:
    """``text`` with email- and phone-shaped runs replaced by ``[redacted]``; unchanged when it holds none."""
    if not looks_like_pii(text):
        return text
    scrubbed = _canonical(text)
    for _ in range(_MAX_DECODINGS + 1):
        scrubbed = _PHONE.sub(REDACTED, _EMAIL.sub(REDACTED, scrubbed))
        if not looks_like_pii(scrubbed):
            return scrubbed
        # What is left hides behind percent-encoding: match on the decoded text.
        scrubbed = _canonical(unquote(scrubbed, errors="replace"))
    return REDACTED


def _kept(name: str) -> bool:
    lowered = name.lower()
    return lowered in KEPT_QUERY_PARAMETERS or lowered.startswith(KEPT_QUERY_PREFIXES)


def scrub_url(url: str) -> str | None:
    """``url`` without anything that may identify a person; None when it is not a URL at all."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host or looks_like_pii(host):
        return None  # a host such as "jo＠example.com" is an address, not a site
    netloc = host if port is None else f"{host}:{port}"
    if ":" in host:  # an IPv6 literal keeps its brackets
        netloc = f"[{host}]" if port is None else f"[{host}]:{port}"
    path = "/".join(REDACTED if looks_like_pii(segment) else segment for segment in parts.path.split("/"))
    query = [
        (name, REDACTED if looks_like_pii(value) else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if _kept(name)
    ]
    cleaned = SplitResult(parts.scheme.lower(), netloc, path, urlencode(query, quote_via=quote), "")
    return urlunsplit(cleaned)
