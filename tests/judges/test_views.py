"""The AI annotators page: admins only, a write-only key, runs with progress and cancel."""

from __future__ import annotations

import pytest
from django.urls import reverse

from curation.judges.models import AIAnnotator, AIJudgingRun, AIVerdict
from curation.judges.services.annotators import annotator_create
from curation.judges.services.runs import ai_judging_run_execute
from tests.factories import PASSWORD, comparison_make

KEY = "sk-page-5e1f0c2a-NEVER-SHOWN"


def _url(project, name="judges:annotators", *args):
    return reverse(name, args=[project.slug, *args])


def _login(client, user):
    assert client.login(username=user.username, password=PASSWORD)


def _remote(project, **kw):
    return annotator_create(
        project=project,
        name="gpt",
        kind=AIAnnotator.Kind.REMOTE_LLM,
        settings={"base_url": "http://127.0.0.1:9/v1", "model": "judge-1"},
        api_key=KEY,
        **kw,
    )


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["outsider", "annotator", "reviewer"])
def test_only_project_admins_see_the_page(client, project, request, who):
    user = request.getfixturevalue(who)
    annotator = _remote(project)
    _login(client, user)
    assert client.get(_url(project)).status_code == 404
    assert client.get(_url(project, "judges:edit", annotator.pk)).status_code == 404
    response = client.post(_url(project, "judges:run", annotator.pk), {"scope": "all"})
    assert response.status_code == 404
    assert not AIJudgingRun.objects.exists()


@pytest.mark.django_db
def test_anonymous_is_sent_to_login(client, project):
    response = client.get(_url(project))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.django_db
def test_create_a_remote_annotator_and_the_key_is_never_shown(client, project, admin):
    _login(client, admin)
    response = client.post(
        _url(project),
        {
            "name": "gpt",
            "kind": "remote_llm",
            "is_active": "on",
            "base_url": "https://llm.example.com/v1",
            "model": "judge-1",
            "api_key": KEY,
            "max_attempts": "4",
        },
    )
    assert response.status_code == 302
    annotator = AIAnnotator.objects.get(project=project, name="gpt")
    assert annotator.api_key == KEY
    assert annotator.settings == {
        "base_url": "https://llm.example.com/v1",
        "model": "judge-1",
        "max_attempts": 4,
    }
    page = client.get(_url(project))
    assert page.status_code == 200
    body = page.content.decode()
    assert "ai:gpt" in body
    assert KEY not in body
    assert '<td class="key">set</td>' in body
    edit = client.get(_url(project, "judges:edit", annotator.pk)).content.decode()
    assert KEY not in edit
    assert "set" in edit


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x", "kind": "remote_llm", "model": "m"}, "needs a base URL"),
        (
            {"name": "x", "kind": "remote_llm", "base_url": "ftp://h", "model": "m"},
            "needs a base URL",
        ),
        ({"name": "x", "kind": "remote_llm", "base_url": "http://h/v1"}, "needs a model name"),
        (
            {
                "name": "x",
                "kind": "local_llm",
                "prompt_template": "{prompt} {response_a.__class__}",
            },
            "Bad prompt template",
        ),
        ({"name": "x", "kind": "local_llm", "prompt_template": "only {prompt}"}, "must contain"),
        ({"name": "gpt", "kind": "reward_model"}, "already has an AI annotator named"),
    ],
)
def test_bad_annotator_is_refused_and_changes_nothing(client, project, admin, data, message):
    _remote(project)
    _login(client, admin)
    response = client.post(_url(project), {**data, "api_key": "sk-typed-in-the-bad-form"})
    assert response.status_code == 400
    body = response.content.decode()
    assert message in body
    assert "sk-typed-in-the-bad-form" not in body  # the re-rendered form drops the key
    assert KEY not in body
    assert AIAnnotator.objects.count() == 1


@pytest.mark.django_db
def test_edit_keeps_the_key_unless_replaced_or_removed(client, project, admin):
    annotator = _remote(project)
    _login(client, admin)
    url = _url(project, "judges:edit", annotator.pk)
    form = {"base_url": "http://127.0.0.1:9/v1", "model": "judge-2", "is_active": "on"}
    # The name is fixed (it is the judgements' source): a posted one is ignored.
    assert client.post(url, {**form, "name": "renamed", "api_key": ""}).status_code == 302
    annotator.refresh_from_db()
    assert (annotator.name, annotator.settings["model"], annotator.api_key) == (
        "gpt",
        "judge-2",
        KEY,
    )
    assert client.post(url, {**form, "api_key": "sk-new"}).status_code == 302
    annotator.refresh_from_db()
    assert annotator.api_key == "sk-new"
    assert client.post(url, {**form, "clear_api_key": "on"}).status_code == 302
    annotator.refresh_from_db()
    assert annotator.api_key == ""
    assert "not set" in client.get(url).content.decode()


@pytest.mark.django_db
def test_run_without_a_reward_model_is_a_clear_error(client, project, admin):
    annotator = annotator_create(project=project, name="rm", kind="reward_model")
    _login(client, admin)
    response = client.post(_url(project, "judges:run", annotator.pk), {"scope": "all"})
    assert response.status_code == 400
    assert "no active reward model" in response.content.decode()
    assert not AIJudgingRun.objects.exists()


@pytest.mark.django_db
def test_run_is_queued_polled_and_shows_counts(
    client, project, admin, trained, django_capture_on_commit_callbacks
):
    annotator = annotator_create(project=project, name="rm", kind="reward_model")
    _login(client, admin)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(_url(project, "judges:run", annotator.pk), {"scope": "routed"})
    assert response.status_code == 302
    assert len(callbacks) == 1  # the Celery task, sent once committed
    run = AIJudgingRun.objects.get()
    assert (run.status, run.scope, run.created_by) == ("queued", "routed", admin)
    # A second run while one is queued is refused.
    again = client.post(_url(project, "judges:run", annotator.pk), {"scope": "all"})
    assert again.status_code == 400
    assert "already has a run" in again.content.decode()

    poll = client.get(_url(project, "judges:run_detail", run.pk), headers={"HX-Request": "true"})
    assert poll.status_code == 200
    assert 'hx-trigger="every 1s"' in poll.content.decode()

    ai_judging_run_execute(run=run)  # what the worker does
    done = client.get(_url(project, "judges:run_detail", run.pk), headers={"HX-Request": "true"})
    assert done.status_code == 286  # htmx stops polling
    body = done.content.decode()
    assert "Succeeded" in body
    assert "hx-trigger" not in body
    run.refresh_from_db()
    # Imported pairs are routed to humans by default: none of them is in scope.
    assert (run.status, run.progress_total, run.ok_count) == ("succeeded", 0, 0)


@pytest.mark.django_db
def test_cancel_stops_a_queued_run(client, project, admin):
    annotator = _remote(project)
    comparison_make(project)
    _login(client, admin)
    client.post(_url(project, "judges:run", annotator.pk), {"scope": "all"})
    run = AIJudgingRun.objects.get()
    response = client.post(_url(project, "judges:run_cancel", run.pk))
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert ai_judging_run_execute(run=run).status == "cancelled"  # the task does nothing
    assert not AIVerdict.objects.exists()


@pytest.mark.django_db
def test_untrusted_error_texts_are_rendered_escaped(client, project, admin):
    annotator = _remote(project)
    comparison = comparison_make(project)
    AIVerdict.objects.create(
        annotator=annotator,
        comparison=comparison,
        model_version="judge-1@h",
        status="failed",
        error="HTTP 400: <script>alert(1)</script>",
        attempts=1,
    )
    _login(client, admin)
    body = client.get(_url(project)).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>alert(1)" not in body
