"""The one run lifecycle (core/runs.py), on a real run table (ImportJob) and PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from annotation.models import ImportJob
from core.exceptions import ApplicationError
from core.locks import Lock, advisory_lock_held
from core.models import Run
from core.runs import RunCancelled, run_cancel, run_execute, run_models, runs_sweep


def _job(project, **fields) -> ImportJob:
    return ImportJob.objects.create(
        project=project, original_name="pairs.jsonl", source_path="/tmp/pairs.jsonl", **fields
    )


def test_every_run_model_names_a_registered_task_and_a_lock():
    from config.celery_app import app

    app.loader.import_default_modules()
    models = run_models()
    assert {m.__name__ for m in models} == {
        "ImportJob",
        "TrainingRun",
        "CurationRun",
        "AIJudgingRun",
        "RoutingRun",
    }
    for model in models:
        assert model.TASK in app.tasks, model
        assert isinstance(model.LOCK, Lock)
    assert len({m.LOCK for m in models}) == len(models)


def test_lock_classes_are_distinct():
    assert len({int(lock) for lock in Lock}) == len(Lock)


@pytest.mark.django_db
def test_a_body_that_returns_succeeds_with_its_progress(project):
    job = _job(project)
    seen = []

    def body(handle):
        handle.progress(5, 10, phase="validating")
        handle.progress(10, 10, phase="writing")

    done = run_execute(job, body, on_progress=lambda d, t, p: seen.append((d, t, p)))
    assert done.status == Run.Status.SUCCEEDED
    assert done.attempts == 1
    assert done.started_at
    assert done.finished_at
    assert seen == [(5, 10, "validating"), (10, 10, "writing")]
    assert (done.progress_done, done.progress_total, done.phase) == (10, 10, "")
    assert done.percent == 100


@pytest.mark.django_db
def test_a_refusal_fails_the_run_with_its_message_and_extra_fields(project):
    job = _job(project)

    def body(handle):
        raise ApplicationError("3 bad rows", errors=["line 2: no prompt"])

    done = run_execute(job, body, on_failure=lambda exc: {"errors": exc.errors})
    assert done.status == Run.Status.FAILED
    assert done.error == "3 bad rows"
    assert done.errors == ["line 2: no prompt"]
    assert done.finished_at is not None


@pytest.mark.django_db
def test_an_unexpected_error_fails_the_run_naming_the_exception(project):
    job = _job(project)

    def body(handle):
        raise ZeroDivisionError("division by zero")

    done = run_execute(job, body)
    assert (done.status, done.error) == ("failed", "ZeroDivisionError: division by zero")


@pytest.mark.django_db
def test_a_finished_run_is_left_alone(project):
    job = _job(project, status="succeeded", finished_at=timezone.now())
    called = []
    done = run_execute(job, lambda handle: called.append(1))
    assert (done.status, done.attempts, called) == ("succeeded", 0, [])


@pytest.mark.django_db
def test_a_cancelled_queued_run_never_starts(project):
    job = run_cancel(_job(project))
    called = []
    done = run_execute(job, lambda handle: called.append(1))
    assert (done.status, called) == ("cancelled", [])


@pytest.mark.django_db(transaction=True)
def test_a_run_another_worker_holds_is_left_to_it(project):
    job = _job(project)
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [int(Lock.IMPORT_JOB), job.pk])
        called = []
        done = run_execute(job, lambda handle: called.append(1))
        assert (done.status, done.attempts, called) == ("queued", 0, [])
    finally:
        other.close()


@pytest.mark.django_db
def test_a_dead_workers_running_run_is_claimed_again_and_counted(project):
    job = _job(project, status="running", attempts=1, started_at=timezone.now())
    done = run_execute(job, lambda handle: handle.progress(1, 1))
    assert (done.status, done.attempts) == ("succeeded", 2)


@pytest.mark.django_db
def test_a_run_delivered_past_the_limit_fails_instead_of_running(project, settings):
    settings.RUN_MAX_ATTEMPTS = 3
    job = _job(project, status="running", attempts=3, started_at=timezone.now())
    called = []
    done = run_execute(job, lambda handle: called.append(1))
    assert called == []
    assert done.status == "failed"
    assert done.error.startswith("The worker died 3 times while running this")
    assert done.attempts == 4


@pytest.mark.django_db(transaction=True)
def test_a_cancel_stops_the_body_at_its_next_progress_report(project):
    job = _job(project)
    reports = []

    def body(handle):
        for i in range(1, 100):
            handle.progress(i, 100)
            reports.append(i)
            if i == 3:  # someone presses Cancel (another connection: the web server)
                ImportJob.objects.filter(pk=job.pk).update(
                    status="cancelled", finished_at=timezone.now()
                )

    done = run_execute(job, body)
    assert done.status == "cancelled"
    assert reports == [1, 2, 3]
    assert done.progress_done == 3


@pytest.mark.django_db(transaction=True)
def test_progress_is_seen_while_the_bodys_transaction_is_open(project):
    job = _job(project)
    seen = []

    def body(handle):
        with transaction.atomic():
            handle.progress(7, 9, phase="writing")
            other = connections.create_connection("default")
            try:
                with other.cursor() as cursor:
                    cursor.execute(
                        "SELECT progress_done, phase FROM annotation_importjob WHERE id = %s",
                        [job.pk],
                    )
                    seen.append(cursor.fetchone())
            finally:
                other.close()

    run_execute(job, body)
    assert seen == [(7, "writing")]


@pytest.mark.django_db(transaction=True)
def test_complete_commits_with_the_bodys_writes_or_not_at_all(project):
    job = _job(project)

    def body(handle):
        with transaction.atomic():
            project.name = "renamed by the run"
            project.save()
            handle.complete(summary={"message": "done"})

    done = run_execute(job, body)
    assert (done.status, done.summary) == ("succeeded", {"message": "done"})
    project.refresh_from_db()
    assert project.name == "renamed by the run"

    cancelled = _job(project)

    def late_cancel(handle):
        # Cancelled (and committed) just before the body's last transaction.
        ImportJob.objects.filter(pk=cancelled.pk).update(
            status="cancelled", finished_at=timezone.now()
        )
        with transaction.atomic():
            project.name = "never"
            project.save()
            handle.complete()

    assert run_execute(cancelled, late_cancel).status == "cancelled"
    project.refresh_from_db()
    assert project.name == "renamed by the run"


@pytest.mark.django_db(transaction=True)
def test_complete_outside_a_transaction_is_a_programming_error(project):
    job = _job(project)

    def body(handle):
        handle.complete()

    done = run_execute(job, body)
    assert done.status == "failed"
    assert "belongs inside transaction.atomic" in done.error


@pytest.mark.django_db
def test_a_deferred_run_is_queued_again_with_a_fresh_count(
    project, django_capture_on_commit_callbacks
):
    job = _job(project)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        done = run_execute(job, lambda handle: handle.defer())
    assert (done.status, done.attempts) == ("queued", 0)
    assert len(callbacks) == 1  # the continuation is sent once committed


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_beats_while_the_body_works(project, settings):
    settings.RUN_HEARTBEAT_S = 0.2
    job = _job(project)
    beats = []

    def body(handle):
        start = ImportJob.objects.get(pk=job.pk).heartbeat_at
        time.sleep(1.0)  # no progress reports meanwhile
        beats.append(ImportJob.objects.get(pk=job.pk).heartbeat_at - start)

    run_execute(job, body)
    assert beats[0] >= timedelta(seconds=0.4)


@pytest.mark.django_db(transaction=True)
def test_the_lock_is_held_while_the_run_executes(project):
    job = _job(project)
    held = []
    run_execute(job, lambda handle: held.append(_held_elsewhere(Lock.IMPORT_JOB, job.pk)))
    assert held == [True]
    assert not advisory_lock_held(Lock.IMPORT_JOB, job.pk)


def _held_elsewhere(lock: Lock, key: int) -> bool:
    result = []

    def ask():
        try:
            result.append(advisory_lock_held(lock, key))
        finally:
            connection.close()

    thread = threading.Thread(target=ask)
    thread.start()
    thread.join()
    return result[0]


# ---------------------------------------------------------------- the sweep


@pytest.mark.django_db(transaction=True)
def test_the_sweep_fails_a_running_run_whose_worker_is_gone(project, settings):
    settings.RUN_STALE_AFTER_S = 60
    old = timezone.now() - timedelta(seconds=120)
    lost = _job(project, status="running", heartbeat_at=old, started_at=old, attempts=1)
    fresh = _job(project, status="running", heartbeat_at=timezone.now(), started_at=old)
    assert runs_sweep()["failed"] == 1
    lost.refresh_from_db()
    fresh.refresh_from_db()
    assert lost.status == "failed"
    assert lost.error.startswith("The worker running it stopped: no sign of life since")
    assert lost.finished_at is not None
    assert fresh.status == "running"


@pytest.mark.django_db(transaction=True)
def test_the_sweep_leaves_a_run_whose_worker_holds_its_lock(project, settings):
    settings.RUN_STALE_AFTER_S = 60
    old = timezone.now() - timedelta(seconds=120)
    busy = _job(project, status="running", heartbeat_at=old, started_at=old)
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [int(Lock.IMPORT_JOB), busy.pk])
        assert runs_sweep()["failed"] == 0
    finally:
        other.close()
    busy.refresh_from_db()
    assert busy.status == "running"


@pytest.mark.django_db
def test_the_sweep_sends_a_long_queued_runs_task_again(
    project, settings, django_capture_on_commit_callbacks
):
    settings.RUN_QUEUED_RESEND_S = 600
    waiting = _job(project, heartbeat_at=timezone.now() - timedelta(seconds=900))
    recent = _job(project)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert runs_sweep()["resent"] == 1
    assert len(callbacks) == 1
    waiting.refresh_from_db()
    recent.refresh_from_db()
    assert waiting.status == "queued"
    assert timezone.now() - waiting.heartbeat_at < timedelta(seconds=60)


def test_percent_moves_forward_across_phases():
    # An import's three phases (validating, storing files, writing rows) are a third each.
    job = ImportJob(status="running", phase="validating", progress_done=50, progress_total=100)
    assert job.percent == 16
    job.phase, job.progress_done = "storing", 0
    assert job.percent == 33
    job.phase = "writing"
    assert job.percent == 66
    job.progress_done = 100
    assert job.percent == 99  # 100 only once it succeeded
    job.status = "succeeded"
    assert job.percent == 100


@pytest.mark.django_db
def test_run_cancelled_is_what_a_cancelled_report_raises(project):
    job = _job(project)

    def body(handle):
        ImportJob.objects.filter(pk=job.pk).update(status="cancelled", finished_at=timezone.now())
        with pytest.raises(RunCancelled):
            handle.progress(1, 2)
        raise RunCancelled

    assert run_execute(job, body).status == "cancelled"
