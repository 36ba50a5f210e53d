"""Exporting a project with image or audio candidates (or prompts that show a file).

Two shapes:

- An archive (`archive`, a .zip) in the importer's shape: a root `pairs.jsonl` of TRL rows
  whose media are objects naming a file in the archive (`{"image": "img/<hash>.png"}`,
  `{"audio": "audio/<hash>.wav"}`, with "alt" when the import gave one; a prompt with a file
  is `{"text": ..., "image": ..., "alt": ...}`), then each file once, named by its content
  hash. It imports again into an equal project.
- Parquet (`trl-parquet`, as for text) in the Hugging Face datasets layout: `chosen` and
  `rejected` (and `prompt_image`/`prompt_audio` when prompts show a file) are Image/Audio
  structs `{"bytes", "path"}`, and the schema carries datasets' features, so that
  `datasets.load_dataset("parquet", ...)` decodes them into images and audio arrays.
  A Parquet column has one type, so a project whose candidates mix text and media, or images
  and audio, is refused there (the archive takes it).

Plain JSONL cannot carry the files: it is refused for a media project with a message naming
these two formats (annotation.services.exporting).

Like the text export, only labelled pairs (A or B preferred) that curation kept are
exported; rows stream from a server-side cursor. Memory stays bounded: the archive copies
each file from storage into the zip in chunks (the caller gives a file, not memory), and
Parquet row groups are cut by size (MEDIA_ROW_GROUP_BYTES) as well as by rows.
"""

from __future__ import annotations

import posixpath
import shutil
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from django.core.files.storage import default_storage
from django.db import connection, transaction

from annotation.media import CONTENT_TYPES, KINDS
from annotation.models import Candidate, Choice, Project, Prompt
from annotation.services.exporting import CHUNK, labelled_pairs_sql, source_sql
from core.exceptions import ApplicationError

ARCHIVE_MANIFEST = "pairs.jsonl"
# The archive's folder for each kind of file.
ARCHIVE_DIRS = {"image": "img", "audio": "audio"}
# A Parquet row group is written once its files reach this size (or MEDIA_ROW_GROUP_ROWS).
MEDIA_ROW_GROUP_BYTES = 64 * 1024**2
MEDIA_ROW_GROUP_ROWS = 1_000
COPY_CHUNK = 1024**2
ROLES = ("chosen", "rejected")
# datasets' feature for each kind (features JSON in the Parquet schema metadata).
HF_FEATURES = {
    "image": {"_type": "Image"},
    "audio": {"_type": "Audio"},
    "text": {"dtype": "string", "_type": "Value"},
}


@dataclass(frozen=True, slots=True)
class MediaKinds:
    """What a project's prompts and candidates are: kinds among "text", "image", "audio"."""

    candidates: frozenset[str]
    prompts: frozenset[str]  # the kinds of the prompts' files ("text" not included)
    # Whether any candidate / prompt file has alt text (Parquet then has *_alt columns).
    candidate_alt: bool = False
    prompt_alt: bool = False

    @property
    def has_media(self) -> bool:
        return bool(self.prompts) or bool(self.candidates & set(KINDS))


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A stored file in an exported row."""

    kind: str  # "image" or "audio"
    name: str  # the storage name (annotation.media.blob_name)
    alt: str

    @property
    def basename(self) -> str:
        return posixpath.basename(self.name)  # "<hash><ext>"

    @property
    def arcname(self) -> str:
        return f"{ARCHIVE_DIRS[self.kind]}/{self.basename}"


@dataclass(frozen=True, slots=True)
class MediaPair:
    """One labelled pair: a candidate is text (a string or a list of messages) or a file."""

    id: str
    margin: float | None
    metadata: dict[str, Any]
    prompt: str
    prompt_media: MediaRef | None
    chosen: str | list | MediaRef
    rejected: str | list | MediaRef
    confidence: float | None
    source: str | None


def export_has_media(*, project: Project) -> bool:
    """Whether any prompt or candidate of the project is a file. Cheap enough for every
    project page: both look-ups can use the partial indexes on the file columns."""
    return (
        Prompt.objects.filter(project=project).exclude(media="").exists()
        or Candidate.objects.filter(prompt__project=project).exclude(file="").exists()
    )


def export_media_kinds(*, project: Project) -> MediaKinds:
    """The kinds of the project's candidates and prompt files (reads every candidate of
    the project: for the Parquet export, which reads them all anyway)."""
    candidates = (
        Candidate.objects.filter(prompt__project=project)
        .order_by()
        .values_list("kind", flat=True)
        .distinct()
    )
    prompt_types = (
        Prompt.objects.filter(project=project)
        .exclude(media="")
        .order_by()
        .values_list("media_content_type", flat=True)
        .distinct()
    )
    return MediaKinds(
        candidates=frozenset(candidates),
        prompts=frozenset(_kind_of(t) for t in prompt_types),
        candidate_alt=Candidate.objects.filter(
            prompt__project=project, metadata__has_key="alt"
        ).exists(),
        prompt_alt=Prompt.objects.filter(project=project, metadata__has_key="media_alt").exists(),
    )


def _kind_of(content_type: str, name: str = "") -> str:
    if not content_type:
        content_type = CONTENT_TYPES.get(posixpath.splitext(name)[1].lower(), "")
    return "audio" if content_type.startswith("audio/") else "image"


# ---------------------------------------------------------------------------- reading


def export_media_pairs(*, project: Project, with_source: bool = False) -> Iterator[MediaPair]:
    """The labelled pairs of `project` in comparison id order, files as MediaRefs."""
    loads = orjson.loads
    for row in _media_pairs_read(project, with_source):
        (rid, margin, metadata, p_text, p_media, p_type, p_alt) = row[:7]
        chosen, rejected = row[7:12], row[12:17]
        confidence, source = row[17:]
        yield MediaPair(
            id=rid,
            margin=margin,
            metadata=loads(metadata) if metadata else {},
            prompt=p_text,
            prompt_media=MediaRef(_kind_of(p_type, p_media), p_media, p_alt or "")
            if p_media
            else None,
            chosen=_candidate(chosen, loads),
            rejected=_candidate(rejected, loads),
            confidence=confidence,
            source=source,
        )


def _candidate(values: tuple, loads) -> str | list | MediaRef:
    kind, text, messages, file, alt = values
    if kind == Candidate.Kind.TEXT:
        return loads(messages) if messages is not None else text
    return MediaRef(kind, file, alt or "")


def _media_pairs_read(project: Project, with_source: bool) -> Iterator[tuple]:
    """As exporting._pairs_read (narrow comparisons sorted first, then joined by primary
    key; a named cursor in a transaction), with the prompt's file and each candidate's kind,
    file and alt text."""
    candidate = f"""
        SELECT kind, text, messages::text AS messages, file, metadata->>'alt' AS alt
        FROM {Candidate._meta.db_table} WHERE id = c.%s OFFSET 0
    """
    sql = f"""
        SELECT COALESCE(NULLIF(c.external_id, ''), c.id::text), c.label_margin,
               NULLIF(c.metadata, '{{}}'::jsonb)::text,
               p.text, NULLIF(p.media, ''), p.media_content_type, p.metadata->>'media_alt',
               ch.kind, ch.text, ch.messages, ch.file, ch.alt,
               rj.kind, rj.text, rj.messages, rj.file, rj.alt,
               c.label_confidence, {source_sql(with_source)}
        FROM ({labelled_pairs_sql(", metadata")}) c
        CROSS JOIN LATERAL (
            SELECT text, media, media_content_type, metadata FROM {Prompt._meta.db_table}
            WHERE id = c.prompt_id OFFSET 0
        ) p
        CROSS JOIN LATERAL ({candidate % "chosen"}) ch
        CROSS JOIN LATERAL ({candidate % "rejected"}) rj
        ORDER BY c.id
    """
    params = {"project": project.id, "a": Choice.A.value, "b": Choice.B.value}
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(CHUNK):
            yield from rows


def _open(ref: MediaRef) -> IO[bytes]:
    try:
        return default_storage.open(ref.name, "rb")
    except FileNotFoundError:
        raise ApplicationError(
            f"The file {ref.name} is missing from the media storage; restore it (or delete "
            f"the pairs that use it) and export again."
        ) from None


def _read(ref: MediaRef) -> bytes:
    with _open(ref) as fh:
        return fh.read()


# ---------------------------------------------------------------------------- archive


def _manifest_value(value: str | list | MediaRef, files: dict[str, MediaRef]) -> Any:
    if not isinstance(value, MediaRef):
        return value
    files.setdefault(value.arcname, value)
    out = {value.kind: value.arcname}
    if value.alt:
        out["alt"] = value.alt
    return out


def _manifest_row(pair: MediaPair, files: dict[str, MediaRef]) -> dict[str, Any]:
    prompt: Any = pair.prompt
    if pair.prompt_media is not None:
        prompt = {"text": pair.prompt, **_manifest_value(pair.prompt_media, files)}
    row = {
        "prompt": prompt,
        "chosen": _manifest_value(pair.chosen, files),
        "rejected": _manifest_value(pair.rejected, files),
        "margin": pair.margin,
        "id": pair.id,
    }
    if pair.metadata:
        row["metadata"] = pair.metadata
    return row


def export_archive_write(*, project: Project, out: str | Path | IO[bytes]) -> int:
    """Write the archive (manifest first, then each file once) to `out`, a path or a
    writable binary file; returns the number of rows. Files are copied from storage in
    chunks and stored uncompressed (images and most audio are compressed already); memory
    holds the set of file names, not the files."""
    files: dict[str, MediaRef] = {}  # archive name -> file, in first-use order
    n = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        # force_zip64: the manifest's size is not known before it is written.
        with zf.open(ARCHIVE_MANIFEST, "w", force_zip64=True) as manifest:
            buf: list[bytes] = []
            for pair in export_media_pairs(project=project):
                buf.append(orjson.dumps(_manifest_row(pair, files)))
                n += 1
                if len(buf) >= 1000:
                    manifest.write(b"\n".join(buf) + b"\n")
                    buf.clear()
            if buf:
                manifest.write(b"\n".join(buf) + b"\n")
        stamp = time.localtime()[:6]
        for arcname, ref in files.items():
            info = zipfile.ZipInfo(arcname, date_time=stamp)
            info.compress_type = zipfile.ZIP_STORED
            with _open(ref) as src, zf.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, COPY_CHUNK)
    return n


# ---------------------------------------------------------------------------- parquet


def _column_kind(kinds: frozenset[str], what: str) -> str:
    if len(kinds) > 1:
        raise ApplicationError(
            f"This project's {what} mix {' and '.join(sorted(kinds))}, and a Parquet column "
            f"holds one type: export it as an archive (--format archive, or the archive link) "
            f"instead."
        )
    return next(iter(kinds), "text")


def _media_schema(
    candidate_kind: str, prompt_kind: str | None, kinds: MediaKinds, with_confidence: bool
) -> tuple[Any, list[str]]:
    import pyarrow as pa

    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    candidate_type = pa.string() if candidate_kind == "text" else struct
    fields = [
        ("prompt", pa.string(), HF_FEATURES["text"]),
        ("chosen", candidate_type, HF_FEATURES[candidate_kind]),
        ("rejected", candidate_type, HF_FEATURES[candidate_kind]),
    ]
    if prompt_kind:
        fields.append((f"prompt_{prompt_kind}", struct, HF_FEATURES[prompt_kind]))
    # Alt text in the columns the importer folds back into the files (chosen_alt, ...).
    if kinds.candidate_alt and candidate_kind != "text":
        fields += [(f"{role}_alt", pa.string(), HF_FEATURES["text"]) for role in ROLES]
    if kinds.prompt_alt and prompt_kind:
        fields.append(("prompt_alt", pa.string(), HF_FEATURES["text"]))
    fields += [
        ("margin", pa.float64(), {"dtype": "float64", "_type": "Value"}),
        ("id", pa.string(), HF_FEATURES["text"]),
    ]
    if with_confidence:
        fields += [
            ("confidence", pa.float64(), {"dtype": "float64", "_type": "Value"}),
            ("label_source", pa.string(), HF_FEATURES["text"]),
        ]
    # datasets reads its features from this key and decodes the structs with them.
    features = {name: feature for name, _, feature in fields}
    metadata = {b"huggingface": orjson.dumps({"info": {"features": features}})}
    schema = pa.schema([(name, t) for name, t, _ in fields], metadata=metadata)
    return schema, [name for name, _, _ in fields]


def _struct(ref: MediaRef) -> tuple[dict[str, Any], int]:
    data = _read(ref)
    return {"bytes": data, "path": ref.basename}, len(data)


def _cell(value: str | list | MediaRef) -> tuple[Any, int]:
    if isinstance(value, MediaRef):
        return _struct(value)
    if isinstance(value, list):
        # A conversational response among media prompts: its turns flattened, as the
        # labelling page shows them (a Parquet column has one type).
        return "\n\n".join(f"{m['role']}: {m['content']}" for m in value), 0
    return value, 0


def export_media_parquet_write(
    *,
    project: Project,
    out: str | Path | IO[bytes],
    kinds: MediaKinds,
    with_confidence: bool = False,
) -> int:
    """Write Parquet in datasets' layout; returns the number of rows. Refuses
    (ApplicationError) a project whose candidates, or prompts' files, mix kinds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    candidate_kind = _column_kind(kinds.candidates, "candidates")
    prompt_kind = _column_kind(kinds.prompts, "prompt files") if kinds.prompts else None
    schema, names = _media_schema(candidate_kind, prompt_kind, kinds, with_confidence)
    n = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        columns: dict[str, list] = {name: [] for name in names}
        size = 0

        def row_group_write() -> None:
            writer.write_table(pa.Table.from_pydict(columns, schema=schema))
            for col in columns.values():
                col.clear()

        for pair in export_media_pairs(project=project, with_source=with_confidence):
            chosen, chosen_size = _cell(pair.chosen)
            rejected, rejected_size = _cell(pair.rejected)
            columns["prompt"].append(pair.prompt)
            columns["chosen"].append(chosen)
            columns["rejected"].append(rejected)
            size += chosen_size + rejected_size
            if prompt_kind:
                media, media_size = _struct(pair.prompt_media) if pair.prompt_media else (None, 0)
                columns[f"prompt_{prompt_kind}"].append(media)
                size += media_size
            for role in ROLES:
                if f"{role}_alt" in columns:
                    value = getattr(pair, role)
                    columns[f"{role}_alt"].append(
                        (value.alt or None) if isinstance(value, MediaRef) else None
                    )
            if "prompt_alt" in columns:
                columns["prompt_alt"].append(
                    (pair.prompt_media.alt or None) if pair.prompt_media else None
                )
            columns["margin"].append(pair.margin)
            columns["id"].append(pair.id)
            if with_confidence:
                columns["confidence"].append(pair.confidence)
                columns["label_source"].append(pair.source)
            n += 1
            if size >= MEDIA_ROW_GROUP_BYTES or len(columns["id"]) >= MEDIA_ROW_GROUP_ROWS:
                row_group_write()
                size = 0
        if columns["id"] or not n:
            row_group_write()
    return n
