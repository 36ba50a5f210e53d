"""Routing simulation on a labelled file (``manage.py simulate_routing``). No Django.

The file's labels are the human answers (optionally flipped at ``human_noise``); a clean
held-out split (20 %, drawn per seed, never used for any choice) measures the result.
Per seed and budget b (a fraction of the pool, the 80 % that is not held out):

1. A random seed set of ``seed_fraction`` of the pool (at most the budget) gets human labels;
   it counts against the budget.
2. The AI judge: by default the reward-model judge, a heads ensemble trained on the seed set
   (``reward_model_verdicts`` of the judges app turns its P(A>B) and spread into choice and
   confidence); with ``--ai-judge local-llm`` the bundled SmolLM2 judge of the judges app
   (both orders, one forward pass each). The ensemble trained on the seed set gives the
   spread for the uncertainty policy in every case.
3. The gain predictor learns "human differs from AI" on the seed set, from out-of-fold AI
   verdicts (5-fold cross-fitting, so it never sees a judge that trained on the pair).
4. Each policy of ``curation.routing.policies`` gives the remaining budget to humans; the
   other pool pairs take the AI label of step 2 (as in the product, where AI labels are
   written when the pairs are routed).
5. A reward model (heads ensemble, the same config for every policy) trains on the resulting
   labels and is scored on the held-out split.

all_human labels the whole pool by hand (budget 100 %); all_ai labels only the seed set by
hand and the rest with the AI judge. human_only (for the reading, not a policy) trains on the
random policy's human labels alone, without any AI label: it shows what the AI labels add.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from curation.routing import policies

if TYPE_CHECKING:
    from scoring.train import TrainConfig

HELD_OUT = 0.2
SEED_FRACTION = 0.1
MIN_SEED = 20
CROSS_FIT_FOLDS = 5

Log = Callable[[str], None]


@dataclass
class SimData:
    """A file's labelled pairs as arrays (A/B in canonical order)."""

    prompt: np.ndarray
    a: np.ndarray
    b: np.ndarray
    label_a: np.ndarray  # the file's answer: A better
    len_a: np.ndarray
    len_b: np.ndarray
    texts: list[tuple[str, str, str]] = field(default_factory=list)  # prompt, a, b

    def __len__(self) -> int:
        return len(self.label_a)


@dataclass
class SimConfig:
    budgets: tuple[float, ...] = (0.1, 0.3, 0.5)
    seeds: int = 3
    human_noise: float = 0.0
    ai_judge: str = "reward-model"  # reward-model | local-llm | llm
    llm_base_url: str = ""
    llm_model: str = ""
    quick: bool = False
    seed_fraction: float = SEED_FRACTION

    def train_config(self, seed: int):
        from scoring.train import TrainConfig

        if self.quick:
            return TrainConfig(head="mlp", members=2, epochs=5, batch_size=64, hidden=32, seed=seed)
        # A linear ensemble as in docs/scoring.md's hh-rlhf bench (0.630 held-out with all
        # labels, the MLP 0.621): as good there, and ~100x cheaper to train the ~20 models a
        # seed needs on a 2-core CPU.
        return TrainConfig(head="linear", members=5, epochs=30, batch_size=256, seed=seed)


def data_load(path: Path, *, log: Log | None = None, limit: int | None = None) -> SimData:
    """Read and embed ``path`` with curation.evaluation's loader and its on-disk cache
    (.local/cache/curation, keyed by the file's sha256 and the encoder version)."""
    from curation.evaluation import embeddings_for, file_digest, pairs_load

    pairs = pairs_load(Path(path))
    prompt, a, b = embeddings_for(pairs, cache_key=file_digest(Path(path)), log=log)
    texts = [
        (pairs.texts[p], pairs.texts[x], pairs.texts[y])
        for p, x, y in zip(pairs.prompt_hash, pairs.a_hash, pairs.b_hash, strict=True)
    ]
    data = SimData(prompt, a, b, pairs.label_a, pairs.len_a, pairs.len_b, texts)
    if limit is not None and limit < len(data):
        keep = np.arange(limit)
        data = SimData(
            prompt[keep], a[keep], b[keep], pairs.label_a[keep], pairs.len_a[keep],
            pairs.len_b[keep], texts[:limit],
        )  # fmt: skip
    return data


# ---------------------------------------------------------------- reward models


def _pair_arrays(data: SimData, idx: np.ndarray, label_a: np.ndarray):
    from scoring.train import PairArrays

    a_wins = np.asarray(label_a, dtype=bool)[:, None]
    return PairArrays(
        prompt=data.prompt[idx],
        chosen=np.where(a_wins, data.a[idx], data.b[idx]),
        rejected=np.where(a_wins, data.b[idx], data.a[idx]),
    )


def rm_train(data: SimData, idx: np.ndarray, label_a: np.ndarray, config):
    from scoring.train import train_ensemble

    return train_ensemble(config, _pair_arrays(data, idx, label_a)).ensemble


def rm_score(ensemble, data: SimData, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scoring.train import ensemble_score

    if len(idx) == 0:
        return np.zeros(0), np.zeros(0)
    p, s = ensemble_score(ensemble, data.prompt[idx], data.a[idx], data.b[idx])
    return p.astype(np.float64), s.astype(np.float64)


def rm_accuracy(ensemble, data: SimData, idx: np.ndarray) -> float:
    """Held-out pairwise accuracy against the file's (clean) labels."""
    p, _ = rm_score(ensemble, data, idx)
    return float(((p > 0.5) == data.label_a[idx]).mean())


# ---------------------------------------------------------------- AI judges


@dataclass
class Verdicts:
    choice_a: np.ndarray
    confidence: np.ndarray
    orders_agree: np.ndarray
    ok: np.ndarray | None = None  # False: the judge failed (never a label); None: all ok

    def __post_init__(self) -> None:
        if self.ok is None:
            self.ok = np.ones(len(self.choice_a), dtype=bool)


def rm_verdicts(p_a: np.ndarray, spread: np.ndarray) -> Verdicts:
    from curation.judges.verdicts import reward_model_verdicts

    choice_a, confidence = reward_model_verdicts(p_a, spread)
    return Verdicts(np.asarray(choice_a, bool), np.asarray(confidence), np.ones(len(p_a), bool))


def llm_verdicts_remote(
    data: SimData, idx: np.ndarray, config: SimConfig, *, log: Log | None = None
) -> Verdicts:
    """The judges app's remote judge (any OpenAI-compatible endpoint), both orders; a pair
    whose answer failed after the retries gets no AI label."""
    from curation.judges.remote import RemoteJudge, pairs_ask
    from curation.judges.verdicts import orders_combine

    judge = RemoteJudge(base_url=config.llm_base_url, model=config.llm_model or "default")
    started = time.perf_counter()
    answers = pairs_ask(judge, [data.texts[i] for i in idx])
    ok = np.array([a.ok for a in answers], dtype=bool)
    p_ab = np.array([a.p_a_ab if a.ok else 0.5 for a in answers])
    p_ba = np.array([a.p_a_ba if a.ok else 0.5 for a in answers])
    if log:
        log(
            f"remote LLM judge: {len(idx)} pairs x 2 orders in "
            f"{time.perf_counter() - started:.0f} s, {int((~ok).sum())} failed"
        )
    _, choice_a, confidence, agree = orders_combine(p_ab, p_ba)
    confidence = np.where(ok, confidence, 0.0)
    return Verdicts(np.asarray(choice_a, bool), confidence, np.asarray(agree, bool), ok)


def llm_verdicts_local(data: SimData, idx: np.ndarray, *, log: Log | None = None) -> Verdicts:
    """The judges app's SmolLM2 judge, asked in both orders (its code, not a second one)."""
    from curation.judges import llm
    from curation.judges.verdicts import LOCAL_MAX_CHARS, judge_messages, orders_combine

    model = llm.model_get("cpu")
    ab, ba = [], []
    for i in idx:
        prompt, a, b = data.texts[i]
        # Cut as the product's local judge cuts them (its default max_chars).
        ab.append(judge_messages(prompt=prompt, first=a, second=b, max_chars=LOCAL_MAX_CHARS))
        ba.append(judge_messages(prompt=prompt, first=b, second=a, max_chars=LOCAL_MAX_CHARS))
    started = time.perf_counter()
    p_ab = model.p_first(ab)
    p_ba = 1.0 - model.p_first(ba)
    if log:
        log(
            f"local LLM judge: {len(idx)} pairs x 2 orders in {time.perf_counter() - started:.0f} s"
        )
    _, choice_a, confidence, agree = orders_combine(p_ab, p_ba)
    return Verdicts(np.asarray(choice_a, bool), np.asarray(confidence), np.asarray(agree, bool))


# ---------------------------------------------------------------- one run


@dataclass
class RunResult:
    policy: str
    budget: float | None
    seed: int
    accuracy: float
    human_share: float  # human labels / pool
    ai_label_accuracy: float | None  # of the AI labels used, against the file
    fallback: str = ""


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(10_000 + seed)
    order = rng.permutation(n)
    n_test = max(1, int(round(HELD_OUT * n)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _gain_inputs(
    data: SimData,
    idx: np.ndarray,
    p_a: np.ndarray,
    spread: np.ndarray,
    verdicts: Verdicts,
    density: np.ndarray,
) -> policies.GainInputs:
    return policies.GainInputs(
        spread=spread,
        ai_confidence=verdicts.confidence,
        orders_agree=verdicts.orders_agree.astype(float),
        p_a=p_a,
        length_a=data.len_a[idx],
        length_b=data.len_b[idx],
        density=density,
    )


# The routing policies compared at every budget.
ROUTED = ("random", "uncertainty", "gain")


@dataclass
class _Judged:
    """A seed set, the AI judge's view of the rest and its out-of-fold view of the seed set."""

    seed_idx: np.ndarray
    rest: np.ndarray  # the pool pairs outside the seed set
    p_rest: np.ndarray  # P(A better) of the ensemble trained on the seed set
    s_rest: np.ndarray  # its spread
    v_rest: Verdicts
    p_seed: np.ndarray  # out-of-fold P(A better) on the seed set
    s_seed: np.ndarray
    v_seed: Verdicts


@dataclass
class _Labels:
    """The training labels of one run's final reward model."""

    idx: np.ndarray
    labels: np.ndarray
    n_human: int
    ai_accuracy: float | None  # of the AI labels used, against the file


@dataclass
class _Budget:
    """One budget's seed set and what the routing policies decide from."""

    budget: float
    judged: _Judged
    slots: int  # human labels left after the seed set
    inputs: policies.GainInputs  # of the pairs to route
    train_inputs: policies.GainInputs  # of the seed set (out-of-fold), for the gain model
    disagree: np.ndarray  # on the seed set: the human answer differs from the AI's


@dataclass
class _SeedRun:
    """One seed: its held-out split, the human answers and what every run of it shares."""

    data: SimData
    config: SimConfig
    seed: int
    pool: np.ndarray  # the pairs that can be labelled (sorted)
    test: np.ndarray  # the clean held-out pairs
    human: np.ndarray  # the human answers: the file's labels, ``human_noise`` of them flipped
    seed_order: np.ndarray  # the pool shuffled: seed sets are prefixes, nested across budgets
    seed_n: int  # the size of the seed set where the budget allows it
    density: np.ndarray  # embedding density of each pool pair's prompt among the pool's
    train_cfg: TrainConfig
    llm_cache: dict[int, Verdicts] | None
    log: Log | None
    judged: dict[int, _Judged] = field(default_factory=dict)  # by seed-set size

    def density_of(self, idx: np.ndarray) -> np.ndarray:
        return self.density[np.searchsorted(self.pool, idx)]  # the pool is sorted

    def accuracy(self, label_idx: np.ndarray, labels: np.ndarray) -> float:
        """Held-out accuracy of the final reward model trained on these labels."""
        model = rm_train(self.data, label_idx, labels, self.train_cfg)
        return rm_accuracy(model, self.data, self.test)


def _seed_setup(
    data: SimData,
    config: SimConfig,
    seed: int,
    *,
    llm_cache: dict[int, Verdicts] | None,
    log: Log | None,
) -> _SeedRun:
    rng = np.random.default_rng(seed)
    pool, test = _split(len(data), seed)
    human = data.label_a.copy()
    flip = rng.random(len(data)) < config.human_noise
    human[flip] = ~human[flip]
    # Drawn from the same generator right after the noise (nothing else draws from it).
    seed_order = rng.permutation(pool)
    return _SeedRun(
        data=data,
        config=config,
        seed=seed,
        pool=pool,
        test=test,
        human=human,
        seed_order=seed_order,
        seed_n=max(MIN_SEED, int(round(config.seed_fraction * len(pool)))),
        density=policies.embedding_density(data.prompt[pool], k=10),
        train_cfg=config.train_config(seed),
        llm_cache=llm_cache,
        log=log,
    )


def _seed_set_scores(run: _SeedRun, seed_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold (P(A better), spread) on the seed set: what the judge says of pairs it did
    not see (``CROSS_FIT_FOLDS``-fold cross-fitting)."""
    seed_n = len(seed_idx)
    p_seed, s_seed = np.zeros(seed_n), np.zeros(seed_n)
    folds = np.arange(seed_n) % CROSS_FIT_FOLDS
    rng_f = np.random.default_rng(run.seed + 7)
    rng_f.shuffle(folds)
    for f in range(CROSS_FIT_FOLDS):
        held = folds == f
        if not held.any() or held.all():
            continue
        train = seed_idx[~held]
        fold_model = rm_train(run.data, train, run.human[train], run.train_cfg)
        p_seed[held], s_seed[held] = rm_score(fold_model, run.data, seed_idx[held])
    return p_seed, s_seed


def _judged(run: _SeedRun, seed_n: int) -> _Judged:
    """The seed set of ``seed_n`` pairs, the judge trained on it and its verdicts (cached per
    size: budgets share a seed set where they can)."""
    if seed_n in run.judged:
        return run.judged[seed_n]
    data, config = run.data, run.config
    seed_idx = np.sort(run.seed_order[:seed_n])
    rest = np.setdiff1d(run.pool, seed_idx)
    ensemble = rm_train(data, seed_idx, run.human[seed_idx], run.train_cfg)
    p_rest, s_rest = rm_score(ensemble, data, rest)
    p_seed, s_seed = _seed_set_scores(run, seed_idx)
    if config.ai_judge == "reward-model":
        v_rest, v_seed = rm_verdicts(p_rest, s_rest), rm_verdicts(p_seed, s_seed)
    else:
        v_rest = _llm_cached(data, rest, config, run.llm_cache, run.log)
        v_seed = _llm_cached(data, seed_idx, config, run.llm_cache, run.log)
    run.judged[seed_n] = _Judged(seed_idx, rest, p_rest, s_rest, v_rest, p_seed, s_seed, v_seed)
    return run.judged[seed_n]


def _labels_with(run: _SeedRun, judged: _Judged, to_human: np.ndarray) -> _Labels:
    """Human labels for the seed set and the ``to_human`` rest, the AI's for the others."""
    seed_idx, rest, v_rest, human = judged.seed_idx, judged.rest, judged.v_rest, run.human
    routed = rest[to_human]
    # AI-routed pairs whose judge failed get no label at all (never a guess).
    use = ~to_human & v_rest.ok
    ai_idx = rest[use]
    idx = np.concatenate([seed_idx, routed, ai_idx])
    labels = np.concatenate([human[seed_idx], human[routed], v_rest.choice_a[use]])
    ai_acc = (
        float((v_rest.choice_a[use] == run.data.label_a[ai_idx]).mean()) if len(ai_idx) else None
    )
    return _Labels(idx, labels, len(seed_idx) + len(routed), ai_acc)


def _all_human(run: _SeedRun) -> RunResult:
    accuracy = run.accuracy(run.pool, run.human[run.pool])
    return RunResult("all_human", None, run.seed, accuracy, 1.0, None)


def _all_ai(run: _SeedRun) -> RunResult:
    """Only the default seed set by hand."""
    judged = _judged(run, run.seed_n)
    got = _labels_with(run, judged, np.zeros(len(judged.rest), bool))
    accuracy = run.accuracy(got.idx, got.labels)
    return RunResult(
        "all_ai", None, run.seed, accuracy, got.n_human / len(run.pool), got.ai_accuracy
    )


def _budget_inputs(run: _SeedRun, budget: float) -> _Budget:
    n_pool = len(run.pool)
    budget_n = int(np.floor(budget * n_pool + 1e-9))
    if budget_n < 2:
        raise ValueError(
            f"a {budget:.0%} budget is {budget_n} of the {n_pool} pool pairs: too few to "
            "train a judge on; use a larger budget or file"
        )
    seed_n = min(run.seed_n, budget_n)
    j = _judged(run, seed_n)
    return _Budget(
        budget=budget,
        judged=j,
        slots=budget_n - seed_n,
        inputs=_gain_inputs(run.data, j.rest, j.p_rest, j.s_rest, j.v_rest, run.density_of(j.rest)),
        train_inputs=_gain_inputs(
            run.data, j.seed_idx, j.p_seed, j.s_seed, j.v_seed, run.density_of(j.seed_idx)
        ),
        disagree=j.v_seed.choice_a != run.human[j.seed_idx],
    )


def _human_only(run: _SeedRun, b: _Budget) -> RunResult:
    """For the reading, not a policy: the same human labels as random, no AI labels at all."""
    j = b.judged
    random_plan = policies.route(policy="random", n=len(j.rest), slots=b.slots, seed=run.seed)
    human_idx = np.concatenate([j.seed_idx, j.rest[random_plan.to_human]])
    accuracy = run.accuracy(human_idx, run.human[human_idx])
    return RunResult(
        "human_only", b.budget, run.seed, accuracy, len(human_idx) / len(run.pool), None
    )


def _policy_run(run: _SeedRun, b: _Budget, policy: str) -> RunResult:
    j = b.judged
    plan = policies.route(
        policy=policy,
        n=len(j.rest),
        slots=b.slots,
        inputs=b.inputs,
        train_inputs=b.train_inputs,
        train_disagree=b.disagree,
        seed=run.seed,
    )
    assert plan.human_count == min(b.slots, len(j.rest))
    got = _labels_with(run, j, plan.to_human)
    accuracy = run.accuracy(got.idx, got.labels)
    return RunResult(
        policy,
        b.budget,
        run.seed,
        accuracy,
        got.n_human / len(run.pool),
        got.ai_accuracy,
        plan.fallback,
    )


def runs_per_seed(config: SimConfig) -> int:
    """all_human, all_ai, and per budget human_only and each routed policy."""
    return 2 + len(config.budgets) * (1 + len(ROUTED))


def simulate_seed(
    data: SimData,
    config: SimConfig,
    seed: int,
    *,
    llm_cache: dict[int, Verdicts] | None = None,
    log: Log | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[RunResult]:
    """Every policy at every budget for one seed (one held-out split, one noise draw).

    ``progress(done, total)`` after each run (``runs_per_seed(config)`` in all).
    """
    run = _seed_setup(data, config, seed, llm_cache=llm_cache, log=log)
    results: list[RunResult] = []

    def record(result: RunResult) -> None:
        results.append(result)
        if progress is not None:
            progress(len(results), runs_per_seed(config))

    record(_all_human(run))
    record(_all_ai(run))
    for budget in config.budgets:
        b = _budget_inputs(run, budget)
        record(_human_only(run, b))
        for policy in ROUTED:
            record(_policy_run(run, b, policy))
        if log:
            done = [r for r in results if r.budget == budget]
            log(
                f"seed {seed} budget {budget:.0%}: "
                + " ".join(f"{r.policy}={r.accuracy:.3f}" for r in done)
            )
    return results


def _llm_cached(
    data: SimData,
    idx: np.ndarray,
    config: SimConfig,
    store: dict[int, Verdicts] | None,
    log: Log | None,
) -> Verdicts:
    """LLM verdicts do not depend on the seed: judge each pair once per process."""
    store = {} if store is None else store
    missing = np.array([i for i in idx if int(i) not in store], dtype=np.int64)
    if len(missing):
        if config.ai_judge == "llm":
            got = llm_verdicts_remote(data, missing, config, log=log)
        else:
            got = llm_verdicts_local(data, missing, log=log)
        for j, i in enumerate(missing):
            sl = slice(j, j + 1)
            store[int(i)] = Verdicts(
                got.choice_a[sl], got.confidence[sl], got.orders_agree[sl], got.ok[sl]
            )
    parts = [store[int(i)] for i in idx]
    if not parts:
        return Verdicts(np.zeros(0, bool), np.zeros(0), np.zeros(0, bool))
    return Verdicts(
        np.concatenate([p.choice_a for p in parts]),
        np.concatenate([p.confidence for p in parts]),
        np.concatenate([p.orders_agree for p in parts]),
        np.concatenate([p.ok for p in parts]),
    )


def _progress_from(
    progress: Callable[[int, int], None], base: int, total: int, done: int, _seed_total: int
) -> None:
    progress(base + done, total)


def simulate(
    data: SimData,
    config: SimConfig,
    *,
    log: Log | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[RunResult]:
    """Every seed of ``simulate_seed``; ``progress(done, total)`` after each run (a policy at a
    budget, all_human or all_ai) of every seed."""
    if config.ai_judge not in ("reward-model", "local-llm", "llm"):
        raise ValueError(
            f"unknown AI judge '{config.ai_judge}': use reward-model, local-llm or llm"
        )
    if config.ai_judge == "llm" and not config.llm_base_url:
        raise ValueError("--ai-judge llm needs --llm-base-url")
    if not 0.0 <= config.human_noise < 0.5:
        raise ValueError("--human-noise must be in [0, 0.5)")
    if not config.budgets or any(not 0.0 < b <= 1.0 for b in config.budgets):
        raise ValueError("budgets must be fractions in (0, 1]")
    if len(data) < 20:
        raise ValueError(f"the file has {len(data)} labelled A/B pairs; the simulation needs 20")
    results: list[RunResult] = []
    llm_cache: dict[int, Verdicts] = {}
    per_seed = runs_per_seed(config)
    for seed in range(config.seeds):
        seed_progress = None
        if progress is not None:
            seed_progress = partial(
                _progress_from, progress, seed * per_seed, config.seeds * per_seed
            )
        results += simulate_seed(
            data, config, seed, llm_cache=llm_cache, log=log, progress=seed_progress
        )
    return results


# ---------------------------------------------------------------- report


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summary(results: list[RunResult]) -> list[dict]:
    """One row per (policy, budget): mean and std of accuracy over seeds, and more."""
    keys: list[tuple[str, float | None]] = []
    for r in results:
        if (r.policy, r.budget) not in keys:
            keys.append((r.policy, r.budget))
    rows = []
    for policy, budget in keys:
        rs = [r for r in results if r.policy == policy and r.budget == budget]
        acc = [r.accuracy for r in rs]
        ai = [r.ai_label_accuracy for r in rs if r.ai_label_accuracy is not None]
        rows.append(
            {
                "policy": policy,
                "budget": budget,
                "accuracy": _mean(acc),
                "std": float(np.std(acc)),
                "human_share": _mean([r.human_share for r in rs]),
                "ai_label_accuracy": _mean(ai) if ai else None,
                "fallbacks": sum(1 for r in rs if r.fallback),
                "seeds": len(rs),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| policy | budget | accuracy (mean ± sd) | human labels / pool | AI-label accuracy | gain fallbacks |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        budget = "–" if r["budget"] is None else f"{r['budget']:.0%}"
        ai = "–" if r["ai_label_accuracy"] is None else f"{r['ai_label_accuracy']:.3f}"
        fb = f"{r['fallbacks']}/{r['seeds']}" if r["policy"] == "gain" else "–"
        lines.append(
            f"| {r['policy']} | {budget} | {r['accuracy']:.4f} ± {r['std']:.4f} | "
            f"{r['human_share']:.2f} | {ai} | {fb} |"
        )
    return "\n".join(lines)


def last_line(rows: list[dict]) -> str:
    def acc(policy: str, budget: float | None) -> float:
        for r in rows:
            if r["policy"] == policy and (
                (budget is None and r["budget"] is None)
                or (
                    budget is not None
                    and r["budget"] is not None
                    and abs(r["budget"] - budget) < 1e-9
                )
            ):
                return r["accuracy"]
        return float("nan")

    return (
        f"acc_hyper_30={acc('gain', 0.3):.4f} acc_uncertainty_30={acc('uncertainty', 0.3):.4f} "
        f"acc_random_30={acc('random', 0.3):.4f} acc_all_ai={acc('all_ai', None):.4f} "
        f"acc_all_human={acc('all_human', None):.4f}"
    )
