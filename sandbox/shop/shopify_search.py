"""The ``query:`` argument of Shopify's ``orders`` connection, its sort keys and its cursors.

Shopify search syntax, the part a reconciliation client uses: terms ``field:value`` joined by
spaces (or ``AND``), comparators ``:>``, ``:>=``, ``:<``, ``:<=``, values bare or quoted with
``'`` or ``"``. As Shopify does, a term on a field the orders connection does not know is not an
error: it is ignored and reported back in ``extensions.search`` warnings, so a typo silently
widens the result. ``OR``, ``NOT``/``-`` and parentheses are refused here (Shopify supports them;
the sandbox does not). Dates without an offset are read as UTC, the local shop's time zone.
Cursors are base64 of ``{"last_id": ..., "last_value": ...}``, the shape Shopify's decode to.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SORT_KEYS = {
    "ID": "id",
    "CREATED_AT": "created_at",
    "UPDATED_AT": "updated_at",
    "PROCESSED_AT": "processed_at",
}
DATE_FIELDS = frozenset({"created_at", "updated_at", "processed_at"})
TEXT_FIELDS = frozenset({"financial_status", "status", "source_name", "test", "email"})
SEARCH_FIELDS = DATE_FIELDS | TEXT_FIELDS | {"id"}

_TERM = re.compile(
    r"""(?P<field>[A-Za-z_][A-Za-z0-9_.]*)\s*:\s*(?P<op><=|>=|<|>|=)?\s*
        (?:'(?P<single>[^']*)'|"(?P<double>[^"]*)"|(?P<bare>[^\s()]+))""",
    re.VERBOSE,
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


class SearchError(ValueError):
    """A search string the sandbox cannot read at all (as opposed to a term it ignores)."""


@dataclass(frozen=True)
class Term:
    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Search:
    terms: tuple[Term, ...] = ()
    warnings: tuple[dict[str, str], ...] = field(default_factory=tuple)

    def matches(self, order: Mapping[str, Any]) -> bool:
        return all(_matches(term, order) for term in self.terms)


def parse_datetime(value: Any) -> dt.datetime | None:
    """An ISO 8601 date or date-time as an aware UTC datetime (no offset: UTC); None when unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    return _parse_text(value)


@functools.lru_cache(maxsize=200_000)  # every page of a listing reads the same timestamps again
def _parse_text(value: str) -> dt.datetime | None:
    text = value.strip().replace(" ", "T", 1)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


def parse_search(text: str | None) -> Search:
    """``text`` as AND-ed terms, with a warning for each term on a field orders cannot be searched by."""
    if text is None or not text.strip():
        return Search()
    terms: list[Term] = []
    warnings: list[dict[str, str]] = []
    position = 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        word = re.match(r"\S+", text[position:])
        assert word is not None
        if word.group() == "AND":
            position += 3
            continue
        if word.group() in ("OR", "NOT") or word.group().startswith(("(", "-")):
            raise SearchError(f"the sandbox reads AND-ed field:value terms only, not {word.group()!r}")
        match = _TERM.match(text, position)
        if match is None:
            raise SearchError(f"unreadable search term at {text[position : position + 40]!r}")
        position = match.end()
        name = match.group("field")
        op = match.group("op") or "="
        raw = next(v for v in (match.group("single"), match.group("double"), match.group("bare")) if v is not None)
        if name not in SEARCH_FIELDS:
            warnings.append({"field": name, "message": "Invalid search field for this query."})
            continue
        terms.append(Term(name, op, _term_value(name, raw)))
    return Search(tuple(terms), tuple(warnings))


def _term_value(name: str, raw: str) -> Any:
    if name in DATE_FIELDS:
        parsed = parse_datetime(raw)
        if parsed is None:
            raise SearchError(f"{name}: {raw!r} is not an ISO 8601 date")
        return parsed
    if name == "id":
        if not raw.isdigit():
            raise SearchError(f"id: {raw!r} is not a number")
        return int(raw)
    return raw.lower()


def _order_value(name: str, order: Mapping[str, Any]) -> Any:
    if name in DATE_FIELDS:
        return parse_datetime(order.get(name))
    if name == "id":
        return order.get("id")
    if name == "test":
        return "true" if order.get("test") else "false"
    if name == "status":
        if order.get("cancelled_at"):
            return "cancelled"
        return "closed" if order.get("closed_at") else "open"
    value = order.get(name)
    return str(value).lower() if value is not None else None


def _matches(term: Term, order: Mapping[str, Any]) -> bool:
    if term.field == "status" and term.value == "any":
        return True
    value = _order_value(term.field, order)
    if value is None:
        return False
    try:
        return _COMPARE[term.op](value, term.value)
    except TypeError:
        return False


def sort_value(order: Mapping[str, Any], key: str) -> tuple[str, int]:
    """``(value, id)``: what a connection sorted by ``key`` orders on; the id breaks ties."""
    order_id = int(order["id"])
    if key == "id":
        return (f"{order_id:020d}", order_id)
    parsed = parse_datetime(order.get(key))
    return (parsed.isoformat(timespec="microseconds") if parsed else "", order_id)


def encode_cursor(order: Mapping[str, Any], key: str) -> str:
    value, order_id = sort_value(order, key)
    raw = json.dumps({"last_id": order_id, "last_value": value}, separators=(",", ":"))
    return base64.b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        decoded = json.loads(base64.b64decode(cursor.encode(), validate=True))
        return (str(decoded["last_value"]), int(decoded["last_id"]))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SearchError(f"Invalid cursor for current pagination sort ({cursor[:40]!r})") from exc


@dataclass(frozen=True)
class Page:
    orders: list[dict[str, Any]]
    has_next: bool
    has_previous: bool


def paginate(
    orders: Iterable[dict[str, Any]],
    search: Search,
    key: str,
    first: int,
    after: str | None = None,
    reverse: bool = False,
) -> Page:
    """One page of the orders ``search`` matches, sorted by ``key`` then id, after the cursor ``after``."""
    keyed = sorted(((sort_value(o, key), o) for o in orders if search.matches(o)), key=lambda pair: pair[0],
                   reverse=reverse)  # fmt: skip
    has_previous = False
    if after is not None:
        mark = decode_cursor(after)
        before = len(keyed)
        keyed = [pair for pair in keyed if (pair[0] < mark if reverse else pair[0] > mark)]
        has_previous = len(keyed) < before
    return Page([o for _, o in keyed[:first]], len(keyed) > first, has_previous)
