"""An image project from end to end through the real Celery worker: the admin uploads two
archives on the import page (labelled TRL pairs, and open pairs for the human queue), the
worker imports them and embeds the images, an annotator labels open pairs on the labelling
page, then training, "find noisy pairs", routing with the reward-model annotator (all in the
worker) and both media exports, Parquet read back with `datasets`."""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse
from PIL import Image, ImageFilter

from annotation.models import Assignment, Candidate, Choice, Comparison, ImportJob, Judgement
from curation.judges.models import AIAnnotator, AIJudgingRun, AIVerdict
from curation.judges.services.annotators import annotator_create
from curation.models import CurationRun
from curation.routing.models import RoutingDecision, RoutingRun
from curation.routing.services.project_settings import routing_settings_update
from curation.routing.services.runs import routing_run_start
from scoring.encoders import encoder_for
from scoring.models import Embedding, Score, TrainingRun
from scoring.services.training import training_run_start
from tests.factories import PASSWORD
from tests.media_samples import archive, image_bytes

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

LABELLED = 40  # TRL rows: the clean picture chosen over its blurred and noised copy
OPEN = 8  # unlabelled two-image rows for the human queue
HUMAN = 3  # of the open pairs, labelled on the labelling page
AI = OPEN - HUMAN - 2  # routed to the reward model: all but one more for humans and the
# pair the page leased to the annotator after the last answer (human work: never re-routed)
TRAIN = {"epochs": 30, "batch_size": 8, "lr": 1e-2, "members": 3, "hidden": 32}
# Few and short trainings: the test is about the flow, not the detectors' quality.
FAST = '{"folds": 3, "members": 2, "epochs": 2, "rounds": 1, "peer_steps": 1}'
WAIT = 180  # s per step: the machine may be busy with other tests


def _degraded(data: bytes, seed: int) -> bytes:
    """The same picture heavily blurred, then noised: what the reward model must reject."""
    with Image.open(io.BytesIO(data)) as img:
        blurred = img.convert("RGB").filter(ImageFilter.GaussianBlur(3))
    x = np.asarray(blurred, dtype=np.float32)
    x += np.random.default_rng(seed).normal(0, 60, x.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _archives(folder: Path) -> tuple[Path, Path, dict[str, tuple[bytes, bytes]]]:
    """Two uploads (the importer reads one row shape per file): the labelled TRL pairs, and
    the open pairs as ranked rows without ranks; and (clean, degraded) bytes by row id."""
    labelled, unlabelled, pictures = ([], {}), ([], {}), {}
    for i in range(LABELLED + OPEN):
        clean = image_bytes(i)
        rid = f"pair-{i:02d}" if i < LABELLED else f"open-{i - LABELLED}"
        pictures[rid] = (clean, _degraded(clean, i))
        rows, files = labelled if i < LABELLED else unlabelled
        files[f"img/{rid}_clean.png"], files[f"img/{rid}_noisy.png"] = pictures[rid]
        clean_ref, noisy_ref = {"image": f"img/{rid}_clean.png"}, {"image": f"img/{rid}_noisy.png"}
        row = {"id": rid, "prompt": f"Which picture is sharper? ({i})"}
        if i < LABELLED:
            rows.append({**row, "chosen": clean_ref, "rejected": noisy_ref})
        else:  # the clean one first on every other row: the order tells nothing
            rows.append(
                {**row, "responses": [clean_ref, noisy_ref] if i % 2 else [noisy_ref, clean_ref]}
            )
    return (
        archive(folder / "pictures.zip", *labelled),
        archive(folder / "open.zip", *unlabelled),
        pictures,
    )


def _upload(client, project, path: Path) -> ImportJob:
    """Upload `path` on the import page; wait for the worker's import job to finish."""
    response = client.post(
        reverse("annotation:import", args=[project.slug]),
        {"file": SimpleUploadedFile(path.name, path.read_bytes()), "format": "auto",
         "pairs": "all", "max_pairs": 45},
    )  # fmt: skip
    assert response.status_code == 302
    job = _finished(ImportJob, project=project, original_name=path.name)
    assert job.status == "succeeded", job.errors
    return job


def _wait(fetch: Callable, done: Callable, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not done after {timeout} s: {value!r}")
        time.sleep(0.3)


def _finished(model, **filters):
    """Wait for the run of `model` matching `filters` to finish; return it."""
    return _wait(
        lambda: model.objects.filter(**filters).order_by("-id").first(),
        lambda run: run is not None and run.is_finished,
        f"{model.__name__} {filters}",
    )


def _label_one(client, project, annotator, pictures: dict) -> tuple[Judgement, str]:
    """GET the labelling page, POST the clean picture's side to the page's submit URL."""
    page = client.get(reverse("annotation:label", args=[project.slug]))
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("<img") >= 2
    submit = re.search(r'class="label-form" method="post" action="([^"]+)"', html)[1]
    key = re.search(r"/label/([0-9a-f-]{36})/submit/$", submit)[1]
    assignment = Assignment.objects.select_related("comparison").get(key=key)
    comparison = assignment.comparison
    assert assignment.annotator == annotator
    assert comparison.label is None
    clean = pictures[comparison.external_id][0]
    a_is_clean = _stored(comparison.candidate_a) == clean
    clean_side = Choice.A if a_is_clean else Choice.B
    left = "a" if assignment.presentation_order == "ab" else "b"
    response = client.post(
        submit,
        {"choice": "left" if clean_side == left else "right"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    return Judgement.objects.get(assignment=assignment), clean_side


def _stored(candidate: Candidate) -> bytes:
    with default_storage.open(candidate.file.name, "rb") as fh:
        return fh.read()


def test_an_image_project_goes_from_import_to_export_through_the_worker(
    client, project, admin, annotator, tmp_path, celery_worker
):
    # 1. The admin uploads the archives on the import page; the worker imports, then embeds.
    trl, ranked, pictures = _archives(tmp_path)
    assert client.login(username=admin.username, password=PASSWORD)
    job = _upload(client, project, trl)
    assert job.summary["message"].startswith(f"imported {LABELLED} comparisons")
    job = _upload(client, project, ranked)
    assert job.summary["message"].startswith(f"imported {OPEN} comparisons")
    pairs = Comparison.objects.filter(project=project)
    assert pairs.count() == LABELLED + OPEN
    assert pairs.filter(label__isnull=True).count() == OPEN
    assert Judgement.objects.filter(source_name="import:pictures.zip").count() == LABELLED
    candidates = Candidate.objects.filter(prompt__project=project)
    assert set(candidates.values_list("kind", flat=True)) == {"image"}
    hashes = set(candidates.values_list("content_hash", flat=True))
    assert len(hashes) == 2 * (LABELLED + OPEN)
    images = Embedding.objects.filter(
        encoder=encoder_for("image", "cpu").version, content_hash__in=hashes
    )
    _wait(images.count, lambda n: n == len(hashes), "embedding the images")
    assert set(images.values_list("dim", flat=True)) == {1280}

    # 2. An annotator labels open pairs on the labelling page: the clean picture each time.
    client.logout()
    assert client.login(username=annotator.username, password=PASSWORD)
    labelled_here = [_label_one(client, project, annotator, pictures) for _ in range(HUMAN)]
    human = Judgement.objects.filter(user=annotator, source_kind="human")
    assert human.count() == HUMAN
    for judgement, clean_side in labelled_here:
        assert judgement.choice == clean_side
        judgement.comparison.refresh_from_db()
        assert (judgement.comparison.label, judgement.comparison.status) == (
            clean_side,
            "labelled",
        )
    assert pairs.filter(label__isnull=True).count() == OPEN - HUMAN
    # The last answer's response showed the next pair: leased to the annotator now.
    leased = Assignment.objects.filter(annotator=annotator, state=Assignment.State.LEASED)
    assert leased.get().comparison.label is None

    # 3. Training in the worker: a new active version, held-out metrics, every pair scored.
    run = training_run_start(project=project, config=TRAIN, created_by=admin)
    run = _finished(TrainingRun, pk=run.pk)
    assert run.status == "succeeded", run.error
    version = run.model_version
    assert version.is_active
    assert version.label_count == LABELLED + HUMAN
    assert version.metrics["eval_pairs"] > 0
    assert 0.0 <= version.metrics["eval_accuracy"] <= 1.0
    scores = Score.objects.filter(model_version=version)
    _wait(scores.count, lambda n: n == LABELLED + OPEN, "scoring with the new version")
    p_a = dict(scores.values_list("comparison_id", "p_a"))
    labels = dict(pairs.filter(label__isnull=False).values_list("id", "label"))
    right = np.mean([(p_a[cid] > 0.5) == (label == Choice.A) for cid, label in labels.items()])
    assert right >= 0.9  # it learnt the sharp picture from EfficientNet's features
    # The new version re-routed the project in the worker (all to humans by default).
    rerouted = _finished(RoutingRun, project=project, trigger="model_version")
    assert rerouted.status == "succeeded", rerouted.error

    # 4. "Find noisy pairs", as the curation page's button queues it, run by the worker.
    out = io.StringIO()
    call_command("find_noisy_pairs", "--project", project.slug, "--options", FAST, stdout=out)
    curation = _finished(CurationRun, project=project)
    assert f"curation run {curation.pk} queued" in out.getvalue()
    assert curation.status == "succeeded", curation.error
    assert curation.pairs == LABELLED + HUMAN
    assert curation.model_version_id == version.pk
    assert set(curation.summary) >= {"ensemble_strength", "cleanlab", "combined"}

    # 5. Routing the open pairs, in the worker, with the reward model as the AI annotator.
    annotator_create(project=project, name="rm", kind=AIAnnotator.Kind.REWARD_MODEL)
    routing_settings_update(project=project, policy="uncertainty", budget=str(HUMAN + 2))
    routed = routing_run_start(project=project, created_by=admin)
    routed = _finished(RoutingRun, pk=routed.pk)
    assert routed.status == "succeeded", routed.error
    assert (routed.counts["human"], routed.counts["ai"]) == (1, AI), routed.counts
    assert routed.counts["kept"] == HUMAN + 1
    assert routed.model_version_id == version.pk
    assert RoutingDecision.objects.filter(run=routed).count() == OPEN - HUMAN - 1
    assert routed.ai_judging_run is not None, routed.message
    judging = _finished(AIJudgingRun, pk=routed.ai_judging_run_id)
    assert judging.annotator.name == "rm"
    assert judging.status == "succeeded", judging.error
    assert (judging.ok_count, judging.failed_count) == (AI, 0)
    assert AIVerdict.objects.filter(run=judging, status="ok").count() == AI
    assert pairs.filter(route="ai", label__in=[Choice.A, Choice.B]).count() == AI
    assert Judgement.objects.filter(source_name="ai:rm").count() == AI

    # 6. Both exports: Parquet that `datasets` decodes into pictures, and the archive.
    exported = pairs.filter(label__in=[Choice.A, Choice.B], excluded=False)
    assert exported.count() == LABELLED + HUMAN + AI
    parquet, zipped = tmp_path / "export.parquet", tmp_path / "export.zip"
    call_command("export_pairs", str(parquet), project=project.slug, format="trl-parquet")
    call_command("export_pairs", str(zipped), project=project.slug, format="archive")

    import datasets

    ds = datasets.load_dataset(
        "parquet", data_files=str(parquet), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert ds.num_rows == exported.count()
    assert sorted(ds["id"]) == sorted(exported.values_list("external_id", flat=True))
    for row in ds:
        assert isinstance(row["chosen"], Image.Image)
        assert isinstance(row["rejected"], Image.Image)
        assert row["chosen"].size == row["rejected"].size == (64, 48)
        if not row["id"].startswith("pair-"):
            continue  # the labels people and the reward model gave are checked above
        clean, noisy = (Image.open(io.BytesIO(b)) for b in pictures[row["id"]])
        assert np.array_equal(np.asarray(row["chosen"]), np.asarray(clean))
        assert np.array_equal(np.asarray(row["rejected"]), np.asarray(noisy))

    with zipfile.ZipFile(zipped) as zf:
        names = zf.namelist()
        rows = [orjson.loads(line) for line in zf.read("pairs.jsonl").splitlines()]
        assert names[0] == "pairs.jsonl"
        assert len(rows) == exported.count()
        files = {r[side]["image"] for r in rows for side in ("chosen", "rejected")}
        assert len(names) == len(set(names)) == 1 + len(files)  # each file once
        assert set(names[1:]) == files
        human_ids = {j.comparison.external_id for j, _ in labelled_here}
        for r in rows:
            if r["id"].startswith("pair-") or r["id"] in human_ids:  # the clean one chosen
                assert zf.read(r["chosen"]["image"]) == pictures[r["id"]][0]
                assert zf.read(r["rejected"]["image"]) == pictures[r["id"]][1]
