"""Importing preference files: validate everything, then write everything in one transaction.

Rows are read and validated first (errors name the line and the field; nothing is written
if any row is bad). Then, in chunks, prompts, candidates, comparisons and the imported
labels (judgements from the source "import:<file name>") are written with batched look-ups
of what exists already (content hashes) and bulk inserts, never a query per row.

Media: a .zip holds the manifest (pairs.jsonl, .csv or .parquet) and the files it names; a
manifest on this machine names files beside it; HF datasets' Parquet carries the bytes. Each
file is read and checked (annotation.media) while the rows are validated, and only its
MediaInfo is kept; once all is valid the files are read again one at a time and stored by
content hash, then the rows are written. Files this import stored are deleted again if its
transaction does not commit.
"""

from __future__ import annotations

import gc
import hashlib
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection, transaction

from annotation import archive, formats
from annotation.media import MediaInfo, MediaInvalid, media_inspect
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
from annotation.services.media import media_delete, media_limits, media_save
from annotation.signals import pairs_imported
from core.exceptions import ApplicationError
from core.locks import advisory_lock_try
from core.runs import OnProgress, RunHandle, run_cancel, run_enqueue, run_execute

MAX_REPORTED_ERRORS = 100
CHUNK = 20_000

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
    files_stored: int = 0  # new files in storage (the others were there already)

    @property
    def message(self) -> str:
        if not (self.comparisons_created or self.judgements_created):
            return (
                f"nothing new: all {self.comparisons_existing} comparisons in the file "
                "were already imported"
            )
        files = f", {self.files_stored} new files" if self.files_stored else ""
        return (
            f"imported {self.comparisons_created} comparisons ({self.prompts_created} prompts, "
            f"{self.candidates_created} candidates{files}) in {self.seconds:.1f} s"
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
    media_folder: Path | None = None,
    files_written: list[str] | None = None,
) -> ImportResult:
    """Import a file (a manifest, or a .zip of one and its media) into `project`. Raises
    ImportRejected (nothing written: no row, no file) on bad input.

    Files named in a manifest outside a .zip are looked up in `media_folder` (the command
    gives the manifest's folder; an upload gives none). The names of the files this import
    stored go into `files_written`: a caller that runs this inside a transaction of its own
    passes the list and deletes them if that transaction fails; without it, this import
    deletes them itself if its own transaction fails."""
    started = time.perf_counter()
    options = options or formats.Options(max_line_bytes=settings.IMPORT_MAX_LINE_BYTES)
    progress = progress or (lambda phase, done, total: None)
    own_files = files_written is None
    written: list[str] = [] if files_written is None else files_written
    try:
        with _gc_paused(), _manifest_open(path, media_folder) as (manifest, source):
            total = formats.count_rows(manifest)
            records, fmt = _records_validated(manifest, fmt, options, progress, total, source)
            with transaction.atomic():
                files_stored = _media_store(records, manifest, source, options, progress, written)
                progress("writing", 0, len(records))
                result = _records_write(project, records, source_name, progress)
            del records
    except BaseException:
        if own_files:
            media_delete(names=written)
        raise
    result.files_stored = files_stored
    result.format = fmt
    result.seconds = time.perf_counter() - started
    # Other apps (scoring embeds the new texts) hear of it once the rows are committed.
    project_id = project.id
    transaction.on_commit(lambda: pairs_imported.send(sender=Project, project_id=project_id))
    return result


def _records_validated(
    path: Path,
    fmt: str,
    options: formats.Options,
    progress: Progress,
    total: int | None,
    source: _Source,
) -> tuple[list[formats.Record], str]:
    records: list[formats.Record] = []
    errors: list[str] = []
    error_count = 0  # error messages (a row may have several: one per file)
    bad_rows = 0
    checker = _MediaChecker(source)
    every = 5000
    try:
        for n, (line, item, fmt_in_use) in enumerate(
            formats.read_records(path, fmt, options), start=1
        ):
            fmt = fmt_in_use
            if not isinstance(item, formats.RowError) and (refs := item.media_refs()):
                # Files take milliseconds each: report progress more often.
                every = 100
                problems = checker.record_check(line, item, refs)
            else:
                problems = [item] if isinstance(item, formats.RowError) else []
            if problems:
                error_count += len(problems)
                bad_rows += 1
                errors.extend(str(p) for p in problems[: MAX_REPORTED_ERRORS - len(errors)])
            elif not error_count:
                records.append(item)
            if n % every == 0:
                progress("validating", n, total)
    except formats.FileError as exc:
        raise ImportRejected(str(exc), errors=[*errors, str(exc)]) from None
    for problem in source.unreferenced_bad(checker.referenced):
        error_count += 1
        if len(errors) < MAX_REPORTED_ERRORS:
            errors.append(problem)
    if error_count > len(errors):
        errors.append(f"... and {error_count - len(errors)} more")
    if error_count:
        what = f"{bad_rows} bad row(s)" if bad_rows else "the archive holds refused files"
        raise ImportRejected(f"{what}; nothing was imported", errors=errors)
    if not records:
        raise ImportRejected("the file holds no rows", errors=["the file holds no rows"])
    return records, fmt


# ---------------------------------------------------------------------------- media

_Source = archive.ZipSource | archive.FolderSource | archive.NoFiles


@contextmanager
def _manifest_open(path: Path, media_folder: Path | None) -> Iterator[tuple[Path, _Source]]:
    """(the manifest to read, where the files it names come from). A .zip's manifest is
    copied into a temporary folder, removed on the way out whatever happens."""
    limits = media_limits()
    max_member = max(limits.image_max_bytes, limits.audio_max_bytes)
    if not archive.is_zip(path):
        if media_folder is not None:
            source: _Source = archive.FolderSource(media_folder, max_member)
        else:
            source = archive.NoFiles()
        yield path, source
        return
    try:
        source = archive.ZipSource(
            path,
            archive.ArchiveLimits(
                max_bytes=settings.IMPORT_ARCHIVE_MAX_BYTES,
                max_ratio=settings.IMPORT_ARCHIVE_MAX_RATIO,
                max_member_bytes=max(max_member, settings.IMPORT_MAX_FILE_BYTES),
            ),
        )
    except archive.ArchiveInvalid as exc:
        raise ImportRejected(
            f"the archive is refused: {exc.errors[0]}", errors=exc.errors
        ) from None
    try:
        with tempfile.TemporaryDirectory(prefix="prefdata-import-") as folder:
            try:
                manifest = source.manifest_extract(Path(folder))
            except archive.FileRefused as exc:
                message = f"the manifest '{source.manifest}' {exc.message}"
                raise ImportRejected(message, errors=[message]) from None
            # The manifest may be large; media members stay capped by the media limits.
            source.limits = archive.ArchiveLimits(
                source.limits.max_bytes, source.limits.max_ratio, max_member
            )
            yield manifest, source
    finally:
        source.close()


class _MediaChecker:
    """Reads and checks every file the rows name, once per file; keeps only MediaInfo."""

    def __init__(self, source: _Source) -> None:
        self.source = source
        self.limits = media_limits()
        self.checked: dict[tuple[str, str | None], MediaInfo | str] = {}
        self.referenced: set[str] = set()

    def record_check(
        self, line: int, record: formats.Record, refs: list[formats.MediaRef]
    ) -> list[formats.RowError]:
        problems = []
        for ref in refs:
            message = self._check(ref)
            if message:
                problems.append(formats.RowError(line, f"{ref.label} {message}", ref.field))
        if not problems:
            try:
                formats.media_resolve(record)
            except formats.RowInvalid as exc:
                problems.append(formats.RowError(line, exc.message, exc.field))
        return problems

    def _check(self, ref: formats.MediaRef) -> str | None:
        if ref.inline:
            data, ref.data = ref.data, None  # the write pass reads the bytes again
            try:
                ref.info = media_inspect(data, self.limits, expect=ref.kind)
            except MediaInvalid as exc:
                return exc.message
            return None
        self.referenced.add(ref.path)
        key = (ref.path, ref.kind)
        found = self.checked.get(key)
        if found is None:
            try:
                found = media_inspect(self.source.read(ref.path), self.limits, expect=ref.kind)
            except (archive.FileRefused, MediaInvalid) as exc:
                found = exc.message
            self.checked[key] = found
        if isinstance(found, str):
            return found
        ref.info = found
        return None


def _media_store(
    records: list[formats.Record],
    manifest: Path,
    source: _Source,
    options: formats.Options,
    progress: Progress,
    written: list[str],
) -> int:
    """Store every file the records use that storage lacks (read again, one at a time, and
    checked to be the bytes validated); the names this call wrote go into `written`."""
    wanted: dict[str, formats.MediaRef] = {}
    for record in records:
        for ref in record.media_refs():
            wanted.setdefault(ref.info.hash, ref)
    if not wanted:
        return 0
    missing = {h: ref for h, ref in wanted.items() if not default_storage.exists(ref.info.name)}
    progress("storing", 0, len(missing))
    inline: dict[str, MediaInfo] = {}
    stored = 0
    for n, (digest, ref) in enumerate(missing.items(), start=1):
        if ref.inline:
            inline[digest] = ref.info
            continue
        try:
            data = source.read(ref.path)
        except archive.FileRefused as exc:
            raise ImportRejected(f"{ref.label} {exc.message}") from None
        stored += _stored(data, ref.info, written)
        if n % 100 == 0:
            progress("storing", n, len(missing))
    if inline:
        # HF datasets' Parquet: the bytes live in the rows; read them again.
        for _line, row in formats.iter_rows(manifest, options):
            if isinstance(row, dict):
                for data in _inline_bytes(row):
                    info = inline.pop(hashlib.sha256(data).hexdigest(), None)
                    if info is not None:
                        stored += _stored(data, info, written)
            if not inline:
                break
        if inline:
            raise ImportRejected("the file changed while it was imported; nothing was imported")
    progress("storing", len(missing), len(missing))
    return stored


def _stored(data: bytes, info: MediaInfo, written: list[str]) -> int:
    if hashlib.sha256(data).hexdigest() != info.hash:
        raise ImportRejected("a file changed while it was imported; nothing was imported")
    if media_save(data=data, info=info):
        written.append(info.name)
        return 1
    return 0


def _inline_bytes(value) -> Iterator[bytes]:
    if isinstance(value, dict):
        data = value.get("bytes")
        if isinstance(data, bytes | bytearray) and data:
            yield bytes(data)
            return
        for v in value.values():
            yield from _inline_bytes(v)
    elif isinstance(value, list):
        for v in value:
            yield from _inline_bytes(v)


def _queue_key(pair_hash: str) -> int:
    return int(pair_hash[:15], 16)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the duration of an import.

    The validated records are a few million small objects (no cycles) that all live until
    the end; the collector would walk them over and over as they pile up, which took more
    than half of the validation time. Reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _select(sql: str, params: list) -> list[tuple]:
    """One query with array parameters instead of batches of IN (...) lists."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@dataclass
class _Written:
    """What this import has written so far (ids by content), across chunks."""

    prompt_ids: dict[str, int] = field(default_factory=dict)
    candidate_ids: dict[tuple[int, str], int] = field(default_factory=dict)
    seen_pairs: set[tuple[int, int]] = field(default_factory=set)
    # Rows this import created: nothing else can refer to them yet, so the look-ups for
    # what exists already skip their candidates and comparisons.
    created_prompts: set[int] = field(default_factory=set)
    created_candidates: set[int] = field(default_factory=set)
    relabel: set[int] = field(default_factory=set)


def _records_write(
    project: Project,
    records: list[formats.Record],
    source_name: str,
    progress: Progress,
) -> ImportResult:
    result = ImportResult("", len(records), 0, 0, 0, 0, 0, 0, 0.0)
    written = _Written()
    for start in range(0, len(records), CHUNK):
        chunk = records[start : start + CHUNK]
        _prompts_write(project, chunk, written, result)
        _candidates_write(chunk, written, result)
        _comparisons_write(project, chunk, written, source_name, result)
        progress("writing", start + len(chunk), len(records))
    if written.relabel:
        comparison_labels_refresh(comparison_ids=written.relabel)
    return result


def _prompts_write(
    project: Project, chunk: list[formats.Record], written: _Written, result: ImportResult
) -> None:
    prompt_ids = written.prompt_ids
    wanted = {r.prompt.hash: r for r in chunk if r.prompt.hash not in prompt_ids}
    if not wanted:
        return
    existing = _select(
        f"SELECT content_hash, id FROM {Prompt._meta.db_table} "
        "WHERE project_id = %s AND content_hash = ANY(%s::text[])",
        [project.id, list(wanted)],
    )
    prompt_ids.update(existing)
    new = [r.prompt for h, r in wanted.items() if h not in prompt_ids]
    texts = [p for p in new if p.media is None]
    ids = rows_insert(
        Prompt,
        ("project", "content_hash", "text", "messages"),
        [(project.id, p.hash, p.text, p.messages) for p in texts],
    )
    prompt_ids.update(zip((p.hash for p in texts), ids, strict=True))
    media = [p for p in new if p.media is not None]
    media_ids = rows_insert(
        Prompt,
        ("project", "content_hash", "text", "messages", "media", "media_content_type", "metadata"),
        [
            (
                project.id, p.hash, p.text, None, p.media.info.name, p.media.info.content_type,
                {"media_alt": p.media.alt} if p.media.alt else {},
            )
            for p in media
        ],
    )  # fmt: skip
    prompt_ids.update(zip((p.hash for p in media), media_ids, strict=True))
    ids += media_ids
    written.created_prompts.update(ids)
    result.prompts_created += len(ids)


def _candidates_write(chunk: list[formats.Record], written: _Written, result: ImportResult) -> None:
    prompt_ids, candidate_ids = written.prompt_ids, written.candidate_ids
    wanted: dict[tuple[int, str], formats.Response] = {}
    for r in chunk:
        pid = prompt_ids[r.prompt.hash]
        for resp in r.responses:
            key = (pid, resp.content.hash)
            if key not in candidate_ids:
                wanted.setdefault(key, resp)
    # Only a prompt that was there before this import can have candidates it did not write.
    created = written.created_prompts
    maybe = [k for k in wanted if k[0] not in created]
    found = []
    if maybe:
        found = _select(
            f"SELECT c.prompt_id, c.content_hash, c.id FROM {Candidate._meta.db_table} c "
            "JOIN unnest(%s::bigint[], %s::text[]) AS k(prompt_id, content_hash) "
            "ON c.prompt_id = k.prompt_id AND c.content_hash = k.content_hash",
            [[p for p, _ in maybe], [h for _, h in maybe]],
        )
    for pid, h, cid in found:
        if (pid, h) in wanted:
            candidate_ids[(pid, h)] = cid
    new = [(k, resp) for k, resp in wanted.items() if k not in candidate_ids]
    texts = [(k, resp) for k, resp in new if resp.content.media is None]
    ids = rows_insert(
        Candidate,
        ("prompt", "kind", "content_hash", "text", "messages", "source_model"),
        [
            (pid, "text", h, resp.content.text, resp.content.messages, resp.model)
            for (pid, h), resp in texts
        ],
    )
    candidate_ids.update(zip((k for k, _ in texts), ids, strict=True))
    media = [(k, resp) for k, resp in new if resp.content.media is not None]
    rows = []
    for (pid, h), resp in media:
        ref = resp.content.media
        info = ref.info
        rows.append(
            (
                pid, info.kind, h, "", None, resp.model, info.name, info.content_type,
                info.size, {"alt": ref.alt} if ref.alt else {},
            )
        )  # fmt: skip
    media_ids = rows_insert(
        Candidate,
        (
            "prompt", "kind", "content_hash", "text", "messages", "source_model", "file",
            "content_type", "size", "metadata",
        ),
        rows,
    )  # fmt: skip
    candidate_ids.update(zip((k for k, _ in media), media_ids, strict=True))
    ids += media_ids
    written.created_candidates.update(ids)
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


class _Pair(NamedTuple):
    prompt: int
    hash: str  # of the two content hashes in canonical order
    choice: str | None
    margin: float | None
    external_id: str
    metadata: dict


def _comparisons_write(
    project: Project,
    chunk: list[formats.Record],
    written: _Written,
    source_name: str,
    result: ImportResult,
) -> None:
    prompt_ids, candidate_ids, seen_pairs = (
        written.prompt_ids,
        written.candidate_ids,
        written.seen_pairs,
    )
    sha256 = hashlib.sha256
    # One entry per distinct pair in this chunk: (a_id, b_id) -> facts to write.
    pairs: dict[tuple[int, int], _Pair] = {}
    rankings: list[tuple[int, list[int]]] = []
    for r in chunk:
        pid = prompt_ids[r.prompt.hash]
        hashes = [resp.content.hash for resp in r.responses]
        cids = [candidate_ids[(pid, h)] for h in hashes]
        if r.ranked:
            rankings.append((pid, cids))
        for i, j, label in r.pairs:
            hi, hj = hashes[i], hashes[j]
            first_is_a = hi < hj
            if first_is_a:
                key, both = (cids[i], cids[j]), hi + hj
            else:
                key, both = (cids[j], cids[i]), hj + hi
            if key in seen_pairs or key in pairs:
                result.duplicate_rows += 1
                continue
            pairs[key] = _Pair(
                pid,
                sha256(both.encode()).hexdigest(),
                _TO_CHOICE[(label, first_is_a)] if label else None,
                r.margin,
                r.external_id,
                r.metadata,
            )
    seen_pairs.update(pairs)
    # A pair with a candidate this import created cannot exist but from this import.
    created = written.created_candidates
    maybe = [k for k in pairs if k[0] not in created and k[1] not in created]
    existing: dict[tuple[int, int], int] = {}
    found = []
    if maybe:
        found = _select(
            f"SELECT c.candidate_a_id, c.candidate_b_id, c.id FROM {Comparison._meta.db_table} c "
            "JOIN unnest(%s::bigint[], %s::bigint[]) AS k(a, b) "
            "ON c.candidate_a_id = k.a AND c.candidate_b_id = k.b WHERE c.project_id = %s",
            [[a for a, _ in maybe], [b for _, b in maybe], project.id],
        )
    for a, b, cid in found:
        if (a, b) in pairs:
            existing[(a, b)] = cid
    result.comparisons_existing += len(existing)
    ranking_ids = _rankings_write(project, rankings)
    labelled, pending = Comparison.Status.LABELLED, Comparison.Status.PENDING
    project_id = project.id
    new_keys: list[tuple[int, int]] = []
    rows: list[tuple] = []
    for key, p in pairs.items():
        if key in existing:
            continue
        new_keys.append(key)
        choice = p.choice
        rows.append(
            (
                project_id, p.prompt, key[0], key[1], ranking_ids.get(p.prompt), p.external_id,
                labelled if choice else pending, _queue_key(p.hash), choice,
                1.0 if choice else None, p.margin, p.metadata,
            )
        )  # fmt: skip
    ids = rows_insert(
        Comparison,
        (
            "project", "prompt", "candidate_a", "candidate_b", "ranking", "external_id",
            "status", "queue_key", "label", "label_confidence", "label_margin", "metadata",
        ),
        rows,
    )  # fmt: skip
    result.comparisons_created += len(ids)
    comparison_ids = dict(zip(new_keys, ids, strict=True))
    comparison_ids.update(existing)
    _judgements_write(
        pairs, comparison_ids, existing, written.relabel, source_name, result,
        project.label_schema_version,
    )  # fmt: skip


def _judgements_write(
    pairs: dict[tuple[int, int], _Pair],
    comparison_ids: dict[tuple[int, int], int],
    existing: dict[tuple[int, int], int],
    relabel: set[int],
    source_name: str,
    result: ImportResult,
    schema_version: int,
) -> None:
    labelled = {comparison_ids[k]: p for k, p in pairs.items() if p.choice}
    maybe = [cid for k, cid in existing.items() if pairs[k].choice]
    already_ids: set[int] = set()
    if maybe:
        already_ids = {
            cid
            for (cid,) in _select(
                f"SELECT comparison_id FROM {Judgement._meta.db_table} "
                "WHERE source_name = %s AND user_id IS NULL AND comparison_id = ANY(%s::bigint[])",
                [source_name, maybe],
            )
        }
    sha256 = hashlib.sha256
    prefix = f"{source_name}\x00"
    kind = Judgement.SourceKind.IMPORT
    rows = [
        (
            cid,
            kind,
            source_name,
            p.choice,
            p.margin,
            sha256(f"{prefix}{cid}".encode()).hexdigest(),
            schema_version,
        )
        for cid, p in labelled.items()
        if cid not in already_ids
    ]
    if existing:
        existing_ids = set(existing.values())
        relabel.update(row[0] for row in rows if row[0] in existing_ids)
    result.judgements_created += len(
        rows_insert(
            Judgement,
            (
                "comparison",
                "source_kind",
                "source_name",
                "choice",
                "margin",
                "idempotency_key",
                "label_schema_version",
            ),
            rows,
        )
    )


def _rankings_write(project: Project, rankings: list[tuple[int, list[int]]]) -> dict[int, int]:
    """Create a Ranking per prompt of the ranked shape (once); return prompt id -> ranking id."""
    if not rankings:
        return {}
    prompt_ids = {pid for pid, _ in rankings}
    found = dict(
        _select(
            f"SELECT prompt_id, id FROM {Ranking._meta.db_table} "
            "WHERE project_id = %s AND prompt_id = ANY(%s::bigint[])",
            [project.id, list(prompt_ids)],
        )
    )
    new = {pid: cids for pid, cids in rankings if pid not in found}
    ids = rows_insert(Ranking, ("project", "prompt"), [(project.id, pid) for pid in new])
    found.update(zip(new, ids, strict=True))
    rows_insert(
        Ranking.candidates.through,
        ("ranking", "candidate"),
        [(found[pid], c) for pid, cids in new.items() for c in cids],
    )
    return found


# ---------------------------------------------------------------------------- jobs


def import_job_create(
    *,
    project: Project,
    uploaded_file=None,
    path: Path | None = None,
    fmt: str = ImportJob.Format.AUTO,
    options: dict | None = None,
    created_by=None,
) -> ImportJob:
    """A queued import of an uploaded file (kept in storage) or of a file on this machine
    (`path`, the command's case). Nothing is enqueued: import_job_start does that, or
    import_job_execute runs it here."""
    if (uploaded_file is None) == (path is None):
        raise ApplicationError("Give a file to import.")
    if fmt not in ImportJob.Format.values:
        raise ApplicationError(f"Unknown format '{fmt}'.")
    size = uploaded_file.size if uploaded_file is not None else _file_size(path)
    if size > settings.IMPORT_MAX_FILE_BYTES:
        raise ApplicationError(
            f"The file is {size:,} bytes, over the {settings.IMPORT_MAX_FILE_BYTES:,}-byte limit."
        )
    name = Path(uploaded_file.name if uploaded_file is not None else path).name[:255]
    job = ImportJob(
        project=project,
        created_by=created_by,
        original_name=name,
        format=fmt,
        options=dict(options or {}),
    )
    if uploaded_file is not None:
        job.file.save(job.original_name, uploaded_file, save=False)
    else:
        job.source_path = str(Path(path).resolve())
    job.save()
    return job


def _file_size(path: Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError as exc:
        raise ApplicationError(f"Cannot read {path}: {exc.strerror}.") from None


def import_job_start(**kwargs) -> ImportJob:
    """import_job_create, then enqueue the job once committed."""
    job = import_job_create(**kwargs)
    run_enqueue(job)
    return job


def import_job_cancel(*, job: ImportJob) -> ImportJob:
    """Stop a queued or running import: nothing of it is written (its one transaction rolls
    back at the next progress report). The uploaded file goes now if no worker reads it
    (else when that worker stops)."""
    job = run_cancel(job)
    if job.is_finished:
        with advisory_lock_try(ImportJob.LOCK, job.lock_key) as free:
            if free:
                _upload_delete(job)
    return job


def _upload_delete(job: ImportJob) -> None:
    """An uploaded file is only kept until its job has finished (whatever the outcome);
    the name stays on the job, as a record of what was imported."""
    if job.file:
        job.file.storage.delete(job.file.name)


def import_job_execute(*, job: ImportJob, on_progress: OnProgress | None = None) -> ImportJob:
    """Import the job's file (see core.runs.run_execute for the guarantees). A job whose
    worker died runs again from the start: its import wrote nothing, being one transaction
    that never committed. A refused file fails the job with every error it found. Once the
    job has finished, its uploaded file is deleted."""
    job = run_execute(job, _import_body(job), on_progress=on_progress, on_failure=_import_failure)
    if job.is_finished:
        _upload_delete(job)
    return job


def _import_body(job: ImportJob):
    def body(handle: RunHandle) -> None:
        path = Path(job.file.path) if job.file else Path(job.source_path)
        # A manifest on this machine names its files relative to its folder; an uploaded
        # one can only carry them in its .zip (or inline, as HF Parquet).
        media_folder = None if job.file else path.parent
        options = job.options or {}
        handle.progress(0, 0, phase="reading")
        written: list[str] = []
        try:
            _import_in_transaction(job, handle, path, media_folder, options, written)
        except BaseException:
            media_delete(names=written)  # the rows that would use them never committed
            raise

    return body


def _import_in_transaction(
    job: ImportJob,
    handle: RunHandle,
    path: Path,
    media_folder: Path | None,
    options: dict,
    written: list[str],
) -> None:
    # The job's success commits with the import's rows, or neither does.
    with transaction.atomic():
        result = pairs_import(
            project=Project.objects.get(pk=job.project_id),
            path=path,
            source_name=options.get("source") or f"import:{job.original_name}",
            fmt=job.format,
            options=formats.Options(
                pairs=options.get("pairs", "all"),
                max_pairs=int(options.get("max_pairs", 45)),
                max_line_bytes=settings.IMPORT_MAX_LINE_BYTES,
            ),
            progress=lambda phase, done, total: handle.progress(done, total or 0, phase=phase),
            media_folder=media_folder,
            files_written=written,
        )
        handle.complete(
            progress_total=result.rows, progress_done=result.rows, summary=result.as_dict()
        )


def _import_failure(exc: BaseException) -> dict:
    if isinstance(exc, ApplicationError):
        return {"errors": exc.errors or [exc.message], "summary": {"message": exc.message}}
    return {
        "errors": [f"internal error: {type(exc).__name__}: {exc}"],
        "summary": {"message": "the import failed; nothing was imported"},
    }
