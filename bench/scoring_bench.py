"""Scoring-engine speed: the embedding pipeline, ensemble training and scoring on PostgreSQL.

Run from the repository root (DATABASE_URL must point at PostgreSQL):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/prefdata \\
        .venv/bin/python bench/scoring_bench.py [--texts 10000] [--rounds 4] [--pairs 100000]
                                                [--score-pairs 100000] [--quick] [--breakdown]
                                                [--skip-embed] [--skip-train] [--skip-score]

It drops and re-creates its own database, named after DATABASE_URL's with `_scorebench`
appended (or BENCH_DATABASE_URL), migrates it, then:

1. embed: imports --texts distinct texts (turns of the hh-rlhf sample, topped up with
   generated sentences of varied length) as prompts and candidates of --rounds projects.
   Per project it times the raw `SentenceTransformer.encode` of its texts (the encoder's own
   model, batch size and normalisation) and `embeddings_compute_project` (rows in the
   database to stored vectors), alternating which goes first. embed_ratio = raw seconds /
   pipeline seconds (pipeline throughput over raw throughput).
2. train: --pairs synthetic 384-d pairs whose labels come from a hidden reward (a linear
   term on the response and one on the prompt-response agreement, plus logistic noise);
   times `train_ensemble` with the default `TrainConfig` and prints the held-out accuracy
   next to the accuracy of the hidden reward itself (the best any model can do).
3. score: a project of --score-pairs comparisons (every candidate distinct, as in an
   imported TRL file) whose vectors exist, and a trained version; times `scores_compute`
   (reads of the vectors, the forward pass, the Score upsert), then again to time a re-score
   that overwrites every row.

--breakdown also trains once in float32 (time and accuracy) and times scoring's steps one
by one. --quick is a smoke run (300 texts, 5,000 pairs).

Last line: `embed_ratio=R train_100k_s=T score_100k_s=S` (S: the first scoring of the
version; the re-score is printed above it). A skipped part prints `skipped`.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-sample.jsonl.gz"
DIM = 384

# ---------------------------------------------------------------------------- setup


def bench_url() -> str:
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        return url
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL (or BENCH_DATABASE_URL) must point at PostgreSQL")
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{parts.path.lstrip('/')}_scorebench"))


def setup(url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    # The bench embeds (or writes vectors) itself: no Celery task on import.
    from annotation.signals import pairs_imported

    pairs_imported.disconnect(dispatch_uid="scoring_embeddings_on_import")


def import_rows(project, rows: list[dict], name: str) -> None:
    from annotation.services.importing import pairs_import

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.jsonl"
        with open(path, "w") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
        pairs_import(project=project, path=path, source_name=f"import:{name}")


def postgres_cpu_seconds() -> float:
    """CPU seconds (user + system) of the local PostgreSQL server: its live processes and
    the backends that have exited (their time is added to the postmaster's children's
    time when it reaps them). Scoring reads on a second connection that it closes, so
    one backend's time is not the whole of it. NaN if /proc shows no PostgreSQL."""
    ticks = os.sysconf("SC_CLK_TCK")
    procs = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, rest = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        if head.split("(", 1)[1] in ("postgres", "postmaster"):
            procs[int(stat.parent.name)] = rest.split()
    if not procs:
        return float("nan")
    total = 0
    for fields in procs.values():
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if int(fields[1]) not in procs:  # the postmaster: add its reaped children
            total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / ticks


def load_line() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


# ---------------------------------------------------------------------------- 1. embed


def bench_texts(n: int, seed: int = 7) -> list[str]:
    """n distinct texts: hh-rlhf turns first (shuffled), then generated sentences whose
    lengths (3-150 words) follow the turns', from the sample's own vocabulary."""
    rng = random.Random(seed)
    turns: set[str] = set()
    if HH.exists():
        with gzip.open(HH, "rt") as fh:
            for line in fh:
                row = json.loads(line)
                for side in ("chosen", "rejected"):
                    for turn in re.split(r"\n\n(?:Human|Assistant): ?", row[side]):
                        if turn.strip():
                            turns.add(turn.strip())
    texts = sorted(turns)
    rng.shuffle(texts)
    texts = texts[:n]
    words = " ".join(texts).split() or ["lorem", "ipsum", "dolor", "sit", "amet"]
    seen = set(texts)
    while len(texts) < n:
        length = min(150, max(3, int(rng.lognormvariate(3.0, 0.9))))
        text = " ".join(rng.choices(words, k=length)).capitalize() + "."
        if text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


def part_embed(n_texts: int, rounds: int) -> float:
    """Raw encode and pipeline alternate over `rounds` slices of the texts (one project
    each; odd rounds run the pipeline first), so that a change of load while the bench runs
    hits both sides alike. The ratio is of the summed times."""
    import torch

    from annotation.services.projects import project_create
    from scoring.models import Embedding
    from scoring.selectors import embeddings_missing
    from scoring.services.embeddings import embeddings_compute_project, encoder_current

    texts = bench_texts(n_texts)
    encoder = encoder_current()
    projects = []
    size = -(-len(texts) // rounds)
    for r in range(rounds):
        part = texts[r * size : (r + 1) * size]
        # Rows of (prompt, chosen, rejected): every text is a prompt or a candidate once.
        rows = [
            {"prompt": part[i], "chosen": part[i + 1], "rejected": part[i + 2]}
            for i in range(0, len(part) - 2, 3)
        ]
        project = project_create(slug=f"embed-bench-{r}", name=f"embed bench {r}")
        import_rows(project, rows, f"embed-{r}")
        projects.append(project)
    slices = [
        [text for _, text in embeddings_missing(project=p, encoder=encoder)] for p in projects
    ]
    total = sum(len(s) for s in slices)
    chars = sum(len(t) for s in slices for t in s)
    print(
        f"[embed] {total:,} texts in the database, not embedded, in {rounds} projects "
        f"({chars / total:.0f} characters on average); encoder {encoder.version}, "
        f"batch size {encoder.batch_size}, torch threads {torch.get_num_threads()}"
    )
    model = encoder.model
    model.encode(slices[0][:64], batch_size=encoder.batch_size)  # warm-up (first-call costs)

    cpu = {"raw": 0.0, "pipeline": 0.0}

    def raw(db_texts: list[str]) -> float:
        started, cpu_started = time.perf_counter(), time.process_time()
        model.encode(
            db_texts,
            batch_size=encoder.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        cpu["raw"] += time.process_time() - cpu_started
        return time.perf_counter() - started

    def pipeline(project) -> tuple[float, int]:
        started, cpu_started = time.perf_counter(), time.process_time()
        created = embeddings_compute_project(project=project, encoder=encoder)
        cpu["pipeline"] += time.process_time() - cpu_started
        return time.perf_counter() - started, created

    raw_s = pipe_s = 0.0
    created = 0
    for r, (project, db_texts) in enumerate(zip(projects, slices, strict=True)):
        if r % 2:
            (p_s, made), r_s = pipeline(project), raw(db_texts)
        else:
            r_s, (p_s, made) = raw(db_texts), pipeline(project)
        raw_s, pipe_s, created = raw_s + r_s, pipe_s + p_s, created + made
        print(
            f"[embed] round {r + 1}: {len(db_texts):,} texts, raw SentenceTransformer.encode "
            f"{r_s:.1f} s, embeddings_compute_project {p_s:.1f} s ({made:,} stored); {load_line()}"
        )
    stored = Embedding.objects.filter(encoder=encoder.version).count()
    if created != total or stored != total:
        sys.exit(f"the pipeline stored {created} ({stored}) vectors for {total} texts")
    print(
        f"[embed] raw encode {raw_s:.1f} s ({total / raw_s:.1f} texts/s); pipeline, rows in the "
        f"database to stored vectors, {pipe_s:.1f} s ({total / pipe_s:.1f} texts/s)"
    )
    print(
        f"[embed] CPU time of this process: raw {cpu['raw']:.1f} s, pipeline "
        f"{cpu['pipeline']:.1f} s (ratio {cpu['raw'] / cpu['pipeline']:.3f})"
    )
    ratio = raw_s / pipe_s
    print(f"[embed] ratio {ratio:.3f} (target >= 0.9); {load_line()}")
    return ratio


# ---------------------------------------------------------------------------- 2. train


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def synthetic_pairs(n: int, seed: int):
    """(prompt, chosen, rejected, bayes_accuracy): labels drawn from a hidden reward.

    reward(p, r) = u . r + v . (p * r) * 20 (the second term matters as much as the first);
    P(a beats b) = sigmoid(4 * (reward_a - reward_b) / std). The chosen one is drawn from
    that, so about 15 % of labels go against the hidden reward, as in human data."""
    rng = np.random.default_rng(seed)
    hidden = np.random.default_rng(12345)  # the same hidden reward for train and held-out
    u = hidden.standard_normal(DIM).astype(np.float32)
    v = hidden.standard_normal(DIM).astype(np.float32)
    p, a, b = _unit(rng, n), _unit(rng, n), _unit(rng, n)

    def reward(x):
        return x @ u + (p * x) @ v * 20

    diff = reward(a) - reward(b)
    z = 4 * diff / diff.std()
    prob_a = 1 / (1 + np.exp(-z))
    a_wins = rng.random(n) < prob_a
    chosen = np.where(a_wins[:, None], a, b)
    rejected = np.where(a_wins[:, None], b, a)
    bayes = float(np.mean(np.maximum(prob_a, 1 - prob_a)))
    return p, chosen, rejected, bayes


def part_train(n_pairs: int, breakdown: bool = False) -> tuple[float, object]:
    import torch

    from scoring.train import (
        PairArrays,
        TrainConfig,
        evaluate,
        precision_dtype,
        train_ensemble,
    )

    config = TrainConfig()
    p, c, r, bayes = synthetic_pairs(n_pairs, seed=1)
    hp, hc, hr, hbayes = synthetic_pairs(max(2000, n_pairs // 5), seed=2)
    print(
        f"[train] {n_pairs:,} synthetic pairs, d={DIM}; held-out {len(hp):,}; "
        f"TrainConfig: head={config.head} members={config.members} epochs={config.epochs} "
        f"hidden={config.hidden} batch_size={config.batch_size} bootstrap={config.bootstrap} "
        f"precision={config.precision} ({str(precision_dtype(config.precision)).removeprefix('torch.')}); "
        f"torch threads {torch.get_num_threads()}; {load_line()}"
    )
    train = PairArrays(p, c, r)
    cpu, started = time.process_time(), time.perf_counter()
    result = train_ensemble(config, train)
    train_s, cpu = time.perf_counter() - started, time.process_time() - cpu
    metrics = evaluate(result.ensemble, PairArrays(hp, hc, hr))
    print(
        f"[train] train_ensemble: {train_s:.1f} s (CPU time {cpu:.1f} s); held-out accuracy "
        f"{metrics['eval_accuracy']:.4f} (the hidden reward itself: {hbayes:.4f}), "
        f"log loss {metrics['eval_log_loss']:.4f}, ECE {metrics['eval_ece']:.4f}; "
        f"final train loss {result.metrics['train_loss']:.4f}; {load_line()}"
    )
    if breakdown and config.precision != "float32":
        full = dataclasses.replace(config, precision="float32")
        started = time.perf_counter()
        other = train_ensemble(full, train)
        full_s = time.perf_counter() - started
        acc = evaluate(other.ensemble, PairArrays(hp, hc, hr))["eval_accuracy"]
        print(
            f"[train] the same in float32: {full_s:.1f} s, held-out accuracy {acc:.4f}; "
            f"{load_line()}"
        )
    return train_s, result


# ---------------------------------------------------------------------------- 3. score


def part_score(n_pairs: int, result, breakdown: bool = False) -> float:
    import io

    from django.core.files.base import ContentFile
    from django.db import connection

    from annotation.models import Candidate, Comparison, Prompt
    from annotation.services.projects import project_create
    from scoring.models import ModelVersion, Score
    from scoring.services.embeddings import _vectors_write, encoder_current
    from scoring.services.scores import scores_compute
    from scoring.train import TrainConfig, ensemble_save

    encoder = encoder_current()
    project = project_create(slug="score-bench", name="score bench")
    # A tenth of the prompts come back with new responses (several pairs per prompt).
    rows = []
    for i in range(n_pairs):
        prompt = f"prompt {i // 2 if i % 10 == 1 else i}: what about item {i}?"
        rows.append({"prompt": prompt, "chosen": f"answer {i} a", "rejected": f"answer {i} b"})
    started = time.perf_counter()
    import_rows(project, rows, "score")
    hashes = sorted(
        set(Prompt.objects.filter(project=project).values_list("content_hash", flat=True))
        | set(
            Candidate.objects.filter(prompt__project=project).values_list("content_hash", flat=True)
        )
    )
    rng = np.random.default_rng(3)
    for s in range(0, len(hashes), 20_000):
        batch = hashes[s : s + 20_000]
        vectors = _unit(rng, len(batch)).astype("<f2")
        _vectors_write(batch, [row.tobytes() for row in vectors], encoder, "f2")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    n_comparisons = Comparison.objects.filter(project=project).count()
    print(
        f"[score] {n_comparisons:,} comparisons, {len(hashes):,} vectors written "
        f"(set-up {time.perf_counter() - started:.1f} s)"
    )
    buffer = io.BytesIO()
    ensemble_save(result, buffer)
    version = ModelVersion.objects.create(
        project=project,
        kind=ModelVersion.Kind.HEADS,
        config=TrainConfig().to_dict(),
    )
    version.artifact.save(f"bench-{version.pk}.pt", ContentFile(buffer.getvalue()))

    timings = []
    for attempt in ("first scoring", "re-score (overwrites)"):
        print(f"[score] {load_line()} before the {attempt}")
        pg_cpu, py_cpu = postgres_cpu_seconds(), time.process_time()
        started = time.perf_counter()
        written = scores_compute(version=version)
        timings.append(time.perf_counter() - started)
        py_cpu, pg_cpu = time.process_time() - py_cpu, postgres_cpu_seconds() - pg_cpu
        stored = Score.objects.filter(model_version=version).count()
        print(
            f"[score] scores_compute, {attempt}: {written:,} scores in {timings[-1]:.2f} s "
            f"({stored:,} rows stored); CPU time: this process {py_cpu:.2f} s (all its "
            f"threads), PostgreSQL {pg_cpu:.2f} s"
        )
        if written != n_comparisons or stored != n_comparisons:
            sys.exit(f"expected {n_comparisons} scores, wrote {written}, stored {stored}")
    if breakdown:
        score_breakdown(version, encoder)
    return timings[0]


def score_breakdown(version, encoder) -> None:
    """Where scores_compute's time goes: the same steps, timed one by one (a third pass)."""
    import io

    import torch

    from scoring.services import scores as services
    from scoring.services.embeddings import PairEncoders
    from scoring.train import ensemble_load, fast_dtype

    with version.artifact.open("rb") as fh:
        ensemble = ensemble_load(io.BytesIO(fh.read()))
    dtype = fast_dtype()
    started = time.perf_counter()
    chunks, last = [], 0
    while chunk := services._score_chunk_read(
        version.project_id, PairEncoders(encoder, encoder), last, services.SCORE_CHUNK
    ):
        chunks.append(chunk)
        last = int(chunk.ids.max())
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    results = [services._chunk_score(ensemble, chunk, dtype) for chunk in chunks]
    forward_s = time.perf_counter() - started
    started = time.perf_counter()
    for chunk in chunks:
        services._chunk_score(ensemble, chunk, torch.float32)
    forward32_s = time.perf_counter() - started
    full = np.concatenate([services._chunk_score(ensemble, c, torch.float32)[0] for c in chunks])
    low = np.concatenate([p for p, _ in results])
    started = time.perf_counter()
    for chunk, (p_a, spread) in zip(chunks, results, strict=True):
        services._scores_write(chunk.ids, version.pk, p_a, spread)
    write_s = time.perf_counter() - started
    print(
        f"[score] breakdown ({len(chunks)} rounds of {services.SCORE_CHUNK:,}): read comparisons "
        f"and vectors {read_s:.2f} s, heads in {str(dtype).removeprefix('torch.')} "
        f"{forward_s:.2f} s (float32: {forward32_s:.2f} s; largest difference in P(A) "
        f"{np.abs(full - low).max():.4f}), upsert {write_s:.2f} s; {load_line()}"
    )


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=10_000, help="texts for embed_ratio")
    parser.add_argument(
        "--rounds", type=int, default=4, help="slices that raw encode and pipeline alternate on"
    )
    parser.add_argument("--pairs", type=int, default=100_000, help="training pairs")
    parser.add_argument("--score-pairs", type=int, default=100_000, help="comparisons scored")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 300 texts, 5,000 pairs to train and score"
    )
    parser.add_argument("--skip-embed", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-score", action="store_true")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time training in float32, and scoring's steps one by one",
    )
    args = parser.parse_args()
    if args.quick:
        args.texts, args.pairs, args.score_pairs, args.rounds = 300, 5_000, 5_000, 2

    url = bench_url()
    setup(url)
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    print(
        f"scoring bench on {urlsplit(url).path.lstrip('/')}: {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {load_line()}"
    )

    embed_ratio = "skipped" if args.skip_embed else f"{part_embed(args.texts, args.rounds):.3f}"
    train_s, result = "skipped", None
    if not args.skip_train or not args.skip_score:
        seconds, result = part_train(
            args.pairs if not args.skip_train else 2_000, args.breakdown and not args.skip_train
        )
        if not args.skip_train:
            train_s = f"{seconds:.2f}"
    score_s = (
        "skipped"
        if args.skip_score
        else f"{part_score(args.score_pairs, result, args.breakdown):.2f}"
    )
    print(f"{load_line()} at the end")
    print(f"embed_ratio={embed_ratio} train_100k_s={train_s} score_100k_s={score_s}")


if __name__ == "__main__":
    main()
