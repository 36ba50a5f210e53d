"""Where an import's media files come from: a .zip archive, or the folder beside a manifest.

Pure Python, no Django (as formats.py and media.py). A zip is checked from its directory
before anything is read (symbolic links, unsafe names, duplicate names, total size, the
expansion ratio of each member) and again while a member is read, since the directory can
lie: the bytes actually read count against the same caps. A folder refuses any path that
leads out of it, by `..` or by a symbolic link. Nothing is extracted to disk but the
manifest, into a folder the caller gives (and removes).
"""

from __future__ import annotations

import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

MANIFESTS = ("pairs.jsonl", "pairs.csv", "pairs.parquet")
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# A member this small cannot be a bomb worth the name (the total cap bounds many of them);
# the ratio check starts above it, so that a short silent WAV or a repetitive manifest passes.
RATIO_FLOOR_BYTES = 1024 * 1024
CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveInvalid(Exception):
    """The archive as a whole is refused; `errors` says why (each naming the member)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(errors[0])
        self.errors = errors


class FileRefused(Exception):
    """One named file cannot be used; the message says why (the caller names the row)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_bytes: int  # all members together, uncompressed
    max_ratio: int  # uncompressed / compressed, per member (above RATIO_FLOOR_BYTES)
    max_member_bytes: int  # one file (the largest media cap)


def is_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) in ZIP_MAGIC


def media_path(value: str) -> str:
    """A manifest's file name, normalised ("./img/a.png" -> "img/a.png"); FileRefused if it
    is absolute or climbs out with `..`."""
    if not value or not value.strip():
        raise FileRefused("has an empty file name")
    if "\x00" in value:
        raise FileRefused("has a NUL character in its name")
    if value.startswith(("/", "\\")) or _DRIVE.match(value):
        raise FileRefused("is an absolute path; name files relative to the manifest")
    parts = re.split(r"[/\\]", value)
    if ".." in parts:
        raise FileRefused("has '..' in its path; name files inside the archive or folder")
    return "/".join(p for p in parts if p not in ("", "."))


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    # Unix zips keep the file mode in the high 16 bits of external_attr.
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


class ZipSource:
    """The media of a .zip import. `bad` holds members that may not be read (the reason);
    a row naming one is refused, and so is the archive if one is named by no row."""

    def __init__(self, path: Path, limits: ArchiveLimits) -> None:
        self.limits = limits
        try:
            self.zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ArchiveInvalid([f"the file is not a valid .zip archive ({exc})"]) from None
        try:
            self._directory_check()
        except ArchiveInvalid:
            self.zf.close()
            raise
        self.read_total = 0
        self._counted: set[str] = set()

    def _directory_check(self) -> None:
        limits = self.limits
        self.members: dict[str, zipfile.ZipInfo] = {}
        self.bad: dict[str, str] = {}
        errors: list[str] = []
        total = 0
        for info in self.zf.infolist():
            name = info.filename
            if name.endswith("/") and not _is_symlink(info):
                continue  # a folder entry
            total += info.file_size
            try:
                clean = media_path(name)
            except FileRefused as exc:
                self.bad[name] = f"archive member '{name}' {exc.message}"
                continue
            if clean in self.members or clean in self.bad:
                errors.append(f"archive member '{name}' appears twice")
                continue
            if _is_symlink(info):
                self.bad[clean] = "is a symbolic link in the archive; refused"
            elif info.file_size > limits.max_member_bytes:
                self.bad[clean] = (
                    f"is {info.file_size:,} bytes uncompressed, over the "
                    f"{limits.max_member_bytes:,}-byte limit for one file"
                )
            elif self._ratio_over(info.file_size, info.compress_size):
                self.bad[clean] = (
                    f"expands {info.file_size / max(info.compress_size, 1):,.0f} times "
                    f"(over the ratio cap of {limits.max_ratio}): refused as a possible zip bomb"
                )
            self.members[clean] = info
        if total > limits.max_bytes:
            errors.insert(
                0,
                f"the archive holds {total:,} bytes uncompressed, over the "
                f"{limits.max_bytes:,}-byte limit (IMPORT_ARCHIVE_MAX_BYTES)",
            )
        manifests = [m for m in MANIFESTS if m in self.members or m in self.bad]
        if not manifests:
            errors.append(
                f"the archive has no manifest at its root: add one of {', '.join(MANIFESTS)} "
                "beside the media folders (not inside a folder)"
            )
        elif len(manifests) > 1:
            errors.append(
                f"the archive has {len(manifests)} manifests ({', '.join(manifests)}); keep one"
            )
        elif manifests[0] in self.bad:
            errors.append(f"the manifest '{manifests[0]}' {self.bad[manifests[0]]}")
        if errors:
            raise ArchiveInvalid(errors)
        self.manifest = manifests[0]

    def _ratio_over(self, size: int, compressed: int) -> bool:
        return size > RATIO_FLOOR_BYTES and size > self.limits.max_ratio * max(compressed, 1)

    def manifest_extract(self, folder: Path) -> Path:
        """Copy the manifest into `folder` (the caller removes it); the caps hold."""
        out = folder / self.manifest
        info = self.members[self.manifest]
        with open(out, "wb") as fh:
            for chunk in self._chunks(info, self.limits.max_bytes):
                fh.write(chunk)
        return out

    def read(self, name: str) -> bytes:
        """The bytes of the member `name` (as media_path gives it); FileRefused if it is
        missing, refused from the directory, or breaks a cap while read."""
        if name in self.bad:
            raise FileRefused(self.bad[name])
        info = self.members.get(name)
        if info is None:
            raise FileRefused("is not in the archive")
        return b"".join(self._chunks(info, self.limits.max_member_bytes))

    def _chunks(self, info: zipfile.ZipInfo, cap: int):
        # A member read again (to store it, once valid) counts once towards the total.
        count = info.filename not in self._counted
        self._counted.add(info.filename)
        got = 0
        try:
            with self.zf.open(info) as fh:
                while chunk := fh.read(CHUNK):
                    got += len(chunk)
                    self.read_total += len(chunk) if count else 0
                    # The directory's sizes were checked; the real bytes are checked again.
                    if got > info.file_size:
                        raise FileRefused("holds more bytes than the archive's directory says")
                    if got > cap:
                        raise FileRefused(f"is over the {cap:,}-byte limit for one file")
                    if self._ratio_over(got, info.compress_size):
                        raise FileRefused(
                            f"expands over the ratio cap of {self.limits.max_ratio}: refused as "
                            "a possible zip bomb"
                        )
                    if self.read_total > self.limits.max_bytes:
                        raise FileRefused(
                            f"takes the archive over {self.limits.max_bytes:,} bytes "
                            "uncompressed (IMPORT_ARCHIVE_MAX_BYTES)"
                        )
                    yield chunk
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
            raise FileRefused(f"cannot be read from the archive ({exc})") from None

    def unreferenced_bad(self, referenced: set[str]) -> list[str]:
        """Refusals for bad members no row named (a symlink is refused even if unused)."""
        return [
            reason if reason.startswith("archive member") else f"archive member '{n}' {reason}"
            for n, reason in self.bad.items()
            if n not in referenced
        ]

    def close(self) -> None:
        self.zf.close()


class FolderSource:
    """The media beside a manifest on this machine: paths relative to its folder, none
    leading out of it (by '..' or a symbolic link)."""

    def __init__(self, folder: Path, max_member_bytes: int) -> None:
        self.root = folder.resolve()
        self.max_member_bytes = max_member_bytes
        self.bad: dict[str, str] = {}

    def read(self, name: str) -> bytes:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root):
            raise FileRefused("leads out of the manifest's folder (a symbolic link); refused")
        if not path.exists():
            raise FileRefused("is missing (looked beside the manifest)")
        if not path.is_file():
            raise FileRefused("is not a file")
        size = path.stat().st_size
        if size > self.max_member_bytes:
            raise FileRefused(f"is {size:,} bytes, over the {self.max_member_bytes:,}-byte limit")
        with open(path, "rb") as fh:
            return fh.read(self.max_member_bytes + 1)

    def unreferenced_bad(self, referenced: set[str]) -> list[str]:
        return []

    def close(self) -> None:
        pass


class NoFiles:
    """A manifest uploaded alone: files it names cannot be found (HF Parquet carries its
    bytes inline and needs none)."""

    bad: dict[str, str] = {}  # noqa: RUF012

    def read(self, name: str) -> bytes:
        raise FileRefused(
            "cannot be found: upload the manifest and its files together in a .zip archive"
        )

    def unreferenced_bad(self, referenced: set[str]) -> list[str]:
        return []

    def close(self) -> None:
        pass


def manifest_in_folder(folder: Path) -> Path:
    """The one manifest in `folder` (the import_pairs command given a folder)."""
    found = [folder / m for m in MANIFESTS if (folder / m).is_file()]
    if len(found) != 1:
        raise ArchiveInvalid(
            [
                f"{folder} holds {len(found)} manifests; expected exactly one of "
                + ", ".join(MANIFESTS)
            ]
        )
    return found[0]
