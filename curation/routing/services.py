"""Routing writes: route a project's unlabelled comparisons to humans or AI within its budget,
order the human queue, apply AI labels, and the runs that do it (page, command, new model).

What counts against the human budget (in comparisons; the smaller of `human_budget` and
`human_budget_fraction` x the project's non-gold comparisons): every comparison that has a
human judgement or a live human lease (those are never re-routed), plus every comparison
routing sends to humans. Gold items are outside the arithmetic. Already-labelled
comparisons keep their labels and their route; only unlabelled, pending, non-gold,
non-excluded comparisons without human work on them are (re-)routed.

Concurrency: `pairs_route` takes the project row FOR UPDATE, then locks the comparisons it
routes, so two routings of one project run one after the other and the second sees what
the first committed; the queue takes comparisons with SKIP LOCKED, so a lease cannot slip
in between the count and the write. The budget therefore holds under concurrent re-routing.

AI labels: after the routing commits, the AI-routed comparisons are judged by the project's
AI annotator (`curation.judges.services.ai_judgements_run`; the first active annotator by
id unless one is given), which writes AI judgements and refreshes the labels. Without an
active annotator they stay routed to AI and unlabelled, and the run says so.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Length
from django.utils import timezone

from annotation.exceptions import ApplicationError
from annotation.models import Assignment, Choice, Comparison, Judgement, Project
from curation.routing import policies
from curation.routing.models import RoutingDecision, RoutingRun

logger = logging.getLogger(__name__)

HUMAN_SOURCES = (Judgement.SourceKind.HUMAN, Judgement.SourceKind.IMPORT)
QUEUED_STALE = timedelta(minutes=10)


# ---------------------------------------------------------------- settings


def _budget_parse(value: str) -> tuple[int | None, float | None]:
    """'' -> no limit; '120' -> a count; '0.3' or '30%' -> a fraction."""
    text = (value or "").strip()
    if not text:
        return None, None
    try:
        if text.endswith("%"):
            fraction = float(text[:-1]) / 100
        elif "." in text:
            fraction = float(text)
        else:
            count = int(text)
            if count < 0:
                raise ValueError
            return count, None
    except ValueError:
        raise ApplicationError(
            f"'{value}' is not a budget: give a number of comparisons (120), a fraction "
            "(0.3) or a percentage (30%)."
        ) from None
    if not 0.0 <= fraction <= 1.0:
        raise ApplicationError("A budget fraction must be between 0 and 1 (0 % and 100 %).")
    return None, fraction


def routing_settings_update(
    *,
    project: Project,
    policy: str | None = None,
    budget: str | None = None,
    human_budget: int | None = None,
    human_budget_fraction: float | None = None,
    clear_budget: bool = False,
) -> Project:
    """Set the routing policy and/or the human budget. `budget` is text ('', '120', '0.3',
    '30%') and replaces both budget fields; or give the fields themselves. Everything is
    validated before anything is written."""
    if policy is not None and policy not in policies.POLICIES:
        raise ApplicationError(
            f"Unknown routing policy '{policy}': use one of {', '.join(policies.POLICIES)}."
        )
    fields = []
    if budget is not None:
        human_budget, human_budget_fraction = _budget_parse(budget)
        clear_budget = True
    if human_budget is not None and human_budget < 0:
        raise ApplicationError("The human budget cannot be negative.")
    if human_budget_fraction is not None and not 0.0 <= human_budget_fraction <= 1.0:
        raise ApplicationError("A budget fraction must be between 0 and 1.")
    if policy is not None:
        project.routing_policy = policy
        fields.append("routing_policy")
    if clear_budget or human_budget is not None or human_budget_fraction is not None:
        if clear_budget or human_budget is not None:
            project.human_budget = human_budget
            fields.append("human_budget")
        if clear_budget or human_budget_fraction is not None:
            project.human_budget_fraction = human_budget_fraction
            fields.append("human_budget_fraction")
    if fields:
        project.save(update_fields=[*fields, "updated_at"])
    return project


# ---------------------------------------------------------------- budget


def _human_work(now) -> Q:
    """Comparisons with human work on them: a human judgement or a live lease."""
    return Q(
        Exists(
            Judgement.objects.filter(
                comparison=OuterRef("pk"), source_kind=Judgement.SourceKind.HUMAN
            )
        )
    ) | Q(
        Exists(
            Assignment.objects.filter(
                comparison=OuterRef("pk"), state=Assignment.State.LEASED, leased_until__gt=now
            )
        )
    )


@dataclass
class Budget:
    limit: int | None  # None: no limit
    total: int  # non-gold comparisons
    worked: int  # with a human judgement or a live lease (never re-routed)
    queued: int  # unlabelled, routed to humans, no human work yet
    # Routed to humans beyond the budget (e.g. imported since the last routing, which
    # land routed to humans by default): the next routing takes them back.
    over: int = 0

    @property
    def spent(self) -> int:
        return self.worked + self.queued

    @property
    def left(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.spent)


def routing_budget(*, project: Project) -> Budget:
    now = timezone.now()
    base = Comparison.objects.filter(project=project, is_gold=False)
    total = base.count()
    worked = base.filter(_human_work(now)).count()
    queued = (
        base.filter(
            label__isnull=True,
            status=Comparison.Status.PENDING,
            excluded=False,
            route__in=[Comparison.Route.HUMAN, Comparison.Route.BOTH],
        )
        .exclude(_human_work(now))
        .count()
    )
    limit = policies.budget_limit(
        total=total, budget=project.human_budget, fraction=project.human_budget_fraction
    )
    over = 0 if limit is None else max(0, worked + queued - max(limit, worked))
    return Budget(limit=limit, total=total, worked=worked, queued=queued, over=over)


# ---------------------------------------------------------------- features


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
    from scoring.models import ModelVersion

    return ModelVersion.objects.filter(
        project=project, is_active=True, status=ModelVersion.Status.SUCCEEDED
    ).first()


def _scores_ensure(project: Project) -> None:
    """Score the open comparisons with the active model if it has not (the scoring task
    and a re-routing both start when a version becomes active; either may run first)."""
    from annotation.models import Candidate
    from scoring.models import Score
    from scoring.services import scores_compute

    version = _active_version(project)
    if version is None or not version.artifact:
        return
    open_text = Comparison.objects.filter(
        project=project,
        label__isnull=True,
        candidate_a__kind=Candidate.Kind.TEXT,
        candidate_b__kind=Candidate.Kind.TEXT,
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


def _gain_training(project: Project, annotator, version):
    """Pairs with both a human and an AI label: (kept indices into `pairs`, pairs, p_a,
    spread, AI side, disagree per kept pair), or None. For the
    reward-model judge only pairs in the active model's held-out split count (its verdicts
    on pairs it trained on would agree with the humans too often)."""
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
    return idx, pairs, p_a, spread, ai, disagree


def _embeddings(pairs: _Pairs):
    """(prompt, a, b) embeddings of the pairs, NaN rows where a vector is missing; None
    when the project has none at all."""
    if not pairs.ids:
        return None
    from scoring.selectors import embeddings_load
    from scoring.services import encoder_current

    encoder = encoder_current()
    load = lambda hashes: embeddings_load(  # noqa: E731
        content_hashes=hashes, encoder=encoder, allow_missing=True
    )
    prompt, a, b = load(pairs.prompt_hash), load(pairs.a_hash), load(pairs.b_hash)
    if not np.isfinite(prompt).any():
        return None
    return prompt, a, b


# ---------------------------------------------------------------- routing


def _run_progress(run: RoutingRun | None, done: int, total: int) -> None:
    if run is not None:
        RoutingRun.objects.filter(pk=run.pk).update(progress_done=done, progress_total=total)


def pairs_route(
    *,
    project: Project,
    policy: str | None = None,
    run: RoutingRun | None = None,
    annotator=None,
    apply_ai_labels: bool = True,
    seed: int = 0,
) -> RoutingRun:
    """Route the project's unlabelled comparisons (see the module doc) under `policy` (the
    project's by default) and return the finished run with its counts."""
    policy = policy or project.routing_policy
    if policy not in policies.POLICIES:
        raise ApplicationError(
            f"Unknown routing policy '{policy}': use one of {', '.join(policies.POLICIES)}."
        )
    if run is None:
        run = RoutingRun.objects.create(
            project=project,
            policy=policy,
            trigger=RoutingRun.Trigger.COMMAND,
            status=RoutingRun.Status.RUNNING,
            started_at=timezone.now(),
        )
    try:
        _scores_ensure(project)
        with transaction.atomic():
            _route_locked(project=project, policy=policy, run=run, annotator=annotator, seed=seed)
        run.refresh_from_db()
        if apply_ai_labels:
            _ai_labels_apply(project=project, run=run, annotator=annotator)
    except Exception as exc:
        RoutingRun.objects.filter(pk=run.pk).update(
            status=RoutingRun.Status.FAILED,
            error=(
                exc.message if isinstance(exc, ApplicationError) else f"{type(exc).__name__}: {exc}"
            )[:2000],
            finished_at=timezone.now(),
        )
        raise
    RoutingRun.objects.filter(pk=run.pk).update(
        status=RoutingRun.Status.SUCCEEDED, finished_at=timezone.now()
    )
    run.refresh_from_db()
    return run


def _route_locked(*, project: Project, policy: str, run: RoutingRun, annotator, seed: int) -> None:
    # The project row serialises routings of one project (see the module doc).
    project = Project.objects.select_for_update().get(pk=project.pk)
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
    worked_ids = set(base.filter(_human_work(now)).values_list("id", flat=True))
    total = base.count()
    candidates = [cid for cid in open_ids if cid not in worked_ids]
    slots = policies.budget_slots(
        total=total,
        spent=len(worked_ids),
        budget=project.human_budget,
        fraction=project.human_budget_fraction,
    )
    limit = policies.budget_limit(
        total=total, budget=project.human_budget, fraction=project.human_budget_fraction
    )
    _run_progress(run, 0, len(candidates))
    version = _active_version(project)
    annotator = _annotator_for(project, annotator)
    pairs = _pairs_read(candidates)
    n = len(pairs.ids)
    p_a, spread = _scores(version, pairs.ids)
    ai = _ai_side(annotator, pairs.ids, p_a, spread)
    emb = _embeddings(pairs) if n else None
    density = policies.embedding_density(emb[0]) if emb is not None else None
    have_scores = bool(np.isfinite(spread).any())
    have_ai = bool(np.isfinite(ai.confidence).any())
    inputs = policies.GainInputs(
        spread=spread if have_scores else None,
        ai_confidence=ai.confidence if have_ai else None,
        orders_agree=ai.orders_agree if have_ai else None,
        p_a=p_a if have_scores else None,
        length_a=pairs.len_a,
        length_b=pairs.len_b,
        density=density,
        category=pairs.category,
    )
    train_inputs = train_disagree = None
    if policy == "gain" and n:
        training = _gain_training(project, annotator, version)
        if training is not None:
            idx, tpairs, tp, ts, tai, train_disagree = training
            temb = _embeddings(tpairs)
            tdens = None
            if temb is not None and emb is not None:
                # Density against the same reference as the candidates' (both sets).
                both = np.vstack([emb[0], temb[0][idx]])
                tdens = policies.embedding_density(both)[n:]
            train_inputs = policies.GainInputs(
                spread=ts[idx],
                ai_confidence=tai.confidence[idx],
                orders_agree=tai.orders_agree[idx],
                p_a=tp[idx],
                length_a=tpairs.len_a[idx],
                length_b=tpairs.len_b[idx],
                density=tdens,
                category=[tpairs.category[i] for i in idx],
            )
    plan = policies.route(
        policy=policy,
        n=n,
        slots=slots,
        inputs=inputs,
        train_inputs=train_inputs,
        train_disagree=train_disagree,
        seed=seed,
    )
    human_idx = np.flatnonzero(plan.to_human)
    # Active selection: the most informative human-routed pair first.
    features = None
    if emb is not None and len(human_idx):
        prompt, a, b = (m[human_idx] for m in emb)
        diff = a - b
        features = np.hstack([diff, prompt * diff])  # the linear head's [r, p*r] difference
    order = policies.queue_order(
        features=features,
        p_a=p_a[human_idx] if have_scores else None,
        spread=spread[human_idx] if have_scores else None,
    )
    if features is None and not have_scores:
        order = np.arange(len(human_idx))
    human_priority = policies.priorities_from_order(order)
    priority = np.zeros(n, dtype=np.int64)
    priority[human_idx] = human_priority
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
    counts = {
        "human": int(plan.to_human.sum()),
        "ai": int(n - plan.to_human.sum()),
        "kept": len(worked_ids),
        "labelled": base.filter(label__isnull=False).count(),
        "changed": len(changed),
    }
    messages = []
    if plan.fallback:
        messages.append(f"Gain policy {plan.fallback}." if policy == "gain" else plan.fallback)
    if limit is not None and slots is not None and slots < n:
        messages.append(
            f"Budget {limit:,}: {len(worked_ids):,} comparisons have human work, "
            f"{counts['human']:,} more routed to humans, {counts['ai']:,} to AI."
        )
    RoutingRun.objects.filter(pk=run.pk).update(
        policy_used=plan.policy,
        budget_limit=limit,
        model_version=version,
        counts=counts,
        message=" ".join(messages),
        progress_done=n,
        progress_total=n,
    )


def _ai_labels_apply(*, project: Project, run: RoutingRun, annotator) -> None:
    """Judge the AI-routed comparisons that have no label yet with the AI annotator."""
    ai_ids = list(
        Comparison.objects.filter(
            project=project,
            route=Comparison.Route.AI,
            label__isnull=True,
            status=Comparison.Status.PENDING,
            is_gold=False,
            excluded=False,
        )
        .order_by("id")
        .values_list("id", flat=True)
    )
    counts = dict(run.counts)
    counts["ai_labelled"] = 0
    note = ""
    if ai_ids:
        annotator = _annotator_for(project, annotator)
        if annotator is None:
            note = (
                f"{len(ai_ids):,} AI-routed comparisons wait for an AI annotator: add an active "
                "one to the project and re-route."
            )
        else:
            from curation.judges.services import ai_judgements_run

            base_done = run.progress_done
            total = base_done + len(ai_ids)

            def progress(done: int, _total: int) -> None:
                _run_progress(run, base_done + done, total)

            try:
                judging = ai_judgements_run(
                    annotator=annotator, comparison_ids=ai_ids, progress=progress
                )
            except ApplicationError as exc:
                note = f"AI labels not applied: {exc.message}"
            else:
                counts["ai_labelled"] = judging.ok_count + judging.skipped_count
                if judging.status != "succeeded":
                    note = (
                        f"AI judging run #{judging.pk} of {annotator.source_name} is "
                        f"{judging.status}: {judging.error or 'another run of it holds it'}."
                    )
                elif judging.failed_count:
                    note = (
                        f"{judging.failed_count:,} AI verdicts of {annotator.source_name} "
                        "failed; those comparisons stay routed to AI without a label."
                    )
    message = " ".join(m for m in (run.message, note) if m)
    RoutingRun.objects.filter(pk=run.pk).update(counts=counts, message=message)


# ---------------------------------------------------------------- runs


def routing_run_start(
    *, project: Project, trigger: str = RoutingRun.Trigger.MANUAL, created_by=None
) -> RoutingRun:
    """A queued routing run, enqueued once committed. One queued run per project is
    enough: asking again while one waits returns that one (unless it has waited longer than
    QUEUED_STALE, i.e. its message was lost: then a new one is queued)."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        waiting = RoutingRun.objects.filter(
            project=project,
            status=RoutingRun.Status.QUEUED,
            created_at__gt=timezone.now() - QUEUED_STALE,
        ).first()
        if waiting is not None:
            return waiting
        run = RoutingRun.objects.create(
            project=project,
            policy=project.routing_policy,
            trigger=trigger,
            created_by=created_by,
        )
        from curation.routing.tasks import routing_run_task

        transaction.on_commit(lambda: routing_run_task.delay(run.id))
    return run


def routing_run_execute(*, run: RoutingRun) -> RoutingRun:
    """Run a queued run. Idempotent: a run that is not queued (done, or taken by another
    worker) is left as it is."""
    claimed = RoutingRun.objects.filter(pk=run.pk, status=RoutingRun.Status.QUEUED).update(
        status=RoutingRun.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        run.refresh_from_db()
        return run
    run.refresh_from_db()
    project = Project.objects.get(pk=run.project_id)
    try:
        return pairs_route(project=project, policy=project.routing_policy, run=run)
    except ApplicationError:
        run.refresh_from_db()
        return run
    except Exception:
        logger.exception("routing run %s failed", run.pk)
        run.refresh_from_db()
        return run
