"""Media files (images, audio): what a file is, from its bytes, and whether we take it.

Pure Python, no Django (as formats.py): the importer, the tests and the benches call it.
The type is sniffed from the bytes, never the name; images open and verify with Pillow under
a decompression-bomb pixel limit; audio decodes with libsndfile (soundfile). A refusal is a
MediaInvalid whose message a user can act on; the caller adds the row and the file name.

A file is stored once by its content hash (sha256 of the bytes): `blob_name()` is the name
in Django's storage, the same for every project that uses it.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

IMAGE_TYPES = {
    # format name -> (extension, content type)
    "PNG": (".png", "image/png"),
    "JPEG": (".jpg", "image/jpeg"),
    "WEBP": (".webp", "image/webp"),
}
AUDIO_TYPES = {
    "WAV": (".wav", "audio/wav"),
    "FLAC": (".flac", "audio/flac"),
    "OGG": (".ogg", "audio/ogg"),
    "MP3": (".mp3", "audio/mpeg"),
}
CONTENT_TYPES = dict([*IMAGE_TYPES.values(), *AUDIO_TYPES.values()])
KINDS = ("image", "audio")


class MediaInvalid(Exception):
    """The bytes are not a file we take; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Limits:
    image_max_bytes: int = 20 * 1024**2
    image_max_side: int = 8192
    image_max_pixels: int = 40_000_000
    audio_max_bytes: int = 50 * 1024**2
    audio_max_seconds: float = 600.0


@dataclass(frozen=True, slots=True)
class MediaInfo:
    kind: str  # "image" or "audio"
    hash: str  # sha256 of the bytes
    ext: str  # ".png", ".wav", ...
    content_type: str
    size: int
    width: int | None = None
    height: int | None = None
    seconds: float | None = None

    @property
    def name(self) -> str:
        return blob_name(self.hash, self.ext)


def blob_name(digest: str, ext: str) -> str:
    """The storage name of a file: one per content, shared by every project."""
    return f"blobs/{digest[:2]}/{digest}{ext}"


def sniff(data: bytes) -> tuple[str, str]:
    """(kind, format) from the first bytes; MediaInvalid for anything else."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "WEBP"
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "audio", "WAV"
    if head.startswith(b"fLaC"):
        return "audio", "FLAC"
    if head.startswith(b"OggS"):
        return "audio", "OGG"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio", "MP3"
    raise MediaInvalid(
        "is not a supported file: expected an image (PNG, JPEG, WebP) or audio "
        "(WAV, FLAC, OGG, MP3), judged from its bytes"
    )


def media_inspect(data: bytes, limits: Limits, expect: str | None = None) -> MediaInfo:
    """Validate `data` (a whole file) and describe it. `expect` ("image" or "audio") is the
    kind the manifest named: a file of the other kind is refused."""
    kind, fmt = sniff(data)
    if expect and kind != expect:
        raise MediaInvalid(f"is named as {expect} but its bytes are {kind} ({fmt})")
    digest = hashlib.sha256(data).hexdigest()
    if kind == "image":
        return _image_inspect(data, fmt, digest, limits)
    return _audio_inspect(data, fmt, digest, limits)


def _image_inspect(data: bytes, fmt: str, digest: str, limits: Limits) -> MediaInfo:
    from PIL import Image

    if len(data) > limits.image_max_bytes:
        raise MediaInvalid(
            f"is {len(data):,} bytes, over the {limits.image_max_bytes:,}-byte limit for images"
        )
    # Pillow's own bomb check reads this module global; set it for every call (it is the
    # same for the whole process, and ours is the stricter or equal value).
    Image.MAX_IMAGE_PIXELS = limits.image_max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if img.format != fmt:
                    raise MediaInvalid(f"claims to be {fmt} but Pillow reads {img.format}")
                _image_size_check(width, height, limits)
                img.verify()
            # verify() checks the structure; a full decode catches truncated pixel data.
            with Image.open(io.BytesIO(data)) as img:
                img.load()
    except MediaInvalid:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MediaInvalid(
            f"has too many pixels (over {limits.image_max_pixels:,}): refused as a "
            "possible decompression bomb"
        ) from None
    except Exception as exc:  # Pillow raises many types for broken files
        raise MediaInvalid(f"is not a valid {fmt} image ({exc})") from None
    ext, ctype = IMAGE_TYPES[fmt]
    return MediaInfo("image", digest, ext, ctype, len(data), width=width, height=height)


def _image_size_check(width: int, height: int, limits: Limits) -> None:
    if max(width, height) > limits.image_max_side:
        raise MediaInvalid(
            f"is {width}x{height} pixels; the longest side may be {limits.image_max_side:,}"
        )
    if width * height > limits.image_max_pixels:
        raise MediaInvalid(
            f"has {width * height:,} pixels, over the {limits.image_max_pixels:,} limit "
            "(decompression-bomb guard)"
        )


def _audio_inspect(data: bytes, fmt: str, digest: str, limits: Limits) -> MediaInfo:
    import soundfile

    if len(data) > limits.audio_max_bytes:
        raise MediaInvalid(
            f"is {len(data):,} bytes, over the {limits.audio_max_bytes:,}-byte limit for audio"
        )
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as snd:
            if not snd.samplerate or snd.frames <= 0:
                raise MediaInvalid(f"is {fmt} audio with no samples")
            seconds = snd.frames / snd.samplerate
            if seconds > limits.audio_max_seconds:
                raise MediaInvalid(
                    f"lasts {seconds:.1f} s, over the {limits.audio_max_seconds:g} s limit"
                )
            # Decode it all, in blocks: a header can lie about what follows.
            for _block in snd.blocks(blocksize=1 << 16):
                pass
    except MediaInvalid:
        raise
    except Exception as exc:  # soundfile.LibsndfileError, RuntimeError, ValueError...
        raise MediaInvalid(f"is not valid {fmt} audio ({exc})") from None
    ext, ctype = AUDIO_TYPES[fmt]
    return MediaInfo("audio", digest, ext, ctype, len(data), seconds=round(seconds, 3))
