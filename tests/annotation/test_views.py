"""The project, import and export pages: permissions, upload, progress fragment, downloads."""

from __future__ import annotations

import io
import json

import orjson
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from annotation.models import ImportJob
from annotation.services.importing import pairs_import
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

TRL = b"".join(
    orjson.dumps({"prompt": f"Q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}) + b"\n"
    for i in range(5)
)


def _upload(client, project, name: str, data: bytes):
    form = {
        "file": SimpleUploadedFile(name, data),
        "format": "auto",
        "pairs": "all",
        "max_pairs": 45,
    }
    return client.post(reverse("annotation:import", args=[project.slug]), form)


def _login(client, user) -> None:
    assert client.login(username=user.username, password=PASSWORD)


@pytest.fixture
def job(project, admin):
    return ImportJob.objects.create(
        project=project,
        created_by=admin,
        file=SimpleUploadedFile("x.jsonl", TRL),
        original_name="x.jsonl",
        status=ImportJob.Status.RUNNING,
        phase="validating",
        progress_done=2,
        progress_total=5,
    )


def _urls(project, job) -> list[str]:
    return [
        reverse("annotation:project", args=[project.slug]),
        reverse("annotation:import", args=[project.slug]),
        reverse("annotation:import_job", args=[project.slug, job.id]),
        reverse("annotation:export", args=[project.slug, "jsonl"]),
        reverse("annotation:export", args=[project.slug, "parquet"]),
    ]


def test_anonymous_users_are_sent_to_login(client, project, job):
    for url in _urls(project, job):
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith("/accounts/login/")


def test_outsider_gets_404_for_every_project_url(client, project, job, outsider):
    _login(client, outsider)
    for url in _urls(project, job):
        assert client.get(url).status_code == 404, url
    response = _upload(client, project, "x.jsonl", TRL)
    assert response.status_code == 404
    assert ImportJob.objects.count() == 1


def test_annotator_sees_the_project_but_not_import_or_export(client, project, job, annotator):
    _login(client, annotator)
    project_page = client.get(reverse("annotation:project", args=[project.slug]))
    assert project_page.status_code == 200
    assert b"Import a file" not in project_page.content
    for url in _urls(project, job)[1:]:
        assert client.get(url).status_code == 404, url


def test_a_job_of_another_project_is_404(client, project, other_project, admin, outsider):
    other_job = ImportJob.objects.create(
        project=other_project, file=SimpleUploadedFile("y.jsonl", TRL), original_name="y.jsonl"
    )
    _login(client, admin)
    url = reverse("annotation:import_job", args=[project.slug, other_job.id])
    assert client.get(url).status_code == 404


def test_upload_creates_a_queued_job_and_redirects_to_it(client, project, admin):
    _login(client, admin)
    response = _upload(client, project, "pairs.jsonl", TRL)
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("annotation:import_job", args=[project.slug, job.id])
    assert (job.status, job.original_name, job.created_by) == ("queued", "pairs.jsonl", admin)
    assert job.file.read() == TRL


def test_upload_of_a_wrong_file_type_is_refused(client, project, admin):
    _login(client, admin)
    response = _upload(client, project, "notes.txt", b"hello")
    assert response.status_code == 400
    assert (
        b"Upload a .jsonl, .jsonl.gz, .csv, .parquet or (with media) .zip file." in response.content
    )
    assert not ImportJob.objects.exists()


def test_progress_fragment_polls_until_finished(client, project, admin, job):
    _login(client, admin)
    url = reverse("annotation:import_job", args=[project.slug, job.id])

    running = client.get(url, headers={"HX-Request": "true"})
    assert running.status_code == 200
    body = running.content.decode()
    # The fragment (the run's own element, which it replaces), not the page.
    assert body.lstrip().startswith(f'<div id="run-{job.id}" class="run" data-status="running"')
    assert "<html" not in body
    assert 'hx-trigger="every 1s"' in body
    assert '<span class="steps">2 / 5 rows</span>' in body
    assert reverse("annotation:import_job_cancel", args=[project.slug, job.id]) in body

    job.status, job.finished_at = ImportJob.Status.SUCCEEDED, timezone.now()
    job.summary = {"message": "imported 5 comparisons"}
    job.save()
    done = client.get(url, headers={"HX-Request": "true"})
    assert done.status_code == 286  # htmx stops polling
    body = done.content.decode()
    assert 'data-status="succeeded"' in body
    assert '<p class="summary">imported 5 comparisons</p>' in body
    assert "hx-trigger" not in body
    assert "Cancel" not in body

    page = client.get(url)
    assert page.status_code == 200
    assert b"<html" in page.content
    assert b'<section id="progress"' in page.content


def test_a_failed_job_shows_its_message_and_every_error(client, project, admin, job):
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.FAILED,
        finished_at=timezone.now(),
        error="2 bad row(s); nothing was imported",
        errors=[
            "line 2: malformed JSON",
            "line 3, field 'rejected': chosen and rejected are identical",
        ],
    )
    _login(client, admin)
    response = client.get(
        reverse("annotation:import_job", args=[project.slug, job.id]),
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 286
    body = response.content.decode()
    assert '<p class="error" role="alert">2 bad row(s); nothing was imported</p>' in body
    assert "<li>line 2: malformed JSON</li>" in body
    assert "<li>line 3, field &#x27;rejected&#x27;: chosen and rejected are identical</li>" in body
    assert reverse("annotation:import", args=[project.slug]) in body
    assert ImportJob.objects.get(pk=job.pk).status == "failed"


# ---------------------------------------------------------------- cancel


def _cancel_url(project, job) -> str:
    return reverse("annotation:import_job_cancel", args=[project.slug, job.id])


def _queued(project, admin) -> ImportJob:
    return ImportJob.objects.create(
        project=project,
        created_by=admin,
        file=SimpleUploadedFile("q.jsonl", TRL),
        original_name="q.jsonl",
    )


def test_admin_cancels_a_queued_job(client, project, admin):
    queued = _queued(project, admin)
    _login(client, admin)
    response = client.post(_cancel_url(project, queued), follow=True)
    assert response.redirect_chain[-1][0] == reverse(
        "annotation:import_job", args=[project.slug, queued.id]
    )
    assert f"Import #{queued.id} is cancelled." in [str(m) for m in response.context["messages"]]
    assert 'data-status="cancelled"' in response.content.decode()
    queued.refresh_from_db()
    assert queued.status == ImportJob.Status.CANCELLED
    assert queued.finished_at is not None


def test_admin_cancels_a_running_job(client, project, admin, job):
    _login(client, admin)
    response = client.post(_cancel_url(project, job))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == ImportJob.Status.CANCELLED


def test_cancelling_a_finished_job_changes_nothing(client, project, admin):
    finished = _queued(project, admin)
    ImportJob.objects.filter(pk=finished.pk).update(
        status=ImportJob.Status.SUCCEEDED, finished_at=timezone.now()
    )
    _login(client, admin)
    response = client.post(_cancel_url(project, finished), follow=True)
    assert f"Import #{finished.id} had already succeeded; nothing to cancel." in [
        str(m) for m in response.context["messages"]
    ]
    finished.refresh_from_db()
    assert finished.status == ImportJob.Status.SUCCEEDED


@pytest.mark.parametrize("persona", ["annotator", "reviewer", "outsider"])
def test_only_admins_can_cancel_a_job(client, project, admin, persona, request):
    queued = _queued(project, admin)
    _login(client, request.getfixturevalue(persona))
    assert client.post(_cancel_url(project, queued)).status_code == 404
    queued.refresh_from_db()
    assert (queued.status, queued.finished_at) == ("queued", None)


def test_cancel_needs_a_login_and_a_post(client, project, admin):
    queued = _queued(project, admin)
    response = client.post(_cancel_url(project, queued))
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")
    _login(client, admin)
    assert client.get(_cancel_url(project, queued)).status_code == 405
    queued.refresh_from_db()
    assert queued.status == "queued"


def test_a_job_of_another_project_cannot_be_cancelled(client, project, other_project, admin):
    theirs = _queued(other_project, admin)
    _login(client, admin)
    assert client.post(_cancel_url(project, theirs)).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "queued"


def test_exports_download_labelled_pairs(client, project, admin, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(TRL)
    pairs_import(project=project, path=path, source_name="import:p.jsonl")
    _login(client, admin)

    jsonl = client.get(reverse("annotation:export", args=[project.slug, "jsonl"]))
    assert jsonl.status_code == 200
    assert jsonl.streaming
    assert 'filename="alpha.jsonl"' in jsonl["Content-Disposition"]
    rows = [json.loads(line) for line in b"".join(jsonl.streaming_content).splitlines()]
    assert sorted(r["chosen"] for r in rows) == [f"good {i}" for i in range(5)]

    parquet = client.get(reverse("annotation:export", args=[project.slug, "parquet"]))
    assert parquet.status_code == 200
    table = pq.read_table(io.BytesIO(b"".join(parquet.streaming_content)))
    assert table.num_rows == 5
    assert table.column_names == [
        "prompt",
        "chosen",
        "rejected",
        "margin",
        "id",
    ]

    assert client.get(reverse("annotation:export", args=[project.slug, "csv"])).status_code == 404
