"""The curation and annotators pages: who sees them, what each POST does to the database."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.models import Comparison
from curation.detectors import DetectorResult
from curation.models import CurationAction, CurationPolicy, CurationRun
from curation.services.runs import _flags_write
from curation.tasks import annotator_reliability_refresh_task
from scoring.models import ModelVersion
from tests.factories import PASSWORD, comparison_make, judgement_make

pytestmark = pytest.mark.django_db


def _login(client, user) -> None:
    assert client.login(username=user.username, password=PASSWORD)


def _flagged(project, n: int = 3, label: str = "a") -> tuple[CurationRun, list[Comparison]]:
    comparisons = [
        comparison_make(
            project,
            a=f"**bold** answer {i} <script>window.__xss=1</script>",
            b=f"other answer {i}",
            label=label,
            label_confidence=1.0,
            status="labelled",
        )
        for i in range(n)
    ]
    version = ModelVersion.objects.create(project=project, kind="heads", is_active=True)
    run = CurationRun.objects.create(project=project, model_version=version, status="running")
    scores = np.linspace(0.9, 0.6, n)
    result = DetectorResult(
        name="combined",
        score=scores,
        flagged=np.ones(n, dtype=bool),
        reasons=[f"{i + 3} of 5 models prefer B strongly" for i in range(n)],
    )
    summary = _flags_write(run, [c.pk for c in comparisons], [label] * n, [result])
    CurationRun.objects.filter(pk=run.pk).update(
        status="succeeded", summary=summary, finished_at=timezone.now()
    )
    return run, comparisons


def test_outsiders_and_annotators_get_404(client, project, outsider, annotator):
    _flagged(project)
    for user in (outsider, annotator):
        _login(client, user)
        for name in ("curation", "annotators"):
            assert client.get(reverse(f"curation:{name}", args=[project.slug])).status_code == 404
        response = client.post(
            reverse("curation:act", args=[project.slug]),
            {"action": "drop", "comparisons": [c.pk for c in Comparison.objects.all()]},
        )
        assert response.status_code == 404
    assert not Comparison.objects.filter(excluded=True).exists()


def test_reviewer_sees_flags_sorted_with_the_pair_sanitised(client, project, reviewer):
    _, comparisons = _flagged(project)
    _login(client, reviewer)

    response = client.get(reverse("curation:curation", args=[project.slug]))

    assert response.status_code == 200
    html = response.content.decode()
    positions = [html.index(f'id="pair-{c.pk}"') for c in comparisons]
    assert positions == sorted(positions)  # highest score first
    assert "3 of 5 models prefer B strongly" in html
    assert "<strong>bold</strong>" in html  # rendered as annotators see it
    assert "<script>window.__xss" not in html
    assert "Find noisy pairs</button>" not in html  # reviewers act, admins run
    response = client.get(reverse("curation:curation", args=[project.slug]), {"sort": "score"})
    html = response.content.decode()
    positions = [html.index(f'id="pair-{c.pk}"') for c in comparisons]
    assert positions == sorted(positions, reverse=True)


def test_filters_by_detector_and_label_source(client, project, reviewer, annotator):
    _, comparisons = _flagged(project)
    judgement_make(comparisons[1], annotator, "a")
    _login(client, reviewer)
    url = reverse("curation:curation", args=[project.slug])

    html = client.get(url, {"source": "human"}).content.decode()
    assert f'id="pair-{comparisons[1].pk}"' in html
    assert f'id="pair-{comparisons[0].pk}"' not in html
    html = client.get(url, {"detector": "cleanlab"}).content.decode()
    assert "No flagged pairs match" in html


def test_bulk_flip_then_undo_from_the_page(client, project, reviewer):
    _, comparisons = _flagged(project)
    _login(client, reviewer)
    url = reverse("curation:act", args=[project.slug])

    response = client.post(
        url,
        {"action": "flip", "comparisons": [c.pk for c in comparisons[:2]], "next_query": "sort=id"},
    )

    assert response.status_code == 302
    assert response.url.endswith("/curation/?sort=id")
    labels = [Comparison.objects.get(pk=c.pk).label for c in comparisons]
    assert labels == ["b", "b", "a"]
    actions = list(CurationAction.objects.order_by("id"))
    assert [(a.action, a.actor) for a in actions] == [("flip", reviewer), ("flip", reviewer)]

    response = client.post(reverse("curation:undo", args=[project.slug, actions[0].pk]))

    assert response.status_code == 302
    assert Comparison.objects.get(pk=comparisons[0].pk).label == "a"
    assert CurationAction.objects.get(pk=actions[0].pk).undone_by.action == "undo"
    page = client.get(reverse("curation:curation", args=[project.slug])).content.decode()
    assert f"undone by #{CurationAction.objects.get(pk=actions[0].pk).undone_by_id}" in page


def test_a_refused_bulk_action_changes_nothing_and_says_why(client, project, reviewer):
    _, comparisons = _flagged(project)
    Comparison.objects.filter(pk=comparisons[2].pk).update(label="tie")
    _login(client, reviewer)

    response = client.post(
        reverse("curation:act", args=[project.slug]),
        {"action": "flip", "comparisons": [c.pk for c in comparisons]},
    )

    assert response.status_code == 400
    assert "only an A or B label can be flipped" in response.content.decode()
    assert list(Comparison.objects.order_by("id").values_list("label", flat=True)) == [
        "a",
        "a",
        "tie",
    ]
    assert not CurationAction.objects.exists()
    response = client.post(reverse("curation:act", args=[project.slug]), {"action": "flip"})
    assert response.status_code == 400
    assert "Select at least one pair" in response.content.decode()


def test_find_noisy_pairs_is_for_admins_and_refused_without_a_model(
    client, project, admin, reviewer
):
    comparison_make(project, label="a", status="labelled")
    _login(client, reviewer)
    assert client.post(reverse("curation:run_start", args=[project.slug])).status_code == 404
    _login(client, admin)

    response = client.post(reverse("curation:run_start", args=[project.slug]))

    assert response.status_code == 400
    assert "no active reward model" in response.content.decode()
    assert not CurationRun.objects.exists()


def test_run_progress_polls_until_finished(client, project, reviewer):
    run, _ = _flagged(project)
    _login(client, reviewer)
    url = reverse("curation:run", args=[project.slug, run.pk])
    response = client.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 286  # done: htmx stops polling
    CurationRun.objects.filter(pk=run.pk).update(
        status="running", progress_done=3, progress_total=10
    )
    response = client.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert 'hx-trigger="every 1s"' in response.content.decode()


def test_admin_sets_the_policy_and_reviewers_cannot(client, project, admin, reviewer):
    url = reverse("curation:policy", args=[project.slug])
    data = {"enabled": "on", "detector": "combined", "threshold": "0.9", "action": "flip"}
    _login(client, reviewer)
    assert client.post(url, data).status_code == 404
    _login(client, admin)

    assert client.post(url, {**data, "threshold": "2"}).status_code == 400
    assert not CurationPolicy.objects.exists()
    response = client.post(url, data)

    assert response.status_code == 302
    policy = CurationPolicy.objects.get(project=project)
    assert policy.enabled
    assert policy.action == "flip"
    assert policy.threshold == 0.9
    assert policy.updated_by == admin


def test_export_download_skips_dropped_pairs_and_adds_confidence(client, project, admin):
    _, comparisons = _flagged(project, 2)
    _login(client, admin)
    client.post(
        reverse("curation:act", args=[project.slug]),
        {"action": "drop", "comparisons": [comparisons[0].pk]},
    )

    response = client.get(
        reverse("annotation:export", args=[project.slug, "jsonl"]), {"confidence": "1"}
    )

    rows = [orjson.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert [r["id"] for r in rows] == [str(comparisons[1].pk)]
    assert rows[0]["confidence"] == 1.0


def test_annotators_page_shows_reliability_and_the_refresh_is_for_admins(
    client, project, admin, reviewer, annotator, django_capture_on_commit_callbacks
):
    c = comparison_make(project, is_gold=True, gold_label="a")
    judgement_make(c, annotator, "b")
    for i in range(3):
        c = comparison_make(project, a=f"a{i}", b=f"b{i}")
        judgement_make(c, annotator, "a")
        judgement_make(c, admin, "a" if i else "b")
    _login(client, reviewer)
    page_url = reverse("curation:annotators", args=[project.slug])

    html = client.get(page_url).content.decode()

    assert 'data-user="anna-annotator"' in html
    assert "0% <span" in html  # the gold miss
    assert "3 comparisons have two or more human A/B judgements" in html
    assert "Weights replace plain majority only from 50" in html
    assert "not estimated yet" in html
    url = reverse("curation:reliability_refresh", args=[project.slug])
    assert client.post(url).status_code == 404
    _login(client, admin)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url)
    assert response.status_code == 302
    assert len(callbacks) == 1  # the estimate is queued for a worker
    assert annotator_reliability_refresh_task(project.pk) == {"applied": False, "relabelled": 0}
    html = client.get(page_url).content.decode()
    assert "estimated" in html
    assert "not estimated yet" not in html
    row = html[html.index('data-user="anna-annotator"') :].split("</tr>")[0]
    assert '<td class="num ds">–' not in row  # a Dawid-Skene estimate is shown


def test_find_noisy_pairs_button_queues_one_run_for_the_worker(
    client, project, admin, django_capture_on_commit_callbacks
):
    for i in range(20):
        comparison_make(project, a=f"a{i}", b=f"b{i}", label="a", status="labelled")
    version = ModelVersion.objects.create(project=project, kind="heads", is_active=True)
    _login(client, admin)
    url = reverse("curation:run_start", args=[project.slug])

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url)

    assert response.status_code == 302
    run = CurationRun.objects.get()
    assert run.status == "queued"
    assert run.model_version == version
    assert run.created_by == admin
    assert len(callbacks) == 1  # the task, sent once committed
    response = client.post(url)  # a second click while it is queued
    assert response.status_code == 400
    assert f"Run #{run.pk} is still going" in response.content.decode()
    assert CurationRun.objects.count() == 1
    page = client.get(reverse("curation:curation", args=[project.slug])).content.decode()
    assert f'hx-get="{reverse("curation:run", args=[project.slug, run.pk])}"' in page
