"""simulate_routing --quick on a tiny generated TRL file."""

from __future__ import annotations

import re

import numpy as np
import orjson
import pytest
from django.core.management import CommandError, call_command

import curation.evaluation
from curation.routing.simulation import SimConfig, SimData, simulate

TOPICS = ["bread", "tea", "bikes", "taxes", "python", "gardens", "chess", "jazz", "rain", "maps"]
KEYS = ("acc_hyper_30", "acc_uncertainty_30", "acc_random_30", "acc_all_ai", "acc_all_human")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One embedding cache for the module: the file is embedded once, then read back."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def trl_file(tmp_path, monkeypatch, cache_dir):
    monkeypatch.setattr(curation.evaluation, "CACHE_DIR", cache_dir)
    rows = []
    for i in range(60):
        topic = TOPICS[i % len(TOPICS)]
        rows.append(
            {
                "prompt": f"Tell me about {topic} ({i})",
                "chosen": f"Gladly! {topic} is lovely; here is a kind, detailed answer {i}.",
                "rejected": f"No. {topic}? Figure it out yourself ({i}).",
            }
        )
    path = tmp_path / "tiny.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    return path


def test_simulate_routing_quick_prints_the_table_and_the_last_line(trl_file, capsys, cache_dir):
    call_command(
        "simulate_routing", str(trl_file), "--quick", "--seeds", "1", "--budgets", "0.3",
        "--human-noise", "0.1",
    )  # fmt: skip
    out = capsys.readouterr().out.strip().splitlines()
    assert "| policy | budget |" in "\n".join(out)
    assert any(line.startswith("| gain | 30% |") for line in out)
    last = out[-1]
    assert re.fullmatch(" ".join(rf"{k}=(0(\.\d+)?|1(\.0+)?)" for k in KEYS), last), last
    values = dict(pair.split("=") for pair in last.split())
    assert set(values) == set(KEYS)
    assert all(0.0 <= float(v) <= 1.0 for v in values.values())
    # The embeddings were cached under the (patched) cache folder, keyed by the file hash.
    assert list(cache_dir.glob("*.npz"))


def test_simulate_routing_refuses_bad_arguments(trl_file):
    with pytest.raises(CommandError, match="--budgets"):
        call_command("simulate_routing", str(trl_file), "--budgets", "0.3,lots")
    with pytest.raises(CommandError, match="no such file"):
        call_command("simulate_routing", str(trl_file) + ".missing")
    with pytest.raises(CommandError, match="--llm-base-url"):
        call_command("simulate_routing", str(trl_file), "--ai-judge", "llm")


def test_simulate_routing_with_a_remote_llm_judge(trl_file, capsys):
    """The judges app's remote judge against a real local HTTP server (one that prefers the
    longer answer: on this file always the chosen one, so every AI label is right)."""
    from tests.judges.llm_server import LLMServer

    with LLMServer() as server:
        call_command(
            "simulate_routing", str(trl_file), "--quick", "--seeds", "1", "--budgets", "0.3",
            "--ai-judge", "llm", "--llm-base-url", server.base_url,
        )  # fmt: skip
        asked = len(server.requests)
    out = capsys.readouterr().out.strip().splitlines()
    assert any("remote LLM judge:" in line and "0 failed" in line for line in out)
    assert asked >= 2 * 48  # every pool pair, in both orders
    all_ai = next(line for line in out if line.startswith("| all_ai |"))
    assert "| 1.000 |" in all_ai  # the AI-label accuracy column
    assert out[-1].startswith("acc_hyper_30=")


def test_simulate_reports_progress_after_every_run():
    rng = np.random.default_rng(0)
    n, d = 60, 8
    w = rng.normal(size=d)
    prompt, a, b = (rng.normal(size=(n, d)).astype(np.float32) for _ in range(3))
    lengths = rng.integers(50, 500, size=(2, n)).astype(np.float32)
    data = SimData(prompt, a, b, (a - b) @ w > 0, lengths[0], lengths[1])
    calls = []
    results = simulate(
        data,
        SimConfig(budgets=(0.3, 0.5), seeds=2, human_noise=0.1, quick=True),
        progress=lambda done, total: calls.append((done, total)),
    )
    # Per seed: all_human, all_ai, and per budget human_only and the three policies.
    assert len(results) == 2 * (2 + 2 * 4)
    assert calls == [(i, len(results)) for i in range(1, len(results) + 1)]
