"""The routing page: who may see it, the settings form, Re-route now and its progress."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.models import Comparison
from curation.routing.models import RoutingRun
from curation.routing.services import pairs_route, routing_settings_update
from tests.routing.conftest import open_pairs_make

pytestmark = pytest.mark.django_db


def _url(name: str, *args) -> str:
    return reverse(f"routing:{name}", args=["alpha", *args])


def test_admin_sees_budget_routes_and_agreement(client, admin, project):
    open_pairs_make(project, 10)
    routing_settings_update(project=project, policy="random", budget="4")
    pairs_route(project=project, apply_ai_labels=False)
    client.force_login(admin)

    response = client.get(_url("page"))

    assert response.status_code == 200
    body = response.content.decode()
    assert "Human budget" in body
    assert 'value="4"' in body  # the budget field shows the saved budget
    assert "<dt>Spent</dt><dd>4</dd>" in body
    assert "<dt>Left</dt><dd>0</dd>" in body
    assert "AI-human agreement" in body
    assert "The project has no AI annotator" in body
    assert "to humans 4" in body  # the latest run's counts
    assert (
        reverse("routing:page", args=["alpha"])
        in client.get(reverse("annotation:project", args=["alpha"])).content.decode()
    )


@pytest.mark.parametrize("who", ["annotator", "reviewer", "outsider"])
def test_non_admins_get_404_everywhere(client, project, who, request):
    user = request.getfixturevalue(who)
    client.force_login(user)
    run = RoutingRun.objects.create(project=project, policy="random")
    assert client.get(_url("page")).status_code == 404
    assert client.get(_url("run_detail", run.id)).status_code == 404
    assert client.post(_url("settings"), {"policy": "all_ai", "budget": ""}).status_code == 404
    assert client.post(_url("run")).status_code == 404
    project.refresh_from_db()
    assert project.routing_policy == "all_human"
    assert RoutingRun.objects.filter(project=project).count() == 1


def test_anonymous_is_sent_to_login(client, project):
    response = client.get(_url("page"))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_settings_form_saves_policy_and_budget(client, admin, project):
    client.force_login(admin)
    response = client.post(_url("settings"), {"policy": "gain", "budget": "30%"})
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.routing_policy == "gain"
    assert project.human_budget is None
    assert project.human_budget_fraction == 0.3
    response = client.post(_url("settings"), {"policy": "uncertainty", "budget": "120"})
    project.refresh_from_db()
    assert (project.routing_policy, project.human_budget, project.human_budget_fraction) == (
        "uncertainty",
        120,
        None,
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"policy": "gain", "budget": "lots"}, "is not a budget"),
        ({"policy": "gain", "budget": "1.7"}, "between 0 and 1"),
        ({"policy": "gain", "budget": "-5"}, "is not a budget"),
        ({"policy": "cheapest", "budget": "10"}, "Select a valid choice"),
    ],
)
def test_bad_settings_show_an_error_and_change_nothing(client, admin, project, data, message):
    routing_settings_update(project=project, policy="random", budget="10")
    client.force_login(admin)
    response = client.post(_url("settings"), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    project.refresh_from_db()
    assert (project.routing_policy, project.human_budget) == ("random", 10)


def test_reroute_now_queues_a_run_and_htmx_gets_the_polling_partial(
    client, admin, project, django_capture_on_commit_callbacks
):
    client.force_login(admin)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(_url("run"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    run = RoutingRun.objects.get(project=project)
    assert run.status == "queued"
    assert run.trigger == "manual"
    assert run.created_by == admin
    assert len(callbacks) == 1  # the task, sent once committed
    body = response.content.decode()
    assert f'id="run-{run.id}"' in body
    assert 'hx-trigger="every 1s"' in body
    # Asking again while it waits returns the same run.
    client.post(_url("run"))
    assert RoutingRun.objects.filter(project=project).count() == 1
    # A run that has waited too long (its message lost) does not block a new one.
    RoutingRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=11))
    client.post(_url("run"))
    assert RoutingRun.objects.filter(project=project, status="queued").count() == 2


def test_run_progress_partial_stops_polling_when_finished(client, admin, project):
    open_pairs_make(project, 6)
    client.force_login(admin)
    queued = RoutingRun.objects.create(project=project, policy="all_human")
    response = client.get(_url("run_detail", queued.id), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "every 1s" in response.content.decode()

    routing_settings_update(project=project, policy="all_ai")
    from curation.routing.services import routing_run_execute

    routing_run_execute(run=queued)
    response = client.get(_url("run_detail", queued.id), headers={"HX-Request": "true"})
    assert response.status_code == 286
    body = response.content.decode()
    assert "Succeeded" in body
    assert "to AI 6" in body
    assert Comparison.objects.filter(project=project, route="ai").count() == 6
