"""Curation speed: the full noise-detector pass against cleanlab's pipeline on the same input.

Run from the repository root (no database: the input is in memory, as the worker holds it
once the project's vectors are loaded):

    .venv/bin/python bench/curation_bench.py [--pairs 100000] [--flip-rate 0.2]
                                             [--annotated 0.1] [--k 3] [--quick]

Input: --pairs synthetic 384-d pairs (prompt and two responses) whose labels come from a
hidden reward, as in bench/scoring_bench.py (about 15 % of labels go against it, as in
human data); then --flip-rate of the labels are flipped on purpose (the planted set the
detectors should find). --annotated of the pairs also carry --k individual judgements by
simulated annotators (reliable, careless and a few adversarial ones, drawn as in
eval_curation), as a project with overlap has; 0 leaves annotator reliability out.

Timed, one after the other in this process, with the project's defaults (5 folds, 5-member
MLP ensembles, the detectors' head config):

- cleanlab: the standard confident-learning pipeline on the same input: out-of-fold
  P(A better) from 5-fold ensembles of the same heads, then
  `cleanlab.filter.find_label_issues` on them (cleanlab's own defaults).
- curation: `curation.detectors.detectors_run` (every detector: out-of-fold ensemble
  strength, cleanlab on those probabilities, a second out-of-fold round, peer review with
  its curriculum, Dawid-Skene over the judgements, the combined detector).

Both include their out-of-fold training. Precision and recall of each flag set against
the planted flips are printed for reference (not a quality figure: the data is synthetic).

Last line: `curation_100k_s=T cleanlab_100k_s=C` (and `ratio=T/C`); target T <= 3 x C.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scoring_bench import load_line, synthetic_pairs  # noqa: E402 (bench/ is on the path now)


def bench_input(n: int, flip_rate: float, annotated: float, k: int, seed: int = 3):
    """(CurationInput, planted flips): synthetic pairs, canonical sides shuffled."""
    from curation.detectors import CurationInput
    from curation.evaluation import simulate_annotators

    p, chosen, rejected, _bayes = synthetic_pairs(n, seed=seed)
    rng = np.random.default_rng(seed)
    chosen_is_a = rng.random(n) < 0.5
    a = np.where(chosen_is_a[:, None], chosen, rejected)
    b = np.where(chosen_is_a[:, None], rejected, chosen)
    flipped = rng.random(n) < flip_rate
    label_a = chosen_is_a ^ flipped
    judgements = []
    if annotated > 0 and k > 0:
        items = np.flatnonzero(rng.random(n) < annotated)
        sub, _workers = simulate_annotators(chosen_is_a[items], k, rng)
        judgements = [(int(items[i]), w, c) for i, w, c in sub]
    lengths = rng.integers(20, 2000, size=(2, n)).astype(np.float32)
    data = CurationInput(
        ids=np.arange(n, dtype=np.int64),
        prompt=p,
        a=a,
        b=b,
        label_a=label_a,
        len_a=lengths[0],
        len_b=lengths[1],
        judgements=judgements,
    )
    return data, flipped


def cleanlab_pipeline(data, *, folds: int, members: int, seed: int) -> tuple[np.ndarray, float]:
    """Confident learning as one would run it: out-of-fold probabilities (eval_curation's,
    the detectors' heads), then find_label_issues. Returns the flags and the seconds
    find_label_issues took."""
    from cleanlab.filter import find_label_issues

    from curation.evaluation import _oof_model_p_a

    label_a = np.asarray(data.label_a, dtype=bool)
    p_a = _oof_model_p_a(
        data.prompt, data.a, data.b, label_a, folds=folds, members=members, seed=seed, epochs=None
    )
    probs = np.clip(np.stack([p_a, 1 - p_a], axis=1), 1e-6, 1 - 1e-6)
    started = time.perf_counter()
    flags = np.asarray(find_label_issues((~label_a).astype(int), probs), dtype=bool)
    return flags, time.perf_counter() - started


def _pr(flags: np.ndarray, truth: np.ndarray) -> str:
    hits = int((flags & truth).sum())
    precision = hits / max(int(flags.sum()), 1)
    recall = hits / max(int(truth.sum()), 1)
    return f"flagged {int(flags.sum()):,}, precision {precision:.3f}, recall {recall:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--flip-rate", type=float, default=0.2, help="labels flipped on purpose")
    parser.add_argument(
        "--annotated", type=float, default=0.1, help="share of pairs with individual judgements"
    )
    parser.add_argument("--k", type=int, default=3, help="judgements per annotated pair")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 5,000 pairs")
    args = parser.parse_args()
    if args.quick:
        args.pairs = 5_000
    if not 0 <= args.flip_rate < 0.5 or not 0 <= args.annotated <= 1:
        parser.error("--flip-rate must be in [0, 0.5) and --annotated in [0, 1]")

    import torch

    from scoring.train import PairArrays, TrainConfig, train_ensemble

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    # Warm-up (torch's first calls), so that neither timed side pays for it.
    warm = np.random.default_rng(0).standard_normal((3, 256, 384)).astype(np.float32)
    train_ensemble(TrainConfig(members=2, epochs=1, batch_size=64), PairArrays(*warm))
    data, flipped = bench_input(args.pairs, args.flip_rate, args.annotated, args.k)
    print(
        f"curation bench: {args.pairs:,} synthetic pairs, d={data.prompt.shape[1]}, "
        f"{int(flipped.sum()):,} labels flipped, {len(data.judgements):,} judgements; "
        f"{args.folds} folds, {args.members}-member ensembles; {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); {load_line()}"
    )

    from curation.detectors import detectors_run

    started, cpu = time.perf_counter(), time.process_time()
    cl_flags, issues_s = cleanlab_pipeline(
        data, folds=args.folds, members=args.members, seed=args.seed
    )
    cleanlab_s, cl_cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"[cleanlab] {cleanlab_s:.1f} s (CPU {cl_cpu:.1f} s): {args.folds} ensembles trained "
        f"in {cleanlab_s - issues_s:.1f} s, find_label_issues {issues_s:.1f} s; "
        f"{_pr(cl_flags, flipped)}; {load_line()}"
    )

    steps: list[tuple[float, int, int]] = []

    def progress(done: int, total: int) -> None:
        steps.append((time.perf_counter(), done, total))

    started, cpu = time.perf_counter(), time.process_time()
    results = detectors_run(
        data, folds=args.folds, members=args.members, seed=args.seed, progress=progress
    )
    curation_s, cur_cpu = time.perf_counter() - started, time.process_time() - cpu
    trained = steps[-1][0] - started if steps else 0.0
    print(
        f"[curation] {curation_s:.1f} s (CPU {cur_cpu:.1f} s): {len(steps)} ensembles trained "
        f"in {trained:.1f} s, the rest (cleanlab, Dawid-Skene, combined, reasons) "
        f"{curation_s - trained:.1f} s; {load_line()}"
    )
    for result in results:
        print(f"[curation]   {result.name}: {_pr(result.flagged, flipped)}")
    print(
        f"curation_100k_s={curation_s:.2f} cleanlab_100k_s={cleanlab_s:.2f} "
        f"ratio={curation_s / cleanlab_s:.2f}"
    )


if __name__ == "__main__":
    main()
