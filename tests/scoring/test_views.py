"""The models page: permissions, starting and cancelling training runs, the progress
fragment, metrics, and the project's training settings."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.models import Choice
from scoring.models import ModelVersion, ScoringSettings, TrainingRun
from tests.factories import PASSWORD, comparison_make

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def _login(client, user) -> None:
    assert client.login(username=user.username, password=PASSWORD)


def _page(project) -> str:
    return reverse("scoring:models", args=[project.slug])


def _train(project) -> str:
    return reverse("scoring:train", args=[project.slug])


def _settings(project) -> str:
    return reverse("scoring:settings", args=[project.slug])


def _run_url(project, run, name: str = "run") -> str:
    return reverse(f"scoring:{name}", args=[project.slug, run.id])


def _labelled(project, n: int = 20) -> None:
    for i in range(n):
        comparison_make(project, a=f"good answer {i}", b=f"bad {i}", label=Choice.A)


def _run(project, **fields) -> TrainingRun:
    if fields.get("status") in ("succeeded", "failed", "cancelled"):
        fields.setdefault("finished_at", timezone.now())
    return TrainingRun.objects.create(project=project, kind=TrainingRun.Kind.HEADS, **fields)


def test_anonymous_is_sent_to_login(client, project):
    for response in (client.get(_page(project)), client.post(_settings(project))):
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]
    assert not ScoringSettings.objects.exists()


@pytest.mark.parametrize("persona", ["outsider", "annotator"])
def test_non_reviewers_get_404(client, project, persona, request):
    _login(client, request.getfixturevalue(persona))
    _labelled(project)
    assert client.get(_page(project)).status_code == 404
    assert client.post(_train(project)).status_code == 404
    assert not TrainingRun.objects.exists()


def test_reviewer_sees_the_page_but_cannot_train(client, project, reviewer):
    _login(client, reviewer)
    _labelled(project)
    response = client.get(_page(project))
    assert response.status_code == 200
    assert b"Train a new model" not in response.content
    assert b"Training settings" not in response.content
    assert client.post(_train(project)).status_code == 404
    assert not TrainingRun.objects.exists()


def test_project_page_links_to_models_for_reviewers_only(client, project, reviewer, annotator):
    url = reverse("annotation:project", args=[project.slug])
    _login(client, reviewer)
    assert _page(project).encode() in client.get(url).content
    client.logout()
    _login(client, annotator)
    assert _page(project).encode() not in client.get(url).content


def test_admin_train_queues_a_run(client, project, admin, django_capture_on_commit_callbacks):
    _login(client, admin)
    _labelled(project)
    assert client.get(_page(project)).status_code == 200
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(_train(project))
    assert response.status_code == 302
    assert response["Location"] == _page(project)
    assert len(callbacks) == 1  # the training task, sent once committed
    run = TrainingRun.objects.get(project=project)
    assert (run.status, run.kind, run.trigger) == ("queued", "heads", "manual")
    assert run.created_by == admin
    assert not ModelVersion.objects.exists()
    page = client.get(_page(project)).content.decode()
    assert f'<section class="card model-version" id="training-run-{run.id}">' in page
    assert f'hx-get="{_run_url(project, run)}"' in page
    assert f'action="{_run_url(project, run, "run_cancel")}"' in page


def test_admin_queues_a_transformer_run_with_a_backbone(client, project, admin):
    _login(client, admin)
    _labelled(project)
    response = client.post(_train(project), {"kind": "transformer", "backbone": "smollm2"})
    assert response.status_code == 302
    run = TrainingRun.objects.get(project=project)
    assert (run.kind, run.config["backbone"]) == ("transformer", "smollm2")
    assert run.queue == "cpu"  # no GPU worker serves the test broker
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
    assert not TrainingRun.objects.exists()


def test_htmx_train_redirects_the_client(client, project, admin):
    _login(client, admin)
    _labelled(project)
    response = client.post(_train(project), headers=HX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == _page(project)
    assert TrainingRun.objects.filter(project=project).count() == 1


def test_train_with_too_few_labels_shows_why(client, project, admin):
    _login(client, admin)
    _labelled(project, n=3)
    response = client.post(_train(project))
    assert response.status_code == 400
    assert b"training needs at least 20" in response.content
    assert not TrainingRun.objects.exists()


def test_progress_fragment_polls_until_finished(client, project, admin):
    _login(client, admin)
    run = _run(
        project, status="running", progress_done=3, progress_total=10, loss_history=[0.69, 0.4321]
    )
    url = _run_url(project, run)
    response = client.get(url, headers=HX)
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body
    assert f'<div id="run-{run.id}" class="run" data-status="running"' in body
    assert '<span class="steps">3 / 10 steps</span>' in body
    assert "0.4321" in body
    assert 'hx-trigger="every 1s"' in body

    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded", finished_at=timezone.now())
    response = client.get(url, headers=HX)
    assert response.status_code == 286
    assert 'data-status="succeeded"' in response.content.decode()
    assert "hx-get" not in response.content.decode()


def test_run_of_another_project_is_404(client, project, other_project, admin):
    _login(client, admin)
    theirs = _run(other_project)
    assert client.get(_run_url(project, theirs)).status_code == 404
    response = client.post(_run_url(project, theirs, "run_cancel"))
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "queued"


def test_cancel_marks_the_run_cancelled(client, project, admin):
    _login(client, admin)
    run = _run(project, status="running")
    response = client.post(_run_url(project, run, "run_cancel"))
    assert response.status_code == 302
    assert response["Location"] == _page(project)
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.finished_at is not None


def test_reviewer_cannot_cancel(client, project, reviewer):
    _login(client, reviewer)
    run = _run(project)
    assert client.post(_run_url(project, run, "run_cancel")).status_code == 404
    run.refresh_from_db()
    assert run.status == "queued"


def test_list_shows_metrics_newest_first(client, project, reviewer):
    _login(client, reviewer)
    _run(project, status="failed", error="Out of patience.")
    version = ModelVersion.objects.create(
        project=project,
        kind=ModelVersion.Kind.HEADS,
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
    newest = _run(project, status="succeeded", model_version=version)
    response = client.get(_page(project))
    assert response.status_code == 200
    body = response.content.decode()
    for text in ("0.812", "0.457", "0.032", "0.750", "0.900", "0.600", "0.234", "n/a"):
        assert text in body
    assert '<span class="badge active">active</span>' in body
    assert f"model #{version.id}" in body
    assert "Out of patience." in body
    assert body.index(f"#{newest.id} ") < body.index("Out of patience.")
    assert ModelVersion.objects.get(is_active=True) == version


def test_a_run_whose_model_is_no_longer_active_has_no_badge(client, project, reviewer):
    _login(client, reviewer)
    old = ModelVersion.objects.create(project=project, kind=ModelVersion.Kind.HEADS)
    _run(project, status="succeeded", model_version=old)
    response = client.get(_page(project))
    assert response.status_code == 200
    assert f"model #{old.id}" in response.content.decode()
    assert b'class="badge active"' not in response.content


# ---------------------------------------------------------------- training settings


def test_admin_sees_the_training_settings_form(client, project, admin):
    ScoringSettings.objects.create(project=project, auto_train_every=250, ensemble_members=7)
    _login(client, admin)
    response = client.get(_page(project))
    assert response.status_code == 200
    body = response.content.decode()
    assert f'action="{_settings(project)}"' in body
    assert 'name="auto_train_every" value="250"' in body
    assert 'name="ensemble_members" value="7"' in body
    assert "after every 250 new labels" in body


def test_admin_saves_the_training_settings(client, project, admin):
    _login(client, admin)
    response = client.post(
        _settings(project), {"auto_train_every": "50", "ensemble_members": "7"}, follow=True
    )
    assert response.redirect_chain == [(_page(project), 302)]
    assert "Training settings saved." in [str(m) for m in response.context["messages"]]
    assert "New heads train by themselves after every 50 new labels." in (response.content.decode())
    saved = ScoringSettings.objects.get(project=project)
    assert (saved.auto_train_every, saved.ensemble_members) == (50, 7)


def test_an_empty_interval_turns_automatic_training_off(client, project, admin):
    ScoringSettings.objects.create(project=project, auto_train_every=50, ensemble_members=5)
    _login(client, admin)
    response = client.post(_settings(project), {"auto_train_every": "", "ensemble_members": "3"})
    assert response.status_code == 302
    saved = ScoringSettings.objects.get(project=project)
    assert (saved.auto_train_every, saved.ensemble_members) == (None, 3)
    assert b"Automatic training is off." in client.get(_page(project)).content


def test_admin_turns_finding_noisy_pairs_after_training_on_and_off(client, project, admin):
    _login(client, admin)
    data = {"auto_train_every": "", "ensemble_members": "5"}
    response = client.post(_settings(project), {**data, "find_noisy_after_training": "on"})
    assert response.status_code == 302
    assert ScoringSettings.objects.get(project=project).find_noisy_after_training is True
    body = client.get(_page(project)).content.decode()
    assert 'id="id_find_noisy_after_training" checked' in body

    response = client.post(_settings(project), data)  # an unticked box is not posted
    assert response.status_code == 302
    assert ScoringSettings.objects.get(project=project).find_noisy_after_training is False


def test_htmx_settings_redirect_the_client(client, project, admin):
    _login(client, admin)
    response = client.post(
        _settings(project), {"auto_train_every": "10", "ensemble_members": "2"}, headers=HX
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == _page(project)
    assert ScoringSettings.objects.get(project=project).auto_train_every == 10


def test_saved_ensemble_size_is_what_the_next_run_trains(client, project, admin):
    _login(client, admin)
    _labelled(project)
    client.post(_settings(project), {"auto_train_every": "", "ensemble_members": "3"})
    response = client.post(_train(project))
    assert response.status_code == 302
    assert TrainingRun.objects.get(project=project).config["members"] == 3


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"auto_train_every": "0", "ensemble_members": "5"}, "greater than or equal to 1."),
        ({"auto_train_every": "soon", "ensemble_members": "5"}, "Enter a whole number."),
        ({"auto_train_every": "", "ensemble_members": "33"}, "less than or equal to 32."),
        ({"auto_train_every": "", "ensemble_members": "0"}, "greater than or equal to 1."),
        ({"auto_train_every": "20"}, "This field is required."),
    ],
)
def test_bad_training_settings_are_form_errors_and_save_nothing(
    client, project, admin, data, error
):
    ScoringSettings.objects.create(project=project, auto_train_every=100, ensemble_members=5)
    _login(client, admin)
    response = client.post(_settings(project), data)
    assert response.status_code == 400
    body = response.content.decode()
    assert error in body
    assert '<details class="card" id="training-settings" open>' in body  # shown, not folded
    saved = ScoringSettings.objects.get(project=project)
    assert (saved.auto_train_every, saved.ensemble_members) == (100, 5)


def test_bad_training_settings_make_no_settings_row(client, project, admin):
    _login(client, admin)
    response = client.post(_settings(project), {"auto_train_every": "-3", "ensemble_members": "5"})
    assert response.status_code == 400
    assert "greater than or equal to 1." in response.content.decode()
    assert not ScoringSettings.objects.exists()


@pytest.mark.parametrize("persona", ["outsider", "annotator", "reviewer"])
def test_only_admins_can_change_the_training_settings(client, project, persona, request):
    _login(client, request.getfixturevalue(persona))
    response = client.post(_settings(project), {"auto_train_every": "5", "ensemble_members": "2"})
    assert response.status_code == 404
    assert not ScoringSettings.objects.exists()


def test_training_settings_refuse_get(client, project, admin):
    _login(client, admin)
    assert client.get(_settings(project)).status_code == 405
    assert not ScoringSettings.objects.exists()
