"""The models page: permissions, starting and cancelling runs, the progress fragment, metrics."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Choice
from scoring.models import ModelVersion
from tests.factories import PASSWORD, comparison_make

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def _login(client, user) -> None:
    assert client.login(username=user.username, password=PASSWORD)


def _page(project) -> str:
    return reverse("scoring:models", args=[project.slug])


def _train(project) -> str:
    return reverse("scoring:train", args=[project.slug])


def _labelled(project, n: int = 20) -> None:
    for i in range(n):
        comparison_make(project, a=f"good answer {i}", b=f"bad {i}", label=Choice.A)


def test_anonymous_is_sent_to_login(client, project):
    response = client.get(_page(project))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("persona", ["outsider", "annotator"])
def test_non_reviewers_get_404(client, project, persona, request):
    _login(client, request.getfixturevalue(persona))
    _labelled(project)
    assert client.get(_page(project)).status_code == 404
    assert client.post(_train(project)).status_code == 404
    assert not ModelVersion.objects.exists()


def test_reviewer_sees_the_page_but_cannot_train(client, project, reviewer):
    _login(client, reviewer)
    _labelled(project)
    response = client.get(_page(project))
    assert response.status_code == 200
    assert b"Train a new model" not in response.content
    assert client.post(_train(project)).status_code == 404
    assert not ModelVersion.objects.exists()


def test_project_page_links_to_models_for_reviewers_only(client, project, reviewer, annotator):
    url = reverse("annotation:project", args=[project.slug])
    _login(client, reviewer)
    assert _page(project).encode() in client.get(url).content
    client.logout()
    _login(client, annotator)
    assert _page(project).encode() not in client.get(url).content


def test_admin_train_queues_a_version(client, project, admin):
    _login(client, admin)
    _labelled(project)
    assert client.get(_page(project)).status_code == 200
    response = client.post(_train(project))
    assert response.status_code == 302
    assert response["Location"] == _page(project)
    version = ModelVersion.objects.get(project=project)
    assert version.status == ModelVersion.Status.QUEUED
    assert version.kind == ModelVersion.Kind.HEADS
    page = client.get(_page(project))
    assert f'hx-get="{reverse("scoring:version", args=[project.slug, version.id])}"' in (
        page.content.decode()
    )


def test_admin_queues_a_transformer_run_with_a_backbone(client, project, admin):
    _login(client, admin)
    _labelled(project)
    response = client.post(_train(project), {"kind": "transformer", "backbone": "smollm2"})
    assert response.status_code == 302
    version = ModelVersion.objects.get(project=project)
    assert (version.kind, version.config["backbone"]) == ("transformer", "smollm2")
    assert version.queue == "cpu"  # no GPU worker serves the test broker
    assert b"cpu queue" in client.get(_page(project)).content


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"kind": "oracle"}, b"Unknown model kind"),
        ({"kind": "transformer", "backbone": "gpt-9"}, b"backbone must be one of"),
    ],
)
def test_bad_kind_or_backbone_is_refused(client, project, admin, data, error):
    _login(client, admin)
    _labelled(project)
    response = client.post(_train(project), data)
    assert response.status_code == 400
    assert error in response.content
    assert not ModelVersion.objects.exists()


def test_htmx_train_redirects_the_client(client, project, admin):
    _login(client, admin)
    _labelled(project)
    response = client.post(_train(project), headers=HX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == _page(project)
    assert ModelVersion.objects.filter(project=project).count() == 1


def test_train_with_too_few_labels_shows_why(client, project, admin):
    _login(client, admin)
    _labelled(project, n=3)
    response = client.post(_train(project))
    assert response.status_code == 400
    assert b"training needs at least 20" in response.content
    assert not ModelVersion.objects.exists()


def test_progress_fragment_polls_until_finished(client, project, admin):
    _login(client, admin)
    version = ModelVersion.objects.create(
        project=project,
        kind=ModelVersion.Kind.HEADS,
        status=ModelVersion.Status.RUNNING,
        progress_done=3,
        progress_total=10,
        loss_history=[0.69, 0.4321],
    )
    url = reverse("scoring:version", args=[project.slug, version.id])
    response = client.get(url, headers=HX)
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body
    assert "3 / 10 steps" in body
    assert "0.4321" in body
    assert 'hx-trigger="every 1s"' in body

    ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.SUCCEEDED)
    response = client.get(url, headers=HX)
    assert response.status_code == 286
    assert "hx-get" not in response.content.decode()


def test_version_of_another_project_is_404(client, project, other_project, admin):
    _login(client, admin)
    theirs = ModelVersion.objects.create(project=other_project, kind=ModelVersion.Kind.HEADS)
    assert client.get(reverse("scoring:version", args=[project.slug, theirs.id])).status_code == 404
    response = client.post(reverse("scoring:cancel", args=[project.slug, theirs.id]))
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == ModelVersion.Status.QUEUED


def test_cancel_marks_the_run_cancelled(client, project, admin):
    _login(client, admin)
    version = ModelVersion.objects.create(
        project=project, kind=ModelVersion.Kind.HEADS, status=ModelVersion.Status.RUNNING
    )
    response = client.post(reverse("scoring:cancel", args=[project.slug, version.id]))
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.CANCELLED
    assert version.finished_at is not None


def test_reviewer_cannot_cancel(client, project, reviewer):
    _login(client, reviewer)
    version = ModelVersion.objects.create(project=project, kind=ModelVersion.Kind.HEADS)
    assert (
        client.post(reverse("scoring:cancel", args=[project.slug, version.id])).status_code == 404
    )
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.QUEUED


def test_list_shows_metrics_newest_first(client, project, reviewer):
    _login(client, reviewer)
    ModelVersion.objects.create(
        project=project,
        kind=ModelVersion.Kind.HEADS,
        status=ModelVersion.Status.FAILED,
        error="Out of patience.",
    )
    newest = ModelVersion.objects.create(
        project=project,
        kind=ModelVersion.Kind.HEADS,
        status=ModelVersion.Status.SUCCEEDED,
        is_active=True,
        metrics={
            "eval_accuracy": 0.8123,
            "eval_log_loss": 0.4567,
            "eval_ece": 0.0321,
            "eval_accuracy_import": 0.75,
            "eval_accuracy_human": None,
            "eval_accuracy_chosen_longer": 0.9,
            "eval_accuracy_chosen_shorter": 0.6,
            "eval_length_corr": 0.234,
        },
    )
    response = client.get(_page(project))
    assert response.status_code == 200
    body = response.content.decode()
    for text in ("0.812", "0.457", "0.032", "0.750", "0.900", "0.600", "0.234", "n/a"):
        assert text in body
    assert "active" in body
    assert "Out of patience." in body
    assert body.index(f"#{newest.id} ") < body.index("Out of patience.")
    assert ModelVersion.objects.get(is_active=True) == newest
