"""The project, import and export pages: permissions, upload, progress fragment, downloads."""

from __future__ import annotations

import io
import json

import orjson
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

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
        rows_done=2,
        rows_total=5,
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
    assert b"Upload a .jsonl, .jsonl.gz, .csv or .parquet file." in response.content
    assert not ImportJob.objects.exists()


def test_progress_fragment_polls_until_finished(client, project, admin, job):
    _login(client, admin)
    url = reverse("annotation:import_job", args=[project.slug, job.id])

    running = client.get(url, headers={"HX-Request": "true"})
    assert running.status_code == 200
    body = running.content.decode()
    assert body.lstrip().startswith('<section id="progress"')  # the fragment, not the page
    assert 'hx-trigger="every 500ms"' in body
    assert "2 / 5 rows" in body

    job.status, job.summary = ImportJob.Status.SUCCEEDED, {"message": "imported 5 comparisons"}
    job.save()
    done = client.get(url, headers={"HX-Request": "true"})
    assert done.status_code == 286  # htmx stops polling
    assert "imported 5 comparisons" in done.content.decode()
    assert "hx-trigger" not in done.content.decode()

    page = client.get(url)
    assert page.status_code == 200
    assert b"<html" in page.content


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
