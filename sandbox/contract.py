"""The contract of TikTok's ``POST /open_api/v1.3/event/track/`` as pure checks.

Deliberately independent of ``shared/``: the sandbox exists to catch mistakes in
our own models, so it must never reuse them. The rules follow TikTok's Events
API 2.0 reference (business-api.tiktok.com/portal/docs, "Events API 2.0") as
TikTok's own server-side GTM template (github.com/tiktok/gtm-template-eapi)
and SDK (github.com/tiktok/tiktok-business-api-sdk) use it. Where TikTok publishes nothing, the
sandbox is stricter than TikTok probably is (unknown keys, nulls, empty strings
and empty lists are refused) so that a sloppy payload fails here, loudly,
instead of being half-ignored in production.

Messages name the offending path (``data[3].user.email[1]``) and never echo a
value from the ``user`` object: it may be raw personal data.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

TRACK_PATH = "/open_api/v1.3/event/track/"

# TikTok's answer codes (HTTP 200 for all of them).
OK = 0
INVALID_PARAMS = 40000
NO_PERMISSION = 40001
INVALID_FIELD = 40002
INVALID_BATCH_SIZE = 40061
NOT_HASHED = 40062
TOO_MANY_REQUESTS = 40100
TOKEN_EMPTY = 40104
TOKEN_INVALID = 40105

MAX_EVENTS = 1000
EVENT_SOURCES = frozenset({"web", "app", "offline", "crm"})
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MIN_EVENT_TIME = 1_420_070_400  # 2015-01-01T00:00:00Z: anything older is a unit or clock bug.
MAX_FUTURE_SECONDS = 86_400
# Unix seconds stay below 1e11 until the year 5138; above that it is milliseconds.
_MILLISECONDS_FLOOR = 100_000_000_000

HASHED_LIST_FIELDS = ("email", "phone", "external_id")  # string or list of strings
HASHED_FIELDS = ("first_name", "last_name", "zip_code")
RAW_FIELDS = ("ttclid", "ttp", "ip", "user_agent", "locale")  # sent as is, never hashed
LOCATION_FIELDS = ("city", "state", "country")  # normalized, not hashed
APP_DEVICE_FIELDS = ("idfa", "idfv", "gaid")  # app events only; accepted as plain strings

_TOP_LEVEL_KEYS = frozenset({"event_source", "event_source_id", "test_event_code", "partner_name", "data"})
# Refusing unknown keys catches Events API 1.0 shapes (``context``, ``timestamp``,
# ``pixel_code``) and typos that TikTok would silently drop.
_EVENT_KEYS = frozenset(
    {"event", "event_time", "event_id", "user", "properties", "page", "limited_data_use", "app", "ad", "lead"}
)
_USER_KEYS = frozenset((*HASHED_LIST_FIELDS, *HASHED_FIELDS, *RAW_FIELDS, *LOCATION_FIELDS, *APP_DEVICE_FIELDS))
_CONTENT_TYPES = frozenset({"product", "product_group"})
# Known text properties; a number there (an order id as int) is a classic serializer bug.
_TEXT_PROPERTIES = (
    "content_id",
    "content_name",
    "content_category",
    "brand",
    "order_id",
    "shop_id",
    "query",
    "description",
)

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_COUNTRY = re.compile(r"[A-Za-z]{2}")


@dataclass(frozen=True)
class Verdict:
    """TikTok's answer to one request: ``code`` 0 means every event was accepted."""

    code: int
    message: str
    failed_events: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code == OK


ACCEPTED = Verdict(OK, "OK")


class Violation(Exception):
    """One broken rule; ``code`` is the TikTok code the request is refused with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(path: str, reason: str) -> Violation:
    return Violation(INVALID_FIELD, f"Invalid value for {path}: {reason}")


def _kind(value: Any) -> str:
    """JSON name of a value's type, for messages that must not echo the value itself."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def is_sha256_hex(value: str) -> bool:
    return _HEX64.fullmatch(value) is not None


# -- request level ---------------------------------------------------------------------------


def check_access_token(
    token: str | None, expected: str | Mapping[str, str], authorization: str | None = None
) -> Verdict | None:
    """None when the ``Access-Token`` header carries the configured token (or one of a ``{pixel: token}`` map)."""
    if not token:
        hint = " (TikTok reads the Access-Token header, not Authorization: Bearer)" if authorization else ""
        return Verdict(TOKEN_EMPTY, f"Access token is empty: send it in the Access-Token header{hint}.")
    if isinstance(expected, str):
        expected = {"": expected}
    if not token_pixels(token, expected):
        return Verdict(TOKEN_INVALID, "Access token is invalid.")
    return None


def token_pixels(token: str, tokens: Mapping[str, str]) -> frozenset[str]:
    """The pixels ``token`` may operate, by a ``{pixel: token}`` map (TikTok ties each token to its pixels)."""
    # Constant-time compare against every entry: cheap, and it keeps the sandbox honest as a model of a real API.
    return frozenset(pixel for pixel, known in tokens.items() if hmac.compare_digest(token.encode(), known.encode()))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(content_type: str | None, raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a :class:`Violation` with code 40000."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    if mimetype != "application/json":
        raise Violation(INVALID_PARAMS, "Invalid params: Content-Type must be application/json.")
    try:
        # NaN and Infinity are Python extensions, not JSON: a real server refuses them.
        body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Violation(INVALID_PARAMS, f"Invalid params: the body is not valid UTF-8 JSON ({exc}).") from exc
    if not isinstance(body, dict):
        raise Violation(INVALID_PARAMS, f"Invalid params: the body must be a JSON object, got {_kind(body)}.")
    return body


def check_body(body: dict[str, Any], *, now: float, pixel_codes: Collection[str] | None = None) -> Verdict:
    """Check a parsed body against the contract; every event must pass for any to be accepted."""
    try:
        _check_top_level(body, pixel_codes)
    except Violation as exc:
        return Verdict(exc.code, exc.message)
    data = body["data"]
    first: Violation | None = None
    failed: list[int] = []
    # Check every event so failed_events lists them all, but answer with the first
    # failure's code and message, as TikTok answers with one message per request.
    for index, event in enumerate(data):
        try:
            _check_event(event, f"data[{index}]", now)
        except Violation as exc:
            failed.append(index)
            if first is None:
                first = exc
    if first is not None:
        return Verdict(first.code, first.message, tuple(failed))
    return ACCEPTED


def _check_top_level(body: dict[str, Any], pixel_codes: Collection[str] | None) -> None:
    source = body.get("event_source")
    if source not in EVENT_SOURCES:
        raise _invalid("event_source", f"must be one of {', '.join(sorted(EVENT_SOURCES))}.")
    source_id = body.get("event_source_id")
    if not isinstance(source_id, str) or not source_id.strip():
        raise _invalid("event_source_id", "required non-empty string (the pixel code for web events).")
    if pixel_codes is not None and source_id not in pixel_codes:
        raise Violation(NO_PERMISSION, f"No permission to operate pixel {source_id}.")
    for key in ("test_event_code", "partner_name"):
        if key in body:
            _text(body[key], key)
    for key in body:
        if key not in _TOP_LEVEL_KEYS:
            raise _invalid(key, "unknown field (Events API 2.0 takes event_source, event_source_id, data, ...).")
    data = body.get("data")
    if not isinstance(data, list) or not 1 <= len(data) <= MAX_EVENTS:
        size = f"{len(data)} events" if isinstance(data, list) else _kind(data)
        raise Violation(
            INVALID_BATCH_SIZE, f"Invalid batch size: data must be a list of 1 to {MAX_EVENTS} events, got {size}."
        )


# -- event level -----------------------------------------------------------------------------


def _check_event(event: Any, path: str, now: float) -> None:
    if not isinstance(event, dict):
        raise _invalid(path, f"must be an object, got {_kind(event)}.")
    for key in event:
        if key not in _EVENT_KEYS:
            raise _invalid(f"{path}.{key}", "unknown event field.")
    if "event" not in event:
        raise _invalid(f"{path}.event", "required.")
    _text(event["event"], f"{path}.event")
    if "event_time" not in event:
        raise _invalid(f"{path}.event_time", "required.")
    _check_event_time(event["event_time"], f"{path}.event_time", now)
    if "event_id" in event:
        event_id = event["event_id"]
        if not isinstance(event_id, str):
            raise _invalid(f"{path}.event_id", "not a valid string.")
        if not event_id.strip():
            raise _invalid(f"{path}.event_id", "empty; omit it or send the deduplication id.")
    if "user" not in event:
        raise _invalid(f"{path}.user", "required object.")
    _check_user(event["user"], f"{path}.user")
    if "properties" in event:
        _check_properties(event["properties"], f"{path}.properties")
    if "page" in event:
        page = _object(event["page"], f"{path}.page")
        for key in ("url", "referrer"):
            if key in page:
                _text(page[key], f"{path}.page.{key}")
    if "limited_data_use" in event and not isinstance(event["limited_data_use"], bool):
        raise _invalid(f"{path}.limited_data_use", f"must be a boolean, got {_kind(event['limited_data_use'])}.")
    for key in ("app", "ad", "lead"):
        if key in event:
            _object(event[key], f"{path}.{key}")


def _check_event_time(value: Any, path: str, now: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(path, f"must be an integer of unix seconds, got {_kind(value)}.")
    if value >= _MILLISECONDS_FLOOR:
        raise _invalid(path, "looks like milliseconds; send unix seconds.")
    if value < MIN_EVENT_TIME:
        raise _invalid(path, "before 2015-01-01; send unix seconds of when the event happened.")
    if value > now + MAX_FUTURE_SECONDS:
        raise _invalid(path, "more than one day in the future.")


def _check_user(value: Any, path: str) -> None:
    user = _object(value, path)
    for key in user:
        if key not in _USER_KEYS:
            raise _invalid(f"{path}.{key}", "unknown user field.")
    for key in HASHED_LIST_FIELDS:
        if key not in user:
            continue
        item = user[key]
        if isinstance(item, list):
            if not item:
                raise _invalid(f"{path}.{key}", "empty list; omit the field instead.")
            for index, entry in enumerate(item):
                _check_hash(entry, f"{path}.{key}[{index}]")
        else:
            _check_hash(item, f"{path}.{key}")
    for key in HASHED_FIELDS:
        if key in user:
            _check_hash(user[key], f"{path}.{key}")
    for key in RAW_FIELDS:
        if key in user:
            _check_raw(key, user[key], f"{path}.{key}")
    for key in (*LOCATION_FIELDS, *APP_DEVICE_FIELDS):
        if key in user:
            _text(user[key], f"{path}.{key}")
    if "country" in user and not _COUNTRY.fullmatch(user["country"]):
        raise _invalid(f"{path}.country", "must be an ISO 3166-1 alpha-2 code (2 letters).")


def _check_hash(value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise _invalid(path, f"must be a SHA-256 hex string, got {_kind(value)}.")
    if not is_sha256_hex(value):
        raise Violation(
            NOT_HASHED, f"Personal data not hashed: {path} must be a SHA-256 hex digest (64 hex characters)."
        )
    if value.lower() == EMPTY_SHA256:
        raise _invalid(path, "SHA-256 of an empty string; drop empty values instead of hashing them.")


def _check_raw(key: str, value: Any, path: str) -> None:
    text = _text(value, path)
    if is_sha256_hex(text):
        raise _invalid(path, f"looks like a SHA-256 hash; {key} is sent raw, never hashed.")
    if key == "ip":
        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise _invalid(path, "not an IPv4 or IPv6 address.") from None


def _check_properties(value: Any, path: str) -> None:
    properties = _object(value, path)
    _check_amounts(properties, path)
    if "currency" in properties:
        currency = properties["currency"]
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            raise _invalid(f"{path}.currency", "must be an ISO 4217 code in upper case, like USD.")
    if "content_type" in properties and properties["content_type"] not in _CONTENT_TYPES:
        raise _invalid(f"{path}.content_type", "must be product or product_group.")
    if "contents" in properties:
        contents = properties["contents"]
        if not isinstance(contents, list):
            raise _invalid(f"{path}.contents", f"must be a list of objects, got {_kind(contents)}.")
        for index, item in enumerate(contents):
            _check_amounts(_object(item, f"{path}.contents[{index}]"), f"{path}.contents[{index}]")


def _check_amounts(container: dict[str, Any], path: str) -> None:
    """``value``/``price`` are numbers, ``quantity`` an integer, known ids and names strings."""
    for key in ("value", "price"):
        if key in container:
            number = container[key]
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
                raise _invalid(f"{path}.{key}", f"must be a number, got {_kind(number)}.")
            if number < 0:
                raise _invalid(f"{path}.{key}", "must not be negative.")
    if "quantity" in container:
        quantity = container["quantity"]
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise _invalid(f"{path}.quantity", f"must be an integer, got {_kind(quantity)}.")
        if quantity < 0:
            raise _invalid(f"{path}.quantity", "must not be negative.")
    for key in _TEXT_PROPERTIES:
        if key in container:
            _text(container[key], f"{path}.{key}")


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(path, f"must be an object, got {_kind(value)}.")
    return value


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _invalid(path, f"must be a string, got {_kind(value)}.")
    if not value.strip():
        raise _invalid(path, "empty string; omit the field instead.")
    return value
