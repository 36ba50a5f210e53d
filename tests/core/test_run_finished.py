"""A finished run shows its results in place: its last progress answer raises run-finished,
and the models, curation and routing pages each have a section that listens for it and
reloads itself as a fragment of the page's own URL."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.models import Choice
from core.views import RUN_FINISHED_EVENT
from curation.detectors import DetectorResult
from curation.models import CurationRun
from curation.routing.models import RoutingRun
from curation.routing.services.runs import routing_run_create, routing_run_execute
from curation.services.runs import _flags_write
from scoring.models import ModelVersion, TrainingRun
from tests.factories import comparison_make
from tests.routing.conftest import open_pairs_make

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
LISTENER = 'hx-trigger="run-finished from:body"'


def _event(response) -> dict | None:
    """The run-finished event's details the answer raises after the swap settles."""
    header = response.headers.get("HX-Trigger-After-Settle")
    return json.loads(header).get(RUN_FINISHED_EVENT) if header else None


def _fragment(client, url: str, target: str):
    """What the listening section asks for: the page's URL, as htmx, targeting itself."""
    return client.get(url, headers={**HX, "HX-Target": target})


# ---------------------------------------------------------------- models


def test_a_finished_training_run_raises_the_event_and_the_runs_reload_with_metrics(
    client, project, reviewer
):
    client.force_login(reviewer)
    page = reverse("scoring:models", args=[project.slug])
    run = TrainingRun.objects.create(project=project, kind="heads", status="running")
    poll = reverse("scoring:run", args=[project.slug, run.id])

    html = client.get(page).content.decode()
    assert f'<div id="runs" hx-get="{page}" {LISTENER}' in html
    running = client.get(poll, headers=HX)
    assert running.status_code == 200
    assert _event(running) is None  # still running: nothing to refresh yet

    version = ModelVersion.objects.create(
        project=project, kind="heads", is_active=True, metrics={"eval_accuracy": 0.8123}
    )
    TrainingRun.objects.filter(pk=run.pk).update(
        status="succeeded", finished_at=timezone.now(), model_version=version
    )
    done = client.get(poll, headers=HX)
    assert done.status_code == 286  # stops polling
    assert _event(done) == {"run": run.id}
    assert "0.812" in done.content.decode()  # the metrics in the last answer already
    assert "Reload" not in done.content.decode()

    fragment = _fragment(client, page, "runs")
    body = fragment.content.decode()
    assert fragment.status_code == 200
    assert body.lstrip().startswith('<div id="runs"')
    assert "<html" not in body
    assert "0.812" in body
    assert '<span class="badge active">active</span>' in body
    assert f"model #{version.id}" in body


def test_a_failed_run_raises_the_event_too(client, project, admin):
    client.force_login(admin)
    run = TrainingRun.objects.create(
        project=project, kind="heads", status="failed", error="Out.", finished_at=timezone.now()
    )
    done = client.get(reverse("scoring:run", args=[project.slug, run.id]), headers=HX)
    assert done.status_code == 286
    assert _event(done) == {"run": run.id}
    assert TrainingRun.objects.get(pk=run.pk).status == "failed"


# ---------------------------------------------------------------- curation


def test_a_finished_curation_run_raises_the_event_and_the_flags_reload(client, project, reviewer):
    client.force_login(reviewer)
    comparisons = [
        comparison_make(project, label=Choice.A, status="labelled", label_confidence=1.0)
        for _ in range(2)
    ]
    version = ModelVersion.objects.create(project=project, kind="heads", is_active=True)
    run = CurationRun.objects.create(project=project, model_version=version, status="running")
    page = reverse("curation:curation", args=[project.slug])
    html = client.get(page).content.decode()
    defaults = "state=all&amp;sort=-score"  # the filters' defaults, escaped in the attribute
    assert f'<section id="flags" hx-get="{page}?{defaults}" {LISTENER}' in html
    assert "No finished run yet" in html

    result = DetectorResult(
        name="combined",
        score=np.array([0.9, 0.8]),
        flagged=np.ones(2, dtype=bool),
        reasons=["4 of 5 models prefer B strongly"] * 2,
    )
    summary = _flags_write(run, [c.pk for c in comparisons], ["a", "a"], [result])
    CurationRun.objects.filter(pk=run.pk).update(
        status="succeeded", summary=summary, finished_at=timezone.now()
    )
    done = client.get(reverse("curation:run", args=[project.slug, run.pk]), headers=HX)
    assert done.status_code == 286
    assert _event(done) == {"run": run.pk}
    assert "Reload" not in done.content.decode()

    fragment = _fragment(client, page, "flags").content.decode()
    assert fragment.lstrip().startswith('<section id="flags"')
    assert "2 flagged pairs match" in fragment
    for c in comparisons:
        assert f'id="pair-{c.pk}"' in fragment


def test_the_flags_reload_keeps_the_filters(client, project, reviewer):
    client.force_login(reviewer)
    page = reverse("curation:curation", args=[project.slug])
    html = client.get(page, {"detector": "combined"}).content.decode()
    assert f'hx-get="{page}?detector=combined&amp;state=all&amp;sort=-score" {LISTENER}' in html


# ---------------------------------------------------------------- routing


def test_a_finished_routing_run_raises_the_event_and_the_totals_reload(client, project, admin):
    open_pairs_make(project, 4)
    client.force_login(admin)
    page = reverse("routing:page", args=[project.slug])
    run = routing_run_create(project=project)
    html = client.get(page).content.decode()
    assert f'<div id="overview" hx-get="{page}" {LISTENER}' in html

    routing_run_execute(run=run)
    done = client.get(reverse("routing:run_detail", args=[project.slug, run.id]), headers=HX)
    assert done.status_code == 286
    assert _event(done) == {"run": run.id}
    assert "Reload" not in done.content.decode()
    assert RoutingRun.objects.get(pk=run.pk).status == "succeeded"

    fragment = _fragment(client, page, "overview").content.decode()
    assert fragment.lstrip().startswith('<div id="overview"')
    assert 'id="routes"' in fragment
    assert 'id="settings"' not in fragment  # the form is left alone
    assert "<html" not in fragment
