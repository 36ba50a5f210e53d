"""Media figures on this machine: one function per figure, the last line all key=value.

Run from the repository root:

    HF_HUB_OFFLINE=1 .venv/bin/python bench/media_bench.py [--import-image-pairs 2000]
        [--import-audio-pairs 500] [--image-pairs 64] [--audio-pairs 32] [--repeat 2]
        [--annotators 10] [--seconds 30] [--only import image_embed audio_embed annotate]

Figures (each a function that returns {key: value}, listed in FIGURES):
- `media_import_files_per_s`: files per second of the importer (`pairs_import`, what the
  worker runs: the archive checked, every file read and verified with Pillow/libsndfile,
  stored by content hash, rows written) over an archive of --import-image-pairs image pairs
  and one of --import-audio-pairs audio pairs, both imports timed together;
  `image_import_files_per_s`, `audio_import_files_per_s` each.
- `image_embed_ratio`, `audio_embed_ratio`: files per second of our embedding pipeline
  (`embeddings_compute_project` with the image or audio encoder: the missing query, reading
  the files from storage, encoding in batches, writing float16 vectors) divided by files per
  second of the raw encoder (`encoder.encode` on the same files' bytes, already in memory),
  best of `--repeat` runs each, model loaded before either is timed. Target >= 0.9.
  `image_embed_files_per_s`, `audio_embed_files_per_s`: the pipeline's own rate.
- `media_annotate_p95_ms`: the labelling page's next+submit round trip at p95, with
  bench/annotate_bench.py's harness (gunicorn with production settings, --annotators real
  HTTP sessions at one pair per second each, for --seconds), on unlabelled image pairs, the
  browser's requests for the two pictures through the private media view included;
  `text_annotate_p95_ms` on a text project of as many pairs, same server, same harness;
  `media_annotate_ratio` = media / text (target <= 2).

The files are the SIMULATED degraded-photo (JPEG) and degraded-speech (FLAC) sets of
bench/media_data.py (tune split). The database is its own (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/prefdata_mediabench, dropped and re-created); media are
stored in a temporary MEDIA_ROOT. The import's embedding hook is disconnected (no worker
runs here; the embedding figures time that work on their own).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
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


def project_from_archive(kind: str, archive: Path, *, slug: str | None = None):
    """A new project holding the archive's pairs, imported by the importer. Returns
    (project, {hash: bytes} of its media files, the import's seconds)."""
    from annotation.models import Candidate
    from annotation.services.importing import pairs_import
    from annotation.services.projects import project_create

    project = project_create(slug=slug or f"media-bench-{kind}", name=slug or kind)
    started = time.perf_counter()
    result = pairs_import(project=project, path=archive, source_name=f"import:{archive.name}")
    seconds = time.perf_counter() - started
    print(
        f"imported {archive.name}: {result.comparisons_created:,} pairs, "
        f"{result.files_stored:,} files in {seconds:.1f} s",
        flush=True,
    )
    from django.core.files.storage import default_storage

    files = {}
    for digest, name in Candidate.objects.filter(prompt__project=project, kind=kind).values_list(
        "content_hash", "file"
    ):
        with default_storage.open(name, "rb") as fh:
            files[digest] = fh.read()
    return project, files, seconds


def unlabelled_archive(archive: Path, out: Path) -> Path:
    """The same files as unlabelled pairs (`responses` without ranks): the labelling queue."""
    import orjson

    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        rows = [orjson.loads(line) for line in src.read("pairs.jsonl").splitlines() if line]
        manifest = [
            {"prompt": f"{r['prompt']} ({i})", "responses": [r["chosen"], r["rejected"]]}
            for i, r in enumerate(rows)
        ]
        dst.writestr("pairs.jsonl", b"\n".join(orjson.dumps(r) for r in manifest))
        for info in src.infolist():
            if info.filename != "pairs.jsonl":
                dst.writestr(info, src.read(info))
    return out


def embed_ratio(kind: str, pairs: int, repeat: int, folder: Path) -> dict[str, float]:
    """{kind}_embed_ratio: pipeline files/s over raw encoder files/s on the same files."""
    from scoring.models import Embedding
    from scoring.services.embeddings import embeddings_compute_project, encoder_current

    project, files, _ = project_from_archive(kind, archive_make(kind, pairs, folder))
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


def figure_import(args, folder: Path) -> dict[str, float]:
    images = archive_make("image", args.import_image_pairs, folder)
    audio = archive_make("audio", args.import_audio_pairs, folder)
    out = {}
    seconds = files = 0
    for kind, archive in (("image", images), ("audio", audio)):
        _, stored, took = project_from_archive(kind, archive, slug=f"import-{kind}")
        # The archive's files, each read and checked; identical ones are stored once.
        with zipfile.ZipFile(archive) as zf:
            n = sum(1 for info in zf.infolist() if info.filename != "pairs.jsonl")
        print(f"{kind}: {n} files in the archive, {len(stored)} distinct", flush=True)
        out[f"{kind}_import_files_per_s"] = round(n / took, 1)
        seconds += took
        files += n
    return {"media_import_files_per_s": round(files / seconds, 1), **out}


def figure_annotate(args, folder: Path) -> dict[str, float]:
    import signal
    import subprocess

    import annotate_bench as ab
    from django.conf import settings

    from annotation.models import Project

    pairs = args.import_image_pairs
    source = archive_make("image", pairs, folder)
    media, _, _ = project_from_archive(
        "image", unlabelled_archive(source, folder / "queue.zip"), slug="annotate-image"
    )
    text = ab._load("annotate-text", pairs, folder, overlap=1)
    Project.objects.filter(pk=media.pk).update(overlap=1)
    url = os.environ["DATABASE_URL"]
    subprocess.run(["psql", url, "-qc", "ANALYZE"], check=True)
    names = ab._annotators([media, text], args.annotators)
    port = ab._free_port()
    # The server reads the files this process stored.
    os.environ["MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    server = ab._gunicorn(url, port, args.workers, 1, folder / "gunicorn.log")
    base = f"http://127.0.0.1:{port}"
    try:
        figures = {}
        for key, project, with_media in (("media", media, True), ("text", text, False)):
            p95, p50, errors, n = asyncio.run(
                _paced(ab, base, project.slug, names, args.seconds, with_media)
            )
            print(
                f"{key}: {n} pairs, p50 {p50:.1f} ms, p95 {p95:.1f} ms, errors {errors}",
                flush=True,
            )
            assert not errors, f"{errors} errors: see {folder / 'gunicorn.log'}"
            figures[f"{key}_annotate_p95_ms"] = round(p95, 1)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    figures["media_annotate_ratio"] = round(
        figures["media_annotate_p95_ms"] / figures["text_annotate_p95_ms"], 2
    )
    return figures


MEDIA_SRC = re.compile(r'src="(/projects/[\w-]+/media/[0-9a-f]{64}\.\w+)"')


async def _paced(ab, base: str, slug: str, names: list[str], seconds: float, with_media: bool):
    """annotate_bench's paced phase; for media, each fragment's pictures are fetched too,
    as the browser does (the prefetch loads the next pair's pictures)."""
    import statistics

    import aiohttp

    class Client(ab.Annotator):
        async def _fragment(self, url: str):
            async with self.session.get(url, headers=self.headers) as r:
                body = await r.text()
                if r.status != 200:
                    raise RuntimeError(f"GET {url}: {r.status}")
            sources = MEDIA_SRC.findall(body) if with_media else []
            # Both pictures at once, as a browser loads a page's images.
            await asyncio.gather(*(self._picture(src) for src in sources))
            match = ab.SUBMIT_URL.search(body)
            if match and with_media and len(sources) < 2:
                raise RuntimeError(f"the pair page shows {len(sources)} pictures, not 2")
            return match.group(1) if match else None

        async def _picture(self, src: str) -> None:
            async with self.session.get(src) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"GET {src}: {r.status}")

    clients = [Client(base, slug, u) for u in names]
    try:
        await asyncio.gather(*(c.login(aiohttp) for c in clients))
        latencies, errors, _ = await ab._phase(clients, seconds, pause=1.0)
    finally:
        await asyncio.gather(*(c.session.close() for c in clients if c.session))
    q = statistics.quantiles(latencies, n=100)
    return q[94], statistics.median(latencies), errors, len(latencies)


# name -> function(args, scratch folder) -> {key: value}; `--only` picks some.
FIGURES = {
    "import": figure_import,
    "image_embed": figure_image_embed,
    "audio_embed": figure_audio_embed,
    "annotate": figure_annotate,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-pairs", type=int, default=64)
    parser.add_argument("--audio-pairs", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--import-image-pairs", type=int, default=2000)
    parser.add_argument("--import-audio-pairs", type=int, default=500)
    parser.add_argument("--annotators", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--only", nargs="*", choices=list(FIGURES), default=list(FIGURES))
    args = parser.parse_args()
    setup(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    from annotation.signals import pairs_imported

    pairs_imported.disconnect(dispatch_uid="scoring_embeddings_on_import")
    import torch

    torch.set_num_threads(2)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            figures.update(FIGURES[name](args, Path(tmp)))
    print(" ".join(f"{key}={value}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
