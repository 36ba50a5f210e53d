"""The media side of an import: where a manifest's files come from, checking each file once
while the rows are validated (keeping only its MediaInfo, never the bytes), and storing them
by content hash once everything is valid (read again, one at a time).

A refusal is an ImportRejected whose errors name the row (line), the field and the file.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from annotation import archive, formats
from annotation.media import MediaInfo, MediaInvalid, media_inspect
from annotation.services.media import media_limits, media_save
from core.exceptions import ApplicationError

Progress = Callable[[str, int, int | None], None]


class ImportRejected(ApplicationError):
    """The file has errors; `errors` lists them (line and field), nothing was written."""


Source = archive.ZipSource | archive.FolderSource | archive.NoFiles


@contextmanager
def manifest_open(path: Path, media_folder: Path | None) -> Iterator[tuple[Path, Source]]:
    """(the manifest to read, where the files it names come from). A .zip's manifest is
    copied into a temporary folder, removed on the way out whatever happens."""
    limits = media_limits()
    max_member = max(limits.image_max_bytes, limits.audio_max_bytes)
    if not archive.is_zip(path):
        if media_folder is not None:
            source: Source = archive.FolderSource(media_folder, max_member)
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
                max_member_bytes=max_member,
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
            yield manifest, source
    finally:
        source.close()


class MediaChecker:
    """Reads and checks every file the rows name, once per file; keeps only MediaInfo."""

    def __init__(self, source: Source) -> None:
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


def media_store(
    records: list[formats.Record],
    manifest: Path,
    source: Source,
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
