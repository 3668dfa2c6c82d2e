"""`make report`: what happened to the orders and events of a time window, from what Firestore holds.

Usage (from the repository root)::

    python -m shared.report                      # the last 24 hours, every source
    python -m shared.report --since 7d --source shopify
    python -m shared.report --since 2026-12-01 --until 2026-12-02 --json

Against the running ``make run`` stack it needs no settings (it finds the
emulators in ``.run/stack.json``); against Google Cloud it needs
``GOOGLE_CLOUD_PROJECT`` (and ``FIRESTORE_DATABASE`` /
``FIRESTORE_COLLECTION_PREFIX`` if the deployment sets them) and
application-default credentials.

It reads three collections, each with one range query on its time field,
paged (``--page-size``) and bounded (``--max-documents``), projecting only the
fields it counts (never an envelope):

- ``order_events``: outcome records of order events not published
  (``withheld_consent``, ``skipped`` with its rule), keyed ``("outcome", event_id)``,
  and, in databases written before the sender's claim became the order's,
  receiver order claims and the cancellations that blocked a Purchase;
- ``event_claims``: the sender's claims (``sent`` with the match keys it
  carried, or still ``sending``) and cancellations' tombstones on a Purchase
  (``cancelled``, counted as skipped by the rule ``cancelled``);
- ``dead_events``: what TikTok refused for good (with its code).

Every event_id found gets exactly one outcome, the furthest it got:
``sent`` > ``dead`` > ``pending`` > ``withheld_consent`` > ``skipped``; so
``received`` is their sum. An event is counted on the (UTC) day of its first
record in the window. Exit status: 0, or 2 with one line on bad input or when
Firestore can not be read.

``--shop-orders`` adds, per shop or site whose API credentials are set (``shared.reconcile``),
one line comparing the orders created in the shop in the window with what the pipeline holds of
them (read by key: three documents per order, plus one API request per 100 orders); it never
sends anything: ``make reconcile ARGS=--backfill`` does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.domain import match_keys
from shared.infra.store import DAY_FIELD
from shared.sources.registry import ORDER_SOURCES, SOURCE_NAMES

if TYPE_CHECKING:
    from google.cloud import firestore

SOURCES = SOURCE_NAMES  # every source of the registry, then the sender's own (redrive, manual)
# Outcome names, as the logs spell them; "received" is their sum.
RECEIVED, SENT, DEAD, PENDING, WITHHELD, SKIPPED = "received", "sent", "dead", "pending", "withheld_consent", "skipped"
OUTCOMES = (RECEIVED, SENT, WITHHELD, SKIPPED, DEAD, PENDING)
_PRECEDENCE = (SENT, DEAD, PENDING, WITHHELD, SKIPPED)  # the furthest an event got wins
CANCELLED_RULE = "cancelled"
BLOCKED_BY_CANCELLATION = "orders/cancelled"  # what receivers before the sender-claim design wrote

# (collection, time field, selected by day, fields read). A collection selected by day is read day by day
# (DAY_FIELD equal to each day of the window) and filtered on its time field here: that field is exempt from
# indexing (it would cap the collection at 500 writes a second; shared/data/firestore_collections.json).
# Dead events are few, and keep their indexed range query.
QUERIES = (
    (
        "order_events",
        "created_at",
        True,
        ("event_id", "state", "outcome", "rule", "blocked_by", "order_ref", "created_at"),
    ),  # fmt: skip
    ("event_claims", "created_at", True, ("event_id", "state", "source", "match_keys", "created_at")),
    ("dead_events", "dead_at", False, ("event_id", "state", "source", "code", "kind", "dead_at")),
)
DEFAULT_PAGE = 500
DEFAULT_MAX_DOCUMENTS = 200_000
DEFAULT_TIMEOUT_SECONDS = 30.0
_RELATIVE = re.compile(r"^(\d{1,5})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


class ReportError(Exception):
    """Bad input or an unreadable Firestore: one line for the operator, exit status 2."""


# --- the window -------------------------------------------------------------------------


def parse_time(text: str, now: dt.datetime, option: str) -> dt.datetime:
    """``24h``/``30m``/``7d`` (before ``now``), ``now``, or an ISO date or time (UTC unless it says)."""
    value = text.strip()
    if value == "now":
        return now
    relative = _RELATIVE.match(value)
    if relative:
        return now - dt.timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(
            f"{option} {text!r} is not a time: use 24h, 30m, 7d, now, or an ISO date/time like 2026-12-01T08:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def window(since: str, until: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    start, end = parse_time(since, now, "--since"), parse_time(until, now, "--until")
    if start >= end:
        raise ReportError(f"--since ({start.isoformat()}) must be before --until ({end.isoformat()})")
    return start, end


# --- the pure part: records to counts -------------------------------------------------------


@dataclass
class _Event:
    """What the records of one event_id say."""

    first_seen: dt.datetime | None = None
    source: str | None = None
    facts: set[str] = field(default_factory=set)
    rule: str | None = None
    code: int | None = None
    keys: tuple[str, ...] = ()

    def seen(self, when: Any) -> None:
        if isinstance(when, dt.datetime) and (self.first_seen is None or when < self.first_seen):
            self.first_seen = when

    def skip(self, rule: str) -> None:
        self.facts.add(SKIPPED)
        self.rule = rule

    @property
    def outcome(self) -> str:
        return next(name for name in _PRECEDENCE if name in self.facts)


def _source_of(event_id: str, recorded: Any) -> str:
    # Order event ids start with their platform (shared.domain.events.order_event_id), whatever re-drove them.
    prefix = event_id.split(":", 1)[0]
    if prefix in ORDER_SOURCES:
        return prefix
    return recorded if isinstance(recorded, str) and recorded else "unknown"


def classify(
    order_records: Iterable[Mapping[str, Any]],
    claims: Iterable[Mapping[str, Any]],
    dead: Iterable[Mapping[str, Any]],
) -> dict[str, _Event]:
    """Every event_id the records name, with what they say of it."""
    events: dict[str, _Event] = defaultdict(_Event)

    def named(records: Iterable[Mapping[str, Any]], time_field: str) -> Iterator[tuple[Mapping[str, Any], _Event]]:
        """Each record that names an event (refund and cancellation records name none), with that event."""
        for record in records:
            event_id = record.get("event_id")
            if isinstance(event_id, str):
                event = events[event_id]
                event.seen(record.get(time_field))
                event.source = event.source or record.get("source")
                yield record, event

    for record, event in named(order_records, "created_at"):
        if record.get("outcome") in (WITHHELD, SKIPPED):
            event.facts.add(record["outcome"])
            event.rule = event.rule or record.get("rule")
        elif record.get("blocked_by") == BLOCKED_BY_CANCELLATION and not record.get("state"):
            event.skip(CANCELLED_RULE)
        else:  # a claim: publishing or published, so the sender has it or will
            event.facts.add(PENDING)
    for claim, event in named(claims, "created_at"):
        if claim.get("state") == "sent":
            event.facts.add(SENT)
            event.keys = tuple(k for k in claim.get("match_keys") or () if k in match_keys.KEYS)
        elif claim.get("state") == CANCELLED_RULE:  # a cancellation's tombstone on the Purchase (shared.receive.orders)
            event.skip(CANCELLED_RULE)
        else:
            event.facts.add(PENDING)
    for record, event in named(dead, "dead_at"):
        if record.get("state") == "dead":
            event.facts.add(DEAD)
            event.code = record.get("code")
        else:  # re-driven: on its way again
            event.facts.add(PENDING)
    for event_id, event in events.items():
        event.source = _source_of(event_id, event.source)
    return dict(events)


def _empty_outcomes() -> dict[str, int]:
    return dict.fromkeys(OUTCOMES, 0)


def summarize(events: Mapping[str, _Event], sources: Sequence[str] | None = None) -> dict[str, Any]:
    """The report's ``sources`` map: per source its outcomes, breakdowns, match-key shares and days."""
    result: dict[str, Any] = {}
    for event in events.values():
        if sources and event.source not in sources:
            continue
        assert event.source is not None  # classify names every event's source
        entry = result.setdefault(
            event.source,
            {"outcomes": _empty_outcomes(), "skipped_by_rule": Counter(), "dead_by_code": Counter(),
             "_keys": Counter(), "_score": 0, "days": {}},
        )  # fmt: skip
        outcome = event.outcome
        day = event.first_seen.astimezone(dt.timezone.utc).date().isoformat() if event.first_seen else "unknown"
        day_entry = entry["days"].setdefault(day, {"outcomes": _empty_outcomes()})
        for counts in (entry["outcomes"], day_entry["outcomes"]):
            counts[RECEIVED] += 1
            counts[outcome] += 1
        if outcome == SKIPPED:
            entry["skipped_by_rule"][event.rule or "other"] += 1
        elif outcome == DEAD:
            entry["dead_by_code"][str(event.code) if event.code is not None else "none"] += 1
        elif outcome == SENT:
            entry["_keys"].update(event.keys)
            entry["_score"] += match_keys.score(event.keys)
    for entry in result.values():
        sent = entry["outcomes"][SENT]
        keys, score = entry.pop("_keys"), entry.pop("_score")
        entry["match_keys"] = {key: round(keys[key] / sent, 4) if sent else 0.0 for key in match_keys.KEYS}
        entry["coverage_score"] = round(score / sent, 2) if sent else None
        entry["skipped_by_rule"] = dict(sorted(entry["skipped_by_rule"].items()))
        entry["dead_by_code"] = dict(sorted(entry["dead_by_code"].items()))
        entry["days"] = dict(sorted(entry["days"].items()))
    return dict(sorted(result.items()))


# --- Firestore ------------------------------------------------------------------------------


@dataclass
class Reader:
    """Bounded, paged range queries; counts the documents it read."""

    client: firestore.Client
    prefix: str = ""
    page_size: int = DEFAULT_PAGE
    max_documents: int = DEFAULT_MAX_DOCUMENTS
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    documents_read: int = 0
    truncated: bool = False

    def read(self, collection: str, time_field: str, fields: Sequence[str], start: dt.datetime, end: dt.datetime,
             *, by_day: bool = False) -> Iterator[dict[str, Any]]:  # fmt: skip
        """The documents whose ``time_field`` lies in [start, end): by an indexed range, or ``by_day``."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        base = self.client.collection(self.prefix + collection)
        if not by_day:
            ranged = base.where(filter=FieldFilter(time_field, ">=", start)).where(
                filter=FieldFilter(time_field, "<", end)
            )
            query = ranged.order_by(time_field).select(list(fields))
            yield from self._pages(query)
            return
        from google.cloud.firestore_v1.field_path import FieldPath

        for day in days_of(start, end):
            query = (base.where(filter=FieldFilter(DAY_FIELD, "==", day)).order_by(FieldPath.document_id())
                     .select([*fields, time_field]))  # fmt: skip
            for document in self._pages(query):
                moment = document.get(time_field)
                if isinstance(moment, dt.datetime) and start <= moment < end:
                    yield document

    def _pages(self, query: Any) -> Iterator[dict[str, Any]]:
        """Every document of ``query``, a page at a time, within the reader's bounds (counted)."""
        from google.api_core import retry

        # The client's default retry outlasts any operator's patience when Firestore is unreachable.
        bounded = retry.Retry(predicate=retry.if_transient_error, initial=0.2, maximum=2.0, timeout=self.timeout)
        last = None
        while True:
            room = self.max_documents - self.documents_read
            if room <= 0:
                self.truncated = True
                return
            page = query.limit(min(self.page_size, room))
            if last is not None:
                page = page.start_after(last)
            snapshots = list(page.stream(retry=bounded, timeout=self.timeout))
            self.documents_read += len(snapshots)
            for snapshot in snapshots:
                yield snapshot.to_dict() or {}
            if len(snapshots) < min(self.page_size, room):
                return
            last = snapshots[-1]


def days_of(start: dt.datetime, end: dt.datetime) -> list[str]:
    """The UTC days [start, end) touches, as DAY_FIELD spells them."""
    first = start.astimezone(dt.timezone.utc).date()
    last = (end - dt.timedelta(microseconds=1)).astimezone(dt.timezone.utc).date()
    return [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def gather(reader: Reader, start: dt.datetime, end: dt.datetime) -> dict[str, _Event]:
    rows = {name: list(reader.read(name, time_field, fields, start, end, by_day=by_day))
            for name, time_field, by_day, fields in QUERIES}  # fmt: skip
    return classify(rows["order_events"], rows["event_claims"], rows["dead_events"])


def build(reader: Reader, start: dt.datetime, end: dt.datetime, sources: Sequence[str] | None) -> dict[str, Any]:
    summary = summarize(gather(reader, start, end), sources)
    return {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "documents_read": reader.documents_read,
        "truncated": reader.truncated,
        "sources": summary,
    }


# --- printing -------------------------------------------------------------------------------

_COLUMNS = (("received", RECEIVED), ("sent", SENT), ("withheld", WITHHELD), ("skipped", SKIPPED),
            ("dead", DEAD), ("pending", PENDING))  # fmt: skip


def render(report: Mapping[str, Any]) -> str:
    lines = [f"report {report['since']} .. {report['until']} (UTC days); {report['documents_read']} documents read"]
    if report["truncated"]:
        lines.append("  TRUNCATED at --max-documents: narrow the window or raise the bound")
    if not report["sources"]:
        lines.append("  nothing recorded in this window")
    for shop in report.get("shops") or ():
        lines.append(shop_line(shop))
    for source, entry in report["sources"].items():
        lines.append("")
        lines.append(source)
        lines.append("  " + f"{'day':<12}" + "".join(f"{title:>10}" for title, _ in _COLUMNS))
        rows = [*entry["days"].items(), ("total", {"outcomes": entry["outcomes"]})]
        for day, values in rows:
            lines.append("  " + f"{day:<12}" + "".join(f"{values['outcomes'][name]:>10}" for _, name in _COLUMNS))
        if entry["skipped_by_rule"]:
            rules = ", ".join(f"{rule} {count}" for rule, count in entry["skipped_by_rule"].items())
            lines.append(f"  skipped by rule: {rules} (cancelled = cancelled before sending, "
                         "outside_window = paid before ORDER_MAX_EVENT_AGE_DAYS)")  # fmt: skip
        if entry["dead_by_code"]:
            codes = ", ".join(f"{code} x{count}" for code, count in entry["dead_by_code"].items())
            lines.append(f"  dead by TikTok code: {codes} (make redrive ARGS=--list)")
        sent = entry["outcomes"][SENT]
        if sent:
            shares = ", ".join(f"{key} {share:.0%}" for key, share in entry["match_keys"].items() if share)
            lines.append(f"  match keys of the {sent} sent: {shares or 'none'}")
            lines.append(
                f"  coverage score {entry['coverage_score']}/{match_keys.MAX_SCORE} "
                "(our proxy from the keys present, not TikTok's Event Match Quality)"
            )
    return "\n".join(lines)


def shop_line(shop: Mapping[str, Any]) -> str:
    """One channel's orders in the shop vs what the pipeline holds of them (``--shop-orders``)."""
    head = f"{shop['source']} {shop['shop']}: "
    if shop.get("error") and not shop.get("orders"):
        return head + f"shop orders not read: {shop['error']}"
    states, classes = shop["states"], shop["classes"]
    held = ", ".join(f"{states[name]} {title}" for title, name in _COLUMNS[1:] if states.get(name))
    paid = f" ({classes.get('paid', 0)} paid)" if shop["orders"] else ""
    gap = f"; {states['missing']} paid MISSING (make reconcile ARGS=--backfill)" if states.get("missing") else ""
    return head + f"{shop['orders']} orders in the shop{paid}: {held or 'none recorded'}{gap}"


# --- the command ----------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make report ARGS=...", description=__doc__.splitlines()[0])
    parser.add_argument("--since", default="24h", help="start: 24h, 30m, 7d, or an ISO date/time (default 24h)")
    parser.add_argument("--until", default="now", help="end: now, 1h, or an ISO date/time (default now)")
    parser.add_argument("--source", action="append", metavar="NAME", help=f"only this source: {', '.join(SOURCES)}")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    parser.add_argument("--page-size", type=int, default=DEFAULT_PAGE, help="documents per query page")
    parser.add_argument("--max-documents", type=int, default=DEFAULT_MAX_DOCUMENTS, help="stop reading after this")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds per Firestore page")
    parser.add_argument("--shop-orders", action="store_true",
                        help="also list each shop's orders of the window through its API, where credentials are set "
                        "(SHOPIFY_ADMIN_TOKEN or SHOPIFY_CLIENT_ID/SECRET, WOOCOMMERCE_API_KEY/SECRET), and compare "
                        "them with what the pipeline holds: one line per shop; costs one API request per 100 orders "
                        "and three Firestore reads per order; sends nothing (make reconcile does)")  # fmt: skip
    return parser.parse_args(argv)


def _check(args: argparse.Namespace, now: dt.datetime) -> tuple[dt.datetime, dt.datetime, list[str] | None]:
    sources = None
    if args.source:
        sources = [s.strip().lower() for value in args.source for s in value.split(",") if s.strip()]
        unknown = [s for s in sources if s not in SOURCES]
        if unknown:
            raise ReportError(f"unknown source {unknown[0]!r}: choose from {', '.join(SOURCES)}")
    if not 1 <= args.page_size <= 10_000:
        raise ReportError("--page-size must be between 1 and 10000")
    if args.max_documents < 1:
        raise ReportError("--max-documents must be at least 1")
    if not 0 < args.timeout <= 600:
        raise ReportError("--timeout must be between 0 and 600 seconds")
    start, end = window(args.since, args.until, now)
    return start, end, sources


def run(argv: Sequence[str] | None = None, environ: Any = os.environ) -> int:
    args = _parse(argv)
    try:
        start, end, sources = _check(args, dt.datetime.now(dt.timezone.utc))
    except ReportError as exc:
        print(f"make report: {exc}", file=sys.stderr)
        return 2

    from shared.infra.localenv import prepare

    prepare("make report", ("GOOGLE_CLOUD_PROJECT",), environ)
    project = environ.get("GOOGLE_CLOUD_PROJECT") or "local-dev"
    database = environ.get("FIRESTORE_DATABASE") or "(default)"
    where = f"Firestore (project {project}, database {database}" + (
        f", emulator {environ['FIRESTORE_EMULATOR_HOST']})" if environ.get("FIRESTORE_EMULATOR_HOST") else ")"
    )
    try:
        from shared.infra.store import make_client

        reader = Reader(make_client(project, database), environ.get("FIRESTORE_COLLECTION_PREFIX", ""),
                        args.page_size, args.max_documents, args.timeout)  # fmt: skip
        report = build(reader, start, end, sources)
        if args.shop_orders:
            report["shops"] = _shop_orders(environ, start, end)
    except Exception as exc:  # the client's errors are long and nested: one line says enough
        detail = " ".join(str(exc).split())[:200]
        print(f"make report: could not read {where}: {type(exc).__name__}: {detail}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1) if args.json else render(report))
    return 0


def _shop_orders(environ: Any, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
    """Each shop's orders vs the pipeline's records (``shared.reconcile``), where credentials are set."""
    from shared.infra.store import store_from_settings
    from shared.reconcile.job import shop_orders
    from shared.reconcile.settings import ReconcileSettings

    settings = ReconcileSettings.from_env(environ)
    return shop_orders(settings, environ, start, end, store_from_settings(settings, timeout=settings.timeout_seconds))


if __name__ == "__main__":
    sys.exit(run())
