"""Import jobs run once, survive a dead worker, never run twice at the same time; the
import_pairs command runs one here and exits non-zero when it fails."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connections

from annotation.models import Comparison, ImportJob, Project
from annotation.services.importing import (
    import_job_cancel,
    import_job_create,
    import_job_execute,
    import_job_start,
)
from core.exceptions import ApplicationError
from core.locks import Lock
from tests.conftest import ROOT, worker_env

pytestmark = pytest.mark.django_db

DATA = b'{"prompt": "p", "chosen": "x", "rejected": "y"}\n{"prompt": "q", "chosen": "x", "rejected": "y"}\n'
BAD = b'{"prompt": "p", "chosen": "same", "rejected": "same"}\n'


@pytest.fixture
def job(project, admin):
    return ImportJob.objects.create(
        project=project, created_by=admin, file=SimpleUploadedFile("j.jsonl", DATA),
        original_name="j.jsonl",
    )  # fmt: skip


def test_a_queued_job_runs_and_reports(job):
    done = import_job_execute(job=job)
    assert done.status == "succeeded"
    assert done.summary["comparisons_created"] == 2
    assert done.summary["message"].startswith("imported 2 comparisons (2 prompts, 4 candidates)")
    assert (done.progress_done, done.progress_total, done.percent) == (2, 2, 100)
    assert done.finished_at is not None
    assert Comparison.objects.count() == 2


def test_a_job_left_running_by_a_dead_worker_runs_again(job):
    ImportJob.objects.filter(pk=job.pk).update(
        status="running", phase="writing", progress_done=1, attempts=1
    )
    done = import_job_execute(job=job)
    assert done.status == "succeeded"
    assert done.attempts == 2
    assert Comparison.objects.count() == 2


def test_a_job_another_worker_holds_is_left_alone(job):
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [int(Lock.IMPORT_JOB), job.pk])
        left = import_job_execute(job=job)
    finally:
        other.close()
    assert (left.status, left.attempts) == ("queued", 0)
    assert not Comparison.objects.exists()


def test_a_bad_file_fails_the_job_with_its_errors(project, admin):
    job = ImportJob.objects.create(
        project=project, created_by=admin, original_name="bad.jsonl",
        file=SimpleUploadedFile("bad.jsonl", b'{"prompt": "p", "chosen": "a\\u0000b", "rejected": "c"}\n'),
    )  # fmt: skip
    done = import_job_execute(job=job)
    assert done.status == "failed"
    assert done.errors == [
        "line 1, field 'chosen': contains a NUL character (\\u0000), which cannot be stored"
    ]
    assert done.error == done.summary["message"] == "1 bad row(s); nothing was imported"
    assert not Comparison.objects.exists()


def test_a_cancelled_queued_job_never_runs(job):
    cancelled = import_job_cancel(job=job)
    assert (cancelled.status, cancelled.finished_at is not None) == ("cancelled", True)

    again = import_job_execute(job=job)

    assert (again.status, again.attempts, again.progress_done) == ("cancelled", 0, 0)
    assert not Comparison.objects.exists()


# ---------------------------------------------------------------- create and start


def test_create_makes_a_queued_job_of_a_file_on_disk_and_enqueues_nothing(
    project, tmp_path, django_capture_on_commit_callbacks
):
    path = tmp_path / "disk.jsonl"
    path.write_bytes(DATA)
    with django_capture_on_commit_callbacks() as callbacks:
        job = import_job_create(project=project, path=path, options={"source": "lab"})
    assert callbacks == []
    job.refresh_from_db()
    assert (job.status, job.original_name, job.source_path) == (
        "queued",
        "disk.jsonl",
        str(path.resolve()),
    )
    assert not job.file

    done = import_job_execute(job=job)

    assert done.status == "succeeded", done.error
    assert set(Comparison.objects.values_list("judgements__source_name", flat=True)) == {"lab"}


def test_start_enqueues_the_job_once_committed(
    project, tmp_path, django_capture_on_commit_callbacks
):
    path = tmp_path / "disk.jsonl"
    path.write_bytes(DATA)
    with django_capture_on_commit_callbacks() as callbacks:
        job = import_job_start(project=project, path=path)
    assert len(callbacks) == 1
    assert ImportJob.objects.get().pk == job.pk
    assert job.status == "queued"


@pytest.mark.parametrize("which", ["neither", "both"])
def test_create_needs_exactly_one_file(project, tmp_path, which):
    path = tmp_path / "disk.jsonl"
    path.write_bytes(DATA)
    given = {"uploaded_file": SimpleUploadedFile("u.jsonl", DATA), "path": path}
    with pytest.raises(ApplicationError, match="Give a file to import"):
        import_job_create(project=project, **({} if which == "neither" else given))
    assert not ImportJob.objects.exists()


# ---------------------------------------------------------------- the import_pairs command


def test_import_pairs_records_a_succeeded_job_of_the_file(tmp_path, capsys):
    path = tmp_path / "cli.jsonl"
    path.write_bytes(DATA)

    call_command("import_pairs", str(path), project="cli", create=True)

    out = capsys.readouterr().out
    assert out.startswith("imported 2 comparisons (2 prompts, 4 candidates) in ")
    job = ImportJob.objects.get(project__slug="cli")
    assert (job.status, job.source_path, job.original_name) == (
        "succeeded",
        str(path.resolve()),
        "cli.jsonl",
    )
    assert job.summary["message"] == out.strip()
    assert Comparison.objects.filter(project__slug="cli").count() == 2


def test_import_pairs_failing_deletes_the_project_it_created(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(BAD)

    with pytest.raises(
        CommandError, match=r"^import #\d+ failed: 1 bad row\(s\); nothing was imported$"
    ):
        call_command("import_pairs", str(bad), project="cli", create=True)

    assert "line 1, field 'rejected': chosen and rejected are identical" in capsys.readouterr().err
    assert not Project.objects.filter(slug="cli").exists()
    assert not ImportJob.objects.exists()
    assert not Comparison.objects.exists()


def test_import_pairs_failing_keeps_a_project_that_was_there(project, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(BAD)

    with pytest.raises(CommandError, match="failed: 1 bad row"):
        call_command("import_pairs", str(bad), project=project.slug, create=True)

    assert Project.objects.filter(pk=project.pk).exists()
    assert ImportJob.objects.get(project=project).status == "failed"
    assert not Comparison.objects.exists()


def test_import_pairs_refusing_a_too_big_file_deletes_the_project_it_created(tmp_path, settings):
    settings.IMPORT_MAX_FILE_BYTES = 10
    path = tmp_path / "big.jsonl"
    path.write_bytes(DATA)

    with pytest.raises(CommandError, match="over the 10-byte limit"):
        call_command("import_pairs", str(path), project="cli", create=True)

    assert not Project.objects.filter(slug="cli").exists()


@pytest.mark.django_db(transaction=True)
def test_import_pairs_exits_non_zero_on_a_bad_file(tmp_path):
    """The real process: what a shell script or cron sees."""
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(BAD)

    done = subprocess.run(
        [sys.executable, "manage.py", "import_pairs", str(bad), "--project", "cli", "--create"],
        cwd=ROOT, env=worker_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert "line 1, field 'rejected': chosen and rejected are identical" in done.stderr
    assert "failed: 1 bad row(s); nothing was imported" in done.stderr
    assert not Project.objects.filter(slug="cli").exists()
    assert not ImportJob.objects.exists()
