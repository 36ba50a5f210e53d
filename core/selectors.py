"""Reads for the site dashboard (staff): workers, queue lengths, failed runs, database size,
and the projects (handed over by the annotation app, which core does not import).

Each function is cheap on its own: the page's live fragments poll them every few seconds."""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count

from core.models import RunStatus, WorkerBeat
from core.runs import run_models

logger = logging.getLogger(__name__)

# The queues the product sends to (config/settings/base.py routes); any queue a worker
# consumes is listed besides.
QUEUES = ("cpu", "gpu")
FAILED_RUNS_SHOWN = 50


def db_now() -> datetime:
    """The database's clock: heartbeats are written with it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


# ---------------------------------------------------------------- workers


@dataclass(frozen=True)
class ActiveTask:
    name: str
    args: str
    started: datetime | None


@dataclass(frozen=True)
class WorkerStatus:
    hostname: str
    queues: list[str]
    active: list[ActiveTask]
    started_at: datetime
    seen_at: datetime
    alive: bool
    # When it went: its clean shutdown, or its last heartbeat.
    gone_since: datetime | None
    seen_age_s: float


def worker_list(*, now: datetime | None = None) -> list[WorkerStatus]:
    """The workers alive now (a heartbeat within WORKER_GONE_AFTER_S, no shutdown since),
    then those gone within WORKER_GONE_LISTED_S, most recently gone first."""
    now = now or db_now()
    gone_after = timedelta(seconds=settings.WORKER_GONE_AFTER_S)
    listed = now - timedelta(seconds=settings.WORKER_GONE_LISTED_S)
    rows = []
    for beat in WorkerBeat.objects.filter(seen_at__gte=listed).order_by("hostname"):
        alive = beat.stopped_at is None and beat.seen_at >= now - gone_after
        active = [
            ActiveTask(
                name=task.get("name") or "?",
                args=task.get("args") or "",
                started=datetime.fromtimestamp(task["started"], tz=now.tzinfo)
                if task.get("started")
                else None,
            )
            for task in (beat.active if alive else [])
        ]
        rows.append(
            WorkerStatus(
                hostname=beat.hostname,
                queues=list(beat.queues),
                active=active,
                started_at=beat.started_at,
                seen_at=beat.seen_at,
                alive=alive,
                gone_since=None if alive else (beat.stopped_at or beat.seen_at),
                seen_age_s=max(0.0, (now - beat.seen_at).total_seconds()),
            )
        )
    rows.sort(key=lambda w: (not w.alive, -(w.gone_since or now).timestamp(), w.hostname))
    return rows


# ---------------------------------------------------------------- queues


def queue_lengths(*, queues: Iterable[str], broker_url: str | None = None) -> dict[str, int | None]:
    """Messages waiting in each queue, asked of the broker (a passive declare: Redis sums
    the queue's priority lists, kombu's SQLAlchemy transport counts its visible rows in
    kombu_message, RabbitMQ answers itself). None where the broker could not say; a queue
    the broker does not know has 0 (Redis drops an empty list). `broker_url`: another
    broker than the app's."""
    from kombu.exceptions import ChannelError

    from config.celery_app import app

    names = list(dict.fromkeys(queues))
    lengths: dict[str, int | None] = dict.fromkeys(names)
    try:
        with app.connection_for_read(broker_url, connect_timeout=1) as conn:
            conn.ensure_connection(max_retries=1)
            for name in names:
                channel = conn.channel()
                try:
                    lengths[name] = channel.queue_declare(queue=name, passive=True).message_count
                except ChannelError as exc:
                    if "NOT_FOUND" in str(exc) or getattr(exc, "reply_code", None) == 404:
                        lengths[name] = 0
                    else:
                        raise
                finally:
                    # A channel the broker closed (AMQP's 404) is gone already.
                    with contextlib.suppress(Exception):
                        channel.close()
    except Exception:
        logger.warning("could not read the queue lengths from the broker", exc_info=True)
    return lengths


@dataclass(frozen=True)
class QueueStatus:
    name: str
    waiting: int | None
    workers: list[str] = field(default_factory=list)


def queue_list(*, workers: list[WorkerStatus]) -> list[QueueStatus]:
    """cpu, gpu and every queue an alive or recently gone worker consumes, with the
    messages waiting in it and its alive workers."""
    consumers: dict[str, list[str]] = defaultdict(list)
    names = list(QUEUES)
    for worker in workers:
        for queue in worker.queues:
            if queue not in names:
                names.append(queue)
            if worker.alive:
                consumers[queue].append(worker.hostname)
    lengths = queue_lengths(queues=names)
    return [QueueStatus(name=n, waiting=lengths[n], workers=consumers[n]) for n in names]


# ---------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunFailure:
    kind: str
    run_id: int
    project: object | None
    finished_at: datetime
    error: str


def runs_failed_since(*, since: datetime, limit: int = FAILED_RUNS_SHOWN) -> list[RunFailure]:
    """Runs of every kind (core.runs.run_models) that failed since `since`, newest first."""
    failures = []
    for model in run_models():
        has_project = any(f.name == "project" for f in model._meta.get_fields())
        runs = model.objects.filter(status=RunStatus.FAILED, finished_at__gte=since)
        if has_project:
            runs = runs.select_related("project")
        for run in runs.order_by("-finished_at")[:limit]:
            failures.append(
                RunFailure(
                    kind=str(model._meta.verbose_name).capitalize(),
                    run_id=run.pk,
                    project=getattr(run, "project", None),
                    finished_at=run.finished_at,
                    error=run.error,
                )
            )
    failures.sort(key=lambda f: f.finished_at, reverse=True)
    return failures[:limit]


def runs_active_by_project() -> dict[int, int]:
    """Queued or running runs of any kind, per project id."""
    counts: dict[int, int] = defaultdict(int)
    for model in run_models():
        if not any(f.name == "project" for f in model._meta.get_fields()):
            continue
        for row in model.objects.active().values("project_id").annotate(n=Count("id")).order_by():
            counts[row["project_id"]] += row["n"]
    return dict(counts)


# ---------------------------------------------------------------- database


def database_size() -> int:
    """The application database's size on disk, in bytes."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return int(cursor.fetchone()[0])


# ---------------------------------------------------------------- projects

ProjectsGetter = Callable[..., list]
_site_projects: ProjectsGetter | None = None


def site_projects_set(getter: ProjectsGetter) -> None:
    """The annotation app hands its `project_site_summary(since=...)` selector over at
    start-up (core sits below annotation and imports nothing from it)."""
    global _site_projects
    _site_projects = getter


def site_projects(*, since: datetime) -> list:
    """Every project with its comparisons by status and judgements since `since` (rows of
    the annotation app's summary), each with `runs_active`: its queued or running runs."""
    if _site_projects is None:
        raise RuntimeError("no projects getter: is the annotation app installed?")
    rows = _site_projects(since=since)
    active = runs_active_by_project()
    for row in rows:
        row.runs_active = active.get(row.project.pk, 0)
    return rows
