"""Reading preference files: JSONL (optionally gzipped), CSV and Parquet, in three shapes.

Pure Python, no Django: a file becomes a stream of validated `Record`s or of `RowError`s that
name the line and the field. Shapes:

- TRL preference: prompt, chosen, rejected (strings or lists of {role, content} messages),
  optional id, metadata, margin.
- hh-rlhf: chosen, rejected full transcripts ("\\n\\nHuman: ...\\n\\nAssistant: ..."); the
  turns both share up to the answer become the prompt, the rest of each the candidates.
- ranked: prompt plus responses (N candidates, strings or {text, model, rank}); pairs are
  generated (all pairs up to a cap, or adjacent ranks); pairs without ranks are unlabelled.

Media: a candidate may be a file, `{"image": "img/1_a.png", "alt": "..."}` or
`{"audio": "wav/1_a.wav"}`, named relative to the archive or the manifest's folder, or a
Hugging Face datasets struct `{"bytes": ..., "path": ...}` (Image and Audio features); a
prompt may carry one too (`{"text": "...", "image": "..."}`). Flat columns `chosen_image`,
`rejected_audio`, `prompt_image`, `chosen_alt`, ... (CSV) fold into those objects. A media
Content's hash is only known once its file was read: the importer checks the file, sets
`MediaRef.info` and calls `media_resolve(record)`.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import itertools
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from annotation.archive import FileRefused, media_path

FORMATS = ("trl", "hh-rlhf", "ranked")
ROLES = ("system", "user", "assistant")
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"


class FileError(Exception):
    """The file as a whole cannot be read (corrupt, unknown format)."""


@dataclass(slots=True)
class RowError:
    line: int
    message: str
    field: str = ""

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field '{self.field}'" if self.field else "")
        return f"{where}: {self.message}"


@dataclass(slots=True)
class MediaRef:
    """A file a row names (or carries, as HF datasets' bytes)."""

    kind: str | None  # "image" or "audio" as the row named it; None: judged from the bytes
    path: str  # relative to the archive or folder ("" for inline bytes without a name)
    field: str  # where in the row, for errors
    alt: str = ""
    data: bytes | None = None  # inline bytes until checked (then dropped)
    info: Any = None  # annotation.media.MediaInfo once checked
    inline: bool = False  # the row carries the bytes (HF datasets' {"bytes", "path"})

    @property
    def label(self) -> str:
        return f"file '{self.path}'" if self.path else "the inline file"


@dataclass(slots=True)
class Content:
    """A prompt or a response: plain text, a conversation (messages), or a file."""

    text: str
    messages: list[dict[str, str]] | None
    hash: str
    media: MediaRef | None = None


@dataclass(slots=True)
class Response:
    content: Content
    model: str = ""
    rank: int | None = None


@dataclass(slots=True)
class Record:
    line: int
    prompt: Content
    responses: list[Response]
    # (i, j, label) over `responses`: label "first" (i preferred), "second", "tie" or None.
    pairs: list[tuple[int, int, str | None]]
    margin: float | None = None
    external_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    ranked: bool = False

    def media_refs(self) -> list[MediaRef]:
        refs = [r.content.media for r in self.responses if r.content.media is not None]
        if self.prompt.media is not None:
            refs.insert(0, self.prompt.media)
        return refs


@dataclass(slots=True)
class Options:
    pairs: str = "all"  # ranked shape: "all" pairs (up to max_pairs) or "adjacent" ranks
    max_pairs: int = 45
    max_line_bytes: int = 1024 * 1024


class RowInvalid(Exception):
    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# ---------------------------------------------------------------------------- hashing


def content_hash_text(text: str) -> str:
    return hashlib.sha256(b"t\x00" + text.encode()).hexdigest()


def content_hash_messages(messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(b"m\x00" + orjson.dumps(messages)).hexdigest()


def text_content(text: str) -> Content:
    return Content(text=text, messages=None, hash=content_hash_text(text))


def messages_content(messages: list[dict[str, str]]) -> Content:
    flat = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
    return Content(text=flat, messages=messages, hash=content_hash_messages(messages))


# ---------------------------------------------------------------------------- readers


def sniff_container(path: Path) -> str:
    """jsonl, jsonl.gz, csv, csv.gz or parquet, from the bytes first, then the name."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    name = path.name.lower()
    if head.startswith(PARQUET_MAGIC) or name.endswith(".parquet"):
        return "parquet"
    inner = name[:-3] if name.endswith(".gz") else name
    kind = "csv" if inner.endswith(".csv") else "jsonl"
    if head.startswith(GZIP_MAGIC) or name.endswith(".gz"):
        return kind + ".gz"
    if not inner.endswith((".jsonl", ".json", ".ndjson", ".csv")):
        raise FileError(
            f"unknown file type '{path.name}': expected .jsonl, .jsonl.gz, .csv or .parquet"
        )
    return kind


def _binary_lines(path: Path, gz: bool) -> Iterator[bytes]:
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as fh:
            yield from fh
    except (OSError, EOFError, zlib.error) as exc:
        raise FileError(f"the file is not a valid gzip file or is truncated ({exc})") from exc


def count_rows(path: Path) -> int | None:
    """A quick count for the progress bar (newlines; Parquet's metadata); None if unknown.
    Errors are left to the reading pass, which reports them properly."""
    try:
        kind = sniff_container(path)
    except FileError:
        return None
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except Exception:
            return None
    try:
        opener = gzip.open if kind.endswith(".gz") else open
        n, last = 0, b"\n"
        with opener(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                n += chunk.count(b"\n")
                last = chunk[-1:]
        n += last != b"\n"
        return n - 1 if kind.startswith("csv") else n
    except (OSError, EOFError, zlib.error):
        return None


def iter_rows(path: Path, options: Options) -> Iterator[tuple[int, dict | RowError]]:
    """(line number, row dict or the error of that line). Raises FileError."""
    kind = sniff_container(path)
    if kind == "parquet":
        yield from _iter_parquet(path)
    elif kind.startswith("csv"):
        yield from _iter_csv(path, kind.endswith(".gz"), options)
    else:
        yield from _iter_jsonl(path, kind.endswith(".gz"), options)


def _iter_jsonl(path: Path, gz: bool, options: Options) -> Iterator[tuple[int, dict | RowError]]:
    for line_no, raw in enumerate(_binary_lines(path, gz), start=1):
        if len(raw) > options.max_line_bytes:
            yield (
                line_no,
                RowError(
                    line_no, f"line is {len(raw):,} bytes, over the {options.max_line_bytes:,} cap"
                ),
            )
            continue
        if not raw.strip():
            continue
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield line_no, RowError(line_no, f"not valid UTF-8 text (byte {exc.start})")
            continue
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield line_no, RowError(line_no, f"malformed JSON: {exc}")
            continue
        if not isinstance(row, dict):
            yield line_no, RowError(line_no, "each line must be a JSON object")
            continue
        yield line_no, row


def _iter_csv(path: Path, gz: bool, options: Options) -> Iterator[tuple[int, dict | RowError]]:
    # Cells that hold a conversation or a response list are JSON; decode them lazily later.
    opener = gzip.open if gz else open
    csv.field_size_limit(options.max_line_bytes)
    try:
        with opener(path, "rb") as fh:
            text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
            reader = csv.DictReader(text)
            while True:
                line_no = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except UnicodeDecodeError as exc:
                    raise FileError(f"line {line_no}: not valid UTF-8 text ({exc.reason})") from exc
                except csv.Error as exc:
                    yield line_no, RowError(line_no, f"malformed CSV: {exc}")
                    continue
                if None in row:
                    yield line_no, RowError(line_no, "more cells than headers")
                    continue
                yield line_no, {k: _csv_cell(v) for k, v in row.items()}
    except (OSError, EOFError, zlib.error) as exc:
        raise FileError(f"the file is not a valid gzip file or is truncated ({exc})") from exc


def _csv_cell(value: str | None) -> Any:
    if value is None or value == "":
        return value
    if value[0] in "[{":
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _iter_parquet(path: Path) -> Iterator[tuple[int, dict | RowError]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(path)
        # Rows that carry files (HF datasets' {"bytes", "path"} structs) come in small
        # batches, so that memory holds a few hundred files at a time, not ten thousand.
        binary = any(
            pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_struct(t)
            for t in _leaf_types(pfile.schema_arrow)
        )
        row_no = 0
        for batch in pfile.iter_batches(batch_size=256 if binary else 10_000):
            for row in batch.to_pylist():
                row_no += 1
                yield row_no, row
    except (pa.ArrowException, OSError) as exc:
        raise FileError(f"the file is not a valid Parquet file ({exc})") from exc


def _leaf_types(schema) -> Iterator:
    import pyarrow as pa

    stack = [f.type for f in schema]
    while stack:
        t = stack.pop()
        yield t
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            stack.append(t.value_type)
        elif pa.types.is_struct(t):
            stack.extend(t.field(i).type for i in range(t.num_fields))


# ---------------------------------------------------------------------------- media

MEDIA_KINDS = ("image", "audio")
_ROLE_COLUMNS = ("prompt", "chosen", "rejected")
MEDIA_COLUMNS = frozenset(f"{r}_{k}" for r in _ROLE_COLUMNS for k in MEDIA_KINDS)


def media_columns_fold(row: dict) -> dict:
    """`chosen_image`, `prompt_audio`, `chosen_alt`, ... -> the object form of the cell."""
    for role in _ROLE_COLUMNS:
        given = [k for k in MEDIA_KINDS if row.get(f"{role}_{k}") not in (None, "")]
        if not given:
            # Our own Parquet export: `chosen` holds the struct, `chosen_alt` its alt text.
            value, alt = row.get(role), row.get(f"{role}_alt")
            if isinstance(value, dict) and _is_hf_struct(value) and alt not in (None, ""):
                row[role] = {**value, "alt": alt}
            continue
        if len(given) > 1:
            raise RowInvalid("name one file: an image or an audio, not both", f"{role}_audio")
        kind = given[0]
        value = row[f"{role}_{kind}"]
        # A Parquet column may hold HF datasets' {"bytes", "path"} structs.
        obj = dict(value) if isinstance(value, dict) else {kind: value}
        alt = row.get(f"{role}_alt")
        if alt not in (None, ""):
            obj["alt"] = alt
        text = row.get(role)
        if role == "prompt":
            obj["text"] = text if text is not None else ""
        elif text not in (None, ""):
            raise RowInvalid(f"give either {role} or {role}_{kind}, not both", role)
        row[role] = obj
    return row


def _is_hf_struct(value: dict) -> bool:
    # "text": a prompt's struct column folded with the prompt's text (media_columns_fold).
    return "bytes" in value and set(value) <= {"bytes", "path", "alt", "text"}


def _media_ref(value: dict, name: str) -> MediaRef | None:
    """The file an object names, or None if it names none."""
    alt = value.get("alt") or ""
    if not isinstance(alt, str):
        raise RowInvalid("must be a string", name + ".alt")
    _no_nul(alt, name + ".alt")
    if _is_hf_struct(value):
        data, path = value.get("bytes"), value.get("path") or ""
        if not isinstance(path, str):
            raise RowInvalid("must be a string", name + ".path")
        if isinstance(data, bytes | bytearray) and data:
            return MediaRef(None, path, name, alt, data=bytes(data), inline=True)
        if data is not None:
            raise RowInvalid("must hold the file's bytes", name + ".bytes")
        if not path:
            raise RowInvalid("has neither bytes nor a path", name)
        return MediaRef(None, _checked_path(path, name), name, alt)
    if "bytes" in value:
        extra = sorted(set(value) - {"bytes", "path", "alt", "text"})
        raise RowInvalid(f"a file struct holds bytes and path, not {', '.join(extra)}", name)
    kinds = [k for k in MEDIA_KINDS if k in value]
    if not kinds:
        return None
    if len(kinds) > 1:
        raise RowInvalid("name one file: an image or an audio, not both", name)
    kind = kinds[0]
    path = value[kind]
    if not isinstance(path, str):
        raise RowInvalid(f"must be a file name, got {_type_name(path)}", f"{name}.{kind}")
    return MediaRef(kind, _checked_path(path, f"{name}.{kind}"), name, alt)


def _checked_path(path: str, name: str) -> str:
    try:
        return media_path(path)
    except FileRefused as exc:
        raise RowInvalid(f"file '{path}' {exc.message}", name) from None


def _media_content(ref: MediaRef, text: str = "") -> Content:
    # The hash is set by media_resolve once the file was read.
    return Content(text=text, messages=None, hash="", media=ref)


def media_resolve(record: Record) -> None:
    """Set the hashes of a record's media contents from their checked files (`info`), and
    refuse a record whose candidates turn out identical. Raises RowInvalid."""
    prompt = record.prompt
    if prompt.media is not None:
        prompt.hash = hashlib.sha256(
            (prompt.text + "\x00" + prompt.media.info.hash).encode()
        ).hexdigest()
    seen: dict[str, int] = {}
    for i, resp in enumerate(record.responses):
        content = resp.content
        if content.media is not None:
            content.hash = content.media.info.hash
        if content.hash in seen:
            if record.ranked:
                raise RowInvalid(
                    f"is identical to responses[{seen[content.hash]}]", f"responses[{i}]"
                )
            raise RowInvalid("chosen and rejected are identical", "rejected")
        seen[content.hash] = i


# ---------------------------------------------------------------------------- shapes


def detect_format(row: dict) -> str:
    keys = set(row)
    if {"prompt", "responses"} <= keys:
        return "ranked"
    if {"prompt", "chosen", "rejected"} <= keys:
        return "trl"
    if {"chosen", "rejected"} <= keys:
        return "hh-rlhf"
    raise RowInvalid(
        "unknown format: expected columns prompt/chosen/rejected (TRL), chosen/rejected "
        f"(hh-rlhf) or prompt/responses (ranked); found {', '.join(sorted(keys)) or 'none'}"
    )


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise RowInvalid(f"must be a string, got {_type_name(value)}", name)
    if not value.strip():
        raise RowInvalid("is empty", name)
    return _no_nul(value, name)


def _no_nul(value: str, name: str) -> str:
    # PostgreSQL text cannot hold NUL: refuse it here, with its place, not at COPY time.
    if "\x00" in value:
        raise RowInvalid("contains a NUL character (\\u0000), which cannot be stored", name)
    return value


def _type_name(value: Any) -> str:
    return {type(None): "null", dict: "object", list: "list"}.get(type(value), type(value).__name__)


def _messages(value: list, name: str) -> list[dict[str, str]]:
    if not value:
        raise RowInvalid("is an empty conversation", name)
    out = []
    for i, msg in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(msg, dict) or set(msg) - {"role", "content"} or "role" not in msg:
            raise RowInvalid("must be an object with 'role' and 'content'", where)
        if msg["role"] not in ROLES:
            raise RowInvalid(f"role must be one of {', '.join(ROLES)}", where)
        content = msg.get("content")
        # An empty answer is real data (hh-rlhf has assistants that said nothing).
        if msg["role"] != "assistant" or not isinstance(content, str):
            content = _text(content, where + ".content")
        _no_nul(content, where + ".content")
        out.append({"role": msg["role"], "content": content})
    return out


def _content(value: Any, name: str) -> Content:
    if value is None or value == "":
        raise RowInvalid("is missing or empty", name)
    if isinstance(value, list):
        return messages_content(_messages(value, name))
    return text_content(_text(value, name))


def _prompt_content(value: Any) -> Content:
    """A prompt: text, messages, or {"text": ..., "image" | "audio": ...}."""
    if isinstance(value, dict):
        ref = _media_ref(value, "prompt")
        text = value.get("text", "")
        if not isinstance(text, str):
            raise RowInvalid(f"must be a string, got {_type_name(text)}", "prompt.text")
        if ref is None:
            return text_content(_text(text, "prompt.text"))
        return _media_content(ref, _no_nul(text, "prompt.text"))
    return _content(value, "prompt")


def _response_content(value: Any, name: str) -> Content:
    """A response: text, messages or a file; a single assistant message is stored as its
    text."""
    if isinstance(value, dict):
        ref = _media_ref(value, name)
        if ref is not None:
            return _media_content(ref)
    content = _content(value, name)
    msgs = content.messages
    if msgs and len(msgs) == 1 and msgs[0]["role"] == "assistant":
        return text_content(msgs[0]["content"])
    return content


def _optional_margin(row: dict) -> float | None:
    value = row.get("margin")
    if value is None or value == "":
        return None
    try:
        margin = float(value)
    except (TypeError, ValueError):
        raise RowInvalid("must be a number", "margin") from None
    if margin != margin or margin in (float("inf"), float("-inf")):
        raise RowInvalid("must be a finite number", "margin")
    return margin


def _optional_metadata(row: dict) -> dict[str, Any]:
    value = row.get("metadata")
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise RowInvalid("must be an object", "metadata")
    if b"\\u0000" in orjson.dumps(value):
        raise RowInvalid("contains a NUL character (\\u0000), which cannot be stored", "metadata")
    return value


def _optional_id(row: dict) -> str:
    value = row.get("id")
    if value is None or value == "":
        return ""
    if not isinstance(value, str | int):
        raise RowInvalid("must be a string or an integer", "id")
    value = str(value)
    if len(value) > 200:
        raise RowInvalid("is longer than 200 characters", "id")
    return _no_nul(value, "id")


def parse_trl(line: int, row: dict, options: Options) -> Record:
    prompt = _prompt_content(row.get("prompt"))
    chosen = _response_content(row.get("chosen"), "chosen")
    rejected = _response_content(row.get("rejected"), "rejected")
    # Files are compared once read (media_resolve).
    if chosen.media is None and rejected.media is None and chosen.hash == rejected.hash:
        raise RowInvalid("chosen and rejected are identical", "rejected")
    return Record(
        line=line,
        prompt=prompt,
        responses=[Response(chosen), Response(rejected)],
        pairs=[(0, 1, "first")],
        margin=_optional_margin(row),
        external_id=_optional_id(row),
        metadata=_optional_metadata(row),
    )


_TURN = re.compile(r"\n\n(Human|Assistant):")
_ROLE = {"Human": "user", "Assistant": "assistant"}


def split_transcript(text: str, name: str) -> list[dict[str, str]]:
    """hh-rlhf transcript -> messages. Content is stripped of surrounding whitespace."""
    parts = _TURN.split(text)
    if parts[0].strip():
        raise RowInvalid("transcript must start with '\\n\\nHuman:'", name)
    turns = [
        {"role": _ROLE[role], "content": body.strip()}
        for role, body in zip(parts[1::2], parts[2::2], strict=True)
    ]
    if not turns:
        raise RowInvalid("has no '\\n\\nHuman:' / '\\n\\nAssistant:' turns", name)
    return turns


def _turns_content(turns: list[dict[str, str]]) -> Content:
    if len(turns) == 1 and turns[0]["role"] == "assistant":
        return text_content(turns[0]["content"])
    return messages_content(turns)


def parse_hh(line: int, row: dict, options: Options) -> Record:
    chosen = split_transcript(_text(row.get("chosen"), "chosen"), "chosen")
    rejected = split_transcript(_text(row.get("rejected"), "rejected"), "rejected")
    shared = 0
    for c, r in zip(chosen, rejected, strict=False):
        if c != r:
            break
        shared += 1
    # The prompt ends where an assistant turn starts in both: back off to that point.
    cut = shared
    while cut > 0 and not (
        cut < len(chosen)
        and cut < len(rejected)
        and chosen[cut]["role"] == "assistant"
        and rejected[cut]["role"] == "assistant"
    ):
        cut -= 1
    if cut == 0:
        raise RowInvalid("chosen and rejected share no conversation before an answer", "rejected")
    if chosen == rejected:
        raise RowInvalid("chosen and rejected are identical", "rejected")
    return Record(
        line=line,
        prompt=messages_content(chosen[:cut]),
        # Real transcripts hold empty answers (the assistant said nothing): kept as they are.
        responses=[
            Response(_turns_content(chosen[cut:])),
            Response(_turns_content(rejected[cut:])),
        ],
        pairs=[(0, 1, "first")],
        metadata=_optional_metadata(row),
        external_id=_optional_id(row),
    )


def parse_ranked(line: int, row: dict, options: Options) -> Record:
    prompt = _prompt_content(row.get("prompt"))
    raw = row.get("responses")
    if not isinstance(raw, list):
        raise RowInvalid(f"must be a list of responses, got {_type_name(raw)}", "responses")
    if len(raw) < 2:
        raise RowInvalid("needs at least two responses", "responses")
    responses: list[Response] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        where = f"responses[{i}]"
        model, rank = "", None
        if isinstance(item, dict):
            body = item.get("text", item.get("content"))
            model = item.get("model") or ""
            if not isinstance(model, str):
                raise RowInvalid("must be a string", where + ".model")
            _no_nul(model, where + ".model")
            rank = item.get("rank")
            if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool)):
                raise RowInvalid("must be an integer (1 = best)", where + ".rank")
            ref = _media_ref(item, where)
            if ref is not None:
                content = _media_content(ref)
            else:
                content = _response_content(body, where + ".text")
        else:
            content = _response_content(item, where)
        if content.media is None and content.hash in seen:
            raise RowInvalid(f"is identical to responses[{seen[content.hash]}]", where)
        seen[content.hash] = i
        responses.append(Response(content, model=model, rank=rank))
    ranks = [r.rank for r in responses]
    has_ranks = all(r is not None for r in ranks)
    if not has_ranks and any(r is not None for r in ranks):
        raise RowInvalid("give a rank to every response or to none", "responses")
    if options.pairs == "adjacent" and has_ranks:
        order = sorted(range(len(responses)), key=lambda i: ranks[i])
        candidates = list(itertools.pairwise(order))
    else:
        candidates = sorted(
            itertools.combinations(range(len(responses)), 2), key=lambda p: (p[1] - p[0], p[0])
        )
    pairs = []
    for i, j in candidates[: options.max_pairs]:
        label = None
        if has_ranks:
            label = (
                "tie" if ranks[i] == ranks[j] else ("first" if ranks[i] < ranks[j] else "second")
            )
        pairs.append((i, j, label))
    return Record(
        line=line,
        prompt=prompt,
        responses=responses,
        pairs=pairs,
        external_id=_optional_id(row),
        metadata=_optional_metadata(row),
        ranked=True,
    )


PARSERS = {"trl": parse_trl, "hh-rlhf": parse_hh, "ranked": parse_ranked}


def read_records(
    path: Path, fmt: str, options: Options
) -> Iterator[tuple[int, Record | RowError, str]]:
    """Yield (line, record or error, the format in use). `fmt` may be "auto"."""
    if fmt != "auto" and fmt not in PARSERS:
        raise FileError(f"unknown format '{fmt}': use auto, {', '.join(FORMATS)}")
    for line, row in iter_rows(path, options):
        if isinstance(row, RowError):
            yield line, row, fmt
            continue
        try:
            if not MEDIA_COLUMNS.isdisjoint(row.keys()):
                row = media_columns_fold(row)
            if fmt == "auto":
                fmt = detect_format(row)
            yield line, PARSERS[fmt](line, row, options), fmt
        except RowInvalid as exc:
            if fmt == "auto":
                # The first row decides the format; an unknown one ends the read.
                raise FileError(f"line {line}: {exc.message}") from None
            yield line, RowError(line, exc.message, exc.field), fmt
