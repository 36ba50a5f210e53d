"""`manage.py demo_setup` (what `make run` calls) on the bundled fixture pairs: the demo
project is set up to work by itself, and the worker trains its first model, then finds
noisy pairs and routes the project with it, with nothing more asked of anyone."""

from __future__ import annotations

import io
import time

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.utils import timezone

from annotation.models import Comparison, Project
from curation.judges.models import AIAnnotator
from curation.models import CurationRun
from curation.routing.models import RoutingRun, RoutingSettings
from scoring.models import ModelVersion, ScoringSettings, TrainingRun

FIXTURE = django_settings.BASE_DIR / "annotation" / "fixtures" / "demo_pairs.jsonl"


def _demo_setup() -> str:
    out = io.StringIO()
    call_command("demo_setup", "--sample", str(FIXTURE), stdout=out)
    return out.getvalue()


@pytest.fixture
def local_dir(settings, tmp_path):
    settings.LOCAL_DIR = tmp_path / "local"  # the demo password stays out of .local/
    return settings.LOCAL_DIR


@pytest.mark.django_db
def test_demo_setup_twice_queues_the_pipeline_once(local_dir):
    first = _demo_setup()
    second = _demo_setup()

    project = Project.objects.get(slug="demo")
    run = TrainingRun.objects.get(project=project)  # exactly one
    assert f"training run {run.pk} queued" in first
    assert "already trained (or training): nothing queued" in second
    assert run.status == TrainingRun.Status.QUEUED
    assert run.trigger == TrainingRun.Trigger.AUTO
    assert run.label_count == Comparison.objects.filter(project=project).count() == 40
    scoring = ScoringSettings.objects.get(project=project)
    assert scoring.auto_train_every == 100
    assert scoring.find_noisy_after_training is True
    annotator = AIAnnotator.objects.get(project=project)
    assert (annotator.name, annotator.kind, annotator.is_active) == (
        "Reward model",
        AIAnnotator.Kind.REWARD_MODEL,
        True,
    )
    routing = RoutingSettings.objects.get(project=project)
    assert (routing.policy, routing.human_budget, routing.human_budget_fraction) == (
        "gain",
        None,
        0.5,
    )
    # The label pool stays a plain project: people label it, nothing trains by itself.
    pool = Project.objects.get(slug="demo-label")
    assert not TrainingRun.objects.filter(project=pool).exists()
    assert not ScoringSettings.objects.filter(project=pool).exists()


@pytest.mark.django_db
def test_demo_setup_leaves_a_project_that_trained_as_it_is(local_dir):
    _demo_setup()
    project = Project.objects.get(slug="demo")
    TrainingRun.objects.filter(project=project).update(
        status=TrainingRun.Status.FAILED, finished_at=timezone.now(), error="worker lost"
    )
    RoutingSettings.objects.filter(project=project).update(policy="all_human")
    ScoringSettings.objects.filter(project=project).update(auto_train_every=None)

    printed = _demo_setup()

    assert "nothing queued" in printed
    assert TrainingRun.objects.filter(project=project).count() == 1
    assert RoutingSettings.objects.get(project=project).policy == "all_human"
    assert ScoringSettings.objects.get(project=project).auto_train_every is None


def _wait_for(check, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_trains_then_finds_noisy_pairs_and_routes_the_demo(local_dir, celery_worker):
    _demo_setup()
    project = Project.objects.get(slug="demo")
    done = (RoutingRun.Status.SUCCEEDED, RoutingRun.Status.FAILED, RoutingRun.Status.CANCELLED)

    # About two minutes on two busy cores, most of it "find noisy pairs" with its default
    # options (16 out-of-fold ensembles of about 100 steps each, whatever the data's size).
    _wait_for(
        lambda: (
            CurationRun.objects.filter(project=project, status__in=done).exists()
            and RoutingRun.objects.filter(project=project, status__in=done).exists()
        ),
        "the curation and routing runs after training",
    )

    training = TrainingRun.objects.get(project=project)
    assert training.status == TrainingRun.Status.SUCCEEDED, training.error
    version = ModelVersion.objects.get(project=project, is_active=True)
    assert training.model_version == version
    curation = CurationRun.objects.get(project=project)
    assert curation.status == CurationRun.Status.SUCCEEDED, curation.error
    assert curation.model_version == version
    assert curation.pairs == 40
    routing = RoutingRun.objects.get(project=project)
    assert routing.status == RoutingRun.Status.SUCCEEDED, routing.error
    assert routing.trigger == RoutingRun.Trigger.MODEL_VERSION
    assert routing.model_version == version
    assert routing.counts["labelled"] == 40
