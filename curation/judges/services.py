"""AI annotators: create and edit them, run them over comparisons, write their verdicts.

The API the routing app (and anyone else) builds on:

- `ai_judgements_run(*, annotator, comparison_ids=None, progress=None) -> AIJudgingRun`
  judges the comparisons (None: all of the annotator's project) in this process and
  returns the finished run (counts in ok_count / failed_count / skipped_count).
  `ai_judging_run_start(...)` does the same through the Celery task
  (`curation.judges.tasks.ai_judgements_run_task`), with progress on the run row.
- `curation.judges.selectors.ai_verdicts_for(*, project, annotator=None)`: the current ok
  verdicts, one per (annotator, comparison), with p_a, confidence, orders_agree, choice.
- `curation.judges.verdicts.reward_model_verdicts(p_a, spread) -> (choice_a, confidence)`:
  the reward-model judge as a pure numpy function, usable without a database.

Rules: every run is idempotent per (annotator, comparison, model version): a comparison
with an ok verdict of that version is skipped, so no second verdict or judgement is made;
a failed one is tried again. An ok verdict writes one annotation Judgement (source_kind
"ai", user None, source_name "ai:<name>", the model version, choice, confidence,
rationale, idempotency key sha256("ai:<annotator id>:<comparison id>:<version>")); a new
model version of the same annotator updates that judgement in place (the annotation app
allows one judgement per source and comparison), keeping the older verdicts as history.
Failed verdicts never make judgements. Labels are refreshed for the touched comparisons.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from annotation.exceptions import ApplicationError
from annotation.models import Candidate, Comparison, Judgement, Project
from annotation.services.labels import comparison_labels_refresh
from annotation.services.locks import advisory_lock_try
from curation.judges.models import AIAnnotator, AIJudgingRun, AIVerdict
from curation.judges.verdicts import (
    DEFAULT_TEMPLATE,
    LOCAL_MAX_CHARS,
    judge_messages,
    orders_combine,
    reward_model_verdicts,
    template_check,
)

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

JUDGES_LOCK = 0x7A1D  # advisory lock class: one executing run per annotator
BATCH = 32  # comparisons judged (and written in one transaction) per step
ACTIVE = (AIJudgingRun.Status.QUEUED, AIJudgingRun.Status.RUNNING)

# Remote settings and their defaults (the form offers the same fields).
REMOTE_DEFAULTS = {"timeout": 30.0, "max_attempts": 3, "backoff": 0.5, "concurrency": 4}
LOCAL_DEFAULTS = {"batch_size": 8, "max_chars": LOCAL_MAX_CHARS}


# ---------------------------------------------------------------- annotators


def _settings_clean(kind: str, raw: dict) -> dict:
    if kind not in AIAnnotator.Kind.values:
        raise ApplicationError(f"Unknown AI annotator kind '{kind}'.")
    if kind == AIAnnotator.Kind.REWARD_MODEL:
        return {}
    out: dict = {}
    template = (raw.get("prompt_template") or "").strip()
    if template:
        try:
            out["prompt_template"] = template_check(template)
        except ValueError as exc:
            raise ApplicationError(f"Bad prompt template: {exc}.") from exc
    defaults = LOCAL_DEFAULTS if kind == AIAnnotator.Kind.LOCAL_LLM else REMOTE_DEFAULTS
    for key, default in defaults.items():
        value = raw.get(key)
        if value in (None, ""):
            continue
        try:
            value = type(default)(value)
        except (TypeError, ValueError):
            raise ApplicationError(f"Bad value for {key}: {value!r}.") from None
        if value <= 0 or (key == "max_attempts" and value > 10):
            raise ApplicationError(f"{key} must be positive (max_attempts at most 10).")
        out[key] = value
    if kind == AIAnnotator.Kind.REMOTE_LLM:
        base_url = (raw.get("base_url") or "").strip()
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ApplicationError("A remote LLM judge needs a base URL (http:// or https://).")
        if parsed.username or parsed.password:
            raise ApplicationError("Put the API key in the key field, not in the URL.")
        model = (raw.get("model") or "").strip()
        if not model:
            raise ApplicationError("A remote LLM judge needs a model name.")
        out.update(base_url=base_url, model=model[:100])
    return out


def annotator_create(
    *,
    project: Project,
    name: str,
    kind: str,
    settings: dict | None = None,
    api_key: str = "",
    is_active: bool = True,
) -> AIAnnotator:
    name = (name or "").strip()
    if not name:
        raise ApplicationError("Give the AI annotator a name.")
    if AIAnnotator.objects.filter(project=project, name=name).exists():
        raise ApplicationError(f"The project already has an AI annotator named '{name}'.")
    return AIAnnotator.objects.create(
        project=project,
        name=name,
        kind=kind,
        settings=_settings_clean(kind, settings or {}),
        api_key=(api_key or "").strip(),
        is_active=is_active,
    )


def annotator_update(
    *,
    annotator: AIAnnotator,
    settings: dict | None = None,
    api_key: str | None = None,
    clear_api_key: bool = False,
    is_active: bool | None = None,
) -> AIAnnotator:
    """Change settings, activity or the key. `api_key` None or "" keeps the stored key
    (forms never show it back); `clear_api_key` removes it. Name and kind are fixed."""
    if settings is not None:
        annotator.settings = _settings_clean(annotator.kind, settings)
    if clear_api_key:
        annotator.api_key = ""
    elif api_key:
        annotator.api_key = api_key.strip()
    if is_active is not None:
        annotator.is_active = is_active
    annotator.save(update_fields=["settings", "api_key", "is_active"])
    return annotator


# ---------------------------------------------------------------- model versions


def _template_suffix(annotator: AIAnnotator) -> str:
    template = annotator.settings.get("prompt_template")
    if not template or template == DEFAULT_TEMPLATE:
        return ""
    return "+t" + hashlib.sha256(template.encode()).hexdigest()[:8]


def _active_model_version(project: Project):
    from scoring.models import ModelVersion

    return ModelVersion.objects.filter(
        project=project, is_active=True, status=ModelVersion.Status.SUCCEEDED
    ).first()


def annotator_model_version(*, annotator: AIAnnotator) -> str:
    """The version string verdicts of `annotator` are made under now; ApplicationError when
    the annotator cannot judge (no active reward model)."""
    if annotator.kind == AIAnnotator.Kind.REWARD_MODEL:
        version = _active_model_version(annotator.project)
        if version is None:
            raise ApplicationError(
                "The project has no active reward model: train one on the models page first."
            )
        return f"reward-model#{version.pk}"
    if annotator.kind == AIAnnotator.Kind.LOCAL_LLM:
        from curation.judges.llm import model_version

        return (model_version() + _template_suffix(annotator))[:100]
    host = urlparse(annotator.settings.get("base_url", "")).hostname or "?"
    return f"{annotator.settings.get('model', '?')}@{host}{_template_suffix(annotator)}"[:100]


# ---------------------------------------------------------------- runs


def _targets(run: AIJudgingRun) -> list[int]:
    qs = Comparison.objects.filter(project_id=run.project_id, excluded=False)
    if run.scope == AIJudgingRun.Scope.ROUTED:
        qs = qs.filter(route__in=[Comparison.Route.AI, Comparison.Route.BOTH])
    elif run.scope == AIJudgingRun.Scope.IDS:
        qs = qs.filter(id__in=run.comparison_ids or [])
    return list(qs.order_by("id").values_list("id", flat=True))


def ai_judging_run_create(
    *,
    annotator: AIAnnotator,
    scope: str = AIJudgingRun.Scope.ALL,
    comparison_ids: list[int] | None = None,
    created_by=None,
    enqueue: bool = True,
) -> AIJudgingRun:
    """A queued run of `annotator`, enqueued once committed (`enqueue=False`: the caller
    executes it). Refused while another run of the annotator is queued or running."""
    if not annotator.is_active:
        raise ApplicationError(f"{annotator.source_name} is inactive; activate it first.")
    if scope not in AIJudgingRun.Scope.values:
        raise ApplicationError(f"Unknown scope '{scope}'.")
    if comparison_ids is not None:
        scope = AIJudgingRun.Scope.IDS
        comparison_ids = sorted({int(i) for i in comparison_ids})
        found = Comparison.objects.filter(
            project_id=annotator.project_id, id__in=comparison_ids
        ).count()
        if found != len(comparison_ids):
            raise ApplicationError(
                f"{len(comparison_ids) - found} of the comparison ids are not in this project."
            )
    elif scope == AIJudgingRun.Scope.IDS:
        raise ApplicationError("Give the comparison ids to judge.")
    model_version = annotator_model_version(annotator=annotator)
    with transaction.atomic():
        # Serialise creations for one annotator (its row as the lock).
        AIAnnotator.objects.select_for_update().filter(pk=annotator.pk).first()
        if AIJudgingRun.objects.filter(annotator=annotator, status__in=ACTIVE).exists():
            raise ApplicationError(
                f"{annotator.source_name} already has a run queued or running; wait for it "
                "or cancel it."
            )
        run = AIJudgingRun.objects.create(
            project_id=annotator.project_id,
            annotator=annotator,
            scope=scope,
            comparison_ids=comparison_ids,
            model_version=model_version,
            created_by=created_by,
        )
    if enqueue:
        from curation.judges.tasks import ai_judgements_run_task

        transaction.on_commit(lambda: ai_judgements_run_task.delay(run.id))
    return run


def ai_judging_run_start(**kwargs) -> AIJudgingRun:
    """ai_judging_run_create with the Celery task enqueued."""
    return ai_judging_run_create(**kwargs, enqueue=True)


def ai_judgements_run(
    *,
    annotator: AIAnnotator,
    comparison_ids: list[int] | None = None,
    scope: str = AIJudgingRun.Scope.ALL,
    progress: Progress | None = None,
) -> AIJudgingRun:
    """Judge in this process (no worker); returns the finished run. See the module doc."""
    run = ai_judging_run_create(
        annotator=annotator, scope=scope, comparison_ids=comparison_ids, enqueue=False
    )
    return ai_judging_run_execute(run=run, progress=progress)


def ai_judging_run_cancel(*, run: AIJudgingRun) -> AIJudgingRun:
    """Stop a queued or running run at its next batch; what it wrote stays."""
    AIJudgingRun.objects.filter(pk=run.pk, status__in=ACTIVE).update(
        status=AIJudgingRun.Status.CANCELLED, finished_at=timezone.now()
    )
    run.refresh_from_db()
    return run


def ai_judging_run_execute(
    *,
    run: AIJudgingRun,
    progress: Progress | None = None,
    time_budget_s: float | None = None,
) -> AIJudgingRun:
    """Execute a queued run, or go on with one that is running (a dead worker's, or one that
    stopped at its time budget). Idempotent: a finished run is left alone, and so is one
    whose annotator another worker is running now. With `time_budget_s` it stops after the
    first batch that ends past the budget and leaves the run "running" for the next call."""
    with advisory_lock_try(JUDGES_LOCK, run.annotator_id) as locked:
        claimed = locked and AIJudgingRun.objects.filter(pk=run.pk, status__in=ACTIVE).update(
            status=AIJudgingRun.Status.RUNNING,
            started_at=Coalesce(F("started_at"), Now()),
            error="",
        )
        if claimed:
            _run_execute(run.pk, progress, time_budget_s)
    run.refresh_from_db()
    return run


def _run_execute(run_id: int, progress: Progress | None, time_budget_s: float | None) -> None:
    started = time.monotonic()
    run = AIJudgingRun.objects.select_related("annotator", "annotator__project").get(pk=run_id)
    running = AIJudgingRun.objects.filter(pk=run_id, status=AIJudgingRun.Status.RUNNING)
    annotator = run.annotator
    try:
        ids = _targets(run)
        # Verdicts of this version so far: ok ones of earlier runs are skipped; this run's
        # own (when it goes on after a stop) count as its work and are not asked again.
        skipped: set[int] = set()
        mine = {AIVerdict.Status.OK: set(), AIVerdict.Status.FAILED: set()}
        for cid, status, verdict_run in AIVerdict.objects.filter(
            annotator=annotator, model_version=run.model_version
        ).values_list("comparison_id", "status", "run_id"):
            if verdict_run == run_id:
                mine[status].add(cid)
            elif status == AIVerdict.Status.OK:
                skipped.add(cid)
        wanted = set(ids)
        skipped &= wanted
        counts = {
            "ok": len(mine[AIVerdict.Status.OK] & wanted),
            "failed": len(mine[AIVerdict.Status.FAILED] & wanted),
        }
        seen = skipped | mine[AIVerdict.Status.OK] | mine[AIVerdict.Status.FAILED]
        todo = [i for i in ids if i not in seen]
        done = len(ids) - len(todo)
        running.update(
            total=len(ids),
            done=done,
            skipped_count=len(skipped),
            ok_count=counts["ok"],
            failed_count=counts["failed"],
        )
        if progress:
            progress(done, len(ids))
        judge = _judge_for(annotator, run.model_version, todo)
        for start in range(0, len(todo), BATCH):
            if not running.exists():  # cancelled
                logger.info("AI judging run %s was cancelled", run_id)
                return
            if time_budget_s is not None and start and time.monotonic() - started > time_budget_s:
                return  # the caller (the task) goes on in a fresh call
            results = judge(todo[start : start + BATCH])
            ok, failed = _verdicts_write(run, annotator, results)
            counts["ok"] += ok
            counts["failed"] += failed
            done += len(results)
            running.update(done=done, ok_count=counts["ok"], failed_count=counts["failed"])
            if progress:
                progress(done, len(ids))
        running.update(status=AIJudgingRun.Status.SUCCEEDED, finished_at=timezone.now())
    except Exception as exc:
        logger.exception("AI judging run %s failed", run_id)
        message = f"{type(exc).__name__}: {exc}"[:2000]
        if annotator.api_key:
            message = message.replace(annotator.api_key, "[key]")
        running.update(status=AIJudgingRun.Status.FAILED, error=message, finished_at=timezone.now())


# ---------------------------------------------------------------- judges


@dataclass
class Result:
    comparison_id: int
    ok: bool
    p_a_ab: float | None = None
    p_a_ba: float | None = None
    p_a: float | None = None
    spread: float | None = None
    orders_agree: bool | None = None
    choice: str = ""
    confidence: float | None = None
    rationale: str = ""
    error: str = ""
    attempts: int = 1


Judge = Callable[[list[int]], list[Result]]


def _judge_for(annotator: AIAnnotator, model_version: str, ids: list[int]) -> Judge:
    if annotator.kind == AIAnnotator.Kind.REWARD_MODEL:
        return _reward_model_judge(annotator, model_version, ids)
    if annotator.kind == AIAnnotator.Kind.LOCAL_LLM:
        return _local_llm_judge(annotator)
    return _remote_llm_judge(annotator)


def _reward_model_judge(annotator: AIAnnotator, model_version: str, ids: list[int]) -> Judge:
    from scoring.models import ModelVersion, Score
    from scoring.services import scores_compute

    version_id = int(model_version.split("#", 1)[1])
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None or version.status != ModelVersion.Status.SUCCEEDED:
        raise ApplicationError(f"Reward model #{version_id} is gone or not trained.")
    scored = Score.objects.filter(model_version=version)
    if ids and scored.filter(comparison_id__in=ids).count() < len(ids):
        # Comparisons imported after the scoring task ran: score them now (upserts).
        scores_compute(version=version)

    def judge(batch: list[int]) -> list[Result]:
        rows = {
            cid: (p, s)
            for cid, p, s in scored.filter(comparison_id__in=batch).values_list(
                "comparison_id", "p_a", "spread"
            )
        }
        have = [cid for cid in batch if cid in rows]
        results = {
            cid: Result(cid, ok=False, error=f"reward model #{version_id} has no score for it "
                        "(not a text pair)")
            for cid in batch if cid not in rows
        }  # fmt: skip
        if have:
            p = np.array([rows[c][0] for c in have])
            s = np.array([rows[c][1] for c in have])
            choice_a, confidence = reward_model_verdicts(p, s)
            for cid, pi, si, ca, conf in zip(have, p, s, choice_a, confidence, strict=True):
                results[cid] = Result(
                    cid,
                    ok=True,
                    p_a_ab=float(pi),
                    p_a=float(pi),
                    spread=float(si),
                    orders_agree=True,
                    choice="a" if ca else "b",
                    confidence=float(conf),
                    rationale=f"Reward model #{version_id}: P(A better) {pi:.3f}, "
                    f"ensemble spread {si:.3f}.",
                )
        return [results[cid] for cid in batch]

    return judge


def _texts(batch: list[int]) -> dict[int, tuple[str, str, str] | None]:
    """(prompt, text A, text B) per comparison; None for a pair that is not text."""
    out: dict[int, tuple[str, str, str] | None] = {}
    for cid, prompt, kind_a, a, kind_b, b in Comparison.objects.filter(id__in=batch).values_list(
        "id",
        "prompt__text",
        "candidate_a__kind",
        "candidate_a__text",
        "candidate_b__kind",
        "candidate_b__text",
    ):
        text = kind_a == kind_b == Candidate.Kind.TEXT
        out[cid] = (prompt or "", a or "", b or "") if text else None
    return out


def _both_orders_result(cid: int, p_ab: float, p_first_ba: float, attempts: int) -> Result:
    p_ba = 1.0 - p_first_ba  # B was shown first: map back to the canonical A
    p, choice_a, confidence, agree = orders_combine(np.array([p_ab]), np.array([p_ba]))
    agree_b = bool(agree[0])
    return Result(
        cid,
        ok=True,
        p_a_ab=float(p_ab),
        p_a_ba=float(p_ba),
        p_a=float(p[0]),
        orders_agree=agree_b,
        choice="a" if choice_a[0] else "b",
        confidence=float(confidence[0]),
        rationale=f"P(A better) {p_ab:.3f} asked A/B, {p_ba:.3f} asked B/A"
        + ("." if agree_b else "; the two orders disagree (position bias), low confidence."),
        attempts=attempts,
    )


def _local_llm_judge(annotator: AIAnnotator) -> Judge:
    from curation.judges.llm import model_get

    options = {**LOCAL_DEFAULTS, **annotator.settings}
    template = annotator.settings.get("prompt_template", "")

    def judge(batch: list[int]) -> list[Result]:
        model = model_get()  # loaded on the first batch, once per worker process
        texts = _texts(batch)
        text_ids = [cid for cid in batch if texts[cid] is not None]
        conversations = []
        for cid in text_ids:
            prompt, a, b = texts[cid]
            for first, second in ((a, b), (b, a)):
                conversations.append(
                    judge_messages(
                        prompt=prompt,
                        first=first,
                        second=second,
                        template=template,
                        max_chars=int(options["max_chars"]),
                    )
                )
        results = {cid: Result(cid, ok=False, error="not a text pair") for cid in batch}
        try:
            p = model.p_first(conversations, batch_size=int(options["batch_size"]))
        except Exception as exc:
            logger.exception("local LLM judge failed on a batch")
            for cid in text_ids:
                results[cid] = Result(cid, ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
            return [results[cid] for cid in batch]
        for i, cid in enumerate(text_ids):
            results[cid] = _both_orders_result(cid, float(p[2 * i]), float(p[2 * i + 1]), 1)
        return [results[cid] for cid in batch]

    return judge


def _remote_llm_judge(annotator: AIAnnotator) -> Judge:
    from curation.judges.remote import RemoteJudge, pair_ask

    options = {**REMOTE_DEFAULTS, **annotator.settings}
    client = RemoteJudge(
        base_url=options["base_url"],
        model=options["model"],
        api_key=annotator.api_key,
        timeout=float(options["timeout"]),
        max_attempts=int(options["max_attempts"]),
        backoff=float(options["backoff"]),
    )
    template = annotator.settings.get("prompt_template", "")

    def one(cid: int, texts: tuple[str, str, str] | None) -> Result:
        if texts is None:
            return Result(cid, ok=False, error="not a text pair")
        answer = pair_ask(client, *texts, template=template)
        if not answer.ok:
            return Result(cid, ok=False, error=answer.error, attempts=answer.attempts)
        # _both_orders_result takes P(first shown) of the B/A order.
        return _both_orders_result(cid, answer.p_a_ab, 1.0 - answer.p_a_ba, answer.attempts)

    def judge(batch: list[int]) -> list[Result]:
        texts = _texts(batch)
        workers = max(1, int(options["concurrency"]))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda cid: one(cid, texts[cid]), batch))

    return judge


# ---------------------------------------------------------------- writing verdicts


def judgement_idempotency_key(*, annotator_id: int, comparison_id: int, model_version: str) -> str:
    return hashlib.sha256(f"ai:{annotator_id}:{comparison_id}:{model_version}".encode()).hexdigest()


@transaction.atomic
def _verdicts_write(
    run: AIJudgingRun, annotator: AIAnnotator, results: list[Result]
) -> tuple[int, int]:
    version = run.model_version
    schema_version = annotator.project.label_schema_version
    ok_ids = [r.comparison_id for r in results if r.ok]
    existing = {
        v.comparison_id: v
        for v in AIVerdict.objects.select_for_update().filter(
            annotator=annotator,
            model_version=version,
            comparison_id__in=[r.comparison_id for r in results],
        )
    }
    judgements = {
        j.comparison_id: j
        for j in Judgement.objects.select_for_update().filter(
            comparison_id__in=ok_ids, source_name=annotator.source_name, user__isnull=True
        )
    }
    # Older versions' verdicts stop being current where this one succeeds.
    AIVerdict.objects.filter(
        annotator=annotator, comparison_id__in=ok_ids, is_current=True
    ).exclude(model_version=version).update(is_current=False)
    ok = failed = 0
    for r in results:
        verdict = existing.get(r.comparison_id) or AIVerdict(
            annotator=annotator, comparison_id=r.comparison_id, model_version=version
        )
        if verdict.pk and verdict.status == AIVerdict.Status.OK:
            continue  # judged meanwhile; nothing more to write
        verdict.run = run
        verdict.attempts = (verdict.attempts or 0) + r.attempts
        verdict.p_a_ab, verdict.p_a_ba, verdict.p_a = r.p_a_ab, r.p_a_ba, r.p_a
        verdict.spread, verdict.orders_agree = r.spread, r.orders_agree
        verdict.rationale, verdict.error = r.rationale, r.error
        if not r.ok:
            verdict.status, verdict.choice, verdict.confidence = AIVerdict.Status.FAILED, "", None
            verdict.is_current = False
            verdict.save()
            failed += 1
            continue
        verdict.status, verdict.choice, verdict.confidence = (
            AIVerdict.Status.OK,
            r.choice,
            r.confidence,
        )
        verdict.is_current = True
        fields = {
            "source_kind": Judgement.SourceKind.AI,
            "model_version": version,
            "choice": r.choice,
            "confidence": r.confidence,
            "rationale": r.rationale,
            "strength": None,
            "label_schema_version": schema_version,
            "idempotency_key": judgement_idempotency_key(
                annotator_id=annotator.pk, comparison_id=r.comparison_id, model_version=version
            ),
        }
        judgement = judgements.get(r.comparison_id)
        if judgement is None:
            judgement = Judgement.objects.create(
                comparison_id=r.comparison_id,
                user=None,
                source_name=annotator.source_name,
                **fields,
            )
        else:
            for key, value in fields.items():
                setattr(judgement, key, value)
            judgement.save(update_fields=list(fields))
        verdict.judgement = judgement
        verdict.save()
        ok += 1
    if ok_ids:
        comparison_labels_refresh(comparison_ids=ok_ids)
    return ok, failed
