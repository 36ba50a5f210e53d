"""pairs_route against PostgreSQL: budgets, kept labels, priorities, AI labels, concurrency,
and re-routing in the real worker when a model version becomes active."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from annotation.exceptions import ApplicationError
from annotation.models import Choice, Comparison, Judgement
from annotation.services.labels import comparison_labels_refresh
from curation.judges.services import annotator_create
from curation.judges.verdicts import reward_model_verdicts
from curation.routing.models import RoutingDecision, RoutingRun
from curation.routing.policies import uncertainty_score
from curation.routing.selectors import routing_decision_current
from curation.routing.services import pairs_route, routing_budget, routing_settings_update
from scoring.models import ModelVersion, Score
from scoring.signals import model_version_activated
from tests.factories import judgement_make
from tests.routing.conftest import open_pairs_make


def _human_labelled(project, user, n: int) -> list[Comparison]:
    pairs = open_pairs_make(project, n, tag="done")
    for c in pairs:
        judgement_make(c, user, Choice.A)
    comparison_labels_refresh(comparison_ids=[c.id for c in pairs])
    return pairs


def _routed(project, route: str) -> set[int]:
    return set(
        Comparison.objects.filter(project=project, route=route, label__isnull=True).values_list(
            "id", flat=True
        )
    )


@pytest.mark.django_db
def test_routing_keeps_labels_writes_routes_priorities_and_decisions(project, annotator):
    done = _human_labelled(project, annotator, 2)
    open_pairs = open_pairs_make(project, 10)
    routing_settings_update(project=project, policy="random", budget="5")

    run = pairs_route(project=project, apply_ai_labels=False)

    assert run.status == "succeeded"
    assert run.counts["human"] == 3  # 5 less the 2 comparisons humans labelled already
    assert run.counts["ai"] == 7
    assert run.counts["kept"] == 2
    for c in done:
        c.refresh_from_db()
        assert c.label == Choice.A
        assert c.status == "labelled"
    human = _routed(project, "human")
    assert len(human) == 3
    assert len(_routed(project, "ai")) == 7
    priorities = sorted(Comparison.objects.filter(id__in=human).values_list("priority", flat=True))
    assert priorities == [1, 2, 3]  # the queue order, most informative first
    assert set(
        Comparison.objects.filter(project=project, route="ai").values_list("priority", flat=True)
    ) == {0}
    decisions = RoutingDecision.objects.filter(run=run)
    assert decisions.count() == 10
    assert {d.comparison_id for d in decisions} == {c.id for c in open_pairs}
    assert decisions.filter(route="human").count() == 3
    first = open_pairs[0]
    first.refresh_from_db()
    assert routing_decision_current(comparison_id=first.id).route == first.route
    budget = routing_budget(project=project)
    assert (budget.limit, budget.spent, budget.left) == (5, 5, 0)


@pytest.mark.django_db
def test_rerouting_never_moves_pairs_with_human_work(project, annotator):
    open_pairs = open_pairs_make(project, 6)
    routing_settings_update(project=project, policy="all_human", budget="")
    pairs_route(project=project, apply_ai_labels=False)
    # An annotator is half-way through one pair (overlap 2): it stays with humans.
    started = open_pairs[4]
    Comparison.objects.filter(pk=started.pk).update(priority=99)
    judgement_make(started, annotator, Choice.B)
    project.overlap = 2
    project.save()

    routing_settings_update(project=project, policy="all_ai", budget="1")
    run = pairs_route(project=project, apply_ai_labels=False)

    started.refresh_from_db()
    assert started.route == "human"
    assert started.priority == 99
    assert run.counts == {**run.counts, "human": 0, "ai": 5, "kept": 1}
    assert _routed(project, "human") == {started.id}


@pytest.mark.django_db
def test_budget_fraction_counts_all_comparisons_and_the_smaller_limit_holds(project):
    open_pairs_make(project, 20)
    routing_settings_update(project=project, policy="random", human_budget=9)
    routing_settings_update(project=project, human_budget_fraction=0.25)
    run = pairs_route(project=project, apply_ai_labels=False)
    assert run.budget_limit == 5
    assert len(_routed(project, "human")) == 5


@pytest.mark.django_db
def test_bad_settings_are_refused_and_change_nothing(project):
    routing_settings_update(project=project, policy="random", budget="10")
    for kwargs in ({"budget": "lots"}, {"budget": "1.5"}, {"budget": "-3"}, {"policy": "best"}):
        with pytest.raises(ApplicationError):
            routing_settings_update(project=project, **kwargs)
    project.refresh_from_db()
    assert (project.routing_policy, project.human_budget) == ("random", 10)
    routing_settings_update(project=project, budget="30%")
    project.refresh_from_db()
    assert (project.human_budget, project.human_budget_fraction) == (None, 0.3)


@pytest.mark.django_db
def test_uncertainty_with_a_trained_model_routes_unsure_pairs_and_ai_labels_the_rest(
    project, trained
):
    version, open_pairs = trained
    annotator_create(project=project, name="rm", kind="reward_model")
    # Imported labels cost nothing: the budget is all for the 20 open pairs.
    routing_settings_update(project=project, policy="gain", budget="5")

    run = pairs_route(project=project)

    # 60 labelled pairs give 12 held-out ones with both labels: too few for the gain model.
    assert run.policy_used == "uncertainty"
    assert "fell back to uncertainty" in run.message
    ids = [c.id for c in open_pairs]
    scores = {
        cid: (p, s)
        for cid, p, s in Score.objects.filter(
            model_version=version, comparison_id__in=ids
        ).values_list("comparison_id", "p_a", "spread")
    }
    p = np.array([scores[i][0] for i in ids])
    s = np.array([scores[i][1] for i in ids])
    _, confidence = reward_model_verdicts(p, s)
    expected = np.array(ids)[
        np.argsort(-uncertainty_score(spread=s, ai_confidence=confidence), kind="stable")[:5]
    ]
    human = _routed(project, "human")
    assert human == set(expected.tolist())
    # The other 15 were judged by the reward-model annotator and carry its label now.
    ai = Comparison.objects.filter(id__in=ids, route="ai")
    assert ai.count() == 15
    assert ai.filter(label__in=["a", "b"], status="labelled").count() == 15
    assert (
        Judgement.objects.filter(comparison__in=ai, source_kind="ai", source_name="ai:rm").count()
        == 15
    )
    assert run.counts["ai_labelled"] == 15
    # The human queue's order came from active selection: distinct priorities 5..1.
    assert sorted(Comparison.objects.filter(id__in=human).values_list("priority", flat=True)) == [
        1,
        2,
        3,
        4,
        5,
    ]

    # Re-routing with a larger budget: the AI-labelled pairs keep their labels.
    routing_settings_update(project=project, policy="all_human", budget="")
    again = pairs_route(project=project)
    assert again.counts["human"] == 5
    assert again.counts["ai"] == 0
    assert Comparison.objects.filter(id__in=ids, route="ai", label__isnull=False).count() == 15


def _route_in_thread(project_id: int, seed: int, barrier: threading.Barrier, errors: list) -> None:
    from annotation.models import Project

    try:
        project = Project.objects.get(pk=project_id)
        barrier.wait(timeout=30)
        pairs_route(project=project, policy="random", seed=seed, apply_ai_labels=False)
    except Exception as exc:  # surfaced by the test below
        errors.append(exc)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_budget_holds_under_concurrent_rerouting(project, annotator):
    _human_labelled(project, annotator, 2)
    open_pairs_make(project, 40)
    routing_settings_update(project=project, policy="random", budget="7")
    # A first routing, so that the concurrent ones start from routed pairs and each writes
    # only what it changes: without the lock their changes would add up past the budget.
    pairs_route(project=project, seed=99, apply_ai_labels=False)
    errors: list = []
    barrier = threading.Barrier(6)
    threads = [
        threading.Thread(target=_route_in_thread, args=(project.id, seed, barrier, errors))
        for seed in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    runs = RoutingRun.objects.filter(project=project)
    assert runs.count() == 7
    assert all(r.status == "succeeded" and r.counts["human"] == 5 for r in runs)
    # 2 labelled by humans + 5 in the human queue: exactly the budget, never more.
    assert len(_routed(project, "human")) == 5
    assert routing_budget(project=project).spent == 7


@pytest.mark.django_db(transaction=True)
def test_new_active_model_version_reroutes_in_the_worker(project, celery_worker):
    open_pairs_make(project, 10)
    routing_settings_update(project=project, policy="random", budget="3")
    version = ModelVersion.objects.create(
        project=project, kind="heads", status="succeeded", is_active=True
    )

    model_version_activated.send(sender=ModelVersion, version_id=version.id, project_id=project.id)

    deadline = time.monotonic() + 60
    run = None
    while time.monotonic() < deadline:
        run = RoutingRun.objects.filter(project=project, trigger="model_version").first()
        if run is not None and run.is_finished:
            break
        time.sleep(0.3)
    assert run is not None
    assert run.status == "succeeded", run.error
    assert run.counts["human"] == 3
    assert run.counts["ai"] == 7
    assert run.model_version_id == version.id
    assert len(_routed(project, "human")) == 3
    assert RoutingDecision.objects.filter(run=run, model_version=version).count() == 10
    assert "7 AI-routed comparisons wait for an AI annotator" in run.message


@pytest.mark.django_db
def test_route_pairs_command_sets_policy_and_budget_and_prints_counts(project, capsys):
    open_pairs_make(project, 10)
    call_command(
        "route_pairs",
        "--project",
        "alpha",
        "--policy",
        "random",
        "--budget",
        "0.3",
        "--no-ai-labels",
    )
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "human=3 ai=7 kept=0 ai_labelled=0"
    project.refresh_from_db()
    assert (project.routing_policy, project.human_budget_fraction) == ("random", 0.3)
    assert len(_routed(project, "human")) == 3


@pytest.mark.django_db
def test_route_pairs_command_refuses_bad_input_and_changes_nothing(project):
    open_pairs_make(project, 4)
    with pytest.raises(CommandError, match="not a budget"):
        call_command("route_pairs", "--project", "alpha", "--budget", "plenty")
    with pytest.raises(CommandError, match="No project"):
        call_command("route_pairs", "--project", "nope")
    project.refresh_from_db()
    assert project.human_budget is None
    assert project.routing_policy == "all_human"
    assert not RoutingRun.objects.exists()
