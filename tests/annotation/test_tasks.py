"""Imports through the real Celery worker (a `celery worker` process on Redis and the test
database). Rows must be committed for the worker to see them, hence transactional_db."""

from __future__ import annotations

import time

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.models import Comparison, ImportJob, Judgement
from annotation.services.importing import import_job_execute
from tests.factories import PASSWORD

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _wait_finished(job_id: int, timeout: float = 180) -> ImportJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = ImportJob.objects.get(pk=job_id)
        if job.is_finished:
            return job
        time.sleep(0.1)
    pytest.fail(f"import job {job_id} did not finish in {timeout} s (status {job.status})")


def _upload(client, project, admin, name: str, data: bytes) -> int:
    assert client.login(username=admin.username, password=PASSWORD)
    response = client.post(
        reverse("annotation:import", args=[project.slug]),
        {"file": SimpleUploadedFile(name, data), "format": "auto", "pairs": "all", "max_pairs": 45},
    )
    assert response.status_code == 302
    return ImportJob.objects.get(original_name=name).pk


def test_uploaded_file_is_imported_by_the_worker(client, project, admin, celery_worker):
    rows = b"\n".join(
        orjson.dumps({"prompt": f"Q{i % 50}", "chosen": f"yes {i}", "rejected": f"no {i}"})
        for i in range(2000)
    )

    job = _wait_finished(_upload(client, project, admin, "pairs.jsonl", rows))

    assert job.status == "succeeded", job.errors
    assert job.summary["message"].startswith(
        "imported 2000 comparisons (50 prompts, 4000 candidates)"
    )
    assert (job.progress_done, job.progress_total, job.percent) == (2000, 2000, 100)
    assert job.attempts == 1
    assert Comparison.objects.filter(project=project, status="labelled").count() == 2000
    assert Judgement.objects.filter(source_name="import:pairs.jsonl").count() == 2000


def test_bad_upload_fails_with_the_error_report_and_imports_nothing(
    client, project, admin, celery_worker
):
    rows = b"\n".join(
        [
            orjson.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}),
            b"{broken",
            orjson.dumps({"prompt": "a", "chosen": "same", "rejected": "same"}),
        ]
    )

    job = _wait_finished(_upload(client, project, admin, "bad.jsonl", rows))

    assert job.status == "failed"
    assert job.error == job.summary["message"] == "2 bad row(s); nothing was imported"
    assert job.errors[0].startswith("line 2: malformed JSON")
    assert job.errors[1] == "line 3, field 'rejected': chosen and rejected are identical"
    assert not Comparison.objects.exists()


def test_running_a_finished_job_again_changes_nothing(client, project, admin, celery_worker):
    data = orjson.dumps({"prompt": "p", "chosen": "x", "rejected": "y"})
    job = _wait_finished(_upload(client, project, admin, "one.jsonl", data))
    finished_at = job.finished_at

    again = import_job_execute(job=job)

    assert (again.status, again.finished_at, again.attempts) == ("succeeded", finished_at, 1)
    assert Comparison.objects.count() == 1
    assert Judgement.objects.count() == 1
