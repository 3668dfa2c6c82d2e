"""The deployed job: Cloud Scheduler's hourly POST runs one reconciliation over a trailing window.

It reconciles every configured shop and site whose API credentials are set, over the last
``RECONCILE_WINDOW_HOURS``, backfilling (``RECONCILE_BACKFILL``) and repairing
(``RECONCILE_REPAIR``) as configured, and logs one line with the run's counts: alerts key on
``missing_unsent`` (paid orders still not sent) and ``unhealthy_webhooks``. The answer is 200
once the run completed, gaps or not (the log line carries them), and 503 when a shop's API or
Firestore could not be read, so Cloud Scheduler's retry policy applies.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import flask

from shared.infra import log
from shared.infra.http import Reply
from shared.reconcile import Shop
from shared.reconcile.job import Pipeline, Run, pipeline_of, run, shops
from shared.reconcile.settings import ReconcileSettings

# The job's log line: its message, and the field that tells it apart from every other line.
LOG_MESSAGE = "reconcile run"
JOB_FIELD = "reconcile"


@dataclass
class Job:
    """One instance's settings, shops (their API clients) and pipeline, made on first use."""

    settings: ReconcileSettings
    shops: list[Shop]
    pipeline: Pipeline

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Job:
        """Raises :class:`shared.config.ConfigError` naming the variable that is wrong."""
        environ = os.environ if environ is None else environ
        settings = ReconcileSettings.from_env(environ)
        log.set_level(settings.log_level)
        return cls(settings, shops(settings, environ), pipeline_of(settings))

    def run(self, now: dt.datetime | None = None) -> Run:
        until = now or dt.datetime.now(dt.timezone.utc)
        since = until - dt.timedelta(hours=self.settings.window_hours)
        usable = [shop for shop in self.shops if shop.orders is not None]
        return run(usable, self.pipeline, since, until, backfill=self.settings.backfill, repair=self.settings.repair,
                   max_orders=self.settings.max_orders)  # fmt: skip


def log_run(done: Run, skipped: list[Shop]) -> None:
    """The run's one line: WARNING when orders are missing or a webhook is unhealthy, ERROR when a shop failed."""
    counts = done.counts()
    severity = "ERROR" if done.errors else "WARNING" if done.missing_unsent or done.unhealthy_webhooks else "INFO"
    details: dict[str, Any] = {
        JOB_FIELD: "done", **counts, "window_since": done.since.isoformat(), "window_until": done.until.isoformat(),
        "backfill": done.backfill, "repair": done.repair, "errors": done.errors[:10],
        "without_credentials": [f"{shop.source} {shop.key}" for shop in skipped][:20],
        "missing_orders": [f"{r.source} {r.shop} {line.name} (id {line.order_id})" for r in done.shops
                           for line in r.lines if line.kind == "paid" and line.outcome != "published"][:20],
    }  # fmt: skip
    log.log(severity, LOG_MESSAGE, **details)


def handle_request(request: flask.Request, job: Callable[[], Job]) -> Reply:
    """Scheduler's POST (its body is not read): one run, its line logged, its counts answered."""
    current = job()
    done = current.run()
    log_run(done, [shop for shop in current.shops if shop.orders is None])
    return Reply(503 if done.errors else 200, {**done.counts(), "errors": done.errors})
