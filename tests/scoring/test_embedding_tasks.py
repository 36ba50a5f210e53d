"""Embeddings through the real Celery worker: an import enqueues them once committed."""

from __future__ import annotations

import time

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.models import Candidate, ImportJob, Prompt
from scoring.encoders import encoder_for
from scoring.models import Embedding
from scoring.tasks import embeddings_compute_task
from tests.factories import PASSWORD

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _project_hashes(project) -> set[str]:
    return set(Prompt.objects.filter(project=project).values_list("content_hash", flat=True)) | set(
        Candidate.objects.filter(prompt__project=project).values_list("content_hash", flat=True)
    )


def _wait_embedded(hashes: set[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = Embedding.objects.filter(content_hash__in=hashes).count()
        if done == len(hashes):
            return
        time.sleep(0.25)
    pytest.fail(f"{done} of {len(hashes)} contents were embedded in {timeout} s")


def test_import_embeds_every_prompt_and_candidate_once(client, project, admin, celery_worker):
    rows = b"\n".join(
        orjson.dumps({"prompt": f"Question {i % 10}?", "chosen": f"yes {i}", "rejected": f"no {i}"})
        for i in range(60)
    )
    assert client.login(username=admin.username, password=PASSWORD)
    response = client.post(
        reverse("annotation:import", args=[project.slug]),
        {
            "file": SimpleUploadedFile("e.jsonl", rows),
            "format": "auto",
            "pairs": "all",
            "max_pairs": 45,
        },
    )
    assert response.status_code == 302

    hashes = _project_hashes_after_import(project)
    _wait_embedded(hashes)

    assert len(hashes) == 10 + 120
    version = encoder_for("text", "cpu").version
    assert Embedding.objects.filter(encoder=version, dtype="f2", dim=384).count() == 130
    before = list(Embedding.objects.order_by("id").values_list("id", "content_hash", "vector"))
    assert embeddings_compute_task(project.id) == 0  # running it again changes nothing
    assert list(Embedding.objects.order_by("id").values_list("id", "content_hash", "vector")) == (
        before
    )


def _project_hashes_after_import(project, timeout: float = 60) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = ImportJob.objects.get(project=project)
        if job.is_finished:
            assert job.status == "succeeded", job.errors
            return _project_hashes(project)
        time.sleep(0.1)
    pytest.fail(f"the import did not finish in {timeout} s")


def test_task_for_a_deleted_project_does_nothing(project, celery_worker):
    assert embeddings_compute_task(project.id + 1000) == 0
    assert not Embedding.objects.exists()
