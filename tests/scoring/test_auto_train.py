"""Automatic training: a run after every N new labels, one run per burst of labels."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from annotation.models import Project
from scoring.models import ModelVersion, TrainingRun
from scoring.selectors import scoring_settings_get
from scoring.services.project_settings import scoring_settings_update
from scoring.services.training import training_auto_start, training_run_execute
from tests.scoring.test_training import _import


def _auto(project: Project, every: int | None, members: int = 4) -> Project:
    scoring_settings_update(project=project, auto_train_every=every, ensemble_members=members)
    return project


@pytest.mark.django_db
def test_off_by_default(project, tmp_path):
    _import(project, tmp_path, n=40)
    assert scoring_settings_get(project=project).auto_train_every is None
    assert training_auto_start(project=project) is None
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_starts_after_n_new_labels_and_counts_from_the_newest_run(
    project, tmp_path, django_capture_on_commit_callbacks
):
    project = _auto(project, 30)
    _import(project, tmp_path, n=20)
    assert training_auto_start(project=project) is None  # 20 < 30
    assert not TrainingRun.objects.exists()

    _import(project, tmp_path, n=40)  # 40 pairs now (the first 20 are the same pairs)
    with django_capture_on_commit_callbacks() as callbacks:
        run = training_auto_start(project=project)
    assert run is not None
    assert len(callbacks) == 1  # sent to a worker once committed
    assert (run.trigger, run.label_count, run.status) == ("auto", 40, "queued")
    assert run.config["members"] == 4  # the project's ensemble size
    # A second check while that run is queued starts nothing.
    assert training_auto_start(project=project) is None
    assert TrainingRun.objects.count() == 1

    assert training_run_execute(run=run).status == "succeeded"
    assert training_auto_start(project=project) is None  # no new labels since
    _import(project, tmp_path, n=69)  # 29 new
    assert training_auto_start(project=project) is None
    _import(project, tmp_path, n=70)  # 30 new
    second = training_auto_start(project=project)
    assert second is not None
    assert second.label_count == 70
    assert TrainingRun.objects.count() == 2


@pytest.mark.django_db
def test_a_failed_run_waits_for_n_more_labels(project, tmp_path):
    project = _auto(project, 20)
    _import(project, tmp_path, n=20)
    run = training_auto_start(project=project)
    TrainingRun.objects.filter(pk=run.pk).update(status="failed", finished_at=timezone.now())
    assert training_auto_start(project=project) is None
    assert TrainingRun.objects.count() == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_burst_of_labels_makes_one_run_on_the_worker(project, tmp_path, settings, celery_worker):
    settings.SCORING_AUTO_TRAIN_DEBOUNCE_S = 2
    project = _auto(project, 20)
    # Three imports in quick succession: each one's labels fire `labels_changed`.
    for n in (20, 40, 60):
        _import(project, tmp_path, n=n)

    deadline = time.monotonic() + 180
    while True:
        runs = list(TrainingRun.objects.filter(project=project))
        if runs and runs[0].is_finished:
            break
        assert time.monotonic() < deadline, "no automatic run finished in time"
        time.sleep(0.5)
    time.sleep(settings.SCORING_AUTO_TRAIN_DEBOUNCE_S + 1)  # nothing more comes after it
    runs = list(TrainingRun.objects.filter(project=project))
    assert len(runs) == 1
    assert runs[0].status == "succeeded", runs[0].error
    assert runs[0].trigger == "auto"
    assert runs[0].model_version.is_active
    assert ModelVersion.objects.filter(project=project).count() == 1
