"""Automatic training: a run after every N new labels, one run per burst of labels."""

from __future__ import annotations

import time

import pytest

from annotation.models import Project
from scoring.models import ModelVersion
from scoring.services import model_version_auto_train, model_version_train
from tests.scoring.test_training import _import


def _auto(project: Project, every: int | None) -> Project:
    Project.objects.filter(pk=project.pk).update(auto_train_every=every)
    project.refresh_from_db()
    return project


@pytest.mark.django_db
def test_off_by_default(project, tmp_path):
    _import(project, tmp_path, n=40)
    assert project.auto_train_every is None
    assert model_version_auto_train(project=project) is None
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_starts_after_n_new_labels_and_counts_from_the_newest_run(project, tmp_path):
    project = _auto(project, 30)
    _import(project, tmp_path, n=20)
    assert model_version_auto_train(project=project) is None  # 20 < 30
    assert not ModelVersion.objects.exists()

    _import(project, tmp_path, n=40)  # 40 pairs now (the first 20 are the same pairs)
    version = model_version_auto_train(project=project)
    assert version is not None
    assert (version.trigger, version.label_count, version.status) == ("auto", 40, "queued")
    assert version.config["members"] == project.ensemble_members
    # A second check while that run is queued starts nothing.
    assert model_version_auto_train(project=project) is None
    assert ModelVersion.objects.count() == 1

    model_version_train(version=version)
    assert model_version_auto_train(project=project) is None  # no new labels since
    _import(project, tmp_path, n=69)  # 29 new
    assert model_version_auto_train(project=project) is None
    _import(project, tmp_path, n=70)  # 30 new
    second = model_version_auto_train(project=project)
    assert second is not None
    assert second.label_count == 70


@pytest.mark.django_db
def test_a_failed_run_waits_for_n_more_labels(project, tmp_path):
    project = _auto(project, 20)
    _import(project, tmp_path, n=20)
    version = model_version_auto_train(project=project)
    ModelVersion.objects.filter(pk=version.pk).update(status="failed")
    assert model_version_auto_train(project=project) is None
    assert ModelVersion.objects.count() == 1


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
        versions = list(ModelVersion.objects.filter(project=project))
        if versions and versions[0].status in ("succeeded", "failed"):
            break
        assert time.monotonic() < deadline, "no automatic run finished in time"
        time.sleep(0.5)
    time.sleep(settings.SCORING_AUTO_TRAIN_DEBOUNCE_S + 1)  # nothing more comes after it
    versions = list(ModelVersion.objects.filter(project=project))
    assert len(versions) == 1
    assert versions[0].status == "succeeded", versions[0].error
    assert versions[0].trigger == "auto"
    assert versions[0].is_active
