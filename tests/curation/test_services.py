"""Curation services: flags, actions and their undo, bulk atomicity, the policy, exports of
the curated state, and reliability-weighted aggregation."""

from __future__ import annotations

import io
import random

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest
from django.utils import timezone

from annotation.models import Comparison, LabelResolution, Membership
from annotation.services.exporting import export_jsonl_chunks, export_parquet_write
from annotation.services.labels import comparison_labels_refresh
from annotation.services.queue import assignment_next_for
from annotation.signals import labels_changed
from core.exceptions import ApplicationError
from curation.detectors import DetectorResult
from curation.models import (
    AnnotatorReliability,
    CurationAction,
    CurationPolicy,
    CurationRun,
    NoiseFlag,
)
from curation.services.actions import STATE_FIELDS, curation_action_apply, curation_action_undo
from curation.services.policy import curation_policy_apply, curation_policy_set
from curation.services.reliability import annotator_reliability_refresh
from curation.services.runs import (
    _flags_write,
    curation_run_cancel,
    curation_run_create,
    curation_run_execute,
)
from scoring.models import ModelVersion
from tests.factories import MembershipFactory, UserFactory, comparison_make, judgement_make

pytestmark = pytest.mark.django_db


def _state(comparison: Comparison) -> dict:
    comparison.refresh_from_db()
    return {f: getattr(comparison, f) for f in STATE_FIELDS}


def _labelled(project, n: int = 4, label: str = "a", **fields) -> list[Comparison]:
    return [
        comparison_make(
            project,
            a=f"answer a {i}",
            b=f"answer b {i}",
            label=label,
            label_confidence=0.75,
            label_margin=1.5,
            status=Comparison.Status.LABELLED,
            **fields,
        )
        for i in range(n)
    ]


def _run_with_flags(project, comparisons, scores, detector="combined") -> CurationRun:
    version = ModelVersion.objects.create(project=project, kind="heads", is_active=True)
    run = CurationRun.objects.create(project=project, model_version=version, status="running")
    n = len(comparisons)
    result = DetectorResult(
        name=detector,
        score=np.asarray(scores, dtype=np.float64),
        flagged=np.asarray(scores) >= 0.5,
        reasons=[f"3 of 5 models prefer B strongly (pair {i})" for i in range(n)],
    )
    summary = _flags_write(
        run, [c.pk for c in comparisons], [c.label for c in comparisons], [result]
    )
    CurationRun.objects.filter(pk=run.pk).update(
        status="succeeded", summary=summary, finished_at=timezone.now()
    )
    run.refresh_from_db()
    return run


def test_flags_store_detector_score_reason_and_model_version(project):
    comparisons = _labelled(project, 3)
    run = _run_with_flags(project, comparisons, [0.9, 0.2, 0.6])

    flags = NoiseFlag.objects.filter(run=run).order_by("-score")
    assert [(f.comparison_id, f.score) for f in flags] == [
        (comparisons[0].pk, 0.9),
        (comparisons[2].pk, 0.6),
    ]
    assert all(
        f.detector == "combined" and f.model_version_id == run.model_version_id for f in flags
    )
    assert flags[0].reason.startswith("3 of 5 models prefer B strongly")
    assert run.summary["combined"]["flagged"] == 2
    # Written again (a re-delivered task): the same rows, not new ones.
    _flags_write(
        run,
        [c.pk for c in comparisons],
        ["a"] * 3,
        [
            DetectorResult(
                "combined", np.array([0.95, 0.2, 0.6]), np.array([1, 0, 1], bool), ["x"] * 3
            )
        ],
    )
    assert NoiseFlag.objects.filter(run=run).count() == 2
    assert NoiseFlag.objects.get(run=run, comparison=comparisons[0]).score == 0.95


@pytest.mark.parametrize("action", ["drop", "flip", "requeue", "keep"])
def test_each_action_is_logged_and_undo_restores_the_state_exactly(project, admin, action):
    (comparison,) = _labelled(project, 1, priority=3)
    run = _run_with_flags(project, [comparison], [0.8])
    before = _state(comparison)

    (record,) = curation_action_apply(
        project=project, comparison_ids=[comparison.pk], action=action, actor=admin
    )

    after = _state(comparison)
    expected = {
        "drop": {**before, "excluded": True},
        "flip": {**before, "label": "b", "label_confidence": 0.8},
        "requeue": {
            **before,
            "label": None,
            "label_confidence": None,
            "label_margin": None,
            "status": "pending",
            "priority": 4,  # above everything else in the project's queue
        },
        "keep": before,
    }[action]
    assert after == expected
    assert record.action == action
    assert record.actor == admin
    assert {k: record.before[k] for k in STATE_FIELDS} == before
    assert {k: record.after[k] for k in STATE_FIELDS} == after
    flag = NoiseFlag.objects.get(run=run)
    assert flag.state == "reviewed"
    assert flag.action == record
    assert LabelResolution.objects.filter(comparison=comparison).count() == (action == "flip")

    undo = curation_action_undo(action=record, actor=admin)

    assert _state(comparison) == before
    assert undo.action == "undo"
    record.refresh_from_db()
    assert record.undone_by == undo
    assert not LabelResolution.objects.filter(comparison=comparison).exists()
    flag.refresh_from_db()
    assert flag.state == "open"
    assert flag.action is None
    with pytest.raises(ApplicationError, match="undone already"):
        curation_action_undo(action=record, actor=admin)


def test_a_flip_survives_aggregating_the_judgements_again(project, admin, annotator):
    (comparison,) = _labelled(project, 1)
    judgement_make(comparison, annotator, "a")
    curation_action_apply(
        project=project, comparison_ids=[comparison.pk], action="flip", actor=admin
    )

    comparison_labels_refresh(comparison_ids=[comparison.pk])

    comparison.refresh_from_db()
    assert comparison.label == "b"
    resolution = LabelResolution.objects.get(comparison=comparison)
    assert resolution.reviewer == admin
    assert resolution.note.startswith("Curation: flipped A → B")


def test_a_bulk_action_is_one_transaction(project, admin):
    good = _labelled(project, 3)
    (tied,) = _labelled(project, 1, label="tie")
    before = {c.pk: _state(c) for c in [*good, tied]}

    with pytest.raises(ApplicationError, match=f"#{tied.pk}: only an A or B label can be flipped"):
        curation_action_apply(
            project=project,
            comparison_ids=[c.pk for c in [*good, tied]],
            action="flip",
            actor=admin,
        )

    assert {c.pk: _state(c) for c in [*good, tied]} == before
    assert not CurationAction.objects.exists()
    assert not LabelResolution.objects.exists()

    records = curation_action_apply(
        project=project, comparison_ids=[c.pk for c in good], action="drop", actor=admin
    )
    assert len({r.batch for r in records}) == 1
    assert Comparison.objects.filter(excluded=True).count() == 3


def test_another_projects_pair_is_refused(project, other_project, admin):
    (theirs,) = _labelled(other_project, 1)
    with pytest.raises(ApplicationError, match="No such pair"):
        curation_action_apply(
            project=project, comparison_ids=[theirs.pk], action="drop", actor=admin
        )
    theirs.refresh_from_db()
    assert not theirs.excluded


def test_undo_is_refused_when_the_pair_changed_since(project, admin):
    (comparison,) = _labelled(project, 1)
    (drop,) = curation_action_apply(
        project=project, comparison_ids=[comparison.pk], action="drop", actor=admin
    )
    (requeue,) = curation_action_apply(
        project=project, comparison_ids=[comparison.pk], action="requeue", actor=admin
    )

    with pytest.raises(ApplicationError, match="changed since"):
        curation_action_undo(action=drop, actor=admin)

    curation_action_undo(action=requeue, actor=admin)
    curation_action_undo(action=drop, actor=admin)
    comparison.refresh_from_db()
    assert comparison.label == "a"
    assert not comparison.excluded
    assert comparison.status == "labelled"
    assert CurationAction.objects.filter(action="undo").count() == 2


def test_a_requeued_pair_goes_first_to_a_fresh_annotator(project, admin, annotator):
    (other,) = _labelled(project, 1)
    Comparison.objects.filter(pk=other.pk).update(status="pending", label=None, priority=50)
    (comparison,) = _labelled(project, 1, route="ai")
    curation_action_apply(
        project=project, comparison_ids=[comparison.pk], action="requeue", actor=admin
    )
    comparison.refresh_from_db()
    assert comparison.route == "human"
    assert comparison.priority == 51

    assignment = assignment_next_for(annotator=annotator, project=project)

    assert assignment.comparison_id == comparison.pk


def test_dropped_pairs_stay_out_of_the_queue(project, admin, annotator):
    (comparison,) = _labelled(project, 1)
    Comparison.objects.filter(pk=comparison.pk).update(status="pending", label=None)
    curation_action_apply(
        project=project, comparison_ids=[comparison.pk], action="drop", actor=admin
    )

    assert assignment_next_for(annotator=annotator, project=project) is None


def test_policy_applies_above_its_threshold_once(project, admin):
    comparisons = _labelled(project, 4)
    run = _run_with_flags(project, comparisons, [0.95, 0.85, 0.6, 0.1])
    policy = curation_policy_set(
        project=project,
        actor=admin,
        enabled=True,
        detector="combined",
        threshold=0.8,
        action="flip",
    )

    done = curation_policy_apply(policy=policy, run=run)

    assert sorted(a.comparison_id for a in done) == sorted(c.pk for c in comparisons[:2])
    labels = [Comparison.objects.get(pk=c.pk).label for c in comparisons]
    assert labels == ["b", "b", "a", "a"]
    assert all(a.actor is None and a.policy_name.startswith("policy: flip") for a in done)
    # Flips by the policy are attributed to the admin who set it.
    assert set(LabelResolution.objects.values_list("reviewer", flat=True)) == {admin.pk}
    assert curation_policy_apply(policy=policy, run=run) == []
    # Undo works for the policy's actions too.
    curation_action_undo(action=done[0], actor=admin)
    assert Comparison.objects.get(pk=done[0].comparison_id).label == "a"


def test_policy_is_off_by_default_and_validated(project, admin):
    assert not CurationPolicy.objects.filter(project=project).exists()
    with pytest.raises(ApplicationError, match="between 0 and 1"):
        curation_policy_set(
            project=project,
            actor=admin,
            enabled=True,
            detector="combined",
            threshold=1.5,
            action="drop",
        )
    with pytest.raises(ApplicationError, match="drop, flip or send back"):
        curation_policy_set(
            project=project,
            actor=admin,
            enabled=True,
            detector="combined",
            threshold=0.5,
            action="keep",
        )
    assert not CurationPolicy.objects.filter(project=project).exists()


def test_run_create_refuses_without_an_active_model_or_enough_pairs(project):
    _labelled(project, 5)
    with pytest.raises(ApplicationError, match="no active reward model"):
        curation_run_create(project=project)
    ModelVersion.objects.create(project=project, kind="heads", is_active=True)
    with pytest.raises(ApplicationError, match="5 labelled A/B pairs"):
        curation_run_create(project=project)
    assert not CurationRun.objects.exists()


def test_export_skips_dropped_pairs_and_can_carry_confidence(project, admin):
    kept, dropped = _labelled(project, 2)
    curation_action_apply(project=project, comparison_ids=[dropped.pk], action="drop", actor=admin)

    rows = [
        orjson.loads(line) for line in b"".join(export_jsonl_chunks(project=project)).splitlines()
    ]
    assert [r["id"] for r in rows] == [str(kept.pk)]
    assert "confidence" not in rows[0]
    rows = [
        orjson.loads(line)
        for line in b"".join(
            export_jsonl_chunks(project=project, with_confidence=True)
        ).splitlines()
    ]
    assert rows[0]["confidence"] == 0.75
    assert rows[0]["margin"] == 1.5

    buffer = io.BytesIO()
    assert export_parquet_write(project=project, out=buffer, with_confidence=True) == 1
    table = pq.read_table(io.BytesIO(buffer.getvalue()))
    assert table.column_names == [
        "prompt",
        "chosen",
        "rejected",
        "margin",
        "id",
        "confidence",
        "label_source",
    ]
    assert table.column("confidence").to_pylist() == [0.75]


def _annotators(project, names):
    return [
        MembershipFactory(project=project, user=UserFactory(username=n), role="annotator").user
        for n in names
    ]


def test_reliability_weights_settle_splits_in_favour_of_the_reliable_annotator(project):
    good1, good2, careless = _annotators(project, ["good1", "good2", "careless"])
    rng = random.Random(0)
    truth, comparisons = [], []
    for i in range(70):
        c = comparison_make(project, a=f"a{i}", b=f"b{i}")
        t = rng.choice("ab")
        truth.append(t)
        comparisons.append(c)
        judgement_make(c, good1, t)
        if i < 50:  # the two reliable annotators overlap on 50 comparisons
            judgement_make(c, good2, t)
        judgement_make(c, careless, rng.choice("ab"))
    comparison_labels_refresh(comparison_ids=[c.pk for c in comparisons])
    # Plain majority: where only good1 and the careless one judged and they split, no label.
    split = [
        c
        for i, c in enumerate(comparisons[50:], 50)
        if Comparison.objects.get(pk=c.pk).status == "disputed"
    ]
    assert split

    result = annotator_reliability_refresh(project=project)

    assert result.applied
    assert result.overlap_comparisons == 70
    weights = dict(
        Membership.objects.filter(project=project).values_list("user__username", "reliability")
    )
    assert weights["good1"] > 3
    assert weights["good2"] > 3
    assert weights["careless"] < 0.5
    stored = {r.user.username: r for r in AnnotatorReliability.objects.filter(project=project)}
    assert stored["good1"].judgements == 70
    assert stored["good1"].overlapping == 70
    assert stored["good1"].dawid_skene > 0.95
    assert stored["careless"].dawid_skene < 0.7
    assert stored["careless"].mace is not None
    for c in split:
        c.refresh_from_db()
        assert c.label == truth[comparisons.index(c)]
        assert c.status == "labelled"
    assert result.relabelled >= len(split)


def test_too_little_overlap_keeps_plain_majority(project):
    first, second = _annotators(project, ["first", "second"])
    c = comparison_make(project)
    judgement_make(c, first, "a")
    judgement_make(c, second, "b")
    Membership.objects.filter(user=first).update(reliability=None)
    comparison_labels_refresh(comparison_ids=[c.pk])  # plain majority: a split
    Membership.objects.filter(user=first).update(reliability=3.0)

    result = annotator_reliability_refresh(project=project)

    assert not result.applied
    assert result.overlap_comparisons == 1
    assert set(
        Membership.objects.filter(project=project).values_list("reliability", flat=True)
    ) == {None}
    c.refresh_from_db()
    assert c.label is None
    assert c.status == "disputed"


def _queued_run(project, n: int = 20) -> CurationRun:
    _labelled(project, n)
    ModelVersion.objects.create(project=project, kind="heads", is_active=True)
    return curation_run_create(project=project)


def test_a_cancelled_run_is_left_alone(project):
    run = _queued_run(project)
    curation_run_cancel(run=run)

    run = curation_run_execute(run=run)

    assert run.status == "cancelled"
    assert run.finished_at is not None
    assert not NoiseFlag.objects.exists()


def test_a_run_whose_pairs_went_away_fails_with_the_reason(project, admin):
    run = _queued_run(project)
    curation_action_apply(
        project=project,
        comparison_ids=Comparison.objects.values_list("id", flat=True),
        action="drop",
        actor=admin,
    )

    run = curation_run_execute(run=run)

    assert run.status == "failed"
    assert "only 0 labelled A/B pairs" in run.error
    assert curation_run_execute(run=run).status == "failed"  # finished: left as it is


def test_actions_tell_automatic_training_once_per_transaction(
    project, admin, django_capture_on_commit_callbacks
):
    comparisons = _labelled(project, 3)
    sent = []

    def receiver(sender, *, project_ids, **kwargs):
        sent.append(project_ids)

    labels_changed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            curation_action_apply(
                project=project,
                comparison_ids=[c.pk for c in comparisons],
                action="flip",
                actor=admin,
            )
        with django_capture_on_commit_callbacks(execute=True):
            curation_action_apply(
                project=project, comparison_ids=[comparisons[0].pk], action="keep", actor=admin
            )
    finally:
        labels_changed.disconnect(receiver)

    assert sent == [{project.pk}]
