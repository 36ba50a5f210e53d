"""Runs whose worker dies: for each of the five kinds of run, a worker killed with SIGKILL in
the middle leaves the run FAILED with a reason within the sweep interval (Celery beat runs
the sweep), never "running"; and a task that kills its worker on every delivery ends FAILED
after RUN_MAX_ATTEMPTS while the queue goes on serving other work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from django.conf import settings
from django.db import connections

from annotation.models import ImportJob
from annotation.services.importing import import_job_create
from core.models import Run
from curation.judges.services.annotators import annotator_create
from curation.judges.services.runs import ai_judging_run_create
from curation.routing.services.runs import routing_run_create
from curation.services.runs import curation_run_create
from scoring.services.training import training_run_create
from tests.conftest import ROOT, worker_env, worker_start, worker_stop
from tests.judges.conftest import labelled_project, reward_model_train
from tests.judges.llm_server import LLMServer

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _wait(predicate, seconds: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < seconds, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture
def beat(celery_worker, tmp_path):
    """Celery beat, sending the runs sweep every RUN_SWEEP_INTERVAL_S to the session's
    worker (which runs it)."""
    log = tmp_path / "beat.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
             "-s", str(tmp_path / "beat-schedule")],
            cwd=ROOT, env=worker_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    yield proc
    worker_stop(proc)


def _kill_mid_run(run: Run, tmp_path: Path, *, started, after_kill=lambda: None) -> Run:
    """Send the run's own task to a worker of its own, kill that worker (SIGKILL, the whole
    process) once `started(run)` holds, and wait for the sweep to settle the run."""
    from config.celery_app import app

    queue = f"kill-{type(run).__name__.lower()}"
    proc, _name = worker_start(queues=queue, log_path=tmp_path / f"{queue}.log")
    try:
        app.send_task(type(run).TASK, args=(run.pk,), queue=queue)
        row = type(run).objects.filter(pk=run.pk)
        _wait(lambda: started(row.get()), 300, f"{queue} to be under way")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            worker_stop(proc)
    killed = row.get()
    assert killed.status == "running", "the run was not in the middle when its worker died"
    after_kill()
    limit = settings.RUN_STALE_AFTER_S + 2 * settings.RUN_SWEEP_INTERVAL_S + 15
    _wait(lambda: row.get().status != "running", limit, "the sweep to fail the run")
    done = row.get()
    assert done.status == "failed", done.status
    assert done.error.startswith("The worker running it stopped: no sign of life since"), done.error
    assert done.finished_at is not None
    return done


def test_an_import_whose_worker_dies_ends_failed(project, tmp_path, beat):
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as out:
        for i in range(60_000):
            row = {"prompt": f"question {i}", "chosen": f"a kind answer {i}", "rejected": f"no {i}"}
            out.write(orjson.dumps(row) + b"\n")
    job = import_job_create(project=project, path=path)
    _kill_mid_run(job, tmp_path, started=lambda r: r.status == "running" and r.progress_done > 0)
    assert not project.comparisons.exists()  # its one transaction never committed


def test_a_training_run_whose_worker_dies_ends_failed(project, tmp_path, beat):
    labelled_project(project, tmp_path, n=60)
    slow = {"epochs": 400, "batch_size": 8, "members": 2, "hidden": 16, "progress_every": 10}
    run = training_run_create(project=project, config=slow)
    done = _kill_mid_run(
        run, tmp_path, started=lambda r: r.phase == "training" and r.progress_done > 0
    )
    assert done.model_version is None  # nothing half-registered


def test_a_curation_run_whose_worker_dies_ends_failed(project, tmp_path, beat):
    labelled_project(project, tmp_path, n=60)
    reward_model_train(project)
    run = curation_run_create(project=project, options={"epochs": 400, "folds": 3})
    _kill_mid_run(run, tmp_path, started=lambda r: r.phase == "detecting" and r.progress_done > 0)
    assert not run.flags.exists()


def test_a_judging_run_whose_worker_dies_ends_failed(project, tmp_path, beat):
    labelled_project(project, tmp_path, n=40)
    with LLMServer(slow_s=3.0) as server:
        server.script = ["slow"] * 200
        annotator = annotator_create(
            project=project,
            name="slow-judge",
            kind="remote_llm",
            settings={"base_url": server.base_url, "model": "judge", "timeout": 30},
        )
        run = ai_judging_run_create(annotator=annotator)
        _kill_mid_run(run, tmp_path, started=lambda r: r.phase == "judging")


def test_a_routing_run_whose_worker_dies_ends_failed(project, tmp_path, beat):
    labelled_project(project, tmp_path, n=20)
    run = routing_run_create(project=project, policy="random")
    # Hold the project's row: the routing waits for it in the middle of its run.
    holder = connections.create_connection("default")
    holder.set_autocommit(False)
    with holder.cursor() as cursor:
        cursor.execute("SELECT id FROM annotation_project WHERE id = %s FOR UPDATE", [project.pk])

    def waiting_for_the_row(r) -> bool:
        if r.status != "running" or r.phase != "routing" and r.phase != "scoring":
            return False
        time.sleep(1.0)  # it is past its scores and blocked on the row now
        return True

    try:
        _kill_mid_run(run, tmp_path, started=waiting_for_the_row, after_kill=holder.rollback)
    finally:
        holder.rollback()
        holder.close()
    assert not run.decisions.exists()


def test_a_task_that_kills_its_worker_every_time_fails_after_the_limit(
    project, tmp_path, celery_worker
):
    """Acks late + reject on worker lost send the task back each time its worker dies; the
    lifecycle counts the deliveries and fails the run instead of starting it a fourth time,
    and the same worker goes on serving the queue."""
    from config.celery_app import app

    crashing = ImportJob.objects.create(
        project=project, original_name="doom.jsonl", source_path="/dev/null"
    )
    good = tmp_path / "good.jsonl"
    good.write_bytes(orjson.dumps({"prompt": "p", "chosen": "yes", "rejected": "no"}))
    fine = import_job_create(project=project, path=good)
    proc, _name = worker_start(
        queues="crash",
        pool="prefork",
        log_path=tmp_path / "crash.log",
        extra_args=("-I", "tests.core.crash_tasks"),
    )
    try:
        app.send_task("tests.core.crash_run", args=(crashing.pk,), queue="crash")
        app.send_task(ImportJob.TASK, args=(fine.pk,), queue="crash")
        ids = [crashing.pk, fine.pk]
        _wait(
            lambda: all(j.is_finished for j in ImportJob.objects.filter(pk__in=ids)),
            240,
            "both jobs to finish",
        )
    finally:
        worker_stop(proc)
    crashing.refresh_from_db()
    fine.refresh_from_db()
    limit = settings.RUN_MAX_ATTEMPTS
    assert crashing.status == "failed"
    assert crashing.error.startswith(f"The worker died {limit} times while running this")
    assert crashing.attempts == limit + 1
    assert (fine.status, fine.attempts) == ("succeeded", 1)
    log = (tmp_path / "crash.log").read_text()
    assert log.count("WorkerLostError") + log.count("SIGKILL") >= limit
