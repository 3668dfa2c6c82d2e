"""Shopify's API version: the release calendar, the configured version's support window, what Shopify sends.

The calendar is a data file, ``shared/data/shopify_api_versions.json``, kept in
the ``shared`` package so every function bundle carries it, and read by
Terraform too (``terraform/shopify_api_version.tf`` warns at plan time). Each
stable version is released on the first day of its quarter and supported for
at least 12 months; past that, Shopify sends webhooks in the oldest version it
still supports instead, so bodies change shape without anyone having chosen it.

At start an instance checks the configured version (``SHOPIFY_API_VERSION``)
against the calendar and today's date, once (:func:`check_support`); each
authenticated delivery's ``X-Shopify-API-Version`` is compared with it
(:class:`VersionWatch`). Both only log and count: a delivery is never refused
for its version.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from shared.infra import log
from shared.infra.metrics import COUNTERS

CALENDAR_FILE = Path(__file__).resolve().parents[2] / "data" / "shopify_api_versions.json"
VERSION_PATTERN = r"^20[0-9]{2}-(01|04|07|10)$"
# Shopify supports each stable version for at least this many months after its release.
SUPPORT_MONTHS = 12
# Different versions one instance logs (each once); more are only counted.
MAX_LOGGED_VERSIONS = 8

UNSUPPORTED_COUNTER = "shopify.api_version_unsupported"
DIFFERS_COUNTER = "shopify.api_version_differs"

_VERSION = re.compile(VERSION_PATTERN)


class CalendarError(ValueError):
    """The calendar file is missing, malformed or inconsistent; the message says where."""


@dataclass(frozen=True)
class Release:
    """One stable version: when Shopify released it and until when it is supported."""

    version: str
    released: dt.date
    supported_until: dt.date


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.month - 1 + months
    return day.replace(year=day.year + index // 12, month=index % 12 + 1)


def parse_calendar(document: object) -> tuple[Release, ...]:
    """The releases of a calendar document, oldest first; raises :class:`CalendarError` on any inconsistency."""
    entries = document.get("versions") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CalendarError('expected an object with a non-empty "versions" list')
    releases: list[Release] = []
    for entry in entries:
        try:
            version = str(entry["version"])
            release = Release(version, dt.date.fromisoformat(entry["released"]),
                              dt.date.fromisoformat(entry["supported_until"]))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise CalendarError(f"entry {entry!r}: needs version, released and supported_until ({exc})") from None
        if not _VERSION.match(version):
            raise CalendarError(f"{version}: not a quarterly version such as 2026-10")
        if release.released != dt.date(int(version[:4]), int(version[5:]), 1):
            raise CalendarError(f"{version}: released {release.released}, expected the first day of its month")
        if release.supported_until < _add_months(release.released, SUPPORT_MONTHS):
            raise CalendarError(
                f"{version}: supported_until {release.supported_until} is under {SUPPORT_MONTHS} months"
            )
        if releases and _add_months(releases[-1].released, 3) != release.released:
            raise CalendarError(f"{version} does not follow {releases[-1].version} by one quarter")
        releases.append(release)
    return tuple(releases)


def load_calendar(path: Path = CALENDAR_FILE) -> tuple[Release, ...]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CalendarError(f"{path.name}: {exc}") from None
    return parse_calendar(document)


def newest_released(calendar: tuple[Release, ...], today: dt.date) -> Release | None:
    """The newest version already released on ``today``."""
    released = [release for release in calendar if release.released <= today]
    return released[-1] if released else None


def support_problem(version: str, today: dt.date, calendar: tuple[Release, ...]) -> str | None:
    """Why ``version`` is past its support window on ``today``; None while supported or newer than the calendar."""
    release = next((r for r in calendar if r.version == version), None)
    if release is None:
        if not calendar or version > calendar[-1].version:
            return None  # newer than the calendar: nothing is known against it
        ended = f"is older than every version in {CALENDAR_FILE.name}"
    elif today >= release.supported_until:
        ended = f"left Shopify's support window on {release.supported_until.isoformat()}"
    else:
        return None
    newest = newest_released(calendar, today)
    advice = f"set shopify_api_version (SHOPIFY_API_VERSION) to {newest.version} " if newest else ""
    return (
        f"Shopify API version {version} {ended}: Shopify now sends webhooks in the oldest version it still "
        f"supports; {advice}and deploy the webhook subscriptions again (docs/deploy.md, step 11)"
    )


def check_support(configured: str, today: dt.date, path: Path = CALENDAR_FILE) -> str | None:
    """At start: one warning line and a count when ``configured`` is past its support window, else nothing."""
    try:
        problem = support_problem(configured, today, load_calendar(path))
    except CalendarError as exc:
        log.warning("the Shopify API version calendar is unreadable", reason=str(exc))
        return None
    if problem:
        COUNTERS.add(UNSUPPORTED_COUNTER)
        log.warning("Shopify API version out of support", api_version=configured, reason=problem)
    return problem


class VersionWatch:
    """The configured version, and each different ``X-Shopify-API-Version`` seen: logged once each, always counted."""

    def __init__(self, configured: str, limit: int = MAX_LOGGED_VERSIONS) -> None:
        self.configured = configured
        self._limit = limit
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    def observe(self, sent: str | None) -> bool:
        """Note the version of an authenticated delivery; True when this call logged it."""
        if not sent or sent == self.configured:
            return False
        COUNTERS.add(DIFFERS_COUNTER)
        with self._lock:
            if sent in self._logged or len(self._logged) >= self._limit:
                return False
            self._logged.add(sent)
        log.warning(
            "Shopify sent a different API version than the one configured",
            api_version=sent,
            configured_api_version=self.configured,
            reason=f"the subscription delivers {sent}, SHOPIFY_API_VERSION is {self.configured}: deploy the "
            "subscriptions again with the configured version, or set shopify_api_version to the one Shopify sends",
        )
        return True
