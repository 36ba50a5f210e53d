"""Exporting labelled pairs in TRL's preference columns: prompt, chosen, rejected, margin, id
(and, with `with_confidence`, the label's confidence in 0..1, for label smoothing, and its
source: review, human, import or ai).
Pairs that curation dropped (Comparison.excluded) are never exported.

Rows stream, so a project of any size exports in constant memory: on PostgreSQL from one
query through a server-side cursor (the server resolves chosen/rejected and the id),
elsewhere from the ORM's chunked iterator. If any prompt or response of the project is a conversation, every row is
written in TRL's conversational form (lists of {role, content}); otherwise as plain strings,
so that the whole file has one type per column, as `datasets` requires.

A project with image or audio candidates (or prompts that show a file) exports as an
archive or as Parquet in datasets' Image/Audio layout (annotation.services.exporting_media);
JSONL alone cannot carry its files and is refused with a message naming those two.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Any

import orjson
from django.db import connection, transaction

from annotation.models import (
    Candidate,
    Choice,
    Comparison,
    Judgement,
    LabelResolution,
    Project,
    Prompt,
)
from core.exceptions import ApplicationError

EXPORT_FORMATS = ("trl-jsonl", "trl-parquet", "archive")
# The web download's file extension for each format.
EXPORT_EXTENSIONS = {"trl-jsonl": "jsonl", "trl-parquet": "parquet", "archive": "zip"}
CHUNK = 5_000
PARQUET_ROW_GROUP = 50_000
PARQUET_BATCH = 10_000  # divides PARQUET_ROW_GROUP
# One exported row: prompt, chosen, rejected (strings or lists of messages), margin, id,
# confidence, label source.
Values = tuple[Any, Any, Any, float | None, str, float | None, str | None]
# Where a label came from, most authoritative first: a reviewer's (or curation's) resolution,
# people, an imported file, AI annotators (which label only pairs nobody else has).
SOURCE_ORDER = ("review", "human", "import", "ai")


def export_is_conversational(*, project: Project) -> bool:
    return (
        Prompt.objects.filter(project=project, messages__isnull=False).exists()
        or Candidate.objects.filter(prompt__project=project, messages__isnull=False).exists()
    )


def export_rows(*, project: Project, with_confidence: bool = False) -> Iterator[dict[str, Any]]:
    """Labelled pairs (A or B preferred; ties and both-bad have no chosen side)."""
    for values in _export_values(project, with_source=with_confidence):
        yield _row(values, with_confidence)


def _row(values: Values, with_confidence: bool) -> dict[str, Any]:
    prompt, chosen, rejected, margin, rid, confidence, source = values
    row = {"prompt": prompt, "chosen": chosen, "rejected": rejected, "margin": margin, "id": rid}
    if with_confidence:
        row["confidence"] = confidence
        row["label_source"] = source
    return row


def _export_values(project: Project, *, with_source: bool = False) -> Iterator[Values]:
    conversational = export_is_conversational(project=project)
    rows = _pairs_read(project, conversational, with_source)
    if not conversational:
        # (id, prompt text, prompt messages, chosen text, ..., rejected messages): no messages.
        for rid, margin, p_text, _, c_text, _, r_text, _, confidence, source in rows:
            yield p_text, c_text, r_text, margin, rid, confidence, source
        return
    loads = orjson.loads
    for rid, margin, p_text, p_msgs, c_text, c_msgs, r_text, r_msgs, confidence, source in rows:
        yield (
            _messages(p_msgs, loads) or [{"role": "user", "content": p_text}],
            _messages(c_msgs, loads) or [{"role": "assistant", "content": c_text}],
            _messages(r_msgs, loads) or [{"role": "assistant", "content": r_text}],
            margin,
            rid,
            confidence,
            source,
        )


def _messages(value: Any, loads) -> Any:
    # The query hands the jsonb over as its text, parsed here by orjson.
    return loads(value) if value is not None else None


def labelled_pairs_sql(columns: str = "") -> str:
    """The exported comparisons (labelled A or B, not excluded by curation), in id order,
    with their chosen and rejected candidate ids; `columns` adds Comparison columns. Takes
    the parameters project, a and b. OFFSET 0 keeps the planner from flattening it into the
    lateral joins that read each row's texts."""
    return f"""
            SELECT id, external_id, label_margin, label_confidence, prompt_id{columns},
                   CASE WHEN label = %(a)s THEN candidate_a_id ELSE candidate_b_id END AS chosen,
                   CASE WHEN label = %(a)s THEN candidate_b_id ELSE candidate_a_id END AS rejected
            FROM {Comparison._meta.db_table}
            WHERE project_id = %(project)s AND label IN (%(a)s, %(b)s) AND NOT excluded
            ORDER BY id
            OFFSET 0"""


def source_sql(with_source: bool) -> str:
    if not with_source:
        return "NULL::text"
    judgement = Judgement._meta.db_table
    cases = [
        f"WHEN EXISTS (SELECT 1 FROM {LabelResolution._meta.db_table} r "
        f"WHERE r.comparison_id = c.id) THEN 'review'"
    ] + [
        f"WHEN EXISTS (SELECT 1 FROM {judgement} j WHERE j.comparison_id = c.id "
        f"AND j.source_kind = '{kind}') THEN '{kind}'"
        for kind in SOURCE_ORDER[1:]
    ]
    return f"CASE {' '.join(cases)} END"


def _pairs_read(project: Project, conversational: bool, with_source: bool) -> Iterator[tuple]:
    """(id, margin, prompt text, prompt messages, chosen text, chosen messages, rejected text,
    rejected messages, confidence, label source) in comparison id order. Messages are jsonb text, or NULL when the
    project has none.

    The comparisons (narrow rows) are sorted first, then each is joined to its texts by
    primary key: the plan never sorts wide rows nor hashes whole tables, whatever the
    planner's statistics say (right after a large import they say the project is empty).
    A named cursor inside a transaction streams them: no WITH HOLD copy of the result.
    """
    messages = "messages::text" if conversational else "NULL::text"
    sql = f"""
        SELECT COALESCE(NULLIF(c.external_id, ''), c.id::text), c.label_margin,
               p.text, p.messages, ch.text, ch.messages, rj.text, rj.messages,
               c.label_confidence, {source_sql(with_source)}
        FROM ({labelled_pairs_sql()}) c
        CROSS JOIN LATERAL (
            SELECT text, {messages} AS messages FROM {Prompt._meta.db_table}
            WHERE id = c.prompt_id OFFSET 0
        ) p
        CROSS JOIN LATERAL (
            SELECT text, {messages} AS messages FROM {Candidate._meta.db_table}
            WHERE id = c.chosen OFFSET 0
        ) ch
        CROSS JOIN LATERAL (
            SELECT text, {messages} AS messages FROM {Candidate._meta.db_table}
            WHERE id = c.rejected OFFSET 0
        ) rj
        ORDER BY c.id
    """
    params = {"project": project.id, "a": Choice.A.value, "b": Choice.B.value}
    # A named cursor needs a transaction (a savepoint if the caller has one open): in
    # autocommit Django would declare it WITH HOLD, and PostgreSQL would then build the whole
    # result before the first row.
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(CHUNK):
            yield from rows


def export_jsonl_chunks(*, project: Project, with_confidence: bool = False) -> Iterator[bytes]:
    """JSON Lines, in chunks of about a thousand rows (for streaming responses)."""
    dumps = orjson.dumps
    buf: list[bytes] = []
    for values in _export_values(project, with_source=with_confidence):
        buf.append(dumps(_row(values, with_confidence)))
        if len(buf) >= 1000:
            buf.append(b"")
            yield b"\n".join(buf)
            buf.clear()
    if buf:
        buf.append(b"")
        yield b"\n".join(buf)


def _parquet_schema(conversational: bool, with_confidence: bool = False):
    import pyarrow as pa

    text = (
        pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
        if conversational
        else pa.string()
    )
    fields = [
        ("prompt", text),
        ("chosen", text),
        ("rejected", text),
        ("margin", pa.float64()),
        ("id", pa.string()),
    ]
    if with_confidence:
        fields += [("confidence", pa.float64()), ("label_source", pa.string())]
    return pa.schema(fields)


def export_parquet_write(
    *, project: Project, out: str | Path | IO[bytes], with_confidence: bool = False
) -> int:
    """Write Parquet, one row group per PARQUET_ROW_GROUP rows; returns the number of rows.

    Rows become Arrow batches every PARQUET_BATCH rows (their Python objects freed), and a
    row group is written from its batches: memory holds one row group in Arrow, not in
    Python objects."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema(export_is_conversational(project=project), with_confidence)
    types = [f.type for f in schema]
    n = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        batches: list = []
        columns: list[list] = [[] for _ in types]
        prompts, chosens, rejecteds, margins, ids = columns[:5]

        def batch_add() -> None:
            arrays = [pa.array(col, type=t) for col, t in zip(columns, types, strict=True)]
            batches.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
            for col in columns:
                col.clear()

        def row_group_write() -> None:
            writer.write_table(pa.Table.from_batches(batches, schema=schema))
            batches.clear()

        for prompt, chosen, rejected, margin, rid, confidence, source in _export_values(
            project, with_source=with_confidence
        ):
            prompts.append(prompt)
            chosens.append(chosen)
            rejecteds.append(rejected)
            margins.append(margin)
            ids.append(rid)
            if with_confidence:
                columns[5].append(confidence)
                columns[6].append(source)
            n += 1
            if len(ids) >= PARQUET_BATCH:
                batch_add()
                if n % PARQUET_ROW_GROUP == 0:
                    row_group_write()
        if ids:
            batch_add()
        if batches or not n:
            row_group_write()
    return n


def export_check(*, project: Project, fmt: str) -> None:
    """Refuse (ApplicationError) a format that cannot hold this project: plain JSONL for a
    project with image or audio files. Cheap: run it before a download starts streaming."""
    from annotation.services.exporting_media import export_has_media

    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format '{fmt}': use {', '.join(EXPORT_FORMATS)}")
    if fmt == "trl-jsonl" and export_has_media(project=project):
        raise ApplicationError(
            "This project has image or audio files, which JSONL cannot carry: export it as "
            "an archive (pairs.jsonl and the files, which imports again; export_pairs "
            "--format archive) or as Parquet with datasets' Image/Audio columns "
            "(--format trl-parquet)."
        )


def export_write(
    *, project: Project, fmt: str, out: str | Path | IO[bytes], with_confidence: bool = False
) -> int:
    """Write an export file (a path, or a writable binary file for Parquet and the archive);
    returns the number of rows. ApplicationError when the format cannot hold the project
    (export_check, and Parquet for a project mixing kinds)."""
    from annotation.services import exporting_media

    export_check(project=project, fmt=fmt)
    if fmt == "archive":
        return exporting_media.export_archive_write(project=project, out=out)
    if fmt == "trl-parquet":
        if exporting_media.export_has_media(project=project):
            return exporting_media.export_media_parquet_write(
                project=project,
                out=out,
                kinds=exporting_media.export_media_kinds(project=project),
                with_confidence=with_confidence,
            )
        return export_parquet_write(project=project, out=out, with_confidence=with_confidence)
    n = 0
    with open(out, "wb") if isinstance(out, str | Path) else nullcontext(out) as fh:
        for chunk in export_jsonl_chunks(project=project, with_confidence=with_confidence):
            n += chunk.count(b"\n")
            fh.write(chunk)
    return n
