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
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"
# Query parameters attribution needs; everything else may identify a person.
KEPT_QUERY_PARAMETERS = frozenset({"ttclid"})
KEPT_QUERY_PREFIXES = ("utm_",)

_EMAIL = re.compile(r"[^\s@/?&=#:;,<>()\[\]\"']+(?:@|%40)[A-Za-z0-9.-]+\.[A-Za-z]{2,}", re.IGNORECASE)
# A phone number: led by + (or 00) with 7 to 15 digits, or 9 to 15 digits without,
# optionally split by spaces, dots, dashes or brackets. Shorter runs (dates,
# quantities, prices) are left alone; a long digit run such as a barcode is not.
_PHONE = re.compile(
    r"(?<![\w.+])(?:(?:\+|%2B|00)\s?(?:\d[\s().\-]{0,2}){6,14}|\(?(?:\d[\s().\-]{0,2}){8,14})\d(?!\w)",
    re.IGNORECASE,
)


def looks_like_pii(text: str) -> bool:
    """True when ``text`` holds an email- or phone-shaped run."""
    return bool(_EMAIL.search(text) or _PHONE.search(text))


def scrub_text(text: str) -> str:
    """``text`` with email- and phone-shaped runs replaced by ``[redacted]``."""
    return _PHONE.sub(REDACTED, _EMAIL.sub(REDACTED, text))


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
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
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
