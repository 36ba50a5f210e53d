"""Evaluation of the noise detectors on a labelled file (``manage.py eval_curation``).

Plain Python, no Django (the command is a thin wrapper). Steps:

1. ``pairs_load(path)`` reads any import format (TRL, hh-rlhf, ranked; JSONL/CSV/Parquet) with
   ``annotation.formats.read_records``, keeps the labelled A/B pairs (ties and unlabelled
   pairs are skipped) and puts each pair's candidates in canonical order (by content hash,
   as the importer does), so "A better" is not always the file's first answer.
2. ``embeddings_for(pairs)`` embeds every distinct text with the bundled MiniLM and caches the
   vectors on disk under ``.local/cache/curation/`` keyed by the file's content hash and the
   encoder version, so repeated runs skip the (slow) embedding.
3. ``evaluate(...)`` flips a known random subset of the training labels at each rate, runs
   every detector (``curation.detectors.detectors_run``: the same features and folds for all,
   cleanlab included), scores them against the flipped set, and trains a reward model on the
   noisy labels, after each curation policy (drop flagged, flip flagged) and on the clean
   labels, measuring pairwise accuracy on a clean held-out split.
4. With ``annotators=K`` it simulates K annotators per pair and compares label aggregation
   (majority, Dawid-Skene, MACE, the combined method) against the file's labels.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE_DIR = Path(os.environ.get("CURATION_CACHE_DIR", ".local/cache/curation"))


@dataclass
class LoadedPairs:
    """Labelled pairs of a file, candidates in canonical order (a = smaller content hash)."""

    prompt_hash: list[str]
    a_hash: list[str]
    b_hash: list[str]
    label_a: np.ndarray  # (n,) bool: the file says A is better
    len_a: np.ndarray
    len_b: np.ndarray
    texts: dict[str, str]  # content hash -> text to embed
    skipped: int  # ties, unlabelled pairs, duplicates and invalid rows

    def __len__(self) -> int:
        return len(self.label_a)


def pairs_load(path: Path, fmt: str = "auto") -> LoadedPairs:
    """Read the labelled A/B pairs of ``path`` (any import format); raise ValueError if none."""
    from annotation import formats

    prompt_hash, a_hash, b_hash, label_a, len_a, len_b = [], [], [], [], [], []
    texts: dict[str, str] = {}
    seen: set[tuple[str, str, str]] = set()
    skipped = 0
    try:
        records = list(formats.read_records(Path(path), fmt, formats.Options()))
    except formats.FileError as exc:
        raise ValueError(f"{path}: {exc}") from None
    for _line, record, _fmt in records:
        if isinstance(record, formats.RowError):
            skipped += 1
            continue
        texts.setdefault(record.prompt.hash, record.prompt.text)
        for i, j, label in record.pairs:
            if label not in ("first", "second"):
                skipped += 1
                continue
            ci, cj = record.responses[i].content, record.responses[j].content
            first_is_a = ci.hash < cj.hash
            a, b = (ci, cj) if first_is_a else (cj, ci)
            key = (record.prompt.hash, a.hash, b.hash)
            if key in seen:
                skipped += 1
                continue
            seen.add(key)
            texts.setdefault(a.hash, a.text)
            texts.setdefault(b.hash, b.text)
            prompt_hash.append(record.prompt.hash)
            a_hash.append(a.hash)
            b_hash.append(b.hash)
            label_a.append((label == "first") == first_is_a)
            len_a.append(len(a.text))
            len_b.append(len(b.text))
    if not label_a:
        raise ValueError(f"{path}: no labelled A/B pairs (ties and unlabelled pairs are skipped)")
    return LoadedPairs(
        prompt_hash=prompt_hash,
        a_hash=a_hash,
        b_hash=b_hash,
        label_a=np.array(label_a, dtype=bool),
        len_a=np.array(len_a, dtype=np.float32),
        len_b=np.array(len_b, dtype=np.float32),
        texts=texts,
        skipped=skipped,
    )


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def embeddings_for(
    pairs: LoadedPairs,
    *,
    cache_key: str,
    encoder=None,
    cache_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prompt, a, b) float32 embeddings of every pair, cached under ``cache_dir``.

    ``cache_key`` names the input (the file's sha256); the encoder version is part of the cache
    file name, so a new model never reuses old vectors. Only texts missing from the cache are
    embedded.
    """
    if encoder is None:
        from scoring.encoders import encoder_for

        encoder = encoder_for("text")
    cache_dir = Path(cache_dir or CACHE_DIR)
    cache_dir.mkdir(parents=True, exist_ok=True)
    safe_version = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder.version)
    cache = cache_dir / f"{cache_key}-{safe_version}.npz"
    vectors: dict[str, np.ndarray] = {}
    if cache.exists():
        with np.load(cache, allow_pickle=False) as blob:
            vectors = dict(zip(blob["hashes"].tolist(), blob["vectors"], strict=True))
    missing = [h for h in pairs.texts if h not in vectors]
    if missing:
        started = time.perf_counter()
        if log:
            log(f"embedding {len(missing)} texts with {encoder.version} (cached afterwards)")
        # Longest first keeps batches of similar length (less padding).
        missing.sort(key=lambda h: len(pairs.texts[h]))
        out = encoder.encode([pairs.texts[h] for h in missing])
        vectors.update(zip(missing, out, strict=True))
        hashes = sorted(vectors)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, hashes=np.array(hashes), vectors=np.stack([vectors[h] for h in hashes]))
        os.replace(tmp, cache)
        if log:
            log(f"embedded in {time.perf_counter() - started:.1f} s -> {cache}")

    def stack(keys: list[str]) -> np.ndarray:
        return np.ascontiguousarray(np.stack([vectors[k] for k in keys]), dtype=np.float32)

    return stack(pairs.prompt_hash), stack(pairs.a_hash), stack(pairs.b_hash)
