"""Reading input that anyone can send: bounded bodies and bounded JSON.

Every entry point (collect, both webhooks, the sender's push body, Shopify
over Pub/Sub) reads its body and parses its JSON here, so the limits are one
set of rules: a body is refused once it passes its limit *while* it is read
(a chunked upload has no Content-Length to trust), and a JSON document is
refused when it nests deeper, carries longer integers or stranger numbers
than any real payload does. Errors are :class:`UnsafeInput`, whose message
says what was wrong and never quotes the input (it may hold shopper data).

Lone UTF-16 surrogates (``"\\ud800"``) are valid JSON escapes but not text:
they cannot be encoded as UTF-8, so a string holding one breaks every later
serialisation (a log line, a Pub/Sub message, a Firestore write). Input a
person can correct is refused (``surrogates="reject"``); a signed webhook,
whose platform would only retry the same bytes, has them replaced by U+FFFD
(``surrogates="replace"``) so the order is not lost over one mangled field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import ValidationError

# Real payloads nest a handful of levels (an order's line items' tax lines' ...);
# Python's own recursion limit (1000) is what deeper input would hit later.
MAX_DEPTH = 32
# Longer than any id or amount a platform sends (Shopify ids are 64-bit), far
# below the 4300 digits where int() itself refuses.
MAX_INT_DIGITS = 40

_SURROGATE = re.compile("[\ud800-\udfff]")

SurrogatePolicy = Literal["reject", "replace"]


class UnsafeInput(ValueError):
    """Input refused before it is used; ``str(exc)`` names the problem, never the data."""

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BodyTooLarge(UnsafeInput):
    """A body over its limit, detected without reading past limit + 1 bytes."""

    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is larger than {limit} bytes")
        self.limit = limit


def read_body(read: Callable[[int], bytes], limit: int, declared_length: int | None = None) -> bytes:
    """The whole body, or :class:`BodyTooLarge` without reading more than ``limit`` + 1 bytes.

    ``read`` is the request stream's ``read`` (werkzeug's ``request.stream.read``,
    which already stops at Content-Length when there is one and reads chunked
    bodies as they come). A declared length over the limit is refused before
    reading anything.
    """
    if declared_length is not None and declared_length > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = read(min(65536, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        raise BodyTooLarge(limit)
    return b"".join(chunks)


def _parse_int(max_digits: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if len(text.lstrip("-")) > max_digits:
            raise UnsafeInput(f"a JSON integer is longer than {max_digits} digits")
        return int(text)

    return parse


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UnsafeInput("a JSON number is too large to be a finite number")
    return value


def _parse_constant(name: str) -> float:
    raise UnsafeInput(f"{name} is not a JSON number")


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def clean_text(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD (encodable as UTF-8)."""
    if not _has_surrogate(text):
        return text
    return _SURROGATE.sub("\ufffd", text)


def _checked(document: Any, max_depth: int, surrogates: SurrogatePolicy) -> Any:
    """Walk ``document`` without recursion: bound its depth, deal with lone surrogates."""
    fix = surrogates == "replace"
    root = [document]
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        container, depth = stack.pop()
        if depth > max_depth:
            raise UnsafeInput(f"the JSON is nested deeper than {max_depth} levels")
        if isinstance(container, dict):
            items = list(container.items())
            for key, value in items:
                if _has_surrogate(key):
                    if not fix:
                        raise UnsafeInput("a JSON key holds an unpaired UTF-16 surrogate (not text)")
                    del container[key]
                    key = clean_text(key)
                    container[key] = value
                if isinstance(value, str):
                    if _has_surrogate(value):
                        if not fix:
                            raise UnsafeInput("a JSON string holds an unpaired UTF-16 surrogate (not text)")
                        container[key] = clean_text(value)
                elif isinstance(value, (dict, list)):
                    stack.append((value, depth + 1))
        else:
            for index, value in enumerate(container):
                if isinstance(value, str):
                    if _has_surrogate(value):
                        if not fix:
                            raise UnsafeInput("a JSON string holds an unpaired UTF-16 surrogate (not text)")
                        container[index] = clean_text(value)
                elif isinstance(value, (dict, list)):
                    stack.append((value, depth + 1))
    return root[0]


def parse_json(
    raw: bytes | str,
    *,
    max_depth: int = MAX_DEPTH,
    max_int_digits: int = MAX_INT_DIGITS,
    surrogates: SurrogatePolicy = "reject",
) -> Any:
    """The JSON value in ``raw``, or :class:`UnsafeInput` saying why not.

    Refused: bytes that are not UTF-8, text that is not JSON, nesting deeper
    than ``max_depth`` (the top-level value is depth 1), integers with more
    than ``max_int_digits`` digits, numbers that overflow to infinity,
    ``NaN``/``Infinity``, and (with ``surrogates="reject"``) lone surrogates.
    """
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsafeInput("the body is not UTF-8 text") from None
    else:
        text = raw
    try:
        document = json.loads(
            text,
            parse_int=_parse_int(max_int_digits),
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except UnsafeInput:
        raise
    except json.JSONDecodeError as exc:
        raise UnsafeInput(f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise UnsafeInput(f"the JSON is nested deeper than {max_depth} levels") from None
    except ValueError:  # int() of a digit string past the interpreter's own limit, float() oddities
        raise UnsafeInput("a JSON number cannot be read") from None
    if isinstance(document, str):
        if _has_surrogate(document):
            if surrogates == "reject":
                raise UnsafeInput("a JSON string holds an unpaired UTF-16 surrogate (not text)")
            return clean_text(document)
        return document
    if isinstance(document, (dict, list)):
        return _checked(document, max_depth, surrogates)
    return document


def ascii_int(value: Any, *, max_digits: int = 19) -> int | None:
    """A non-negative integer from an int or a string of ASCII digits, else None.

    ``str.isdigit`` accepts ``"²"`` and other Unicode digits that ``int`` then
    refuses or reads differently; ids and quantities from a platform are ASCII.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 and len(str(value)) <= max_digits else None
    if isinstance(value, str):
        text = value.strip()
        if text and len(text) <= max_digits and text.isascii() and text.isdigit():
            return int(text)
    return None


# Amounts: plain ASCII decimals below a trillion. float() alone would take "1_0",
# Arabic-Indic digits and "1e400", Decimal() takes the first two as well, and a
# 310-digit integer makes float() raise OverflowError.
_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,12})?")
_MAX_AMOUNT = 1e12


def money(value: Any) -> float | None:
    """A non-negative amount of money below a trillion from a platform's string ("29.35") or JSON number.

    The one decision on money for every receiver: an amount is checked as the
    text the platform sent (never parsed by a permissive float() or Decimal()),
    then carried as a float, since TikTok's ``value`` is a JSON number. Where
    amounts are added up for a record (a Shopify order's refunds), the caller
    adds the checked texts as ``Decimal``, so no cent is lost to binary floats.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if 0 <= value < _MAX_AMOUNT else None
    if isinstance(value, float):
        return value if math.isfinite(value) and 0 <= value < _MAX_AMOUNT else None
    if isinstance(value, str) and _DECIMAL.fullmatch(text := value.strip()):
        return float(text)
    return None


def validation_problems(exc: ValidationError, limit: int | None = None) -> list[tuple[tuple[Any, ...], str]]:
    """(location, message) of each error of a pydantic validation, never the input that failed.

    The one way every receiver, the sender and the settings read a validation
    error: pydantic's default ``str(exc)`` and ``errors()`` quote the input,
    which may be a shopper's data or a secret.
    """
    errors = exc.errors(include_input=False, include_url=False, include_context=False)
    return [(tuple(error["loc"]), error["msg"]) for error in errors[:limit]]


def describe_validation(exc: ValidationError, what: str) -> str:
    """One line naming every failing field of ``what``: ``invalid what: a.b: problem; c: problem``."""
    problems = validation_problems(exc)
    return f"invalid {what}: " + "; ".join(f"{'.'.join(map(str, loc)) or what}: {msg}" for loc, msg in problems)
