"""Which requests collect reads at all, and which pixel one may write to: pure, no I/O.

Origins, client addresses, prefetches, bots and theme previews are decided from
the headers before the body is read; the body is read within its bound; a
parsed body is admitted to one configured pixel (see docs/collect.md, "Threat model").
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

from shared.config import PixelConfig, Tenants
from shared.domain.untrusted import UnsafeInput, ascii_int, read_body
from shared.receive.collect.request import HttpRequest, Refused
from shared.receive.collect.schema import CollectBody

JSON_TYPES = frozenset({"application/json", "text/plain"})

# Obvious bots: crawlers, link previewers, monitors, headless browsers and HTTP libraries.
# A browser test must present a normal user agent (Chromium's --user-agent flag).
# Checked on the lowercased user agent with substring tests (fast), the regex only when "bot" occurs.
_BOT_WORDS = (
    "crawl", "spider", "slurp", "scraper", "facebookexternalhit", "headlesschrome", "phantomjs", "lighthouse",
    "pagespeed", "gtmetrix", "pingdom", "uptime", "statuscake", "prerender", "preview", "whatsapp",
)  # fmt: skip
_BOT_PREFIXES = (
    "curl", "wget", "python", "go-http-client", "java", "okhttp", "axios", "node-fetch", "undici", "libwww",
    "scrapy", "httpie",
)  # fmt: skip
_BOT_TOKEN = re.compile(r"(?<!cu)bot\b|bot[/_-]")  # Googlebot/2.1, AdsBot-Google, not the CUBOT phone
# Prefetch and prerender requests (Chromium: Sec-Purpose / Purpose, Firefox: X-Moz, Safari: X-Purpose).
_PREFETCH_HEADERS = ("sec-purpose", "purpose", "x-purpose", "x-moz")
_PREFETCH_VALUE = re.compile(r"prefetch|prerender|preview", re.IGNORECASE)
# Shopify's shareable theme preview links carry this query parameter.
_PREVIEW_QUERY_PARAMS = frozenset({"preview_theme_id"})


@functools.lru_cache(maxsize=1024)
def normalize_origin(value: str | None) -> str | None:
    """``scheme://host[:port]`` lowercased, default ports dropped; None for absent, ``null`` or malformed."""
    text = (value or "").strip().lower().rstrip("/")
    if not text or text == "null" or len(text) > 300:
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or parts.fragment:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def client_ip(forwarded_for: str | None, remote_addr: str | None, trusted_hops: int = 0) -> str | None:
    """The shopper's address.

    Google's front end appends the address it received the connection from as the
    last ``X-Forwarded-For`` entry; what precedes it came from the client and may be
    forged. Directly on a Cloud Run / functions URL the client is therefore the last
    entry; behind an external Application Load Balancer (which appends the client and
    then its own forwarding-rule address) set ``trusted_hops`` to 1. Without the
    header (local runs) the socket's peer is used.
    """
    if forwarded_for is None or not forwarded_for.strip():
        candidate = remote_addr
    else:
        entries = [part.strip() for part in forwarded_for.split(",") if part.strip()]
        candidate = entries[-1 - trusted_hops] if len(entries) > trusted_hops else None
    if not candidate:
        return None
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def drop_reason(request: HttpRequest, allow_automated: bool = False) -> str | None:
    """Why a request is dropped without being read (prefetch, bot), or None."""
    for name in _PREFETCH_HEADERS:
        value = request.headers.get(name)
        if value and _PREFETCH_VALUE.search(value):
            return "prefetch"
    return "bot" if is_bot(request.header("user-agent"), allow_automated) else None


def is_bot(user_agent: str, allow_automated: bool = False) -> bool:
    """An empty user agent, a crawler, a link previewer, a monitor, a headless browser or an HTTP library.

    ``allow_automated`` (COLLECT_ALLOW_AUTOMATED_BROWSERS, for testing) lets headless browsers through.
    """
    text = user_agent.lower()
    if allow_automated:
        text = text.replace("headlesschrome", "chrome").replace("phantomjs", "")
    if not text or text.startswith(_BOT_PREFIXES) or any(word in text for word in _BOT_WORDS):
        return True
    return "bot" in text and _BOT_TOKEN.search(text) is not None


def is_preview_page(url: str | None) -> bool:
    if not url or not any(name in url for name in _PREVIEW_QUERY_PARAMS):
        return False
    try:
        query = urlsplit(url).query
    except ValueError:
        return False
    return any(name in _PREVIEW_QUERY_PARAMS for name, _ in parse_qsl(query, keep_blank_values=True))


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def read_request_body(request: HttpRequest, limit: int) -> bytes:
    """The body, or :class:`Refused` (413) once it passes ``limit``, declared or while read (chunked)."""
    declared = request.header("content-length")
    length = ascii_int(declared, max_digits=19) if declared else None
    too_large = f"the body may be at most {limit} bytes (COLLECT_MAX_BODY_BYTES)"
    if declared and length is None:
        raise Refused(413, "payload too large", f"Content-Length is not a number of bytes; {too_large}")
    try:
        return read_body(request.read, limit, length)
    except UnsafeInput:  # BodyTooLarge: the only refusal read_body makes
        raise Refused(413, "payload too large", too_large) from None


def admit(
    body: CollectBody,
    origin: str | None,
    tenants: Tenants,
    origins_by_pixel: Mapping[str, frozenset[str]] | None = None,
) -> PixelConfig:
    """The pixel this request may write to, or :class:`Refused` (403) saying why not.

    - the pixel must be configured here;
    - a request with an Origin must come from one of the pixel's allowed origins;
    - a request without one (Shopify's pixel sandbox strips it, or sends ``null``)
      needs one of the pixel's collect keys; a key never admits a foreign Origin;
    - a key that is sent must be valid, even from an allowed origin.
    """
    pixel = tenants.pixel(body.pixel_code)
    if pixel is None:
        raise Refused(403, "forbidden", f"pixel_code {body.pixel_code!r} is not served by this endpoint")
    allowed = origins_by_pixel[pixel.pixel_code] if origins_by_pixel else pixel_origins(pixel)
    if origin is not None and origin not in allowed:
        raise Refused(403, "forbidden", f"origin {origin} is not allowed for pixel {pixel.pixel_code}")
    if body.key is not None and not _key_matches(body.key, pixel.collect_keys):
        raise Refused(403, "forbidden", f"key: not a collect key of pixel {pixel.pixel_code}")
    if origin is None and body.key is None:
        raise Refused(
            403, "forbidden", "a request without an Origin header needs the pixel's collect key (field 'key')"
        )
    return pixel


def pixel_origins(pixel: PixelConfig) -> frozenset[str]:
    return frozenset(o for o in map(normalize_origin, pixel.allowed_origins) if o)


def _key_matches(key: str, keys: Iterable[str]) -> bool:
    matched = False
    for candidate in keys:
        matched |= hmac.compare_digest(key.encode(), candidate.encode())
    return matched
