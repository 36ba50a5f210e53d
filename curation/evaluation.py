"""Evaluation of the noise detectors on a labelled file (``manage.py eval_curation``).

Plain Python, no Django (the command is a thin wrapper). Steps:

1. ``pairs_load(path)`` reads any import format (TRL, hh-rlhf, ranked; JSONL/CSV/Parquet) with
   ``annotation.formats.read_records``, keeps the labelled A/B pairs (ties and unlabelled
   pairs are skipped) and puts each pair's candidates in canonical order (by content hash,
   as the importer does), so "A better" is not always the file's first answer.
2. ``embeddings_for(pairs)`` embeds every distinct text with the bundled MiniLM and caches the
   vectors on disk under ``.local/cache/curation/`` keyed by the file's content hash and the
   encoder version, so repeated runs skip the (slow) embedding.
3. ``evaluate(...)`` flips a known random subset of the training labels at each rate, runs
   every detector (``curation.detectors.detectors_run``: the same features and folds for all,
   cleanlab included), scores them against the flipped set, and trains a reward model on the
   noisy labels, after each curation policy (drop flagged, flip flagged) and on the clean
   labels, measuring pairwise accuracy on a clean held-out split.
4. With ``annotators=K`` it simulates K annotators per pair and compares label aggregation
   (majority, Dawid-Skene, MACE, the combined method) against the file's labels.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from curation.detectors import DetectorResult

CACHE_DIR = Path(os.environ.get("CURATION_CACHE_DIR", ".local/cache/curation"))


@dataclass
class LoadedPairs:
    """Labelled pairs of a file, candidates in canonical order (a = smaller content hash)."""

    prompt_hash: list[str]
    a_hash: list[str]
    b_hash: list[str]
    label_a: np.ndarray  # (n,) bool: the file says A is better
    len_a: np.ndarray
    len_b: np.ndarray
    texts: dict[str, str]  # content hash -> text to embed
    skipped: int  # ties, unlabelled pairs, duplicates and invalid rows

    def __len__(self) -> int:
        return len(self.label_a)


def pairs_load(path: Path, fmt: str = "auto") -> LoadedPairs:
    """Read the labelled A/B pairs of ``path`` (any import format); raise ValueError if none."""
    from annotation import formats

    prompt_hash, a_hash, b_hash, label_a, len_a, len_b = [], [], [], [], [], []
    texts: dict[str, str] = {}
    seen: set[tuple[str, str, str]] = set()
    skipped = 0
    try:
        records = list(formats.read_records(Path(path), fmt, formats.Options()))
    except formats.FileError as exc:
        raise ValueError(f"{path}: {exc}") from None
    for _line, record, _fmt in records:
        if isinstance(record, formats.RowError):
            skipped += 1
            continue
        texts.setdefault(record.prompt.hash, record.prompt.text)
        for i, j, label in record.pairs:
            if label not in ("first", "second"):
                skipped += 1
                continue
            ci, cj = record.responses[i].content, record.responses[j].content
            first_is_a = ci.hash < cj.hash
            a, b = (ci, cj) if first_is_a else (cj, ci)
            key = (record.prompt.hash, a.hash, b.hash)
            if key in seen:
                skipped += 1
                continue
            seen.add(key)
            texts.setdefault(a.hash, a.text)
            texts.setdefault(b.hash, b.text)
            prompt_hash.append(record.prompt.hash)
            a_hash.append(a.hash)
            b_hash.append(b.hash)
            label_a.append((label == "first") == first_is_a)
            len_a.append(len(a.text))
            len_b.append(len(b.text))
    if not label_a:
        raise ValueError(f"{path}: no labelled A/B pairs (ties and unlabelled pairs are skipped)")
    return LoadedPairs(
        prompt_hash=prompt_hash,
        a_hash=a_hash,
        b_hash=b_hash,
        label_a=np.array(label_a, dtype=bool),
        len_a=np.array(len_a, dtype=np.float32),
        len_b=np.array(len_b, dtype=np.float32),
        texts=texts,
        skipped=skipped,
    )


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def embeddings_for(
    pairs: LoadedPairs,
    *,
    cache_key: str,
    encoder=None,
    cache_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prompt, a, b) float32 embeddings of every pair, cached under ``cache_dir``.

    ``cache_key`` names the input (the file's sha256); the encoder version is part of the cache
    file name, so a new model never reuses old vectors. Only texts missing from the cache are
    embedded.
    """
    if encoder is None:
        from scoring.encoders import encoder_for

        encoder = encoder_for("text")
    cache_dir = Path(cache_dir or CACHE_DIR)
    cache_dir.mkdir(parents=True, exist_ok=True)
    safe_version = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder.version)
    cache = cache_dir / f"{cache_key}-{safe_version}.npz"
    vectors: dict[str, np.ndarray] = {}
    if cache.exists():
        with np.load(cache, allow_pickle=False) as blob:
            vectors = dict(zip(blob["hashes"].tolist(), blob["vectors"], strict=True))
    missing = [h for h in pairs.texts if h not in vectors]
    if missing:
        started = time.perf_counter()
        if log:
            log(f"embedding {len(missing)} texts with {encoder.version} (cached afterwards)")
        # Longest first keeps batches of similar length (less padding).
        missing.sort(key=lambda h: len(pairs.texts[h]))
        out = encoder.encode([pairs.texts[h] for h in missing])
        vectors.update(zip(missing, out, strict=True))
        hashes = sorted(vectors)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, hashes=np.array(hashes), vectors=np.stack([vectors[h] for h in hashes]))
        os.replace(tmp, cache)
        if log:
            log(f"embedded in {time.perf_counter() - started:.1f} s -> {cache}")

    def stack(keys: list[str]) -> np.ndarray:
        return np.ascontiguousarray(np.stack([vectors[k] for k in keys]), dtype=np.float32)

    return stack(pairs.prompt_hash), stack(pairs.a_hash), stack(pairs.b_hash)


# ----------------------------------------------------------------------------- evaluation

POLICIES = ("drop", "flip")


def prf(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F1 of ``flagged`` against the true flipped set."""
    tp = float((flagged & truth).sum())
    precision = tp / flagged.sum() if flagged.sum() else 0.0
    recall = tp / truth.sum() if truth.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def rm_accuracy(
    prompt: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    train_idx: np.ndarray,
    train_label_a: np.ndarray,
    test_idx: np.ndarray,
    test_label_a: np.ndarray,
    *,
    members: int,
    seed: int,
    epochs: int | None,
) -> float:
    """Pairwise accuracy on the test rows of an ensemble trained on the given train labels."""
    import torch

    from curation.detectors import default_config
    from scoring.train import PairArrays, ensemble_rewards, train_ensemble

    la = np.asarray(train_label_a, dtype=bool)
    tp, ta, tb = prompt[train_idx], a[train_idx], b[train_idx]
    chosen = np.where(la[:, None], ta, tb)
    rejected = np.where(la[:, None], tb, ta)
    config = default_config(len(train_idx), members=members, seed=seed, epochs=epochs)
    ens = train_ensemble(config, PairArrays(tp, chosen, rejected)).ensemble
    p = torch.as_tensor(prompt[test_idx])
    diff = ensemble_rewards(ens, p, torch.as_tensor(a[test_idx])) - ensemble_rewards(
        ens, p, torch.as_tensor(b[test_idx])
    )
    p_a = torch.sigmoid(diff).mean(dim=0).numpy()
    return float(((p_a > 0.5) == np.asarray(test_label_a, dtype=bool)).mean())


@dataclass
class EvalOptions:
    flip_rates: tuple[float, ...] = (0.2, 0.4)
    seeds: int = 3
    seed_offset: int = 0
    folds: int = 5
    members: int = 5
    epochs: int | None = None
    rounds: int = 2
    peer_steps: int = 2
    test_fraction: float = 0.2
    annotators: int = 0
    # The policy whose accuracy is "acc_curated" in gap_recovered (fixed before the run).
    policy: str = "drop"


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _sd(values: list[float]) -> float:
    return float(np.std(values)) if len(values) > 1 else 0.0


OURS = ("ensemble_strength", "peer_review", "combined")


def simulate_annotators(
    truth_a: np.ndarray, k: int, rng: np.random.Generator, *, pool: int | None = None
) -> tuple[list[tuple[int, str, bool]], dict[str, tuple[str, float]]]:
    """K judgements per item from a worker pool: reliable, careless and a few adversarial.

    Pool (fixed shares): 60 % reliable (accuracy 0.75-0.95), 28 % careless (0.45-0.60, about a
    coin flip), 12 % adversarial (0.10-0.30: mostly inverted). Each item gets K distinct
    workers drawn uniformly. Returns the judgements and worker -> (kind, accuracy).
    """
    n = len(truth_a)
    size = pool or max(k + 1, min(40, max(10, n * k // 120)))
    kinds = []
    for i in range(size):
        share = i / size
        kinds.append("reliable" if share < 0.60 else "careless" if share < 0.88 else "adversarial")
    ranges = {"reliable": (0.75, 0.95), "careless": (0.45, 0.60), "adversarial": (0.10, 0.30)}
    workers = {}
    for i, kind in enumerate(kinds):
        lo, hi = ranges[kind]
        workers[f"{kind}-{i:02d}"] = (kind, float(rng.uniform(lo, hi)))
    names = list(workers)
    judgements = []
    for item in range(n):
        for w in rng.choice(len(names), size=min(k, len(names)), replace=False):
            name = names[int(w)]
            right = rng.random() < workers[name][1]
            judgements.append((item, name, bool(truth_a[item] if right else not truth_a[item])))
    return judgements, workers


def _oof_model_p_a(
    prompt, a, b, label_a, *, folds: int, members: int, seed: int, epochs: int | None
) -> np.ndarray:
    """Out-of-fold P(A better) of ensembles trained on ``label_a`` (no row scores itself)."""
    from curation.detectors import CurationInput, _sigmoid, _Trainer, fold_assign, oof_diffs

    n = len(label_a)
    data = CurationInput(
        ids=np.arange(n),
        prompt=prompt,
        a=a,
        b=b,
        label_a=label_a,
        len_a=np.zeros(n, np.float32),
        len_b=np.zeros(n, np.float32),
        judgements=[],
    )
    trainer = _Trainer(
        data, members=members, seed=seed, head="mlp", epochs=epochs, total=folds, progress=None
    )
    diff = oof_diffs(trainer, fold_assign(n, folds, seed + 11), np.asarray(label_a, bool))
    return _sigmoid(diff).mean(axis=0)


def annotators_evaluate(
    prompt, a, b, truth_a, *, k: int, seed: int, opts: EvalOptions
) -> dict[str, float]:
    """Accuracy against ``truth_a`` of each aggregation of K simulated annotators per pair."""
    from curation.reliability import labels_aggregate

    rng = np.random.default_rng(10_000 + seed)
    judgements, _workers = simulate_annotators(truth_a, k, rng)
    n = len(truth_a)
    out = {}
    for method in ("majority", "dawid_skene", "mace"):
        label, conf = labels_aggregate(judgements, n, method=method)
        correct = (label == truth_a).astype(float)
        correct[conf <= 0.5] = 0.5  # a tie is a coin flip
        out[method] = float(correct.mean())
    # Combined: reliability (Dawid-Skene) plus an out-of-fold model trained on the DS labels.
    ds_label, _ = labels_aggregate(judgements, n, method="dawid_skene")
    model_p_a = _oof_model_p_a(
        prompt,
        a,
        b,
        ds_label,
        folds=opts.folds,
        members=opts.members,
        seed=seed,
        epochs=opts.epochs,
    )
    label, _ = labels_aggregate(judgements, n, method="combined", model_p_a=model_p_a)
    out["combined"] = float((label == truth_a).mean())
    return out


# The flagged sets each curation policy is measured with, besides the noisy labels.
CURATED_BY = ("combined", "cleanlab")


@dataclass
class _Pairs:
    """The arrays ``evaluate`` was given (``label_a`` as bool)."""

    prompt: np.ndarray
    a: np.ndarray
    b: np.ndarray
    label_a: np.ndarray
    len_a: np.ndarray
    len_b: np.ndarray


@dataclass
class _Split:
    """One seed's split into training rows and clean held-out rows."""

    seed: int
    train_idx: np.ndarray
    test_idx: np.ndarray
    clean: np.ndarray  # the file's labels of the training rows
    test_label: np.ndarray  # the file's labels of the held-out rows


@dataclass
class _RateRun:
    """One flip rate on one split: what was flipped, what the detectors said, and the held-out
    accuracy of a reward model trained on the noisy and on each curated set of labels."""

    flip: np.ndarray  # (len(train_idx),) bool
    results: list[DetectorResult]
    took: float  # seconds the detectors ran
    accuracy: dict[str, float]  # "noisy labels", "combined: drop flagged", ...


@dataclass
class _Progress:
    """Counts the models trained so far and reports ``(done, total)`` after each."""

    total: int
    report: Callable[[int, int], None] | None
    done: int = 0

    def add(self, models: int = 1) -> None:
        self.done += models
        if self.report is not None:
            self.report(self.done, self.total)

    def nested(self) -> Callable[[int, int], None]:
        """A ``progress`` for a step that counts its own models from zero (detectors_run)."""
        base = self.done

        def step(done: int, _total: int) -> None:
            self.done = base + done
            if self.report is not None:
                self.report(self.done, self.total)

        return step


def _models_per_seed(opts: EvalOptions) -> int:
    """Models one seed trains: the oracle; per flip rate the detectors', one on the noisy
    labels and one per curation policy; the annotator part's out-of-fold models."""
    detectors = opts.folds * opts.rounds + 2 * (opts.peer_steps + 1)
    per_rate = detectors + 1 + len(CURATED_BY) * len(POLICIES)
    return 1 + len(opts.flip_rates) * per_rate + (opts.folds if opts.annotators else 0)


def _split_draw(
    rng: np.random.Generator, label_a: np.ndarray, *, seed: int, test_fraction: float
) -> _Split:
    n = len(label_a)
    perm = rng.permutation(n)
    n_test = max(1, int(round(test_fraction * n)))
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return _Split(
        seed=seed,
        train_idx=train_idx,
        test_idx=test_idx,
        clean=label_a[train_idx],
        test_label=label_a[test_idx],
    )


def _rm_accuracy_on(
    pairs: _Pairs,
    split: _Split,
    labels: np.ndarray,
    opts: EvalOptions,
    keep: np.ndarray | None = None,
) -> float:
    """Held-out accuracy of a reward model trained on ``labels`` of the split's training rows
    (only the ``keep`` ones when given)."""
    idx = split.train_idx if keep is None else split.train_idx[keep]
    lab = labels if keep is None else labels[keep]
    return rm_accuracy(
        pairs.prompt,
        pairs.a,
        pairs.b,
        idx,
        lab,
        split.test_idx,
        split.test_label,
        members=opts.members,
        seed=split.seed,
        epochs=opts.epochs,
    )


def _detectors_on(
    pairs: _Pairs,
    split: _Split,
    noisy: np.ndarray,
    opts: EvalOptions,
    progress: Callable[[int, int], None],
) -> list[DetectorResult]:
    """Every detector on the training rows with the noisy labels (no judgements)."""
    from curation.detectors import CurationInput, detectors_run

    train_idx = split.train_idx
    return detectors_run(
        CurationInput(
            ids=train_idx.astype(np.int64),
            prompt=pairs.prompt[train_idx],
            a=pairs.a[train_idx],
            b=pairs.b[train_idx],
            label_a=noisy,
            len_a=pairs.len_a[train_idx],
            len_b=pairs.len_b[train_idx],
            judgements=[],
        ),
        folds=opts.folds,
        members=opts.members,
        seed=split.seed,
        epochs=opts.epochs,
        rounds=opts.rounds,
        peer_steps=opts.peer_steps,
        progress=progress,
    )


def _curated_accuracies(
    pairs: _Pairs,
    split: _Split,
    noisy: np.ndarray,
    results: list[DetectorResult],
    opts: EvalOptions,
    progress: _Progress,
) -> dict[str, float]:
    """Held-out accuracy trained on the noisy labels, then after each policy of each detector
    in ``CURATED_BY`` (the order of the report's rows)."""
    accuracy = {"noisy labels": _rm_accuracy_on(pairs, split, noisy, opts)}
    progress.add()
    by_name = {r.name: r for r in results}
    for name in CURATED_BY:
        flagged = by_name[name].flagged
        accuracy[f"{name}: drop flagged"] = _rm_accuracy_on(pairs, split, noisy, opts, ~flagged)
        progress.add()
        accuracy[f"{name}: flip flagged"] = _rm_accuracy_on(pairs, split, noisy ^ flagged, opts)
        progress.add()
    return accuracy


def _rate_run(
    pairs: _Pairs,
    split: _Split,
    rate: float,
    rng: np.random.Generator,
    opts: EvalOptions,
    progress: _Progress,
) -> _RateRun:
    """Flip ``rate`` of the training labels (drawn from the seed's ``rng``), detect, curate."""
    n_train = len(split.train_idx)
    flip = np.zeros(n_train, dtype=bool)
    flip[rng.choice(n_train, size=int(round(rate * n_train)), replace=False)] = True
    noisy = split.clean ^ flip
    started = time.perf_counter()
    results = _detectors_on(pairs, split, noisy, opts, progress.nested())
    took = time.perf_counter() - started
    accuracy = _curated_accuracies(pairs, split, noisy, results, opts, progress)
    return _RateRun(flip=flip, results=results, took=took, accuracy=accuracy)


def _rate_record(raw: dict, rate: float, run: _RateRun, oracle: float) -> None:
    det = raw["detection"].setdefault(rate, {})
    for r in run.results:
        if r.name == "annotator_reliability":
            continue  # no judgements in this part
        p, rc, f1 = prf(r.flagged, run.flip)
        det.setdefault(r.name, []).append(
            {"precision": p, "recall": rc, "f1": f1, "flagged": int(r.flagged.sum())}
        )
    rm = raw["rm"].setdefault(rate, {})
    rm.setdefault("oracle (clean labels)", []).append(oracle)
    for name, value in run.accuracy.items():
        rm.setdefault(name, []).append(value)


def _rate_line(seed: int, rate: float, run: _RateRun, oracle: float) -> str:
    f1s = {r.name: prf(r.flagged, run.flip)[2] for r in run.results}
    acc = run.accuracy
    return (
        f"seed {seed} rate {rate}: detectors {run.took:.0f} s; F1 "
        + " ".join(f"{k}={v:.3f}" for k, v in f1s.items())
        + f"; acc noisy={acc['noisy labels']:.3f} oracle={oracle:.3f} "
        + f"drop={acc['combined: drop flagged']:.3f} "
        + f"flip={acc['combined: flip flagged']:.3f}"
    )


def evaluate(
    prompt: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    label_a: np.ndarray,
    len_a: np.ndarray,
    len_b: np.ndarray,
    opts: EvalOptions,
    *,
    log: Callable[[str], None] = lambda s: None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run the whole evaluation; returns per-seed raw figures and the summary (see ``report``).

    ``progress(done, total)`` is called after each model trained (the detectors', the reward
    models' and the annotator part's); ``done`` ends at ``total``.
    """
    n = len(label_a)
    pairs = _Pairs(prompt, a, b, np.asarray(label_a, dtype=bool), len_a, len_b)
    raw: dict = {"detection": {}, "rm": {}, "annotators": [], "n": n}
    counter = _Progress(total=opts.seeds * _models_per_seed(opts), report=progress)
    for s in range(opts.seed_offset, opts.seed_offset + opts.seeds):
        # One generator per seed draws the split, then each rate's flips, in this order.
        rng = np.random.default_rng(s)
        split = _split_draw(rng, pairs.label_a, seed=s, test_fraction=opts.test_fraction)
        oracle = _rm_accuracy_on(pairs, split, split.clean, opts)
        counter.add()
        for rate in opts.flip_rates:
            run = _rate_run(pairs, split, rate, rng, opts, counter)
            _rate_record(raw, rate, run, oracle)
            log(_rate_line(s, rate, run, oracle))
        if opts.annotators:
            agg = annotators_evaluate(
                prompt, a, b, pairs.label_a, k=opts.annotators, seed=s, opts=opts
            )
            counter.add(opts.folds)
            raw["annotators"].append(agg)
            log(f"seed {s} annotators: " + " ".join(f"{k}={v:.3f}" for k, v in agg.items()))
    return raw


# ----------------------------------------------------------------------------- report


@dataclass
class _Section:
    """Markdown lines of one part of the report and the figures it adds to the last line."""

    lines: list[str]
    summary: dict[str, float]


def _detection_section(rate: float, det: dict, opts: EvalOptions) -> _Section:
    pct = int(round(rate * 100))
    lines = [
        f"### Flip rate {pct} % ({opts.seeds} seeds, mean ± sd)",
        "",
        "| detector | flagged | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, rows in det.items():
        cells = [f"{_mean([r['flagged'] for r in rows]):.0f}"]
        for key in ("precision", "recall", "f1"):
            vals = [r[key] for r in rows]
            cells.append(f"{_mean(vals):.3f} ± {_sd(vals):.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    f1 = {name: _mean([r["f1"] for r in rows]) for name, rows in det.items()}
    best = max(OURS, key=lambda k: f1.get(k, -1))
    lines.append(
        f"Best of ours: {best} (F1 {f1[best]:.3f}); cleanlab {f1['cleanlab']:.3f}. "
        f"Reference: flagging every pair scores F1 {2 * rate / (1 + rate):.3f}."
    )
    lines.append("")
    return _Section(lines, {f"f1_best_{pct}": f1[best], f"f1_cleanlab_{pct}": f1["cleanlab"]})


def _rm_section(rate: float, rm: dict, opts: EvalOptions) -> _Section:
    pct = int(round(rate * 100))
    lines = ["| reward model trained on | held-out accuracy (clean labels) |", "|---|---:|"]
    for name, vals in rm.items():
        lines.append(f"| {name} | {_mean(vals):.3f} ± {_sd(vals):.3f} |")
    noisy, oracle = _mean(rm["noisy labels"]), _mean(rm["oracle (clean labels)"])
    curated = _mean(rm[f"combined: {opts.policy} flagged"])
    gap = (curated - noisy) / (oracle - noisy) if oracle != noisy else float("nan")
    lines.append("")
    lines.append(
        f"Gap recovered (combined, {opts.policy} flagged; from seed-mean accuracies): {gap:.3f}"
    )
    lines.append("")
    return _Section(lines, {f"gap_recovered_{pct}": gap})


def _annotators_section(rows: list[dict[str, float]], opts: EvalOptions) -> _Section:
    lines = [
        f"### Aggregating {opts.annotators} simulated annotators per pair",
        "",
        "| method | accuracy vs the file's label |",
        "|---|---:|",
    ]
    summary = {}
    for method in rows[0]:
        vals = [r[method] for r in rows]
        lines.append(f"| {method} | {_mean(vals):.3f} ± {_sd(vals):.3f} |")
        summary[f"agg_{method}"] = _mean(vals)
    lines.append("")
    return _Section(lines, summary)


def _last_line(summary: dict[str, float], annotators: bool) -> str:
    keys = ("f1_best_20", "f1_cleanlab_20", "f1_best_40", "f1_cleanlab_40", "gap_recovered_40")
    last = " ".join(f"{key}={summary.get(key, float('nan')):.4f}" for key in keys)
    if annotators:
        best = max(summary[f"agg_{m}"] for m in ("dawid_skene", "mace", "combined"))
        last += f" agg_acc_majority={summary['agg_majority']:.4f} agg_acc_best={best:.4f}"
    return last


def report(raw: dict, opts: EvalOptions) -> tuple[list[str], str]:
    """The table (markdown lines) and the last line of ``eval_curation``."""
    sections = []
    for rate, det in raw["detection"].items():
        sections.append(_detection_section(rate, det, opts))
        sections.append(_rm_section(rate, raw["rm"][rate], opts))
    if raw["annotators"]:
        sections.append(_annotators_section(raw["annotators"], opts))
    lines: list[str] = []
    summary: dict[str, float] = {}
    for section in sections:
        lines += section.lines
        summary.update(section.summary)
    return lines, _last_line(summary, bool(raw["annotators"]))
