"""Writing verdicts: each Result of a judge becomes an AIVerdict, and an ok one the
annotation Judgement it stands for (see the package doc for the rules)."""

from __future__ import annotations

import hashlib

from django.db import transaction

from annotation.models import Judgement
from annotation.services.labels import comparison_labels_refresh
from curation.judges.models import AIAnnotator, AIJudgingRun, AIVerdict
from curation.judges.services.kinds import Result


def judgement_idempotency_key(*, annotator_id: int, comparison_id: int, model_version: str) -> str:
    return hashlib.sha256(f"ai:{annotator_id}:{comparison_id}:{model_version}".encode()).hexdigest()


@transaction.atomic
def verdicts_write(
    run: AIJudgingRun, annotator: AIAnnotator, results: list[Result]
) -> tuple[int, int]:
    """Write a batch's results in one transaction; return (ok, failed) written. A verdict
    that turned ok meanwhile (another delivery of the run) is left as it is."""
    version = run.model_version
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
        _verdict_fill(verdict, run, r)
        if r.ok:
            verdict.judgement = _judgement_write(annotator, version, r, judgements)
            ok += 1
        else:
            failed += 1
        verdict.save()
    if ok_ids:
        comparison_labels_refresh(comparison_ids=ok_ids)
    return ok, failed


def _verdict_fill(verdict: AIVerdict, run: AIJudgingRun, r: Result) -> None:
    """Set the verdict from a judge's result: ok ones become current, failed ones never."""
    verdict.run = run
    verdict.attempts = (verdict.attempts or 0) + r.attempts
    verdict.p_a_ab, verdict.p_a_ba, verdict.p_a = r.p_a_ab, r.p_a_ba, r.p_a
    verdict.spread, verdict.orders_agree = r.spread, r.orders_agree
    verdict.rationale, verdict.error = r.rationale, r.error
    if r.ok:
        verdict.status, verdict.choice, verdict.confidence = (
            AIVerdict.Status.OK,
            r.choice,
            r.confidence,
        )
    else:
        verdict.status, verdict.choice, verdict.confidence = AIVerdict.Status.FAILED, "", None
    verdict.is_current = r.ok


def _judgement_write(
    annotator: AIAnnotator, version: str, r: Result, judgements: dict[int, Judgement]
) -> Judgement:
    """The annotation Judgement an ok verdict stands for: made, or (a new model version of
    the same annotator) updated in place, one per source and comparison."""
    fields = {
        "source_kind": Judgement.SourceKind.AI,
        "model_version": version,
        "choice": r.choice,
        "confidence": r.confidence,
        "rationale": r.rationale,
        "strength": None,
        "label_schema_version": annotator.project.label_schema_version,
        "idempotency_key": judgement_idempotency_key(
            annotator_id=annotator.pk, comparison_id=r.comparison_id, model_version=version
        ),
    }
    judgement = judgements.get(r.comparison_id)
    if judgement is None:
        return Judgement.objects.create(
            comparison_id=r.comparison_id,
            user=None,
            source_name=annotator.source_name,
            **fields,
        )
    for key, value in fields.items():
        setattr(judgement, key, value)
    judgement.save(update_fields=list(fields))
    return judgement
