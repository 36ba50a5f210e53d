"""Media figures on this machine: one function per figure, the last line all key=value.

Run from the repository root:

    HF_HUB_OFFLINE=1 .venv/bin/python bench/media_bench.py [--image-pairs 64] [--audio-pairs 32]

Figures (more are added the same way: a function that returns {key: value}, listed in
FIGURES):
- `image_embed_ratio`, `audio_embed_ratio`: files per second of our embedding pipeline
  (`embeddings_compute_project` with the image or audio encoder: the missing query, reading
  the files from storage, encoding in batches, writing float16 vectors) divided by files per
  second of the raw encoder (`encoder.encode` on the same files' bytes, already in memory),
  best of `--repeat` runs each, model loaded before either is timed. Target >= 0.9.
  `image_embed_files_per_s`, `audio_embed_files_per_s`: the pipeline's own rate.

The files are the SIMULATED degraded-photo and degraded-speech sets of bench/media_data.py
(tune split). The database is its own (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/prefdata_mediabench, dropped and re-created); media are
stored in a temporary MEDIA_ROOT.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/prefdata_mediabench"


def setup(url: str) -> None:
    """A fresh database and MEDIA_ROOT, Django set up and migrated."""
    from rm_quality import _setup

    os.environ["MEDIA_ROOT"] = tempfile.mkdtemp(prefix="media-bench-")
    os.environ["IMPORT_ROOT"] = tempfile.mkdtemp(prefix="media-bench-imports-")
    _setup(url)


def archive_make(kind: str, pairs: int, folder: Path) -> Path:
    from media_data import media_archive_write

    return media_archive_write(
        kind=kind, split="tune", pairs=pairs, seed=0, out=folder / f"{kind}-{pairs}.zip"
    )


def project_from_archive(kind: str, archive: Path):
    """A project holding the archive's pairs, the files stored as an import stores them
    (annotation.media checks, named by content hash). Returns (project, {hash: bytes})."""
    import hashlib

    import orjson

    from annotation.media import media_inspect
    from annotation.models import Candidate, Comparison, Prompt
    from annotation.services.media import media_limits, media_save
    from annotation.services.projects import project_create

    project = project_create(slug=f"media-bench-{kind}", name=f"media bench {kind}")
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(archive) as zf:
        rows = [orjson.loads(line) for line in zf.read("pairs.jsonl").splitlines() if line]
        for i, row in enumerate(rows):
            text = f"{row['prompt']} ({i})"
            prompt = Prompt.objects.create(
                project=project, content_hash=hashlib.sha256(text.encode()).hexdigest(), text=text
            )
            sides = []
            for side in ("chosen", "rejected"):
                data = zf.read(row[side][kind])
                info = media_inspect(data, media_limits(), expect=kind)
                media_save(data=data, info=info)
                files[info.hash] = data
                sides.append(
                    Candidate.objects.create(
                        prompt=prompt,
                        kind=kind,
                        content_hash=info.hash,
                        file=info.name,
                        content_type=info.content_type,
                        size=info.size,
                    )
                )
            Comparison.objects.create(
                project=project, prompt=prompt, candidate_a=sides[0], candidate_b=sides[1]
            )
    return project, files


def embed_ratio(kind: str, pairs: int, repeat: int, folder: Path) -> dict[str, float]:
    """{kind}_embed_ratio: pipeline files/s over raw encoder files/s on the same files."""
    from scoring.models import Embedding
    from scoring.services.embeddings import embeddings_compute_project, encoder_current

    project, files = project_from_archive(kind, archive_make(kind, pairs, folder))
    encoder = encoder_current(modality=kind)
    embeddings_compute_project(project=project, encoder=encoder_current())  # prompts (text)
    data = list(files.values())
    encoder.encode(data[:4])  # load the model and warm up before timing either side
    raw, pipeline = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        encoder.encode(data)
        raw.append(time.perf_counter() - started)
        Embedding.objects.filter(encoder=encoder.version).delete()
        started = time.perf_counter()
        created = embeddings_compute_project(project=project, encoder=encoder)
        pipeline.append(time.perf_counter() - started)
        assert created == len(files), (created, len(files))
    raw_rate, pipe_rate = len(data) / min(raw), len(data) / min(pipeline)
    print(
        f"{kind}: {len(data)} files ({encoder.version}); raw encoder {raw_rate:.1f} files/s, "
        f"pipeline {pipe_rate:.1f} files/s (best of {repeat})",
        flush=True,
    )
    return {
        f"{kind}_embed_files_per_s": round(pipe_rate, 2),
        f"{kind}_embed_ratio": round(pipe_rate / raw_rate, 3),
    }


def figure_image_embed(args, folder: Path) -> dict[str, float]:
    return embed_ratio("image", args.image_pairs, args.repeat, folder)


def figure_audio_embed(args, folder: Path) -> dict[str, float]:
    return embed_ratio("audio", args.audio_pairs, args.repeat, folder)


# name -> function(args, scratch folder) -> {key: value}; `--only` picks some.
FIGURES = {
    "image_embed": figure_image_embed,
    "audio_embed": figure_audio_embed,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-pairs", type=int, default=64)
    parser.add_argument("--audio-pairs", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=list(FIGURES), default=list(FIGURES))
    args = parser.parse_args()
    setup(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    import torch

    torch.set_num_threads(2)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            figures.update(FIGURES[name](args, Path(tmp)))
    print(" ".join(f"{key}={value}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
