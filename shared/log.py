"""Structured JSON logs that Cloud Logging understands, with no raw PII.

One line per record on stdout: ``{"severity": ..., "message": ..., <fields>}``.
Cloud Logging turns ``severity`` and ``message`` into the entry's level and
summary and keeps the other fields as ``jsonPayload``.

Callers log outcomes and ids, never shopper data. As a second line of defence,
fields whose name says they carry personal data are dropped, and any value
that looks like an email address is masked.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from typing import Any

from shared.untrusted import clean_text

_LEVELS = {"DEBUG": 10, "INFO": 20, "NOTICE": 25, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_PII_FIELDS = frozenset(
    {"email", "phone", "first_name", "last_name", "name", "address", "address1", "address2",
     "zip", "zip_code", "postcode", "city", "street", "billing", "shipping", "customer"}
)  # fmt: skip
_EMAIL = re.compile(r"[^\s@\"']+@[^\s@\"']+\.[A-Za-z]{2,}")
_lock = threading.Lock()
_threshold = _LEVELS["INFO"]


def set_level(level: str) -> None:
    global _threshold
    _threshold = _LEVELS.get(level.upper(), _LEVELS["INFO"])


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        # clean_text: a lone surrogate from anyone's input would make the line unwritable as UTF-8.
        return clean_text(_EMAIL.sub("[email]", value)[:2000])
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if str(k).lower() not in _PII_FIELDS}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value[:50]]
    if value is None or isinstance(value, (int, float, bool)):
        return value
    return _scrub(str(value))


def log(severity: str, message: str, **fields: Any) -> None:
    severity = severity.upper()
    if _LEVELS.get(severity, 20) < _threshold:
        return
    record = {"severity": severity, "message": _scrub(message), "time": round(time.time(), 3)}
    for key, value in fields.items():
        if key.lower() in _PII_FIELDS or key in record:
            continue
        record[key] = _scrub(value)
    line = json.dumps(record, default=str, ensure_ascii=False)
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def info(message: str, **fields: Any) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields: Any) -> None:
    log("WARNING", message, **fields)


def error(message: str, **fields: Any) -> None:
    log("ERROR", message, **fields)


def debug(message: str, **fields: Any) -> None:
    log("DEBUG", message, **fields)


def outcome(outcome: str, message: str, **fields: Any) -> None:
    """Log an explicit outcome (sent, duplicate, withheld_consent, skipped_test_order, dead...).

    Every function logs its outcomes through here so they can be counted the
    same way (a log-based metric on ``jsonPayload.outcome``).
    """
    severity = "WARNING" if outcome.startswith(("dead", "rejected", "error")) else "INFO"
    log(severity, message, outcome=outcome, **fields)
