"""The whole flow on PostgreSQL: import, train, find noisy pairs (the command, and the button
through the real Celery worker), act, undo, export; the audit log is complete."""

from __future__ import annotations

import io
import time
from pathlib import Path

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotation.models import Comparison
from annotation.services.exporting import export_rows
from annotation.services.importing import pairs_import
from curation.models import CurationAction, CurationRun, NoiseFlag
from curation.services.actions import curation_action_apply, curation_action_undo
from curation.services.policy import curation_policy_set
from scoring.services.training import training_run_create, training_run_execute
from tests.factories import PASSWORD

TOPICS = ["bread", "tea", "bikes", "taxes", "python", "gardens", "chess", "jazz", "rain", "maps"]
N = 40
FLIPPED = {3, 11, 22, 35}  # rows imported with the rude answer as "chosen"
TINY = {"epochs": 2, "members": 2, "hidden": 16, "batch_size": 16}
# Few and short trainings: the test is about the flow, not the detectors' quality.
FAST = '{"folds": 3, "members": 2, "epochs": 2, "rounds": 1, "peer_steps": 1}'


def _import(project, tmp_path: Path) -> None:
    rows = []
    for i in range(N):
        topic = TOPICS[i % len(TOPICS)]
        good = (
            f"Thank you for asking about {topic}! Here is a careful, friendly and detailed "
            f"explanation, step {i}, with examples and kind suggestions."
        )
        bad = f"No. {topic} {i}? Stupid question."
        chosen, rejected = (bad, good) if i in FLIPPED else (good, bad)
        rows.append(
            {"prompt": f"Explain {topic}, please ({i})", "chosen": chosen, "rejected": rejected}
        )
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    pairs_import(project=project, path=path, source_name="import:pairs.jsonl")


def _train(project) -> None:
    run = training_run_execute(run=training_run_create(project=project, config=TINY))
    assert run.status == "succeeded", run.error
    assert run.model_version.is_active


@pytest.mark.django_db
def test_command_refuses_without_a_model_then_finds_and_prints_per_detector(project, tmp_path):
    _import(project, tmp_path)
    with pytest.raises(CommandError, match="no active reward model"):
        call_command("find_noisy_pairs", "--project", project.slug, "--wait")
    with pytest.raises(CommandError, match="no project 'nope'"):
        call_command("find_noisy_pairs", "--project", "nope", "--wait")
    _train(project)
    out = io.StringIO()

    call_command(
        "find_noisy_pairs", "--project", project.slug, "--wait", "--options", FAST, stdout=out
    )

    run = CurationRun.objects.get()
    assert run.status == "succeeded", run.error
    assert run.pairs == N
    text = out.getvalue()
    assert f"curation run {run.pk} succeeded: {N} pairs" in text
    for name in (
        "ensemble_strength",
        "cleanlab",
        "peer_review",
        "annotator_reliability",
        "combined",
    ):
        assert f"{name}: flagged=" in text
        assert (
            run.summary[name]["flagged"] == NoiseFlag.objects.filter(run=run, detector=name).count()
        )
    flags = NoiseFlag.objects.filter(run=run)
    assert flags.exists()
    assert all(f.model_version_id == run.model_version_id and f.reason for f in flags)
    assert all(0.0 <= f.score <= 1.0 for f in flags)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_runs_it_with_progress_then_act_undo_export(
    client, project, admin, tmp_path, celery_worker
):
    _import(project, tmp_path)
    _train(project)
    # A policy drops whatever the combined detector is nearly sure about.
    curation_policy_set(
        project=project,
        actor=admin,
        enabled=True,
        detector="combined",
        threshold=0.0,
        action="drop",
    )
    out = io.StringIO()

    call_command("find_noisy_pairs", "--project", project.slug, "--options", FAST, stdout=out)

    run = CurationRun.objects.get()
    assert f"curation run {run.pk} queued" in out.getvalue()
    assert client.login(username=admin.username, password=PASSWORD)
    url = reverse("curation:run", args=[project.slug, run.pk])
    deadline = time.monotonic() + 240
    while True:
        response = client.get(url, headers={"HX-Request": "true"})
        if response.status_code == 286:
            break
        assert response.status_code == 200
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.5)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert NoiseFlag.objects.filter(run=run).exists()
    combined = set(
        NoiseFlag.objects.filter(run=run, detector="combined").values_list(
            "comparison_id", flat=True
        )
    )
    # The policy acted on every combined flag, in the audit log under its name.
    policy_actions = CurationAction.objects.filter(policy_name__startswith="policy: drop")
    assert set(policy_actions.values_list("comparison_id", flat=True)) == combined
    assert run.summary["policy"]["applied"] == len(combined)
    assert set(Comparison.objects.filter(excluded=True).values_list("id", flat=True)) == combined

    # A person flips one of the others, then undoes every policy drop.
    other = Comparison.objects.filter(project=project, excluded=False).order_by("id").first()
    (flip,) = curation_action_apply(
        project=project, comparison_ids=[other.pk], action="flip", actor=admin
    )
    for action in policy_actions:
        curation_action_undo(action=action, actor=admin)

    exported = {row["id"]: row for row in export_rows(project=project, with_confidence=True)}
    assert len(exported) == N  # nothing dropped any more
    other.refresh_from_db()
    assert other.label == flip.after["label"]
    log = CurationAction.objects.order_by("id")
    assert log.count() == 2 * len(combined) + 1
    assert log.filter(action="undo").count() == len(combined)
    assert not policy_actions.filter(undone_by__isnull=True).exists()
