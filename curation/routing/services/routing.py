"""One routing pass: under the project's row lock, the open comparisons without human work
are routed to humans or AI by the policy within the budget, the human queue is ordered
(most informative first), and every decision is recorded."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from django.db.models.functions import Length
from django.utils import timezone

from annotation.models import Choice, Comparison, Judgement, Project
from core.exceptions import ApplicationError
from core.runs import RunHandle
from curation.routing import policies
from curation.routing.models import RoutingDecision, RoutingRun, RoutingSettings
from curation.routing.selectors import human_work, routing_settings_get

logger = logging.getLogger(__name__)

HUMAN_SOURCES = (Judgement.SourceKind.HUMAN, Judgement.SourceKind.IMPORT)


@dataclass
class _Pairs:
    ids: list[int]
    prompt_hash: list[str]
    a_hash: list[str]
    b_hash: list[str]
    len_a: np.ndarray
    len_b: np.ndarray
    category: list[str]
    priority: dict[int, int] = field(default_factory=dict)
    route: dict[int, str] = field(default_factory=dict)


def _pairs_read(ids: list[int], order: tuple[str, ...] = ("queue_key", "id")) -> _Pairs:
    rows = list(
        Comparison.objects.filter(id__in=ids)
        .annotate(len_a=Length("candidate_a__text"), len_b=Length("candidate_b__text"))
        .order_by(*order)
        .values_list(
            "id",
            "prompt__content_hash",
            "candidate_a__content_hash",
            "candidate_b__content_hash",
            "len_a",
            "len_b",
            "prompt__metadata",
            "route",
            "priority",
        )
    )
    pairs = _Pairs([], [], [], [], np.zeros(0), np.zeros(0), [])
    if not rows:
        return pairs
    cid, ph, ah, bh, la, lb, meta, route, priority = zip(*rows, strict=True)
    pairs.ids, pairs.prompt_hash, pairs.a_hash, pairs.b_hash = (
        list(cid),
        list(ph),
        list(ah),
        list(bh),
    )
    pairs.len_a = np.array([x or 0 for x in la], dtype=np.float64)
    pairs.len_b = np.array([x or 0 for x in lb], dtype=np.float64)
    pairs.category = [str((m or {}).get("category") or "") for m in meta]
    pairs.route = dict(zip(cid, route, strict=True))
    pairs.priority = dict(zip(cid, priority, strict=True))
    return pairs


def _active_version(project: Project):
    from scoring.selectors import model_version_active

    return model_version_active(project=project)


def _scores_ensure(project: Project) -> None:
    """Score the open comparisons with the active model if it has not (the scoring task
    and a re-routing both start when a version becomes active; either may run first)."""
    from scoring.models import Score
    from scoring.selectors import project_modality
    from scoring.services.scores import scores_compute

    version = _active_version(project)
    if version is None or not version.artifact:
        return
    kind = project_modality(project=project)  # what the model scores: text, image or audio
    open_text = Comparison.objects.filter(
        project=project, label__isnull=True, candidate_a__kind=kind, candidate_b__kind=kind
    )
    scored = Score.objects.filter(model_version=version, comparison__in=open_text).count()
    if scored < open_text.count():
        try:
            scores_compute(version=version)
        except ApplicationError as exc:
            logger.warning("routing without fresh scores for %s: %s", project.slug, exc.message)


def _scores(version, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(p_a, spread) of `version` per id; NaN where it has no score."""
    p = np.full(len(ids), np.nan)
    s = np.full(len(ids), np.nan)
    if version is None or not ids:
        return p, s
    from scoring.models import Score

    where = {cid: i for i, cid in enumerate(ids)}
    for cid, pa, sp in Score.objects.filter(
        model_version=version, comparison_id__in=ids
    ).values_list("comparison_id", "p_a", "spread"):
        p[where[cid]], s[where[cid]] = pa, sp
    return p, s


def _annotator_for(project: Project, annotator=None):
    if annotator is not None:
        return annotator
    from curation.judges.models import AIAnnotator

    return AIAnnotator.objects.filter(project=project, is_active=True).order_by("id").first()


def _is_reward_model(annotator) -> bool:
    return annotator is None or annotator.kind == "reward_model"


@dataclass
class _AI:
    """The AI side of each pair: choice (True = A, NaN unknown), confidence, orders agree."""

    choice_a: np.ndarray
    confidence: np.ndarray
    orders_agree: np.ndarray


def _ai_side(annotator, ids: list[int], p_a: np.ndarray, spread: np.ndarray) -> _AI:
    """The reward-model judge's verdicts come from the active model's scores (the same
    function the judges app uses, computed here without writing anything, so they are
    known before routing); an LLM judge's from its current verdicts, where it has any."""
    n = len(ids)
    out = _AI(np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan))
    if _is_reward_model(annotator):
        ok = np.isfinite(p_a) & np.isfinite(spread)
        if ok.any():
            from curation.judges.verdicts import reward_model_verdicts

            choice_a, confidence = reward_model_verdicts(p_a[ok], spread[ok])
            out.choice_a[ok] = np.asarray(choice_a, dtype=np.float64)
            out.confidence[ok] = confidence
            out.orders_agree[ok] = 1.0
        return out
    from curation.judges.selectors import ai_verdicts_for

    where = {cid: i for i, cid in enumerate(ids)}
    for v in ai_verdicts_for(project=annotator.project, annotator=annotator).filter(
        comparison_id__in=ids
    ):
        i = where[v["comparison_id"]]
        out.choice_a[i] = 1.0 if v["choice"] == Choice.A else 0.0
        out.confidence[i] = v["confidence"]
        out.orders_agree[i] = 1.0 if v["orders_agree"] in (True, None) else 0.0
    return out


def _human_majority(ids: list[int]) -> dict[int, bool]:
    """Majority A/B answer of human and imported judgements per comparison (True = A);
    comparisons split evenly are left out."""
    votes: dict[int, Counter] = defaultdict(Counter)
    for cid, choice in Judgement.objects.filter(
        comparison_id__in=ids, source_kind__in=HUMAN_SOURCES, choice__in=[Choice.A, Choice.B]
    ).values_list("comparison_id", "choice"):
        votes[cid][choice] += 1
    out = {}
    for cid, counter in votes.items():
        (top, count), *rest = counter.most_common()
        if not rest or rest[0][1] != count:
            out[cid] = top == Choice.A
    return out


def _embeddings(pairs: _Pairs):
    """(prompt, a, b) embeddings of the pairs, NaN rows where a vector is missing; None
    when the project has none at all. Prompts' text vectors; the candidates' vectors of the
    project's modality (text, image or audio: then a and b are another size than prompt)."""
    if not pairs.ids:
        return None
    from scoring.selectors import embeddings_load
    from scoring.services.embeddings import pair_encoders

    project = Comparison.objects.select_related("project").get(pk=pairs.ids[0]).project
    encoders = pair_encoders(project=project)

    def load(hashes, encoder):
        return embeddings_load(content_hashes=hashes, encoder=encoder, allow_missing=True)

    prompt = load(pairs.prompt_hash, encoders.prompt)
    a, b = load(pairs.a_hash, encoders.response), load(pairs.b_hash, encoders.response)
    if not np.isfinite(prompt).any():
        return None
    return prompt, a, b


@dataclass
class _View:
    """What the policies see of a set of pairs: the pairs, the active model's P(A) and
    spread (NaN where unscored), the AI side, and the (prompt, a, b) embeddings."""

    pairs: _Pairs
    p_a: np.ndarray
    spread: np.ndarray
    ai: _AI
    emb: tuple[np.ndarray, np.ndarray, np.ndarray] | None

    @property
    def have_scores(self) -> bool:
        return bool(np.isfinite(self.spread).any())

    @property
    def have_ai(self) -> bool:
        return bool(np.isfinite(self.ai.confidence).any())


def _view_read(pairs: _Pairs, version, annotator) -> _View:
    p_a, spread = _scores(version, pairs.ids)
    ai = _ai_side(annotator, pairs.ids, p_a, spread)
    emb = _embeddings(pairs) if pairs.ids else None
    return _View(pairs, p_a, spread, ai, emb)


def _candidate_inputs(view: _View) -> policies.GainInputs:
    """The policy's inputs for the pairs to route (unknown features left out)."""
    density = policies.embedding_density(view.emb[0]) if view.emb is not None else None
    return policies.GainInputs(
        spread=view.spread if view.have_scores else None,
        ai_confidence=view.ai.confidence if view.have_ai else None,
        orders_agree=view.ai.orders_agree if view.have_ai else None,
        p_a=view.p_a if view.have_scores else None,
        length_a=view.pairs.len_a,
        length_b=view.pairs.len_b,
        density=density,
        category=view.pairs.category,
    )


@dataclass
class _Training:
    """The gain predictor's training set: pairs with both a human and an AI label."""

    inputs: policies.GainInputs
    disagree: np.ndarray  # per pair: the human majority differs from the AI


def _gain_training(project: Project, annotator, version, candidates: _View) -> _Training | None:
    """Pairs with both a human and an AI label, as the predictor's inputs; None without any.
    For the reward-model judge only pairs in the active model's held-out split count (its
    verdicts on pairs it trained on would agree with the humans too often). Density is
    measured against the candidates and these pairs together, as for the candidates."""
    labelled = list(
        Comparison.objects.filter(
            project=project, is_gold=False, label__in=[Choice.A, Choice.B]
        ).values_list("id", flat=True)
    )
    human = _human_majority(labelled)
    ids = sorted(human)
    if not ids:
        return None
    pairs = _pairs_read(ids, order=("id",))
    p_a, spread = _scores(version, pairs.ids)
    ai = _ai_side(annotator, pairs.ids, p_a, spread)
    keep = np.isfinite(ai.choice_a)
    if _is_reward_model(annotator):
        from scoring.train import stable_split

        keys = [f"{a}{b}" for a, b in zip(pairs.a_hash, pairs.b_hash, strict=True)]
        _, held_out = stable_split(keys)
        in_eval = np.zeros(len(keys), dtype=bool)
        in_eval[held_out] = True
        keep &= in_eval
    idx = np.flatnonzero(keep)
    if not len(idx):
        return None
    human_a = np.array([human[pairs.ids[i]] for i in idx])
    disagree = human_a != ai.choice_a[idx].astype(bool)
    density = None
    emb = _embeddings(pairs)
    if emb is not None and candidates.emb is not None:
        n = len(candidates.pairs.ids)
        both = np.vstack([candidates.emb[0], emb[0][idx]])
        density = policies.embedding_density(both)[n:]
    inputs = policies.GainInputs(
        spread=spread[idx],
        ai_confidence=ai.confidence[idx],
        orders_agree=ai.orders_agree[idx],
        p_a=p_a[idx],
        length_a=pairs.len_a[idx],
        length_b=pairs.len_b[idx],
        density=density,
        category=[pairs.category[i] for i in idx],
    )
    return _Training(inputs, disagree)


def _human_priorities(plan: policies.RoutingPlan, view: _View) -> np.ndarray:
    """Queue priorities: the human-routed pairs in active-selection order (the most
    informative first), 0 for the AI-routed ones."""
    human_idx = np.flatnonzero(plan.to_human)
    features = None
    if view.emb is not None and len(human_idx):
        prompt, a, b = (m[human_idx] for m in view.emb)
        diff = a - b
        # The linear head's [r, p*r] difference; for image or audio responses ([r, p]
        # features) the prompt term cancels in a difference.
        same_space = prompt.shape[1] == diff.shape[1]
        features = np.hstack([diff, prompt * diff]) if same_space else diff
    order = policies.queue_order(
        features=features,
        p_a=view.p_a[human_idx] if view.have_scores else None,
        spread=view.spread[human_idx] if view.have_scores else None,
    )
    if features is None and not view.have_scores:
        order = np.arange(len(human_idx))
    priority = np.zeros(len(view.pairs.ids), dtype=np.int64)
    priority[human_idx] = policies.priorities_from_order(order)
    return priority


def _routes_write(
    run: RoutingRun, pairs: _Pairs, plan: policies.RoutingPlan, priority: np.ndarray, version
) -> int:
    """Write the routes and priorities that changed, and one decision per pair; return how
    many comparisons changed."""
    route = np.where(plan.to_human, Comparison.Route.HUMAN, Comparison.Route.AI)
    changed = [
        Comparison(pk=cid, route=str(route[i]), priority=int(priority[i]))
        for i, cid in enumerate(pairs.ids)
        if pairs.route[cid] != route[i] or pairs.priority[cid] != priority[i]
    ]
    Comparison.objects.bulk_update(changed, ["route", "priority"], batch_size=2000)
    RoutingDecision.objects.bulk_create(
        [
            RoutingDecision(
                comparison_id=cid,
                run=run,
                route=str(route[i]),
                policy=plan.policy,
                model_version=version,
                score=None if not np.isfinite(plan.score[i]) else float(plan.score[i]),
                priority=int(priority[i]),
            )
            for i, cid in enumerate(pairs.ids)
        ],
        batch_size=2000,
    )
    return len(changed)


@dataclass
class _Pool:
    """The comparisons a routing may (re-)route, row-locked, and the budget around them."""

    candidates: list[int]
    worked: set[int]  # comparisons with human work (never re-routed; they count as spent)
    total: int  # non-gold comparisons
    slots: int | None  # places for humans left (None: no limit)
    limit: int | None


def _pool_locked(project: Project, chosen: RoutingSettings) -> _Pool:
    now = timezone.now()
    base = Comparison.objects.filter(project=project, is_gold=False)
    open_ids = list(
        base.filter(label__isnull=True, status=Comparison.Status.PENDING, excluded=False)
        .order_by("id")
        .select_for_update(of=("self",))
        .values_list("id", flat=True)
    )
    # Counted after the locks, with fresh statements: a lease committed while we waited is
    # seen here, and none can start on the locked rows until we commit.
    worked = set(base.filter(human_work(now)).values_list("id", flat=True))
    total = base.count()
    budget, fraction = chosen.human_budget, chosen.human_budget_fraction
    return _Pool(
        candidates=[cid for cid in open_ids if cid not in worked],
        worked=worked,
        total=total,
        slots=policies.budget_slots(
            total=total, spent=len(worked), budget=budget, fraction=fraction
        ),
        limit=policies.budget_limit(total=total, budget=budget, fraction=fraction),
    )


@dataclass
class Routed:
    """What a routing pass did: the policy used, the budget, the model, counts, a message."""

    policy_used: str
    budget_limit: int | None
    model_version: object
    counts: dict
    message: str


def routes_assign(
    *,
    project: Project,
    policy: str,
    run: RoutingRun,
    annotator=None,
    seed: int = 0,
    handle: RunHandle | None = None,
) -> Routed:
    """Route the project's open comparisons under `policy` (module doc of the package).
    Call it inside a transaction: the project's row lock serialises routings of one
    project until it commits."""
    chosen = routing_settings_get(project=project)
    project = Project.objects.select_for_update().get(pk=project.pk)
    pool = _pool_locked(project, chosen)
    if handle is not None:
        handle.progress(0, len(pool.candidates), phase="routing")
    version = _active_version(project)
    annotator = _annotator_for(project, annotator)
    view = _view_read(_pairs_read(pool.candidates), version, annotator)
    n = len(view.pairs.ids)
    training = _gain_training(project, annotator, version, view) if policy == "gain" and n else None
    plan = policies.route(
        policy=policy,
        n=n,
        slots=pool.slots,
        inputs=_candidate_inputs(view),
        train_inputs=training.inputs if training else None,
        train_disagree=training.disagree if training else None,
        seed=seed,
    )
    changed = _routes_write(run, view.pairs, plan, _human_priorities(plan, view), version)
    to_human = int(plan.to_human.sum())
    counts = {
        "human": to_human,
        "ai": n - to_human,
        "kept": len(pool.worked),
        "labelled": Comparison.objects.filter(
            project=project, is_gold=False, label__isnull=False
        ).count(),
        "changed": changed,
    }
    messages = []
    if plan.fallback:
        messages.append(f"Gain policy {plan.fallback}." if policy == "gain" else plan.fallback)
    if pool.limit is not None and pool.slots is not None and pool.slots < n:
        messages.append(
            f"Budget {pool.limit:,}: {len(pool.worked):,} comparisons have human work, "
            f"{counts['human']:,} more routed to humans, {counts['ai']:,} to AI."
        )
    if handle is not None:
        handle.progress(n, n)
    return Routed(plan.policy, pool.limit, version, counts, " ".join(messages))
