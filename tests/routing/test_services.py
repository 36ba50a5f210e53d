"""pairs_route against PostgreSQL: budgets, kept labels, priorities, the AI judging run that
labels the AI-routed pairs, concurrency, and re-routing in the real worker when a model
version becomes active."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from annotation.models import Choice, Comparison, Judgement
from annotation.services.labels import comparison_labels_refresh
from core.exceptions import ApplicationError
from curation.judges.models import AIAnnotator, AIJudgingRun, AIVerdict
from curation.judges.services.annotators import annotator_create
from curation.judges.services.runs import ai_judging_run_create, ai_judging_run_execute
from curation.judges.verdicts import reward_model_verdicts
from curation.routing.models import RoutingDecision, RoutingRun, RoutingSettings
from curation.routing.policies import uncertainty_score
from curation.routing.selectors import (
    routing_budget,
    routing_decision_current,
    routing_settings_get,
)
from curation.routing.services.project_settings import routing_settings_update
from curation.routing.services.runs import (
    pairs_route,
    routing_run_create,
    routing_run_execute,
    routing_run_start,
)
from scoring.models import ModelVersion, Score
from scoring.signals import model_version_activated
from tests.factories import judgement_make
from tests.judges.llm_server import LLMServer
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
    chosen = routing_settings_get(project=project)
    assert (chosen.policy, chosen.human_budget) == ("random", 10)
    routing_settings_update(project=project, budget="30%")
    chosen = routing_settings_get(project=project)
    assert (chosen.policy, chosen.human_budget, chosen.human_budget_fraction) == (
        "random",
        None,
        0.3,
    )
    assert RoutingSettings.objects.filter(project=project).count() == 1


@pytest.mark.django_db
def test_without_settings_a_project_routes_everything_to_humans_without_limit(project):
    open_pairs_make(project, 6)

    chosen = routing_settings_get(project=project)

    assert chosen.pk is None  # defaults, not a row
    assert (chosen.policy, chosen.human_budget, chosen.human_budget_fraction) == (
        "all_human",
        None,
        None,
    )
    assert routing_budget(project=project).limit is None
    run = pairs_route(project=project)
    assert (run.status, run.policy, run.budget_limit) == ("succeeded", "all_human", None)
    assert (run.counts["human"], run.counts["ai"]) == (6, 0)
    assert run.ai_judging_run is None  # nothing routed to AI, nothing to judge
    assert len(_routed(project, "human")) == 6
    assert not RoutingSettings.objects.exists()


@pytest.mark.django_db
def test_the_first_settings_update_creates_the_projects_row(project):
    assert not RoutingSettings.objects.filter(project=project).exists()

    chosen = routing_settings_update(project=project, policy="random")

    stored = RoutingSettings.objects.get(project=project)
    assert stored.pk == chosen.pk
    # Only the policy was given: the budget keeps its default, no limit.
    assert (stored.policy, stored.human_budget, stored.human_budget_fraction) == (
        "random",
        None,
        None,
    )
    routing_settings_update(project=project, budget="12")
    stored.refresh_from_db()
    assert (stored.policy, stored.human_budget) == ("random", 12)
    assert RoutingSettings.objects.filter(project=project).count() == 1


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
    # The other 15 went to a judging run of the reward-model annotator, executed right
    # after the routing: they carry its label now.
    ai = Comparison.objects.filter(id__in=ids, route="ai")
    assert ai.count() == 15
    judging = run.ai_judging_run
    assert judging is not None
    assert (judging.annotator.name, judging.scope, judging.status) == ("rm", "ids", "succeeded")
    assert sorted(judging.comparison_ids) == sorted(ai.values_list("id", flat=True))
    assert (judging.progress_total, judging.ok_count, judging.failed_count) == (15, 15, 0)
    assert run.counts["ai_to_label"] == 15
    assert ai.filter(label__in=["a", "b"], status="labelled").count() == 15
    assert (
        Judgement.objects.filter(comparison__in=ai, source_kind="ai", source_name="ai:rm").count()
        == 15
    )
    assert AIVerdict.objects.filter(run=judging, status="ok").count() == 15
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
    # Nothing routed to AI is unlabelled: no judging run this time.
    assert (again.ai_judging_run, again.counts["ai_to_label"]) == (None, 0)
    assert AIJudgingRun.objects.count() == 1


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
    version = ModelVersion.objects.create(project=project, kind="heads", is_active=True)

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
    assert run.ai_judging_run is None


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
    chosen = routing_settings_get(project=project)
    assert (chosen.policy, chosen.human_budget_fraction) == ("random", 0.3)
    assert len(_routed(project, "human")) == 3
    assert not AIJudgingRun.objects.exists()


@pytest.mark.django_db
def test_route_pairs_command_refuses_bad_input_and_changes_nothing(project):
    open_pairs_make(project, 4)
    with pytest.raises(CommandError, match="not a budget"):
        call_command("route_pairs", "--project", "alpha", "--budget", "plenty")
    with pytest.raises(CommandError, match="No project"):
        call_command("route_pairs", "--project", "nope")
    assert not RoutingSettings.objects.exists()
    assert routing_settings_get(project=project).policy == "all_human"
    assert not RoutingRun.objects.exists()


def _remote(project, server: LLMServer) -> AIAnnotator:
    return annotator_create(
        project=project,
        name="gpt",
        kind=AIAnnotator.Kind.REMOTE_LLM,
        settings={"base_url": server.base_url, "model": "judge-1", "backoff": 0.01},
    )


def _ai_work(project, user) -> tuple[list[Comparison], Comparison]:
    """Six open pairs, two pairs `user` labelled and one AI-routed pair labelled already:
    all_ai sends the six to AI, and only they need an AI label."""
    _human_labelled(project, user, 2)
    open_pairs = open_pairs_make(project, 6)
    (done,) = open_pairs_make(project, 1, tag="ai-done")
    Comparison.objects.filter(pk=done.pk).update(route="ai", label="a", status="labelled")
    return open_pairs, done


@pytest.mark.django_db
def test_a_worker_routing_run_queues_a_judging_run_over_the_ai_routed_unlabelled_pairs(
    project, annotator, sent, django_capture_on_commit_callbacks
):
    open_pairs, done = _ai_work(project, annotator)
    with LLMServer() as server:
        gpt = _remote(project, server)
        run = routing_run_create(project=project, policy="all_ai")

        with django_capture_on_commit_callbacks(execute=True):
            run = routing_run_execute(run=run)  # what routing_run_execute_task does

        assert run.status == "succeeded", run.error
        judging = run.ai_judging_run
        assert judging is not None
        # Exactly the unlabelled pairs routed to AI, queued for a worker with its task sent.
        assert (judging.annotator, judging.scope, judging.status) == (gpt, "ids", "queued")
        assert judging.comparison_ids == sorted(c.id for c in open_pairs)
        assert judging.progress_total == 6
        assert run.counts["ai"] == 6
        assert run.counts["ai_to_label"] == 6
        assert (
            f"AI judging run #{judging.pk} of ai:gpt labels the 6 AI-routed comparisons "
            "without a label." in run.message
        )
        assert sent == [(AIJudgingRun.TASK, (judging.pk,), judging.queue)]
        assert not server.requests
        assert not Judgement.objects.filter(source_kind="ai").exists()

        judging = ai_judging_run_execute(run=judging)  # what the worker does next

    assert (judging.status, judging.ok_count, judging.failed_count) == ("succeeded", 6, 0)
    labelled = Comparison.objects.filter(id__in=[c.id for c in open_pairs], status="labelled")
    assert labelled.filter(label__in=["a", "b"]).count() == 6
    assert Judgement.objects.filter(comparison__in=labelled, source_name="ai:gpt").count() == 6
    # The pair that had a label is not asked about.
    assert not AIVerdict.objects.filter(comparison=done).exists()
    assert not Judgement.objects.filter(comparison=done, source_kind="ai").exists()


@pytest.mark.django_db
def test_routing_notes_an_annotator_busy_with_another_run_and_still_succeeds(
    project, annotator, sent
):
    open_pairs, _ = _ai_work(project, annotator)
    gpt = annotator_create(
        project=project,
        name="gpt",
        kind=AIAnnotator.Kind.REMOTE_LLM,
        settings={"base_url": "http://127.0.0.1:9/v1", "model": "judge-1"},
    )
    busy = ai_judging_run_create(annotator=gpt)

    run = pairs_route(project=project, policy="all_ai")

    assert run.status == "succeeded", run.error
    assert "AI labels not started: ai:gpt already has a run queued or running" in run.message
    assert run.ai_judging_run is None
    assert run.counts["ai_to_label"] == 0
    # The routes are written all the same; the pairs wait for a label.
    assert _routed(project, "ai") == {c.id for c in open_pairs}
    assert list(AIJudgingRun.objects.values_list("id", "status")) == [(busy.pk, "queued")]
    assert not AIVerdict.objects.exists()
    assert not sent


@pytest.mark.django_db
def test_route_pairs_command_judges_the_ai_routed_pairs_and_prints_the_labels(
    project, annotator, capsys
):
    open_pairs, _ = _ai_work(project, annotator)
    with LLMServer() as server:
        _remote(project, server)
        call_command("route_pairs", "--project", "alpha", "--policy", "all_ai")
        asked = len(server.requests)
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "human=0 ai=6 kept=2 ai_labelled=6"
    assert asked == 2 * 6  # each pair in both orders
    run = RoutingRun.objects.get()
    assert run.trigger == "command"
    assert (run.ai_judging_run.status, run.ai_judging_run.ok_count) == ("succeeded", 6)
    assert (
        Comparison.objects.filter(id__in=[c.id for c in open_pairs], label__isnull=False).count()
        == 6
    )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_rerouting_in_the_worker_hands_the_ai_labels_to_a_judging_run_it_executes(
    project, celery_worker
):
    open_pairs = open_pairs_make(project, 5)
    routing_settings_update(project=project, policy="all_ai")
    with LLMServer() as server:
        _remote(project, server)

        run = routing_run_start(project=project)

        deadline = time.monotonic() + 60
        judging = None
        while time.monotonic() < deadline:
            run.refresh_from_db()
            judging = run.ai_judging_run
            if judging is not None and judging.is_finished:
                break
            time.sleep(0.3)
    assert run.status == "succeeded", run.error
    assert judging is not None, run.message
    assert (judging.status, judging.ok_count, judging.failed_count) == ("succeeded", 5, 0)
    assert judging.comparison_ids == sorted(c.id for c in open_pairs)
    assert (
        Comparison.objects.filter(
            id__in=[c.id for c in open_pairs], route="ai", status="labelled"
        ).count()
        == 5
    )
    assert Judgement.objects.filter(source_name="ai:gpt").count() == 5
