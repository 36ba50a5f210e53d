"""Export in TRL's columns, and the round trip import -> export -> import."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command

from annotation.formats import split_transcript
from annotation.models import Comparison, Project
from annotation.services.exporting import export_rows
from annotation.services.importing import pairs_import

pytestmark = pytest.mark.django_db


def _import(project: Project, path: Path):
    return pairs_import(project=project, path=path, source_name=f"import:{path.name}")


def _export(project: Project, tmp_path: Path, fmt: str = "trl-jsonl") -> list[dict]:
    out = tmp_path / f"{project.slug}.{'parquet' if fmt == 'trl-parquet' else 'jsonl'}"
    call_command("export_pairs", str(out), project=project.slug, format=fmt)
    if fmt == "trl-parquet":
        return pq.read_table(out).to_pylist()
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def _key(row: dict) -> str:
    return orjson.dumps([row["prompt"], row["chosen"], row["rejected"]]).decode()


def test_hh_rlhf_sample_round_trips(project, hh_sample, hh_rows, tmp_path):
    _import(project, hh_sample)

    exported = _export(project, tmp_path)

    assert len(exported) == len(hh_rows) == 1612
    assert set(exported[0]) == {"prompt", "chosen", "rejected", "margin", "id"}
    # Prompt + chosen gives back the chosen transcript, prompt + rejected the rejected one.
    got = {
        (_key({"prompt": r["prompt"] + r["chosen"], "chosen": 0, "rejected": 0}),
         _key({"prompt": r["prompt"] + r["rejected"], "chosen": 0, "rejected": 0}))
        for r in exported
    }  # fmt: skip
    want = set()
    for line in hh_rows:
        row = json.loads(line)
        chosen, rejected = (split_transcript(row[k], k) for k in ("chosen", "rejected"))
        want.add(
            (
                _key({"prompt": chosen, "chosen": 0, "rejected": 0}),
                _key({"prompt": rejected, "chosen": 0, "rejected": 0}),
            )
        )
    assert got == want

    # And the export, imported again, is the same set of pairs.
    again = Project.objects.create(slug="again", name="Again")
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in exported))
    assert _import(again, path).comparisons_created == 1612
    assert {_key(r) for r in _export(again, tmp_path)} == {_key(r) for r in exported}


def test_trl_rows_come_back_as_they_went_in(project, tmp_path):
    rows = [
        {"prompt": f"Question {i}?", "chosen": f"Good answer {i}", "rejected": f"Bad answer {i}",
         "margin": float(i % 3) if i % 2 else None, "id": f"row-{i}"}
        for i in range(50)
    ]  # fmt: skip
    path = tmp_path / "trl.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(orjson.dumps(r) for r in rows)))
    _import(project, path)

    as_jsonl = _export(project, tmp_path)
    as_parquet = _export(project, tmp_path, "trl-parquet")

    assert sorted(as_jsonl, key=lambda r: r["id"]) == sorted(rows, key=lambda r: r["id"])
    assert as_parquet == as_jsonl


def test_export_leaves_out_unlabelled_ties_and_other_projects(project, other_project, tmp_path):
    path = tmp_path / "ranked.jsonl"
    path.write_text(
        json.dumps(
            {
                "prompt": "P",
                "responses": [
                    {"text": "a", "rank": 1},
                    {"text": "b", "rank": 1},
                    {"text": "c", "rank": 2},
                ],
            }
        )
        + "\n"
        + json.dumps({"prompt": "Q", "responses": ["x", "y"]})
        + "\n"
    )
    _import(project, path)
    _import(other_project, path)
    assert Comparison.objects.filter(project=project).count() == 4

    rows = list(export_rows(project=project))

    # a=b is a tie, x/y unlabelled: only a>c and b>c export.
    assert sorted((r["chosen"], r["rejected"]) for r in rows) == [("a", "c"), ("b", "c")]


def test_the_confidence_export_says_where_each_label_came_from(project, annotator, admin):
    import uuid

    from annotation.models import Judgement, LabelResolution
    from annotation.services.labels import comparison_labels_refresh
    from tests.factories import comparison_make, judgement_make

    human, ai, both, reviewed = (comparison_make(project) for _ in range(4))
    judgement_make(human, annotator, "a")
    for comparison in (ai, both):
        Judgement.objects.create(
            comparison=comparison,
            source_kind=Judgement.SourceKind.AI,
            source_name="ai:judge",
            choice="b",
            confidence=0.9,
            idempotency_key=uuid.uuid4().hex,
        )
    judgement_make(both, annotator, "a")
    judgement_make(reviewed, annotator, "a")
    comparison_labels_refresh(comparison_ids=[c.pk for c in (human, ai, both, reviewed)])
    LabelResolution.objects.create(
        comparison=reviewed, reviewer=admin, previous_label="a", label="b", note="checked"
    )
    Comparison.objects.filter(pk=reviewed.pk).update(label="b")

    rows = {r["id"]: r for r in export_rows(project=project, with_confidence=True)}
    assert {
        cid: rows[str(c.pk)]["label_source"] for cid, c in enumerate((human, ai, both, reviewed))
    } == {
        0: "human",
        1: "ai",
        2: "human",  # the AI judgement is kept but people decided the label
        3: "review",
    }
    assert "label_source" not in next(export_rows(project=project))
