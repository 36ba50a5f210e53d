"""Importing into PostgreSQL: shapes, containers, deduplication, and bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from annotation.models import (
    Candidate,
    Comparison,
    Judgement,
    Project,
    Prompt,
    Ranking,
)
from annotation.services.importing import ImportRejected, pairs_import

pytestmark = pytest.mark.django_db

TRL = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "id": "q1"},
    {"prompt": "What is 2+2?", "chosen": "Four.", "rejected": "5", "id": "q2", "margin": 2.0},
    {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Lyon", "id": "q3"},
]


def _write(path: Path, rows: list, gz: bool = False) -> Path:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _counts() -> dict[str, int]:
    return {
        m.__name__: m.objects.count()
        for m in (Prompt, Candidate, Comparison, Judgement, Ranking, Project)
    }


def _import(project, path: Path, **kw):
    return pairs_import(project=project, path=path, source_name=f"import:{path.name}", **kw)


def test_trl_import_stores_pairs_labels_and_sources(project, tmp_path):
    result = _import(project, _write(tmp_path / "trl.jsonl", TRL))

    assert (result.comparisons_created, result.prompts_created, result.candidates_created) == (
        3,
        2,
        5,
    )
    assert result.message.startswith("imported 3 comparisons (2 prompts, 5 candidates) in ")
    assert Comparison.objects.filter(project=project, status="labelled").count() == 3
    judgement = Judgement.objects.get(comparison__external_id="q2")
    assert (judgement.source_kind, judgement.source_name) == ("import", "import:trl.jsonl")
    assert judgement.margin == 2.0
    comparison = judgement.comparison
    chosen = comparison.candidate_a if comparison.label == "a" else comparison.candidate_b
    assert chosen.text == "Four."
    assert comparison.label_margin == 2.0


def test_reimporting_the_same_file_creates_nothing(project, tmp_path):
    path = _write(tmp_path / "trl.jsonl", TRL)
    _import(project, path)
    before = _counts()

    again = _import(project, path)

    assert _counts() == before
    assert again.message == "nothing new: all 3 comparisons in the file were already imported"


def test_same_pair_in_reverse_order_is_one_comparison(project, tmp_path):
    _import(project, _write(tmp_path / "a.jsonl", TRL[:1]))
    flipped = [{"prompt": "What is 2+2?", "chosen": "5", "rejected": "4"}]

    result = _import(project, _write(tmp_path / "b.jsonl", flipped))

    assert result.comparisons_created == 0
    assert result.judgements_created == 1
    comparison = Comparison.objects.get()
    assert sorted(comparison.judgements.values_list("choice", flat=True)) == ["a", "b"]
    # Two sources disagree, equally weighted: no label until someone settles it.
    assert comparison.label is None
    assert comparison.status == "disputed"


def test_gzip_csv_and_parquet_hold_the_same_data(project, other_project, tmp_path):
    _import(project, _write(tmp_path / "trl.jsonl.gz", TRL, gz=True))
    csv_path = tmp_path / "trl.csv"
    csv_path.write_text(
        "id,prompt,chosen,rejected\n"
        + "".join(f"{r['id']},{r['prompt']},{r['chosen']},{r['rejected']}\n" for r in TRL)
    )
    _import(other_project, csv_path)
    parquet_path = tmp_path / "trl.parquet"
    pq.write_table(
        pa.Table.from_pylist([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in TRL]),
        parquet_path,
    )
    third = Project.objects.create(slug="gamma", name="Gamma")
    _import(third, parquet_path)

    for p in (project, other_project, third):
        assert Comparison.objects.filter(project=p, label__isnull=False).count() == 3


def test_hh_rlhf_sample_imports_every_pair(project, hh_sample):
    result = _import(project, hh_sample)

    assert result.format == "hh-rlhf"
    assert result.comparisons_created == 1612
    assert (
        Judgement.objects.filter(source_name="import:hh-rlhf-harmless-sample.jsonl.gz").count()
        == 1612
    )
    # The prompts are conversations; answers are the last assistant turns.
    prompt = Prompt.objects.filter(project=project).first()
    assert prompt.messages[0]["role"] == "user"


def test_ranked_import_makes_a_ranking_and_unlabelled_pairs_go_to_the_pool(project, tmp_path):
    rows = [
        {
            "prompt": "Rank these",
            "responses": [{"text": t, "rank": r} for t, r in [("a", 1), ("b", 2), ("c", 3)]],
        },
        {"prompt": "No ranks", "responses": ["x", "y", "z", "w"]},
    ]

    result = _import(project, _write(tmp_path / "ranked.jsonl", rows))

    assert result.format == "ranked"
    assert Ranking.objects.filter(project=project).count() == 2
    assert Ranking.objects.get(prompt__text="No ranks").candidates.count() == 4
    assert Comparison.objects.filter(project=project, status="labelled").count() == 3
    assert Comparison.objects.filter(project=project, status="pending", label=None).count() == 6
    assert Judgement.objects.count() == 3


# ---------------------------------------------------------------- bad input changes nothing


def _rejected(project, path: Path, **kw) -> list[str]:
    before = _counts()
    with pytest.raises(ImportRejected) as info:
        _import(project, path, **kw)
    assert _counts() == before, "a failed import must change nothing"
    return info.value.errors


@pytest.fixture
def seeded(project, tmp_path):
    """A project with data already in it: a failed import must leave that untouched."""
    _import(project, _write(tmp_path / "seed.jsonl", TRL))
    return project


def test_malformed_json_names_the_line(seeded, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps(TRL[0])
        + "\n{not json\n"
        + json.dumps({"prompt": "n", "chosen": "a", "rejected": "b"})
        + "\n"
    )
    errors = _rejected(seeded, path)
    assert len(errors) == 1
    assert errors[0].startswith("line 2: malformed JSON")


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"prompt": "p", "rejected": "r"}, "line 2, field 'chosen': is missing or empty"),
        ({"prompt": "p", "chosen": "  ", "rejected": "r"}, "line 2, field 'chosen': is empty"),
        ({"prompt": ["x"], "chosen": "c", "rejected": "r"}, "line 2, field 'prompt[0]'"),
        (
            {"prompt": "p", "chosen": 3, "rejected": "r"},
            "line 2, field 'chosen': must be a string, got int",
        ),
        (
            {"prompt": "p", "chosen": "c", "rejected": "c"},
            "line 2, field 'rejected': chosen and rejected are identical",
        ),
    ],
)
def test_bad_rows_name_the_line_and_field(seeded, tmp_path, row, expected):
    path = _write(tmp_path / "bad.jsonl", [{"prompt": "new", "chosen": "a", "rejected": "b"}, row])
    errors = _rejected(seeded, path)
    assert errors[0].startswith(expected)


def test_undecodable_text_names_the_line(seeded, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        json.dumps(TRL[0]).encode() + b'\n{"prompt": "\xff\xfe", "chosen": "a", "rejected": "b"}\n'
    )
    assert _rejected(seeded, path)[0].startswith("line 2: not valid UTF-8")


def test_line_over_the_size_cap_names_the_line(seeded, tmp_path):
    big = {"prompt": "p", "chosen": "x" * 5000, "rejected": "y"}
    path = _write(tmp_path / "big.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}, big])
    with override_settings(IMPORT_MAX_LINE_BYTES=1000):
        errors = _rejected(seeded, path)
    assert errors[0].startswith("line 2: line is 5,")
    assert "over the 1,000 cap" in errors[0]


def test_corrupt_gzip_is_reported(seeded, tmp_path):
    good = gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in TRL * 2000))
    path = tmp_path / "broken.jsonl.gz"
    path.write_bytes(good[: len(good) // 2])
    errors = _rejected(seeded, path)
    assert "not a valid gzip file or is truncated" in errors[-1]


def test_corrupt_parquet_is_reported(seeded, tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1" + b"\x00garbage" * 100)
    errors = _rejected(seeded, path)
    assert "not a valid Parquet file" in errors[-1]


def test_unknown_format_is_reported(seeded, tmp_path):
    errors = _rejected(seeded, _write(tmp_path / "odd.jsonl", [{"question": "q", "answer": "a"}]))
    assert errors[-1].startswith("line 1: unknown format")
    errors = _rejected(seeded, tmp_path / "odd.jsonl", fmt="xml")
    assert "unknown format 'xml'" in errors[-1]
    (tmp_path / "data.txt").write_text("hello")
    assert "unknown file type" in _rejected(seeded, tmp_path / "data.txt")[-1]


def test_errors_are_capped_at_100_then_counted(seeded, tmp_path):
    rows = [{"prompt": "p", "chosen": "same", "rejected": "same"}] * 250
    errors = _rejected(seeded, _write(tmp_path / "many.jsonl", rows))
    assert len(errors) == 101
    assert errors[0].startswith("line 1,")
    assert errors[99].startswith("line 100,")
    assert errors[100] == "... and 150 more"


def test_import_command_prints_summary_and_errors(tmp_path, capsys):
    path = _write(tmp_path / "trl.jsonl", TRL)
    call_command("import_pairs", str(path), project="cli", create=True)
    assert capsys.readouterr().out.startswith(
        "imported 3 comparisons (2 prompts, 5 candidates) in "
    )

    bad = _write(tmp_path / "bad.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "c"}])
    before = _counts()
    with pytest.raises(CommandError, match="1 bad row"):
        call_command("import_pairs", str(bad), project="cli")
    assert "line 1, field 'rejected'" in capsys.readouterr().err
    assert _counts() == before

    with pytest.raises(CommandError, match="add --create"):
        call_command("import_pairs", str(path), project="missing")
    assert not Project.objects.filter(slug="missing").exists()


def test_an_empty_file_is_refused(seeded, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    assert _rejected(seeded, tmp_path / "empty.jsonl") == ["the file holds no rows"]


def test_nul_characters_are_refused_with_their_place(seeded, tmp_path):
    path = tmp_path / "nul.csv"
    path.write_text("prompt,chosen,rejected\nfine,a,b\nq,\x00x,y\n")
    errors = _rejected(seeded, path)
    assert errors == [
        "line 3, field 'chosen': contains a NUL character (\\u0000), which cannot be stored"
    ]
