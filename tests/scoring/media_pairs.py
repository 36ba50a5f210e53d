"""Labelled image and audio pairs for the media scoring tests: a clean file against a
copy degraded by heavy noise (the clean one preferred), stored as an import stores them."""

from __future__ import annotations

import hashlib
import io

import numpy as np

from annotation.models import Candidate, Choice, Comparison, Prompt
from annotation.services.labels import comparison_labels_refresh
from tests.factories import judgement_make
from tests.media_samples import audio_bytes, image_bytes


def noisy_image(data: bytes, seed: int) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        x = np.asarray(img.convert("RGB"), dtype=np.float32)
    x += np.random.default_rng(seed).normal(0, 60, x.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def noisy_audio(data: bytes, seed: int) -> bytes:
    import soundfile

    wave, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    wave = wave + np.random.default_rng(seed).normal(0, 0.3, wave.shape).astype(np.float32)
    out = io.BytesIO()
    soundfile.write(out, np.clip(wave, -1, 1), rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def clean_and_noisy(kind: str, seed: int) -> tuple[bytes, bytes]:
    if kind == "image":
        clean = image_bytes(seed, size=(96, 72))
        return clean, noisy_image(clean, seed)
    clean = audio_bytes(seed, seconds=0.6 + 0.05 * (seed % 7))  # distinct per seed
    return clean, noisy_audio(clean, seed)


def _candidate(prompt: Prompt, kind: str, data: bytes) -> Candidate:
    from annotation.media import media_inspect
    from annotation.services.media import media_limits, media_save

    info = media_inspect(data, media_limits(), expect=kind)
    media_save(data=data, info=info)
    return Candidate.objects.create(
        prompt=prompt,
        kind=kind,
        content_hash=info.hash,
        file=info.name,
        content_type=info.content_type,
        size=info.size,
    )


def media_pair_make(project, kind: str, seed: int, *, labeller=None) -> Comparison:
    """One comparison of a clean and a noisy file; the side of the clean one alternates.
    With `labeller`, that user labels it (the clean side) and the label is aggregated."""
    clean, noisy = clean_and_noisy(kind, seed)
    text = f"Which {kind} is cleaner? ({seed})"
    prompt = Prompt.objects.create(
        project=project, content_hash=hashlib.sha256(text.encode()).hexdigest(), text=text
    )
    clean_c, noisy_c = _candidate(prompt, kind, clean), _candidate(prompt, kind, noisy)
    a, b = (clean_c, noisy_c) if seed % 2 else (noisy_c, clean_c)
    comparison = Comparison.objects.create(
        project=project,
        prompt=prompt,
        candidate_a=a,
        candidate_b=b,
        queue_key=int(hashlib.sha256(f"{kind}{seed}".encode()).hexdigest()[:12], 16),
    )
    if labeller is not None:
        judgement_make(comparison, labeller, Choice.A if a == clean_c else Choice.B)
        comparison_labels_refresh(comparison_ids=[comparison.id])
    return comparison
