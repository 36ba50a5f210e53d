"""Small real media files for tests, made on the fly (nothing binary in the repo).

Images are drawn with Pillow, audio is synthesised with numpy and written by soundfile:
real PNG/JPEG/WebP/WAV/FLAC/OGG bytes that the importer, the media view and the encoders
read as they read any file. `archive()` builds an import archive (manifest + files).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import orjson


def image_bytes(seed: int = 0, size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> bytes:
    """A distinct small picture per seed (gradient + a shape), in PNG, JPEG or WEBP."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 255, size=3)
    grad = np.linspace(0, 1, w)[None, :, None] * rng.integers(0, 255, size=3)[None, None, :]
    pixels = np.clip(base[None, None, :] * 0.5 + grad, 0, 255).astype(np.uint8)
    img = Image.fromarray(np.repeat(pixels, h, axis=0))
    draw = ImageDraw.Draw(img)
    x, y = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    draw.ellipse(
        [x, y, x + w // 3, y + h // 3], fill=tuple(int(v) for v in rng.integers(0, 255, 3))
    )
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def audio_bytes(seed: int = 0, seconds: float = 0.5, rate: int = 16000, fmt: str = "WAV") -> bytes:
    """A distinct short tone per seed (WAV, FLAC or OGG)."""
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    freq = 220.0 * (1 + (seed % 24) / 12)
    wave = 0.3 * np.sin(2 * np.pi * freq * t) * np.minimum(1, 20 * t)
    out = io.BytesIO()
    subtype = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS"}[fmt]
    soundfile.write(out, wave.astype(np.float32), rate, format=fmt, subtype=subtype)
    return out.getvalue()


def archive(
    path: Path,
    rows: list[dict],
    files: dict[str, bytes],
    manifest: str = "pairs.jsonl",
) -> Path:
    """A .zip import archive at `path`: `rows` as the manifest (JSONL; or CSV when the
    manifest name ends in .csv, rows then being flat dicts of strings) plus `files`."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        if manifest.endswith(".csv"):
            import csv

            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
            zf.writestr(manifest, text.getvalue())
        else:
            zf.writestr(manifest, b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _pairs_archive(path: Path, kind: str, n: int, seed: int) -> Path:
    """An archive of `n` TRL pairs of `kind` files (chosen/rejected), prompts as text."""
    make, folder, ext, prompt = {
        "image": (image_bytes, "img", "png", "picture"),
        "audio": (audio_bytes, "wav", "wav", "say it"),
    }[kind]
    rows, files = [], {}
    for i in range(n):
        a, b = f"{folder}/{i:04d}_a.{ext}", f"{folder}/{i:04d}_b.{ext}"
        files[a] = make(seed * 1000 + 2 * i)
        files[b] = make(seed * 1000 + 2 * i + 1)
        rows.append({"prompt": f"{prompt} {seed}-{i}", "chosen": {kind: a}, "rejected": {kind: b}})
    return archive(path, rows, files)


def image_pairs_archive(path: Path, n: int = 3, seed: int = 0) -> Path:
    """An archive of `n` TRL image pairs (chosen/rejected PNGs), prompts as text."""
    return _pairs_archive(path, "image", n, seed)


def audio_pairs_archive(path: Path, n: int = 3, seed: int = 0) -> Path:
    """An archive of `n` TRL audio pairs (chosen/rejected WAVs)."""
    return _pairs_archive(path, "audio", n, seed)
