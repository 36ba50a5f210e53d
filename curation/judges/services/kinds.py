"""The kinds of AI judge, in one registry: per kind, its settings and their defaults, the
model version its verdicts are made under, and the judge it makes for a run.

A judge is a function from a batch of comparison ids to one Result each."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np

from annotation.models import Candidate, Comparison, Project
from core.exceptions import ApplicationError
from curation.judges.models import AIAnnotator
from curation.judges.verdicts import (
    DEFAULT_TEMPLATE,
    LOCAL_MAX_CHARS,
    judge_messages,
    orders_combine,
    reward_model_verdicts,
)

logger = logging.getLogger(__name__)

# Remote settings and their defaults (the form offers the same fields).
REMOTE_DEFAULTS = {"timeout": 30.0, "max_attempts": 3, "backoff": 0.5, "concurrency": 4}
LOCAL_DEFAULTS = {"batch_size": 8, "max_chars": LOCAL_MAX_CHARS}


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


def _template_suffix(annotator: AIAnnotator) -> str:
    template = annotator.settings.get("prompt_template")
    if not template or template == DEFAULT_TEMPLATE:
        return ""
    return "+t" + hashlib.sha256(template.encode()).hexdigest()[:8]


def _active_model_version(project: Project):
    from scoring.selectors import model_version_active

    return model_version_active(project=project)


def _reward_model_version(annotator: AIAnnotator) -> str:
    version = _active_model_version(annotator.project)
    if version is None:
        raise ApplicationError(
            "The project has no active reward model: train one on the models page first."
        )
    return f"reward-model#{version.pk}"


def _local_llm_text_only(project: Project) -> None:
    """The bundled SmolLM2 reads text only: refuse a project of image or audio pairs rather
    than let it guess from the prompts."""
    from scoring.selectors import project_modality

    modality = project_modality(project=project)
    if modality != Candidate.Kind.TEXT:
        raise ApplicationError(
            f"The local LLM judge (SmolLM2) reads text only, and this project compares "
            f"{modality} files: it cannot judge them. Use the reward-model judge (heads on "
            f"{modality} embeddings), or a remote judge served by a model that takes "
            f"{modality} input."
        )


def _local_llm_version(annotator: AIAnnotator) -> str:
    from curation.judges.llm import model_version

    _local_llm_text_only(annotator.project)
    return (model_version() + _template_suffix(annotator))[:100]


def _remote_llm_version(annotator: AIAnnotator) -> str:
    host = urlparse(annotator.settings.get("base_url", "")).hostname or "?"
    return f"{annotator.settings.get('model', '?')}@{host}{_template_suffix(annotator)}"[:100]


def _reward_model_judge(annotator: AIAnnotator, model_version: str, ids: list[int]) -> Judge:
    from scoring.models import ModelVersion, Score
    from scoring.services.scores import scores_compute

    version_id = int(model_version.split("#", 1)[1])
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        raise ApplicationError(f"Reward model #{version_id} is gone.")
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


def _local_llm_judge(annotator: AIAnnotator, model_version: str, ids: list[int]) -> Judge:
    from curation.judges.llm import model_get

    _local_llm_text_only(annotator.project)  # a run queued before the media were imported

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


def _remote_llm_judge(annotator: AIAnnotator, model_version: str, ids: list[int]) -> Judge:
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


@dataclass(frozen=True)
class JudgeKind:
    """What the app needs to know of one kind of judge."""

    # Its settings and their defaults (types from the defaults); {}: no settings.
    defaults: dict = field(default_factory=dict)
    # The model version string its verdicts are made under now (ApplicationError: it
    # cannot judge now).
    version: Callable[[AIAnnotator], str] = _remote_llm_version
    # (annotator, model version, the run's comparison ids) -> the judge for the run.
    factory: Callable[[AIAnnotator, str, list[int]], Judge] = _remote_llm_judge
    # It talks to a server: it needs a base URL and a model name.
    remote: bool = False


JUDGE_KINDS: dict[str, JudgeKind] = {
    AIAnnotator.Kind.REWARD_MODEL: JudgeKind({}, _reward_model_version, _reward_model_judge),
    AIAnnotator.Kind.LOCAL_LLM: JudgeKind(LOCAL_DEFAULTS, _local_llm_version, _local_llm_judge),
    AIAnnotator.Kind.REMOTE_LLM: JudgeKind(
        REMOTE_DEFAULTS, _remote_llm_version, _remote_llm_judge, remote=True
    ),
}


def judge_kind(kind: str) -> JudgeKind:
    try:
        return JUDGE_KINDS[kind]
    except KeyError:
        raise ApplicationError(f"Unknown AI annotator kind '{kind}'.") from None


def annotator_model_version(*, annotator: AIAnnotator) -> str:
    """The version string verdicts of `annotator` are made under now; ApplicationError when
    the annotator cannot judge (no active reward model)."""
    return judge_kind(annotator.kind).version(annotator)


def judge_for(annotator: AIAnnotator, model_version: str, ids: list[int]) -> Judge:
    """The judge of a run of `annotator` over `ids` at `model_version`."""
    return judge_kind(annotator.kind).factory(annotator, model_version, ids)
