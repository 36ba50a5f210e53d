"""The routing page: who may see it, the settings form, Re-route now and its progress."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.models import Comparison
from core.runs import runs_sweep
from curation.routing.models import RoutingRun, RoutingSettings
from curation.routing.selectors import routing_settings_get
from curation.routing.services.project_settings import routing_settings_update
from curation.routing.services.runs import pairs_route, routing_run_create, routing_run_execute
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
    assert not RoutingSettings.objects.filter(project=project).exists()
    assert RoutingRun.objects.filter(project=project).count() == 1


def test_anonymous_is_sent_to_login(client, project):
    response = client.get(_url("page"))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_settings_form_saves_policy_and_budget(client, admin, project):
    client.force_login(admin)
    response = client.post(_url("settings"), {"policy": "gain", "budget": "30%"})
    assert response.status_code == 302
    chosen = routing_settings_get(project=project)
    assert chosen.policy == "gain"
    assert chosen.human_budget is None
    assert chosen.human_budget_fraction == 0.3
    response = client.post(_url("settings"), {"policy": "uncertainty", "budget": "120"})
    assert response.status_code == 302
    chosen = routing_settings_get(project=project)
    assert (chosen.policy, chosen.human_budget, chosen.human_budget_fraction) == (
        "uncertainty",
        120,
        None,
    )
    assert RoutingSettings.objects.filter(project=project).count() == 1


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
    chosen = routing_settings_get(project=project)
    assert (chosen.policy, chosen.human_budget) == ("random", 10)


def test_reroute_now_queues_a_run_and_htmx_gets_the_polling_partial(
    client, admin, project, sent, django_capture_on_commit_callbacks
):
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_url("run"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    run = RoutingRun.objects.get(project=project)
    assert run.status == "queued"
    assert run.trigger == "manual"
    assert run.created_by == admin
    assert sent == [(RoutingRun.TASK, (run.pk,), run.queue)]  # sent once committed
    body = response.content.decode()
    assert f'id="run-{run.id}"' in body
    assert 'hx-trigger="every 1s"' in body
    # Asking again while it waits returns the same run, and sends nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(_url("run"))
    assert again.status_code == 302
    assert RoutingRun.objects.filter(project=project).count() == 1
    assert len(sent) == 1


def test_a_long_waiting_run_is_still_the_one_returned_and_the_sweep_sends_it_again(
    client, admin, project, sent, django_capture_on_commit_callbacks
):
    client.force_login(admin)
    client.post(_url("run"))
    run = RoutingRun.objects.get(project=project)
    # Its message lost: it waited long past the sweep's resend age.
    long_ago = timezone.now() - timedelta(minutes=11)
    RoutingRun.objects.filter(pk=run.pk).update(created_at=long_ago, heartbeat_at=long_ago)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_url("run"), headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert f'id="run-{run.id}"' in response.content.decode()
    assert list(RoutingRun.objects.values_list("id", "status")) == [(run.pk, "queued")]
    assert sent == []  # no second run, no second message from the page
    with django_capture_on_commit_callbacks(execute=True):
        assert runs_sweep()["resent"] == 1
    assert sent == [(RoutingRun.TASK, (run.pk,), run.queue)]


def test_run_progress_partial_stops_polling_when_finished(client, admin, project):
    open_pairs_make(project, 6)
    client.force_login(admin)
    queued = routing_run_create(project=project)  # as Re-route now makes it: no policy of its own
    response = client.get(_url("run_detail", queued.id), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "every 1s" in response.content.decode()

    # Saved while the run waits: it routes under the settings it finds when it runs, as
    # the page says ("saved; re-route to apply them").
    routing_settings_update(project=project, policy="all_ai")

    routing_run_execute(run=queued)
    response = client.get(_url("run_detail", queued.id), headers={"HX-Request": "true"})
    assert response.status_code == 286
    body = response.content.decode()
    assert "Succeeded" in body
    assert "to AI 6" in body
    assert Comparison.objects.filter(project=project, route="ai").count() == 6
