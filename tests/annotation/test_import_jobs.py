"""Import jobs run once, survive a dead worker, and never run twice at the same time."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections

from annotation.models import Comparison, ImportJob
from annotation.services.importing import IMPORT_JOB_LOCK, import_job_run

pytestmark = pytest.mark.django_db

DATA = b'{"prompt": "p", "chosen": "x", "rejected": "y"}\n{"prompt": "q", "chosen": "x", "rejected": "y"}\n'


@pytest.fixture
def job(project, admin):
    return ImportJob.objects.create(
        project=project, created_by=admin, file=SimpleUploadedFile("j.jsonl", DATA),
        original_name="j.jsonl",
    )  # fmt: skip


def test_a_queued_job_runs_and_reports(job):
    done = import_job_run(job=job)
    assert done.status == "succeeded"
    assert done.summary["comparisons_created"] == 2
    assert done.summary["message"].startswith("imported 2 comparisons (2 prompts, 4 candidates)")
    assert Comparison.objects.count() == 2


def test_a_job_left_running_by_a_dead_worker_runs_again(job):
    ImportJob.objects.filter(pk=job.pk).update(status="running", phase="writing", rows_done=1)
    done = import_job_run(job=job)
    assert done.status == "succeeded"
    assert Comparison.objects.count() == 2


def test_a_job_another_worker_holds_is_left_alone(job):
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [IMPORT_JOB_LOCK, job.pk])
        left = import_job_run(job=job)
    finally:
        other.close()
    assert left.status == "queued"
    assert not Comparison.objects.exists()


def test_a_bad_file_fails_the_job_with_its_errors(project, admin):
    job = ImportJob.objects.create(
        project=project, created_by=admin, original_name="bad.jsonl",
        file=SimpleUploadedFile("bad.jsonl", b'{"prompt": "p", "chosen": "a\\u0000b", "rejected": "c"}\n'),
    )  # fmt: skip
    done = import_job_run(job=job)
    assert done.status == "failed"
    assert done.errors == [
        "line 1, field 'chosen': contains a NUL character (\\u0000), which cannot be stored"
    ]
    assert not Comparison.objects.exists()
