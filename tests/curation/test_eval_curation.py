"""eval_curation end to end on tiny generated files (real MiniLM embeddings, tiny models)."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from curation.evaluation import (
    EvalOptions,
    embeddings_for,
    evaluate,
    file_digest,
    pairs_load,
    simulate_annotators,
)

TOPICS = ["cooking pasta", "fixing a bike", "learning python", "growing tomatoes", "saving money"]
LAST_LINE = re.compile(
    r"^f1_best_20=[0-9.]+ f1_cleanlab_20=[0-9.]+ f1_best_40=[0-9.]+ f1_cleanlab_40=[0-9.]+ "
    r"gap_recovered_40=(-?[0-9.]+|nan) agg_acc_majority=[0-9.]+ agg_acc_best=[0-9.]+$"
)


def _trl_file(path: Path, n: int = 30) -> Path:
    """A helpful answer is always better than a rude one: an easy, learnable preference."""
    rows = [
        {
            "prompt": f"How do I get better at {TOPICS[i % 5]}? (question {i})",
            "chosen": f"Good question! Three practical steps for {TOPICS[i % 5]}, example {i}.",
            "rejected": f"No idea. Stop asking me things {i}.",
        }
        for i in range(n)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_eval_curation_prints_the_table_and_the_last_line(tmp_path: Path):
    path = _trl_file(tmp_path / "tiny.jsonl")
    out, err = StringIO(), StringIO()
    cache = tmp_path / "cache"
    call_command(
        "eval_curation",
        str(path),
        "--quick",
        "--flip-rates",
        "0.2,0.4",
        "--simulate-annotators",
        "3",
        "--cache-dir",
        str(cache),
        stdout=out,
        stderr=err,
    )
    lines = out.getvalue().strip().splitlines()
    assert LAST_LINE.match(lines[-1]), lines[-1]
    text = out.getvalue()
    for heading in ("Flip rate 20 %", "Flip rate 40 %", "Aggregating 3 simulated annotators"):
        assert heading in text
    for row in ("| cleanlab |", "| peer_review |", "| ensemble_strength |"):
        assert text.count(row) == 2  # one detection table per flip rate
    assert text.count("| combined |") == 3  # and the aggregation table's combined method
    for row in ("| noisy labels |", "| oracle (clean labels) |", "| combined: drop flagged |"):
        assert row in text
    # The easy preference is learnt: at 20 % flips the detectors find most flips.
    values = dict(kv.split("=") for kv in lines[-1].split())
    assert float(values["f1_best_20"]) >= 0.6
    # The embeddings were cached under the file's content hash; a second read embeds nothing.
    cached = list(cache.glob(f"{file_digest(path)}-*.npz"))
    assert len(cached) == 1
    logged = []
    pairs = pairs_load(path)
    first = embeddings_for(pairs, cache_key=file_digest(path), cache_dir=cache, log=logged.append)
    assert logged == []
    assert first[0].shape == (30, 384)
    assert first[1].dtype == np.float32


def test_pairs_load_reads_hh_and_ranked_files_in_canonical_order(tmp_path: Path):
    hh = tmp_path / "hh.jsonl"
    hh.write_text(
        json.dumps(
            {
                "chosen": "\n\nHuman: Hi there\n\nAssistant: Hello, how can I help?",
                "rejected": "\n\nHuman: Hi there\n\nAssistant: Go away.",
            }
        )
        + "\n"
    )
    pairs = pairs_load(hh)
    assert len(pairs) == 1
    # Side A is the candidate with the smaller content hash, and the label follows it.
    texts = pairs.texts
    assert texts[pairs.a_hash[0]] in ("Hello, how can I help?", "Go away.")
    assert pairs.label_a[0] == (texts[pairs.a_hash[0]] == "Hello, how can I help?")
    assert pairs.len_a[0] == len(texts[pairs.a_hash[0]])

    ranked = tmp_path / "ranked.jsonl"
    ranked.write_text(
        json.dumps(
            {
                "prompt": "Name a colour",
                "responses": [
                    {"text": "Blue", "rank": 1},
                    {"text": "Green", "rank": 1},
                    {"text": "Table", "rank": 3},
                ],
            }
        )
        + "\n"
    )
    pairs = pairs_load(ranked)
    # Three pairs, one a tie (skipped): two labelled pairs, both prefer the colour.
    assert len(pairs) == 2
    assert pairs.skipped == 1
    for i in range(2):
        better = pairs.a_hash[i] if pairs.label_a[i] else pairs.b_hash[i]
        assert pairs.texts[better] in ("Blue", "Green")


def test_bad_input_is_refused_with_a_clear_error(tmp_path: Path):
    with pytest.raises(CommandError, match="no such file"):
        call_command("eval_curation", str(tmp_path / "missing.jsonl"))
    path = _trl_file(tmp_path / "tiny.jsonl")
    with pytest.raises(CommandError, match="flip-rates"):
        call_command("eval_curation", str(path), "--flip-rates", "0.2,abc")
    with pytest.raises(CommandError, match="between 0 and 0.5"):
        call_command("eval_curation", str(path), "--flip-rates", "0.7")
    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_text(json.dumps({"prompt": "p", "responses": ["x", "y"]}) + "\n")
    with pytest.raises(CommandError, match="no labelled A/B pairs"):
        call_command("eval_curation", str(unlabelled))
    few = _trl_file(tmp_path / "few.jsonl", n=5)
    with pytest.raises(CommandError, match="too few"):
        call_command("eval_curation", str(few), "--quick")


def test_simulated_annotators_mix_reliable_careless_and_adversarial():
    rng = np.random.default_rng(0)
    truth = rng.random(400) < 0.5
    judgements, workers = simulate_annotators(truth, 3, rng)
    assert len(judgements) == 1200
    kinds = [kind for kind, _ in workers.values()]
    assert kinds.count("reliable") > kinds.count("careless") > kinds.count("adversarial") > 0
    # Each item has three distinct workers; an adversary is mostly wrong.
    per_item = {}
    for item, worker, _ in judgements:
        per_item.setdefault(item, set()).add(worker)
    assert all(len(w) == 3 for w in per_item.values())
    wrong = [chose != truth[item] for item, w, chose in judgements if w.startswith("adversarial")]
    assert np.mean(wrong) > 0.6


def test_evaluate_reports_progress_up_to_the_total():
    rng = np.random.default_rng(0)
    n, d = 40, 8
    w = rng.normal(size=d)
    prompt, a, b = (rng.normal(size=(n, d)).astype(np.float32) for _ in range(3))
    lengths = rng.integers(50, 500, size=(2, n)).astype(np.float32)
    opts = EvalOptions(flip_rates=(0.2, 0.4), seeds=2, folds=3, members=2, epochs=2)
    opts.peer_steps, opts.annotators = 1, 3
    calls = []
    raw = evaluate(
        prompt, a, b, (a - b) @ w > 0, lengths[0], lengths[1], opts,
        progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    assert len(raw["rm"][0.4]["noisy labels"]) == 2
    assert calls
    done = [c[0] for c in calls]
    assert done == sorted(done)
    assert {c[1] for c in calls} == {calls[-1][1]}
    assert done[-1] == calls[-1][1]
    # Counted in models: per seed the oracle, per rate 10 detector models and 5 reward models,
    # and 3 out-of-fold models for the annotators.
    assert calls[-1][1] == 2 * (1 + 2 * (10 + 5) + 3)
