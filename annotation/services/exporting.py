"""Exporting labelled pairs in TRL's preference columns: prompt, chosen, rejected, margin, id.

Rows stream from a server-side cursor in chunks, so a project of any size exports in
constant memory. If any prompt or response of the project is a conversation, every row is
written in TRL's conversational form (lists of {role, content}); otherwise as plain strings,
so that the whole file has one type per column, as `datasets` requires.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from annotation.models import Candidate, Choice, Comparison, Project, Prompt

EXPORT_FORMATS = ("trl-jsonl", "trl-parquet")
CHUNK = 5_000


def export_is_conversational(*, project: Project) -> bool:
    return (
        Prompt.objects.filter(project=project, messages__isnull=False).exists()
        or Candidate.objects.filter(prompt__project=project, messages__isnull=False).exists()
    )


def export_rows(*, project: Project) -> Iterator[dict[str, Any]]:
    """Labelled pairs (A or B preferred; ties and both-bad have no chosen side)."""
    conversational = export_is_conversational(project=project)
    qs = (
        Comparison.objects.filter(project=project, label__in=[Choice.A, Choice.B])
        .order_by("id")
        .values_list(
            "id",
            "external_id",
            "label",
            "label_margin",
            "prompt__text",
            "prompt__messages",
            "candidate_a__text",
            "candidate_a__messages",
            "candidate_b__text",
            "candidate_b__messages",
        )
    )
    for pk, ext, label, margin, p_text, p_msgs, a_text, a_msgs, b_text, b_msgs in qs.iterator(
        chunk_size=CHUNK
    ):
        if label == Choice.A:
            chosen, rejected = (a_text, a_msgs), (b_text, b_msgs)
        else:
            chosen, rejected = (b_text, b_msgs), (a_text, a_msgs)
        if conversational:
            prompt = p_msgs or [{"role": "user", "content": p_text}]
            chosen = chosen[1] or [{"role": "assistant", "content": chosen[0]}]
            rejected = rejected[1] or [{"role": "assistant", "content": rejected[0]}]
        else:
            prompt, chosen, rejected = p_text, chosen[0], rejected[0]
        yield {
            "prompt": prompt,
            "chosen": chosen,
            "rejected": rejected,
            "margin": margin,
            "id": ext or str(pk),
        }


def export_jsonl_chunks(*, project: Project) -> Iterator[bytes]:
    """JSON Lines, in chunks of about a thousand rows (for streaming responses)."""
    buf: list[bytes] = []
    for row in export_rows(project=project):
        buf.append(orjson.dumps(row))
        if len(buf) >= 1000:
            yield b"\n".join(buf) + b"\n"
            buf.clear()
    if buf:
        yield b"\n".join(buf) + b"\n"


def _parquet_schema(conversational: bool):
    import pyarrow as pa

    text = (
        pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
        if conversational
        else pa.string()
    )
    return pa.schema(
        [
            ("prompt", text),
            ("chosen", text),
            ("rejected", text),
            ("margin", pa.float64()),
            ("id", pa.string()),
        ]
    )


def export_parquet_write(*, project: Project, out: str | Path | IO[bytes]) -> int:
    """Write Parquet, one row group per chunk; returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema(export_is_conversational(project=project))
    n = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        batch: list[dict[str, Any]] = []
        for row in export_rows(project=project):
            batch.append(row)
            if len(batch) >= 50_000:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                n += len(batch)
                batch.clear()
        if batch or not n:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
    return n


def export_write(*, project: Project, fmt: str, out: Path) -> int:
    """Write an export file; returns the number of rows."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format '{fmt}': use {', '.join(EXPORT_FORMATS)}")
    if fmt == "trl-parquet":
        return export_parquet_write(project=project, out=out)
    n = 0
    with open(out, "wb") as fh:
        for chunk in export_jsonl_chunks(project=project):
            n += chunk.count(b"\n")
            fh.write(chunk)
    return n
