"""The site dashboard (staff): who may open it, and each figure on it against what the
database, the broker and real workers say."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from annotation.models import Comparison, ImportJob, Judgement
from core.models import RunStatus, WorkerBeat
from core.selectors import database_size, queue_lengths, runs_failed_since, worker_list
from core.workers import worker_beat_record, worker_beat_stop
from curation.models import CurationRun
from scoring.models import TrainingRun
from tests.conftest import worker_start, worker_stop
from tests.factories import UserFactory, comparison_make, judgement_make

URL = reverse("core:site")
HX = {"HX-Request": "true"}


@pytest.fixture
def staff(db):
    return UserFactory(username="sam-staff", is_staff=True)


def _part(client, part: str) -> str:
    response = client.get(URL, {"part": part}, headers=HX)
    assert response.status_code == 200
    return response.content.decode()


def _worker_row(html: str, hostname: str) -> str | None:
    """The worker's table row in the workers fragment, or None."""
    match = re.search(rf'<tr data-worker="{re.escape(hostname)}".*?</tr>', html, re.S)
    return match.group(0) if match else None


# ---------------------------------------------------------------- access


@pytest.mark.django_db
def test_staff_see_the_site_dashboard(client, staff, project):
    client.force_login(staff)
    response = client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    for section in ("site-workers", "site-projects", "site-failures"):
        assert f'id="{section}"' in html
        assert f"?part={section.removeprefix('site-')}" in html
    assert 'hx-trigger="every 5s"' in html
    assert 'data-project="alpha"' in html


@pytest.mark.django_db
def test_the_home_page_links_the_dashboard_for_staff_only(client, staff, admin):
    client.force_login(staff)
    assert URL in client.get(reverse("annotation:home")).content.decode()
    client.force_login(admin)
    assert URL not in client.get(reverse("annotation:home")).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("part", ["", "workers", "projects", "failures"])
def test_everyone_else_gets_404(client, admin, part):
    """A project admin is not staff: neither the page nor a fragment exists for them."""
    client.force_login(admin)
    assert client.get(URL, {"part": part}, headers=HX).status_code == 404
    assert client.get(URL).status_code == 404


@pytest.mark.django_db
def test_anonymous_users_are_sent_to_log_in(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_a_fragment_is_only_its_partial(client, staff, project):
    client.force_login(staff)
    html = _part(client, "failures")
    assert html.lstrip().startswith('<section id="site-failures"')
    assert "site-projects" not in html
    assert "<html" not in html


# ---------------------------------------------------------------- projects and database


@pytest.mark.django_db
def test_projects_show_comparisons_by_status_and_the_last_day_of_judgements(
    client, staff, project, other_project, annotator
):
    for status in ("pending", "pending", "labelled", "disputed"):
        comparison_make(project, status=status)
    comparison_make(project, status="labelled", excluded=True)
    today = comparison_make(project)
    judgement_make(today, annotator, "a")
    old = judgement_make(comparison_make(project), annotator, "b")
    Judgement.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    TrainingRun.objects.create(project=project, kind="heads", status=RunStatus.RUNNING)
    client.force_login(staff)

    html = _part(client, "projects")

    row = re.search(r'<tr data-project="alpha">.*?</tr>', html, re.S).group(0)
    assert 'data-pending="4"' in row  # two made pending, plus the two judged ones
    assert 'data-labelled="1"' in row
    assert 'data-disputed="1"' in row
    assert 'data-excluded="1"' in row
    assert 'data-judgements="1"' in row
    assert 'data-runs="1"' in row
    assert "(16%)" in row  # 1 labelled of 6 counted
    beta = re.search(r'<tr data-project="beta">.*?</tr>', html, re.S).group(0)
    assert 'data-pending="0"' in beta
    assert "none in 24 h" in beta
    assert Comparison.objects.filter(project=project).count() == 7


@pytest.mark.django_db
def test_the_database_size_shows(client, staff):
    client.force_login(staff)
    html = _part(client, "projects")
    shown = int(re.search(r'id="db-size" data-bytes="(\d+)"', html).group(1))
    assert shown > 1_000_000  # an empty Django database is several MB
    assert abs(shown - database_size()) < 10_000_000
    assert re.search(r'id="db-size" data-bytes="\d+">[\d.,]+\xa0MB<', html)


# ---------------------------------------------------------------- failed runs


@pytest.mark.django_db
def test_runs_that_failed_in_the_last_day_are_listed_across_kinds(
    client, staff, project, other_project
):
    now = timezone.now()
    training = TrainingRun.objects.create(
        project=project, kind="heads", status=RunStatus.FAILED, finished_at=now,
        error="ValueError: no labelled pairs",
    )  # fmt: skip
    curation = CurationRun.objects.create(
        project=other_project, status=RunStatus.FAILED, finished_at=now - timedelta(hours=3),
        error="The worker running it stopped",
    )  # fmt: skip
    ImportJob.objects.create(
        project=project, source_path="/tmp/old.jsonl", status=RunStatus.FAILED,
        finished_at=now - timedelta(days=2), error="too old to list",
    )  # fmt: skip
    TrainingRun.objects.create(
        project=project, kind="heads", status=RunStatus.SUCCEEDED, finished_at=now
    )
    client.force_login(staff)

    html = _part(client, "failures")

    rows = re.findall(r'<tr data-kind="([^"]+)" data-run="(\d+)">(.*?)</tr>', html, re.S)
    assert [(kind, int(pk)) for kind, pk, _ in rows] == [
        ("Training run", training.pk),
        ("Curation run", curation.pk),
    ]
    assert "ValueError: no labelled pairs" in rows[0][2]
    assert ">Alpha<" in rows[0][2]
    assert ">Beta<" in rows[1][2]
    assert "too old to list" not in html
    listed = runs_failed_since(since=now - timedelta(days=1))
    assert {f.run_id for f in listed} == {training.pk, curation.pk}


# ---------------------------------------------------------------- workers: the rule


@pytest.mark.django_db
def test_a_worker_silent_past_the_limit_or_stopped_is_gone(client, staff):
    started = timezone.now() - timedelta(minutes=5)
    for name in ("w-alive", "w-silent", "w-stopped", "w-ancient"):
        worker_beat_record(hostname=name, queues=["cpu"], active=[], pid=1, started_at=started)
    now = timezone.now()
    gone_after = settings.WORKER_GONE_AFTER_S
    WorkerBeat.objects.filter(hostname="w-silent").update(
        seen_at=now - timedelta(seconds=gone_after + 1)
    )
    worker_beat_stop(hostname="w-stopped")
    WorkerBeat.objects.filter(hostname="w-ancient").update(seen_at=now - timedelta(hours=2))

    listed = {w.hostname: w for w in worker_list() if w.hostname.startswith("w-")}

    assert set(listed) == {"w-alive", "w-silent", "w-stopped"}  # gone an hour ago: forgotten
    assert listed["w-alive"].alive
    assert listed["w-alive"].gone_since is None
    assert not listed["w-silent"].alive
    assert listed["w-silent"].gone_since == WorkerBeat.objects.get(hostname="w-silent").seen_at
    assert not listed["w-stopped"].alive  # at once, not after the limit
    # Just inside the limit it is still alive: "gone" means silent for WORKER_GONE_AFTER_S.
    just_inside = WorkerBeat.objects.get(hostname="w-silent").seen_at + timedelta(
        seconds=gone_after - 0.5
    )
    assert next(w for w in worker_list(now=just_inside) if w.hostname == "w-silent").alive

    client.force_login(staff)
    html = _part(client, "workers")
    assert 'data-alive="yes"' in _worker_row(html, "w-alive")
    assert "gone since" in _worker_row(html, "w-silent")
    assert "gone since" in _worker_row(html, "w-stopped")
    assert _worker_row(html, "w-ancient") is None


def test_gone_after_fits_in_a_minute_with_the_page_refresh():
    assert settings.WORKER_GONE_AFTER_S + 5 < 60
    assert settings.WORKER_HEARTBEAT_S < settings.WORKER_GONE_AFTER_S


# ---------------------------------------------------------------- the broker


@pytest.mark.django_db
def test_queue_length_counts_the_messages_waiting_in_redis(client, staff):
    from config.celery_app import app

    queue = f"site-test-{uuid.uuid4().hex[:8]}"
    assert queue_lengths(queues=[queue]) == {queue: 0}
    for _ in range(3):
        app.send_task("tests.core.nobody_runs_this", args=(1,), queue=queue)
    try:
        assert queue_lengths(queues=[queue, "gpu"]) == {queue: 3, "gpu": 0}
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
    client.force_login(staff)
    html = _part(client, "workers")
    assert re.search(r'<tr data-queue="gpu">\s*<td><code>gpu</code></td>\s*'
                     r'<td class="num" data-waiting="0">', html)  # fmt: skip


def test_an_unreachable_broker_says_n_a_quickly():
    started = time.monotonic()
    assert queue_lengths(queues=["cpu"], broker_url="redis://127.0.0.1:1/0") == {"cpu": None}
    assert time.monotonic() - started < 10


# ---------------------------------------------------------------- workers: real ones


def _wait(predicate, seconds: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < seconds, f"timed out waiting for {what}"
        time.sleep(0.2)
    return time.monotonic() - started


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_session_worker_reports_itself_with_its_queue(client, celery_worker):
    client.force_login(UserFactory(username="sam-staff", is_staff=True))

    def reported() -> bool:
        row = _worker_row(_part(client, "workers"), celery_worker)
        return row is not None and 'data-alive="yes"' in row

    _wait(reported, 10, "the worker's heartbeat")
    beat = WorkerBeat.objects.get(hostname=celery_worker)
    assert beat.queues == ["cpu"]
    assert beat.stopped_at is None
    html = _part(client, "workers")
    assert re.search(r'<tr data-queue="cpu">.*?' + re.escape(celery_worker), html, re.S)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_busy_worker_shows_its_task_and_a_killed_one_is_gone_within_the_limit(
    client, celery_worker, tmp_path
):
    """A solo-pool worker busy with a task still reports (what it runs, too); killed with
    SIGKILL, it shows as gone within WORKER_GONE_AFTER_S plus a heartbeat."""
    from config.celery_app import app

    client.force_login(UserFactory(username="sam-staff", is_staff=True))
    queue = f"site-{uuid.uuid4().hex[:6]}"
    proc, name = worker_start(
        queues=queue, log_path=tmp_path / "worker.log", extra_args=("-I", "tests.core.site_tasks")
    )
    try:
        _wait(lambda: _worker_row(_part(client, "workers"), name) is not None, 10, "its beat")
        app.send_task("tests.core.site_sleep", args=(120,), queue=queue)

        def running() -> bool:
            row = _worker_row(_part(client, "workers"), name) or ""
            return "tests.core.site_sleep" in row and 'data-alive="yes"' in row

        _wait(running, 20, "the page to show the task it runs")
        # Still alive well past the limit while busy: the heartbeat does not wait for it.
        time.sleep(settings.WORKER_GONE_AFTER_S + 1)
        row = _worker_row(_part(client, "workers"), name)
        assert 'data-alive="yes"' in row
        assert "(120,)" in row
        assert f"<code>{queue}</code>" in row

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        killed = time.monotonic()
        _wait(
            lambda: 'data-alive="no"' in (_worker_row(_part(client, "workers"), name) or ""),
            60,
            "the page to show the worker gone",
        )
        took = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            worker_stop(proc)
    assert took <= settings.WORKER_GONE_AFTER_S + settings.WORKER_HEARTBEAT_S + 2
    assert "gone since" in _worker_row(_part(client, "workers"), name)
    assert WorkerBeat.objects.get(hostname=name).stopped_at is None  # killed, not stopped


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_that_shuts_down_cleanly_is_gone_at_once(celery_worker, tmp_path):
    proc, name = worker_start(queues=f"site-{uuid.uuid4().hex[:6]}", log_path=tmp_path / "w.log")
    try:
        _wait(lambda: WorkerBeat.objects.filter(hostname=name).exists(), 10, "its beat")
    finally:
        worker_stop(proc)
    beat = WorkerBeat.objects.get(hostname=name)
    assert beat.stopped_at is not None
    assert not next(w for w in worker_list() if w.hostname == name).alive
