"""Importing preference files: validate everything, then write everything in one transaction.

Rows are read and validated first (errors name the line and the field; nothing is written
if any row is bad). Then, in chunks, prompts, candidates, comparisons and the imported
labels (judgements from the source "import:<file name>") are written with batched look-ups
of what exists already (content hashes) and bulk inserts, never a query per row.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from annotation import formats
from annotation.exceptions import ApplicationError
from annotation.models import (
    Candidate,
    Choice,
    Comparison,
    ImportJob,
    Judgement,
    Project,
    Prompt,
    Ranking,
)
from annotation.services.bulk import rows_insert
from annotation.services.labels import comparison_labels_refresh

MAX_REPORTED_ERRORS = 100
CHUNK = 20_000
LOOKUP_BATCH = 5_000

Progress = Callable[[str, int, int | None], None]


class ImportRejected(ApplicationError):
    """The file has errors; `errors` lists them (line and field), nothing was written."""


@dataclass
class ImportResult:
    format: str
    rows: int
    comparisons_created: int
    comparisons_existing: int
    prompts_created: int
    candidates_created: int
    judgements_created: int
    duplicate_rows: int
    seconds: float

    @property
    def message(self) -> str:
        if not (self.comparisons_created or self.judgements_created):
            return (
                f"nothing new: all {self.comparisons_existing} comparisons in the file "
                "were already imported"
            )
        return (
            f"imported {self.comparisons_created} comparisons ({self.prompts_created} prompts, "
            f"{self.candidates_created} candidates) in {self.seconds:.1f} s"
        )

    def as_dict(self) -> dict:
        return {**self.__dict__, "message": self.message}


def pairs_import(
    *,
    project: Project,
    path: Path,
    source_name: str,
    fmt: str = "auto",
    options: formats.Options | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import a file into `project`. Raises ImportRejected (nothing written) on bad input."""
    started = time.perf_counter()
    options = options or formats.Options(max_line_bytes=settings.IMPORT_MAX_LINE_BYTES)
    progress = progress or (lambda phase, done, total: None)
    total = formats.count_rows(path)
    records, fmt = _records_validated(path, fmt, options, progress, total)
    with transaction.atomic():
        result = _records_write(project, records, source_name, progress)
    result.format = fmt
    result.seconds = time.perf_counter() - started
    return result


def _records_validated(
    path: Path, fmt: str, options: formats.Options, progress: Progress, total: int | None
) -> tuple[list[formats.Record], str]:
    records: list[formats.Record] = []
    errors: list[str] = []
    error_count = 0
    try:
        for n, (_line, item, fmt_in_use) in enumerate(
            formats.read_records(path, fmt, options), start=1
        ):
            fmt = fmt_in_use
            if isinstance(item, formats.RowError):
                error_count += 1
                if len(errors) < MAX_REPORTED_ERRORS:
                    errors.append(str(item))
            elif not error_count:
                records.append(item)
            if n % 5000 == 0:
                progress("validating", n, total)
    except formats.FileError as exc:
        raise ImportRejected(str(exc), errors=[*errors, str(exc)]) from None
    if error_count > len(errors):
        errors.append(f"... and {error_count - len(errors)} more")
    if error_count:
        raise ImportRejected(f"{error_count} bad row(s); nothing was imported", errors=errors)
    if not records:
        raise ImportRejected("the file holds no rows", errors=["the file holds no rows"])
    return records, fmt


def _queue_key(pair_hash: str) -> int:
    return int(pair_hash[:15], 16)


def _lookup(queryset, field: str, values: Iterable, columns: tuple[str, ...]) -> list[tuple]:
    values = list(values)
    out: list[tuple] = []
    for i in range(0, len(values), LOOKUP_BATCH):
        batch = values[i : i + LOOKUP_BATCH]
        out.extend(queryset.filter(**{f"{field}__in": batch}).values_list(*columns))
    return out


def _records_write(
    project: Project,
    records: list[formats.Record],
    source_name: str,
    progress: Progress,
) -> ImportResult:
    result = ImportResult("", len(records), 0, 0, 0, 0, 0, 0, 0.0)
    prompt_ids: dict[str, int] = {}
    candidate_ids: dict[tuple[int, str], int] = {}
    seen_pairs: set[tuple[int, int]] = set()
    relabel: set[int] = set()
    for start in range(0, len(records), CHUNK):
        chunk = records[start : start + CHUNK]
        _prompts_write(project, chunk, prompt_ids, result)
        _candidates_write(chunk, prompt_ids, candidate_ids, result)
        _comparisons_write(
            project, chunk, prompt_ids, candidate_ids, seen_pairs, relabel, source_name, result
        )
        progress("writing", start + len(chunk), len(records))
    if relabel:
        comparison_labels_refresh(comparison_ids=relabel)
    return result


def _prompts_write(
    project: Project, chunk: list[formats.Record], prompt_ids: dict[str, int], result: ImportResult
) -> None:
    wanted = {r.prompt.hash: r for r in chunk if r.prompt.hash not in prompt_ids}
    existing = _lookup(
        Prompt.objects.filter(project=project), "content_hash", wanted, ("content_hash", "id")
    )
    prompt_ids.update(existing)
    new = [r for h, r in wanted.items() if h not in prompt_ids]
    ids = rows_insert(
        Prompt,
        ("project", "content_hash", "text", "messages"),
        [(project.id, r.prompt.hash, r.prompt.text, r.prompt.messages) for r in new],
    )
    prompt_ids.update(zip((r.prompt.hash for r in new), ids, strict=True))
    result.prompts_created += len(ids)


def _candidates_write(
    chunk: list[formats.Record],
    prompt_ids: dict[str, int],
    candidate_ids: dict[tuple[int, str], int],
    result: ImportResult,
) -> None:
    wanted: dict[tuple[int, str], formats.Response] = {}
    for r in chunk:
        pid = prompt_ids[r.prompt.hash]
        for resp in r.responses:
            key = (pid, resp.content.hash)
            if key not in candidate_ids:
                wanted.setdefault(key, resp)
    hashes = {h for _, h in wanted}
    for pid, h, cid in _lookup(
        Candidate.objects.filter(prompt_id__in={p for p, _ in wanted}),
        "content_hash",
        hashes,
        ("prompt_id", "content_hash", "id"),
    ):
        if (pid, h) in wanted:
            candidate_ids[(pid, h)] = cid
    new = [(k, resp) for k, resp in wanted.items() if k not in candidate_ids]
    ids = rows_insert(
        Candidate,
        ("prompt", "kind", "content_hash", "text", "messages", "source_model"),
        [
            (pid, "text", h, resp.content.text, resp.content.messages, resp.model)
            for (pid, h), resp in new
        ],
    )
    candidate_ids.update(zip((k for k, _ in new), ids, strict=True))
    result.candidates_created += len(ids)


_TO_CHOICE = {
    # (label, whether the record's first response is canonical a)
    ("first", True): Choice.A,
    ("first", False): Choice.B,
    ("second", True): Choice.B,
    ("second", False): Choice.A,
    ("tie", True): Choice.TIE,
    ("tie", False): Choice.TIE,
}


def _comparisons_write(
    project: Project,
    chunk: list[formats.Record],
    prompt_ids: dict[str, int],
    candidate_ids: dict[tuple[int, str], int],
    seen_pairs: set[tuple[int, int]],
    relabel: set[int],
    source_name: str,
    result: ImportResult,
) -> None:
    # One entry per distinct pair in this chunk: (a_id, b_id) -> facts to write.
    pairs: dict[tuple[int, int], dict] = {}
    rankings: list[tuple[int, list[int]]] = []
    for r in chunk:
        pid = prompt_ids[r.prompt.hash]
        cids = [candidate_ids[(pid, resp.content.hash)] for resp in r.responses]
        if r.ranked:
            rankings.append((pid, cids))
        for i, j, label in r.pairs:
            hi, hj = r.responses[i].content.hash, r.responses[j].content.hash
            first_is_a = hi < hj
            a, b = (cids[i], cids[j]) if first_is_a else (cids[j], cids[i])
            ha, hb = (hi, hj) if first_is_a else (hj, hi)
            if (a, b) in seen_pairs or (a, b) in pairs:
                result.duplicate_rows += 1
                continue
            pairs[(a, b)] = {
                "prompt": pid,
                "hash": hashlib.sha256(f"{ha}{hb}".encode()).hexdigest(),
                "choice": _TO_CHOICE[(label, first_is_a)] if label else None,
                "margin": r.margin,
                "external_id": r.external_id,
                "metadata": r.metadata,
            }
    seen_pairs.update(pairs)
    existing: dict[tuple[int, int], int] = {}
    for a, b, cid in _lookup(
        Comparison.objects.filter(project=project),
        "candidate_a_id",
        {a for a, _ in pairs},
        ("candidate_a_id", "candidate_b_id", "id"),
    ):
        if (a, b) in pairs:
            existing[(a, b)] = cid
    result.comparisons_existing += len(existing)
    ranking_ids = _rankings_write(project, rankings)
    new = [(k, p) for k, p in pairs.items() if k not in existing]
    ids = rows_insert(
        Comparison,
        (
            "project", "prompt", "candidate_a", "candidate_b", "ranking", "external_id",
            "status", "queue_key", "label", "label_confidence", "label_margin", "metadata",
        ),
        [
            (
                project.id, p["prompt"], a, b, ranking_ids.get(p["prompt"]), p["external_id"],
                Comparison.Status.LABELLED if p["choice"] else Comparison.Status.PENDING,
                _queue_key(p["hash"]), p["choice"], 1.0 if p["choice"] else None,
                p["margin"], p["metadata"],
            )
            for (a, b), p in new
        ],
    )  # fmt: skip
    result.comparisons_created += len(ids)
    comparison_ids = dict(zip((k for k, _ in new), ids, strict=True))
    comparison_ids.update(existing)
    _judgements_write(pairs, comparison_ids, existing, relabel, source_name, result)


def _judgements_write(
    pairs: dict[tuple[int, int], dict],
    comparison_ids: dict[tuple[int, int], int],
    existing: dict[tuple[int, int], int],
    relabel: set[int],
    source_name: str,
    result: ImportResult,
) -> None:
    labelled = {comparison_ids[k]: p for k, p in pairs.items() if p["choice"]}
    already = set(
        _lookup(
            Judgement.objects.filter(source_name=source_name, user__isnull=True),
            "comparison_id",
            [cid for k, cid in existing.items() if pairs[k]["choice"]],
            ("comparison_id",),
        )
    )
    already_ids = {cid for (cid,) in already}
    rows = []
    for cid, p in labelled.items():
        if cid in already_ids:
            continue
        key = hashlib.sha256(f"{source_name}\x00{cid}".encode()).hexdigest()
        rows.append((cid, Judgement.SourceKind.IMPORT, source_name, p["choice"], p["margin"], key))
    existing_ids = set(existing.values())
    relabel.update(cid for cid, *_ in rows if cid in existing_ids)
    result.judgements_created += len(
        rows_insert(
            Judgement,
            ("comparison", "source_kind", "source_name", "choice", "margin", "idempotency_key"),
            rows,
        )
    )


def _rankings_write(project: Project, rankings: list[tuple[int, list[int]]]) -> dict[int, int]:
    """Create a Ranking per prompt of the ranked shape (once); return prompt id -> ranking id."""
    if not rankings:
        return {}
    prompt_ids = {pid for pid, _ in rankings}
    found = dict(
        _lookup(
            Ranking.objects.filter(project=project), "prompt_id", prompt_ids, ("prompt_id", "id")
        )
    )
    new = {pid: cids for pid, cids in rankings if pid not in found}
    ids = rows_insert(Ranking, ("project", "prompt"), [(project.id, pid) for pid in new])
    found.update(zip(new, ids, strict=True))
    through = Ranking.candidates.through
    links = [
        through(ranking_id=found[pid], candidate_id=c) for pid, cids in new.items() for c in cids
    ]
    through.objects.bulk_create(links, batch_size=5000)
    return found


# ---------------------------------------------------------------------------- jobs


def import_job_create(
    *, project: Project, uploaded_file, fmt: str, options: dict, created_by
) -> ImportJob:
    if fmt not in ImportJob.Format.values:
        raise ApplicationError(f"Unknown format '{fmt}'.")
    if uploaded_file.size > settings.IMPORT_MAX_FILE_BYTES:
        raise ApplicationError(
            f"The file is {uploaded_file.size:,} bytes, over the "
            f"{settings.IMPORT_MAX_FILE_BYTES:,}-byte limit."
        )
    job = ImportJob(
        project=project,
        created_by=created_by,
        original_name=Path(uploaded_file.name).name[:255],
        format=fmt,
        options=options,
    )
    job.file.save(job.original_name, uploaded_file, save=False)
    job.save()
    from annotation.tasks import import_job_run_task

    transaction.on_commit(lambda: import_job_run_task.delay(job.id))
    return job


def import_job_run(*, job: ImportJob) -> ImportJob:
    """Run a queued job (idempotent: a finished job is left as it is)."""
    claimed = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING, started_at=timezone.now(), phase="reading"
    )
    if not claimed:
        job.refresh_from_db()
        return job
    reporter = _ProgressReporter(job.pk)
    try:
        path = Path(job.file.path)
        result = pairs_import(
            project=job.project,
            path=path,
            source_name=f"import:{job.original_name}",
            fmt=job.format,
            options=formats.Options(
                pairs=job.options.get("pairs", "all"),
                max_pairs=int(job.options.get("max_pairs", 45)),
                max_line_bytes=settings.IMPORT_MAX_LINE_BYTES,
            ),
            progress=reporter,
        )
    except ImportRejected as exc:
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.FAILED,
            phase="",
            errors=exc.errors or [exc.message],
            summary={"message": exc.message},
            finished_at=timezone.now(),
        )
    except Exception as exc:
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.FAILED,
            phase="",
            errors=[f"internal error: {type(exc).__name__}: {exc}"],
            summary={"message": "the import failed; nothing was imported"},
            finished_at=timezone.now(),
        )
        raise
    else:
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.SUCCEEDED,
            phase="",
            rows_total=result.rows,
            rows_done=result.rows,
            summary=result.as_dict(),
            finished_at=timezone.now(),
        )
    finally:
        reporter.close()
    job.refresh_from_db()
    return job


class _ProgressReporter:
    """Writes progress through its own connection, so that it is visible while the import's
    transaction is still open. SQLite allows one writer at a time, so there progress is only
    reported outside the transaction (while validating)."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.conn = None
        if connections["default"].vendor == "postgresql":
            self.conn = connections.create_connection("default")
        self.last = 0.0

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 0.25 and phase != "writing":
            return
        self.last = now
        sql = f"UPDATE {ImportJob._meta.db_table} SET phase=%s, rows_done=%s, rows_total=%s WHERE id=%s"
        if self.conn is not None:
            with self.conn.cursor() as cursor:
                cursor.execute(sql, [phase, done, total, self.job_id])
        elif not connections["default"].in_atomic_block:
            with connections["default"].cursor() as cursor:
                cursor.execute(sql, [phase, done, total, self.job_id])

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
