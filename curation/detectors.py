"""Noise detectors for preference labels: which pairs are probably mislabelled. No Django.

Plain numpy / torch / cleanlab / crowd-kit; the reward heads come from ``scoring.train``
(called, never changed). The product calls one function:

``detectors_run(data: CurationInput, *, folds=5, members=5, seed=0, progress=None,
                epochs=None, rounds=2, peer_steps=2, head="mlp") -> list[DetectorResult]``

It returns one ``DetectorResult`` per detector, in this order (every array has one entry per
row of ``data``):

- ``ensemble_strength`` (Secrets of RLHF II): K-fold out-of-fold ensembles (no model scores a
  pair it trained on); per pair the mean and spread over members of the reward difference
  ``r(chosen) - r(rejected)`` where "chosen" is the side the current label prefers. Score =
  ``1 - mean_m sigmoid(diff_m)``; flagged when every member prefers the other side and the
  mean is more negative than one spread.
- ``cleanlab``: ``cleanlab.filter.find_label_issues`` on the same out-of-fold probabilities
  (classes "A better" / "B better"); score = 1 - cleanlab's self-confidence label quality.
- ``peer_review`` (Two Minds Better Than One / CRM-style co-teaching): two ensembles trained
  on the two halves of the folds; each ranks the *other* half by loss, keeps its small-loss
  pairs, and the other model is retrained on only those (a curriculum: the kept share goes from
  100 % down to ``1 - noise estimate`` over ``peer_steps`` steps). A pair is flagged when both
  models reject it (its loss is in the top noise-estimate share under each). Score = the mean
  of the two models' P(label wrong).
- ``annotator_reliability``: Dawid-Skene (crowd-kit) over the individual judgements; score =
  posterior probability that the current label is wrong; flagged above 0.5. Rows without
  judgements score 0 and are never flagged.
- ``combined`` (calibrated): a logistic model over label-relative evidence (second-round
  out-of-fold ensemble margin after dropping the first round's likely-wrong pairs from
  training, the first-round margin and spread, the peer models' margins, the length ratio, the
  Dawid-Skene evidence) fitted on *injected* noise: every row is also presented with its label
  flipped, the model learns flipped vs as-given on one half of the rows and scores the other
  half (cross-fitting). Its odds are then moved from the 50 % injection prior to the data's
  noise rate estimated by cleanlab's confident joint on the combined probabilities, so the
  score reads as P(label wrong). Flagged: the top-k rows where k maximises the expected F1
  under those probabilities (rows under 5 % never). With a weak model (about 0.6 accuracy,
  as on hh-rlhf with MiniLM) that is most of the rows: threshold the score instead.
  ``docs/curation.md`` explains the design and the measured figures.

``DetectorResult.reasons`` are short plain sentences, e.g. "P(label wrong) 0.81: 5 of 5
models prefer B (mean margin -1.80, spread 0.30); both peer models reject it; annotators 1-2
(A-B)".

Training uses ``scoring.train.train_ensemble`` with a ``TrainConfig`` (MLP heads by default,
``members`` per ensemble, epochs scaled to the data size unless given). ``progress(done,
total)`` is called after each model trained. Deterministic for a given ``seed`` on the CPU.
Raises ValueError on inconsistent shapes or fewer than ``2 * folds`` rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from scoring.train import PairArrays, TrainConfig, ensemble_rewards, train_ensemble

DETECTOR_NAMES = (
    "ensemble_strength",
    "cleanlab",
    "peer_review",
    "annotator_reliability",
    "combined",
)
_EPS = 1e-6


@dataclass
class CurationInput:
    ids: np.ndarray  # (n,) int64 comparison ids
    prompt: np.ndarray  # (n, d_p) float32 prompt embeddings
    a: np.ndarray  # (n, d) float32 embedding of candidate a (canonical side; media: d != d_p)
    b: np.ndarray  # (n, d) float32 embedding of candidate b
    label_a: np.ndarray  # (n,) bool: the current label is "A better"
    len_a: np.ndarray  # (n,) float32 character lengths
    len_b: np.ndarray
    # (row index, worker id, chose A) for every individual judgement; may be empty.
    judgements: list[tuple[int, str, bool]]
    margin: np.ndarray | None = None  # (n,) label margin/strength if any (used in reasons)

    def __len__(self) -> int:
        return len(self.label_a)

    def validate(self) -> None:
        n = len(self.label_a)
        problems = []
        if self.prompt.ndim != 2:
            problems.append(f"prompt must be (n, d), got {self.prompt.shape}")
        if len(self.prompt) != n:
            problems.append(f"prompt is {self.prompt.shape} for {n} rows")
        for name in ("a", "b"):
            if getattr(self, name).shape != self.a.shape or len(getattr(self, name)) != n:
                problems.append(f"{name} is {getattr(self, name).shape} for {n} rows")
        for name in ("ids", "len_a", "len_b"):
            if len(getattr(self, name)) != n:
                problems.append(f"{name} has {len(getattr(self, name))} entries for {n} rows")
        if self.margin is not None and len(self.margin) != n:
            problems.append(f"margin has {len(self.margin)} entries for {n} rows")
        for j in self.judgements:
            if not 0 <= int(j[0]) < n:
                problems.append(f"a judgement names row {j[0]} outside 0..{n - 1}")
                break
        for name in ("prompt", "a", "b"):
            if not np.isfinite(getattr(self, name)).all():
                problems.append(f"{name} holds NaN or infinite values")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class DetectorResult:
    name: str
    score: np.ndarray  # (n,) in [0, 1], higher = more likely mislabelled
    flagged: np.ndarray  # (n,) bool
    reasons: list[str]


# ----------------------------------------------------------------------------- helpers


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def default_config(
    n_train: int,
    *,
    members: int,
    seed: int,
    head: str = "mlp",
    epochs: int | None = None,
    hidden: int = 64,
) -> TrainConfig:
    """Heads for detection: about 100 optimiser steps whatever the size (4 to 60 epochs).

    Batches of a quarter of the data (64 to 1024 pairs) and a 64-unit MLP: on the 1,612 real
    hh-rlhf pairs this reaches the same out-of-fold accuracy as 256 units and 3x the steps
    (0.62) at a third of the time, and the detectors train 16 ensembles per run.
    """
    batch = int(min(1024, max(64, n_train // 4)))
    if epochs is None:
        epochs = int(min(60, max(4, math.ceil(100 * batch / max(n_train, 1)))))
    return TrainConfig(
        head=head,
        members=members,
        epochs=epochs,
        batch_size=batch,
        hidden=hidden,
        seed=seed,
        progress_every=10_000,
    )


class _Trainer:
    """Trains ensembles on chosen/rejected views and reports progress per model."""

    def __init__(
        self,
        data: CurationInput,
        *,
        members: int,
        seed: int,
        head: str,
        epochs: int | None,
        total: int,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.prompt = torch.as_tensor(np.asarray(data.prompt, dtype=np.float32))
        self.a = torch.as_tensor(np.asarray(data.a, dtype=np.float32))
        self.b = torch.as_tensor(np.asarray(data.b, dtype=np.float32))
        self.members, self.seed, self.head, self.epochs = members, seed, head, epochs
        self.total, self.done, self.progress = total, 0, progress
        self.calls = 0

    def fit(self, index: np.ndarray, label_a: np.ndarray):
        """An ensemble trained on rows ``index`` with labels ``label_a[index]``."""
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        la = torch.as_tensor(np.asarray(label_a, dtype=bool))[idx]
        a, b = self.a[idx], self.b[idx]
        chosen = torch.where(la[:, None], a, b)
        rejected = torch.where(la[:, None], b, a)
        self.calls += 1
        config = default_config(
            len(index),
            members=self.members,
            seed=self.seed * 1000 + self.calls,
            head=self.head,
            epochs=self.epochs,
        )
        result = train_ensemble(config, PairArrays(self.prompt[idx], chosen, rejected))
        self.done += 1
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total)
        return result.ensemble

    def diff_a(self, ensemble, index: np.ndarray) -> np.ndarray:
        """(M, len(index)) member reward differences r(a) - r(b)."""
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        p = self.prompt[idx]
        d = ensemble_rewards(ensemble, p, self.a[idx]) - ensemble_rewards(ensemble, p, self.b[idx])
        return d.numpy().astype(np.float64)


def fold_assign(n: int, folds: int, seed: int) -> np.ndarray:
    """Random balanced fold id per row (0..folds-1)."""
    rng = np.random.default_rng(seed)
    out = np.empty(n, dtype=np.int64)
    out[rng.permutation(n)] = np.arange(n) % folds
    return out


def oof_diffs(
    trainer: _Trainer, fold: np.ndarray, label_a: np.ndarray, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Out-of-fold member differences r(a) - r(b), (M, n); ``exclude`` rows are not trained on."""
    n = len(fold)
    out = np.zeros((trainer.members, n))
    for k in np.unique(fold):
        train = (fold != k) if exclude is None else ((fold != k) & ~exclude)
        held = np.flatnonzero(fold == k)
        model = trainer.fit(np.flatnonzero(train), label_a)
        out[:, held] = trainer.diff_a(model, held)
    return out


def noise_rate_estimate(label_a: np.ndarray, p_a: np.ndarray) -> float:
    """Share of wrong labels from cleanlab's confident joint, clipped to [0.02, 0.45]."""
    from cleanlab.count import estimate_joint

    labels = (~label_a).astype(int)
    probs = np.stack([p_a, 1 - p_a], axis=1)
    if len(np.unique(labels)) < 2:
        return 0.02
    joint = estimate_joint(labels, probs)
    return float(np.clip(joint[0, 1] + joint[1, 0], 0.02, 0.45))


def top_k_expected_f1(prob_wrong: np.ndarray, *, floor: float = 0.05) -> np.ndarray:
    """Flag the top-k rows by P(wrong) where k maximises the expected F1 (sum-ratio form).

    Rows below ``floor`` are never flagged (when every row is almost surely right, the
    expected F1 is near 0 whatever k, and flagging them all would be absurd).
    """
    n = len(prob_wrong)
    if n == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(-prob_wrong, kind="stable")
    order = order[prob_wrong[order] >= floor]
    if len(order) == 0:
        return np.zeros(n, dtype=bool)
    hits = np.cumsum(prob_wrong[order])
    k = np.arange(1, len(order) + 1)
    ef1 = 2 * hits / (k + prob_wrong.sum())
    best = int(np.argmax(ef1)) + 1
    flagged = np.zeros(n, dtype=bool)
    if ef1[best - 1] > 0:
        flagged[order[:best]] = True
    return flagged


def _side(label_a: bool) -> str:
    return "A" if label_a else "B"


# ----------------------------------------------------------------------------- detectors


@dataclass
class _Context:
    """What every step shares: the input, its labels, the trainer and the folds."""

    data: CurationInput
    label_a: np.ndarray  # (n,) bool
    sign: np.ndarray  # (n,) +1 where the label is A, -1 where it is B
    trainer: _Trainer
    fold: np.ndarray  # (n,) fold id per row
    members: int
    seed: int

    @property
    def n(self) -> int:
        return len(self.label_a)


@dataclass
class _RoundOne:
    """The first out-of-fold round, which ensemble_strength and cleanlab both read."""

    diff_a: np.ndarray  # (M, n) member differences r(a) - r(b)
    p_a: np.ndarray  # (n,) mean P(A better) over members
    p_label: np.ndarray  # (n,) mean P(the current label is right)


@dataclass
class _PeerVerdict:
    p_wrong_peer: np.ndarray  # (n,) P(label wrong) by the model that did not train on the row
    p_wrong_own: np.ndarray  # (n,) P(label wrong) by the model that did
    reject: np.ndarray  # (n,) bool: both models reject the label


@dataclass
class _AnnotatorEvidence:
    log_odds: np.ndarray  # (n,) Dawid-Skene log-odds that A is better (0 without votes)
    has_votes: np.ndarray  # (n,) bool
    votes_a: np.ndarray  # (n,) judgements for A
    votes: np.ndarray  # (n,) judgements


def _context(
    data: CurationInput,
    *,
    folds: int,
    members: int,
    seed: int,
    progress: Callable[[int, int], None] | None,
    epochs: int | None,
    rounds: int,
    peer_steps: int,
    head: str,
) -> _Context:
    """Validate the input and the options; the trainer counts every model the run will train."""
    data.validate()
    n = len(data)
    if folds < 2:
        raise ValueError("folds must be at least 2")
    if n < 2 * folds:
        raise ValueError(f"{n} labelled pairs are too few for {folds} folds")
    if rounds < 1 or peer_steps < 1:
        raise ValueError("rounds and peer_steps must be at least 1")
    label_a = np.asarray(data.label_a, dtype=bool)
    total = folds * rounds + 2 * (peer_steps + 1)
    trainer = _Trainer(
        data, members=members, seed=seed, head=head, epochs=epochs, total=total, progress=progress
    )
    return _Context(
        data=data,
        label_a=label_a,
        sign=np.where(label_a, 1.0, -1.0),
        trainer=trainer,
        fold=fold_assign(n, folds, seed),
        members=members,
        seed=seed,
    )


def _round_one(ctx: _Context) -> _RoundOne:
    """Out-of-fold ensembles on the labels as given."""
    diff_a = oof_diffs(ctx.trainer, ctx.fold, ctx.label_a)
    p_a = _sigmoid(diff_a).mean(axis=0)
    return _RoundOne(diff_a=diff_a, p_a=p_a, p_label=np.where(ctx.label_a, p_a, 1 - p_a))


def _ensemble_strength(ctx: _Context, first: _RoundOne) -> DetectorResult:
    """Flagged when every member prefers the other side by more than one spread."""
    strength = ctx.sign * first.diff_a  # (M, n): positive = the model agrees with the label
    s_mean, s_std = strength.mean(axis=0), strength.std(axis=0)
    against = (strength < 0).sum(axis=0)
    return DetectorResult(
        "ensemble_strength",
        np.clip(1 - first.p_label, 0, 1),
        (against == ctx.members) & (s_mean < -s_std),
        [
            f"{against[i]} of {ctx.members} models prefer {_side(not ctx.label_a[i])} "
            f"(mean margin {s_mean[i]:+.2f}, spread {s_std[i]:.2f})"
            for i in range(ctx.n)
        ],
    )


def _cleanlab(ctx: _Context, first: _RoundOne) -> DetectorResult:
    """cleanlab on the first round's out-of-fold probabilities."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = (~ctx.label_a).astype(int)  # class 0 = "A better", 1 = "B better"
    probs = np.clip(np.stack([first.p_a, 1 - first.p_a], axis=1), _EPS, 1 - _EPS)
    if len(np.unique(labels)) == 2:
        # n_jobs=1: cleanlab's default multiprocessing pool never returns inside a Celery
        # worker process (seen stuck in SemLock.acquire); one process is fast enough here.
        flag = find_label_issues(labels, probs, n_jobs=1)
        score = 1 - get_label_quality_scores(labels, probs)
    else:  # cleanlab needs both classes present
        flag = np.zeros(ctx.n, dtype=bool)
        score = 1 - first.p_label
    return DetectorResult(
        "cleanlab",
        np.clip(score, 0, 1),
        np.asarray(flag, dtype=bool),
        [
            f"confident learning: P(label {_side(ctx.label_a[i])}) = {first.p_label[i]:.2f}"
            + (" is below its class threshold" if flag[i] else "")
            for i in range(ctx.n)
        ],
    )


def _later_rounds(ctx: _Context, first: _RoundOne, *, rounds: int, rate: float) -> np.ndarray:
    """(M, n) out-of-fold differences of the last round; each round after the first retrains
    without the previous round's ``rate`` least likely labels."""
    diff_r = first.diff_a
    for _ in range(rounds - 1):
        p_label = np.where(ctx.label_a, _sigmoid(diff_r).mean(0), 1 - _sigmoid(diff_r).mean(0))
        cut = np.quantile(p_label, rate)
        diff_r = oof_diffs(ctx.trainer, ctx.fold, ctx.label_a, exclude=p_label <= cut)
    return diff_r


def _peer_review(ctx: _Context, *, rate: float, steps: int) -> _PeerVerdict:
    """Co-teaching on two halves of the folds; see the module docstring."""
    trainer, fold, label_a, sign = ctx.trainer, ctx.fold, ctx.label_a, ctx.sign
    folds = int(fold.max()) + 1
    half = (fold % 2 == 0) if folds > 1 else (np.arange(len(fold)) % 2 == 0)
    halves = [np.flatnonzero(half), np.flatnonzero(~half)]
    keep = [h.copy() for h in halves]
    models = [None, None]
    for step in range(steps + 1):
        models = [trainer.fit(keep[0], label_a), trainer.fit(keep[1], label_a)]
        if step == steps:
            break
        # Curriculum: the kept share shrinks linearly from 1 towards 1 - rate.
        share = 1.0 - rate * (step + 1) / steps
        for i in (0, 1):
            other = halves[1 - i]
            # Model i reviews the other half; the other model retrains on what model i keeps.
            margin = sign[other] * trainer.diff_a(models[i], other).mean(axis=0)
            n_keep = max(1, int(round(share * len(other))))
            keep[1 - i] = other[np.argsort(-margin, kind="stable")[:n_keep]]
    n = len(fold)
    p_wrong_peer = np.zeros(n)
    p_wrong_own = np.zeros(n)
    for i in (0, 1):
        own, other = halves[i], halves[1 - i]
        p_wrong_peer[other] = 1 - _sigmoid(sign[other] * trainer.diff_a(models[i], other)).mean(0)
        p_wrong_own[own] = 1 - _sigmoid(sign[own] * trainer.diff_a(models[i], own)).mean(0)
    reject = np.zeros(n, dtype=bool)
    for h in halves:
        peer_reject = p_wrong_peer[h] >= np.quantile(p_wrong_peer[h], 1 - rate)
        own_reject = p_wrong_own[h] >= np.quantile(p_wrong_own[h], 1 - rate)
        reject[h] = peer_reject & own_reject
    return _PeerVerdict(p_wrong_peer=p_wrong_peer, p_wrong_own=p_wrong_own, reject=reject)


def _peer_review_result(peer: _PeerVerdict) -> DetectorResult:
    return DetectorResult(
        "peer_review",
        np.clip((peer.p_wrong_peer + peer.p_wrong_own) / 2, 0, 1),
        peer.reject,
        [
            ("both peer models reject the label" if peer.reject[i] else "peer models")
            + f" (P(label wrong) {peer.p_wrong_peer[i]:.2f} by the peer,"
            + f" {peer.p_wrong_own[i]:.2f} by its own model)"
            for i in range(len(peer.reject))
        ],
    )


def _annotator_evidence(data: CurationInput) -> _AnnotatorEvidence:
    """Vote counts per row and the Dawid-Skene log-odds of A (0 for rows without votes)."""
    n = len(data)
    votes_a = np.zeros(n, dtype=np.int64)
    votes = np.zeros(n, dtype=np.int64)
    for item, _, chose_a in data.judgements:
        votes[int(item)] += 1
        votes_a[int(item)] += int(bool(chose_a))
    has = votes > 0
    log_odds = np.zeros(n)
    if data.judgements:
        from curation.reliability import labels_aggregate

        label, conf = labels_aggregate(data.judgements, n, method="combined")
        p_a = np.where(label, conf, 1 - conf)
        log_odds = np.where(has, np.clip(_logit(p_a), -8, 8), 0.0)
    return _AnnotatorEvidence(log_odds=log_odds, has_votes=has, votes_a=votes_a, votes=votes)


def _annotator_reliability(ctx: _Context, evidence: _AnnotatorEvidence) -> DetectorResult:
    """P(label wrong) from the judgements alone; rows without judgements score 0."""
    has_votes, votes_a, votes = evidence.has_votes, evidence.votes_a, evidence.votes
    wrong = np.where(has_votes, 1 - _sigmoid(ctx.sign * evidence.log_odds), 0.0)
    reasons = []
    for i in range(ctx.n):
        if not has_votes[i]:
            reasons.append("no individual judgements")
            continue
        split = f"{votes_a[i]} for A, {votes[i] - votes_a[i]} for B"
        reasons.append(
            f"annotators {split}; weighted by reliability P(label wrong) = {wrong[i]:.2f}"
        )
    return DetectorResult(
        "annotator_reliability", np.clip(wrong, 0, 1), has_votes & (wrong > 0.5), reasons
    )


def _combined_features(
    ctx: _Context,
    first: _RoundOne,
    diff_r: np.ndarray,
    peer: _PeerVerdict,
    evidence: _AnnotatorEvidence,
) -> np.ndarray:
    """(n, f) out-of-fold evidence that A is better, one column per source."""
    data = ctx.data
    log_len = np.log1p(np.asarray(data.len_a, dtype=np.float64)) - np.log1p(
        np.asarray(data.len_b, dtype=np.float64)
    )
    m2 = diff_r.mean(axis=0)
    peer_a = np.where(ctx.label_a, 1 - peer.p_wrong_peer, peer.p_wrong_peer)  # peer's P(A)
    feats = [
        m2,
        first.diff_a.mean(axis=0),
        np.sign(m2) * diff_r.std(axis=0) * -1.0,  # confident disagreement is evidence
        _logit(np.clip(peer_a, 0.01, 0.99)),
        log_len,
    ]
    if evidence.has_votes.any():
        feats.append(evidence.log_odds)
    return np.stack(feats, axis=1)


def _injected_flips_p_wrong(features_a: np.ndarray, label_a: np.ndarray, seed: int) -> np.ndarray:
    """P(label wrong) at a 50 % prior from label-relative features, fitted on injected flips.

    ``features_a``: (n, f) evidence that A is better, each column independent of the row's own
    label (out-of-fold). Each row appears twice: as labelled (target 0) and flipped (target 1);
    a logistic regression learns on one half of the rows and scores the other (cross-fit).
    """
    from sklearn.linear_model import LogisticRegression

    n = len(label_a)
    # A constant column carries no evidence about A vs B; oriented by the label it would only
    # encode the label balance (with every label "A" it would separate the injected flips
    # perfectly), so it is left out.
    varying = features_a.std(axis=0) > 1e-9
    if not varying.any():
        return np.full(n, 0.5)
    sign = np.where(label_a, 1.0, -1.0)[:, None]
    x = features_a[:, varying] * sign  # evidence for the current label
    scale = x.std(axis=0) + _EPS
    x = x / scale
    rng = np.random.default_rng(seed + 7)
    part = rng.permutation(n) % 2
    out = np.zeros(n)
    for k in (0, 1):
        fit, held = part != k, part == k
        xs = np.concatenate([x[fit], -x[fit]])
        ys = np.concatenate([np.zeros(fit.sum()), np.ones(fit.sum())])
        model = LogisticRegression(C=1.0, fit_intercept=False, max_iter=1000)
        model.fit(xs, ys)
        out[held] = model.predict_proba(x[held])[:, 1]
    return out


def _combined(
    ctx: _Context,
    features_a: np.ndarray,
    peer: _PeerVerdict,
    evidence: _AnnotatorEvidence,
    strength_reasons: list[str],
) -> DetectorResult:
    """The injected-flip fit moved to the data's estimated noise rate; top-k expected F1."""
    label_a = ctx.label_a
    p_wrong_50 = _injected_flips_p_wrong(features_a, label_a, ctx.seed)
    # Back to P(A better) for the noise-rate estimate, then to P(wrong) at that rate.
    p_a_comb = np.where(label_a, 1 - p_wrong_50, p_wrong_50)
    rate = noise_rate_estimate(label_a, p_a_comb)
    odds = _logit(p_wrong_50) + math.log(rate / (1 - rate))
    p_wrong = _sigmoid(odds)
    margin = ctx.data.margin
    reasons = []
    for i in range(ctx.n):
        parts = [strength_reasons[i]]
        if peer.reject[i]:
            parts.append("both peer models reject it")
        if evidence.has_votes[i]:
            votes_a, votes = evidence.votes_a[i], evidence.votes[i]
            parts.append(f"annotators {votes_a}-{votes - votes_a} (A-B)")
        if margin is not None and np.isfinite(margin[i]):
            parts.append(f"label margin {float(margin[i]):.2f}")
        reasons.append(f"P(label wrong) {p_wrong[i]:.2f}: " + "; ".join(parts))
    return DetectorResult("combined", np.clip(p_wrong, 0, 1), top_k_expected_f1(p_wrong), reasons)


def detectors_run(
    data: CurationInput,
    *,
    folds: int = 5,
    members: int = 5,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    epochs: int | None = None,
    rounds: int = 2,
    peer_steps: int = 2,
    head: str = "mlp",
) -> list[DetectorResult]:
    """Run every detector on ``data``; see the module docstring. Order: ``DETECTOR_NAMES``.

    The steps run in this order because the trainer seeds each model by its call count: a
    different order would train different models.
    """
    ctx = _context(
        data,
        folds=folds,
        members=members,
        seed=seed,
        progress=progress,
        epochs=epochs,
        rounds=rounds,
        peer_steps=peer_steps,
        head=head,
    )
    first = _round_one(ctx)
    strength = _ensemble_strength(ctx, first)
    cleanlab = _cleanlab(ctx, first)
    rate = noise_rate_estimate(ctx.label_a, first.p_a)
    diff_r = _later_rounds(ctx, first, rounds=rounds, rate=rate)
    peer = _peer_review(ctx, rate=rate, steps=peer_steps)
    evidence = _annotator_evidence(data)
    annotators = _annotator_reliability(ctx, evidence)
    features_a = _combined_features(ctx, first, diff_r, peer, evidence)
    combined = _combined(ctx, features_a, peer, evidence, strength.reasons)
    return [strength, cleanlab, _peer_review_result(peer), annotators, combined]
