"""Reward-model quality on real preference data, with K-fold cross-validation.

Media: given an image or audio import archive (.zip with a pairs.jsonl manifest, e.g. the
simulated sets of bench/media_data.py), it reads the manifest directly (no database),
embeds prompts with MiniLM and the files with the image or audio encoder
(scoring/encoders.py), and trains the same heads and ensembles on [r, p] features:

    .venv/bin/python bench/rm_quality.py /tmp/images-heldout.zip \
        [--train /tmp/images-tune.zip] [--folds 5] [--members 5] [--epochs 30]

K-fold cross-validation within the archive; with `--train`, also trained on that archive
and evaluated on all of the first (`transfer_acc=`). The transformer part is text only.

Run from the repository root:

    HF_HUB_OFFLINE=1 .venv/bin/python bench/rm_quality.py ../shared/data/hh-rlhf-harmless-sample.jsonl.gz \\
        [--folds 5] [--members 5] [--epochs 30] [--skip-transformer] \\
        [--transformer-backbone minilm] [--transformer-epochs 1] [--transformer-max-length 256] \\
        [--transformer-folds K]

It imports the file into its own PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/prefdata_rmq, dropped and re-created), embeds every
prompt and response with the bundled MiniLM, then for each fold trains on the other folds
and predicts the held-out one: a 5-member MLP ensemble, a single MLP head and a linear
ensemble. Predictions of all folds are pooled and scored with scoring.metrics.

Last line: `heads_acc=A heads_ece=E transformer_acc=T length_corr=C` (the ensemble's pooled
held-out accuracy, ECE and reward-length correlation; T is the fine-tuned transformer's
pooled held-out accuracy over the folds it ran, or `skipped`).

The transformer part fine-tunes the backbone once per fold (scoring/transformer.py): minutes
per fold on a GPU, about an hour for all five folds of MiniLM on a 2-core CPU; on a CPU,
`--transformer-folds 1` runs the first fold only (its accuracy is on that fold's pairs).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/prefdata_rmq"


def _setup(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _pairs(project, encoder):
    """Embeddings of every labelled pair, chosen first, with lengths and fold keys."""
    from annotation.models import Choice, Comparison
    from scoring.selectors import embeddings_load

    rows = list(
        Comparison.objects.filter(project=project, label__in=[Choice.A, Choice.B])
        .order_by("id")
        .values_list(
            "label",
            "prompt__content_hash",
            "candidate_a__content_hash",
            "candidate_b__content_hash",
            "candidate_a__text",
            "candidate_b__text",
        )
    )
    prompt_h, chosen_h, rejected_h, chosen_len, rejected_len, keys = [], [], [], [], [], []
    for label, ph, ah, bh, at, bt in rows:
        (ch, ct), (rh, rt) = ((ah, at), (bh, bt)) if label == Choice.A else ((bh, bt), (ah, at))
        prompt_h.append(ph)
        chosen_h.append(ch)
        rejected_h.append(rh)
        chosen_len.append(len(ct))
        rejected_len.append(len(rt))
        keys.append(ah + bh)
    load = lambda hashes: embeddings_load(content_hashes=hashes, encoder=encoder)  # noqa: E731
    return (
        load(prompt_h),
        load(chosen_h),
        load(rejected_h),
        np.array(chosen_len),
        np.array(rejected_len),
        keys,
    )


def _folds(keys: list[str], k: int) -> np.ndarray:
    import hashlib

    return np.array([int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % k for key in keys])


def _cross_validate(data, folds: np.ndarray, k: int, config) -> dict:
    import torch

    from scoring.metrics import pairwise_metrics
    from scoring.train import PairArrays, ensemble_rewards, train_ensemble

    prompt, chosen, rejected, chosen_len, rejected_len, _ = data
    n = len(folds)
    p_chosen = np.zeros(n, dtype=np.float64)
    r_chosen = np.zeros(n, dtype=np.float64)
    r_rejected = np.zeros(n, dtype=np.float64)
    for fold in range(k):
        train_idx, held = np.where(folds != fold)[0], np.where(folds == fold)[0]
        result = train_ensemble(
            config, PairArrays(prompt[train_idx], chosen[train_idx], rejected[train_idx])
        )
        rc = ensemble_rewards(result.ensemble, prompt[held], chosen[held])
        rr = ensemble_rewards(result.ensemble, prompt[held], rejected[held])
        p_chosen[held] = torch.sigmoid(rc - rr).mean(dim=0).numpy()
        r_chosen[held] = rc.mean(dim=0).numpy()
        r_rejected[held] = rr.mean(dim=0).numpy()
    return pairwise_metrics(
        p_chosen,
        chosen_len=chosen_len,
        rejected_len=rejected_len,
        reward_chosen=r_chosen,
        reward_rejected=r_rejected,
    )


def _texts(project) -> tuple[list[str], list[str], list[str]]:
    """Prompt, chosen and rejected text of every labelled pair, in the order of `_pairs`."""
    from annotation.models import Choice, Comparison

    rows = (
        Comparison.objects.filter(project=project, label__in=[Choice.A, Choice.B])
        .order_by("id")
        .values_list("label", "prompt__text", "candidate_a__text", "candidate_b__text")
    )
    prompts, chosen, rejected = [], [], []
    for label, prompt, a, b in rows:
        prompts.append(prompt)
        chosen.append(a if label == Choice.A else b)
        rejected.append(b if label == Choice.A else a)
    return prompts, chosen, rejected


def _report(fold: int, step: int, total: int, loss: float) -> None:
    if step % 20 == 0 or step == total:
        print(f"  fold {fold + 1} step {step}/{total} loss {loss:.4f}", flush=True)


def _cross_validate_transformer(texts, data, folds: np.ndarray, run_folds: int, config) -> dict:
    from scoring.metrics import pairwise_metrics
    from scoring.transformer import TextPairs, transformer_train

    pairs = TextPairs(*texts)
    _, _, _, chosen_len, rejected_len, _ = data
    held_all, p_parts, rc_parts, rr_parts = [], [], [], []
    for fold in range(run_folds):
        train_idx, held = np.where(folds != fold)[0], np.where(folds == fold)[0]
        started = time.perf_counter()
        rm = transformer_train(
            config,
            pairs.subset(train_idx),
            progress=functools.partial(_report, fold),
        )
        sub = pairs.subset(held)
        rc = rm.score(sub.prompt, sub.chosen).astype(np.float64)
        rr = rm.score(sub.prompt, sub.rejected).astype(np.float64)
        print(
            f"  fold {fold + 1}: acc {np.mean(rc > rr):.3f} on {len(held)} pairs, "
            f"{time.perf_counter() - started:.0f} s on {rm.device}",
            flush=True,
        )
        held_all.append(held)
        p_parts.append(1 / (1 + np.exp(-(rc - rr))))
        rc_parts.append(rc)
        rr_parts.append(rr)
    held = np.concatenate(held_all)
    return pairwise_metrics(
        np.concatenate(p_parts),
        chosen_len=chosen_len[held],
        rejected_len=rejected_len[held],
        reward_chosen=np.concatenate(rc_parts),
        reward_rejected=np.concatenate(rr_parts),
    )


def _media_read(archive: Path) -> tuple[str, list[str], list[bytes], list[bytes]]:
    """(kind, prompts, chosen files, rejected files) of a TRL media archive's pairs.jsonl."""
    import zipfile

    import orjson

    with zipfile.ZipFile(archive) as zf:
        rows = [orjson.loads(line) for line in zf.read("pairs.jsonl").splitlines() if line]
        kinds = {k for row in rows for k in ("image", "audio") if k in row["chosen"]}
        if len(kinds) != 1:
            sys.exit(f"{archive}: expected image or audio candidates, found {kinds or 'none'}")
        kind = kinds.pop()
        prompts = [
            r["prompt"] if isinstance(r["prompt"], str) else r["prompt"]["text"] for r in rows
        ]
        chosen = [zf.read(r["chosen"][kind]) for r in rows]
        rejected = [zf.read(r["rejected"][kind]) for r in rows]
    return kind, prompts, chosen, rejected


def _media_data(archive: Path, cache: Path | None = None):
    """What `_pairs` gives for text, from a media archive: prompt text vectors, chosen and
    rejected media vectors, no lengths, fold keys (the files' hashes). With `cache` (a
    folder), the vectors are kept there per archive content and encoder versions."""
    import hashlib

    sys.path.insert(0, str(ROOT))
    from scoring.encoders import encoder_for

    kind, prompts, chosen, rejected = _media_read(archive)
    text, media = encoder_for("text"), encoder_for(kind)
    started = time.perf_counter()
    unique = sorted(set(prompts))
    files = chosen + rejected
    n = len(prompts)
    digest = hashlib.sha256(archive.read_bytes() + f"{text.version}{media.version}".encode())
    cached = cache / f"{archive.stem}-{digest.hexdigest()[:16]}.npz" if cache else None
    if cached and cached.exists():
        saved = np.load(cached)
        prompt_vectors, embedded = saved["prompts"], saved["files"]
    else:
        prompt_vectors, embedded = text.encode(unique), media.encode(files)
        if cached:
            cache.mkdir(parents=True, exist_ok=True)
            np.savez(cached, prompts=prompt_vectors, files=embedded)
    vectors = dict(zip(unique, prompt_vectors, strict=True))
    print(
        f"{archive.name}: {n} {kind} pairs; embedded {len(files)} files and {len(unique)} "
        f"prompts in {time.perf_counter() - started:.1f} s ({media.version}, {text.version})",
        flush=True,
    )
    keys = [
        hashlib.sha256(a).hexdigest() + hashlib.sha256(b).hexdigest()
        for a, b in zip(chosen, rejected, strict=True)
    ]
    prompt = np.stack([vectors[p] for p in prompts])
    return kind, (prompt, embedded[:n], embedded[n:], None, None, keys)


def _transfer(train_data, test_data, config) -> dict:
    """Train on all of `train_data`, evaluate on all of `test_data`."""
    from scoring.train import PairArrays, evaluate, train_ensemble

    result = train_ensemble(config, PairArrays(*train_data[:3]))
    return evaluate(result.ensemble, PairArrays(*test_data[:3]))


def _media_main(args) -> None:
    import torch

    torch.set_num_threads(2)
    kind, data = _media_data(args.file, args.cache)
    train_data = None
    if args.train:
        train_kind, train_data = _media_data(args.train, args.cache)
        if train_kind != kind:
            sys.exit(f"--train holds {train_kind} pairs, {args.file.name} {kind} pairs")
    folds = _folds(data[-1], args.folds)
    print(f"{len(folds):,} labelled {kind} pairs, {args.folds} folds; features [r, p]")
    runs = _head_runs(args)
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    print("| model | CV accuracy | CV ECE | CV log loss | trained on --train: accuracy |")
    print("|---|---:|---:|---:|---:|")
    results, transfer = {}, {}
    for name, config in runs.items():
        m = results[name] = _cross_validate(data, folds, args.folds, config)
        t = transfer[name] = _transfer(train_data, data, config) if train_data else {}
        print(
            f"| {name} | {fmt(m['eval_accuracy'])} | {fmt(m['eval_ece'])} | "
            f"{fmt(m['eval_log_loss'])} | {fmt(t.get('eval_accuracy'))} |"
        )
    best = f"MLP ensemble ({args.members})"
    line = (
        f"kind={kind} pairs={len(folds)} heads_acc={results[best]['eval_accuracy']:.4f} "
        f"heads_ece={results[best]['eval_ece']:.4f}"
    )
    if train_data:
        line += f" transfer_acc={transfer[best]['eval_accuracy']:.4f}"
    print(line)


def _head_runs(args) -> dict:
    from scoring.train import TrainConfig

    return {
        f"MLP ensemble ({args.members})": TrainConfig(
            head="mlp", members=args.members, epochs=args.epochs, batch_size=args.batch_size
        ),
        "MLP single head": TrainConfig(
            head="mlp", members=1, epochs=args.epochs, batch_size=args.batch_size
        ),
        f"linear ensemble ({args.members})": TrainConfig(
            head="linear", members=args.members, epochs=args.epochs, batch_size=args.batch_size
        ),
        "linear single head": TrainConfig(
            head="linear", members=1, epochs=args.epochs, batch_size=args.batch_size
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument(
        "--train", type=Path, default=None, help="media: also train on this archive"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="pairs per step (default 256; 32 for media: a few hundred pairs need more steps)",
    )
    parser.add_argument(
        "--cache", type=Path, default=None, help="media: keep the vectors in this folder"
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--skip-transformer", action="store_true")
    parser.add_argument("--transformer-backbone", default="minilm")
    parser.add_argument("--transformer-epochs", type=int, default=1)
    parser.add_argument("--transformer-max-length", type=int, default=256)
    parser.add_argument("--transformer-batch-size", type=int, default=16)
    parser.add_argument(
        "--transformer-folds", type=int, default=None, help="folds to run (default: all)"
    )
    args = parser.parse_args()
    if args.file.suffix == ".zip":
        # Tuned on the simulated tune splits (300 image / 160 audio pairs): batches of 256
        # give a few hundred pairs one step per epoch, and the heads underfit (image CV
        # accuracy 0.92, ECE 0.15, against 0.97 and 0.03 with 32).
        args.batch_size = args.batch_size or 32
        _media_main(args)
        return
    args.batch_size = args.batch_size or 256

    _setup(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    import torch

    from annotation.services.importing import pairs_import
    from annotation.services.projects import project_create
    from scoring.services.embeddings import embeddings_compute_project, encoder_current

    torch.set_num_threads(2)
    project = project_create(slug="rm-quality", name="rm quality")
    result = pairs_import(project=project, path=args.file, source_name=f"import:{args.file.name}")
    print(result.message)
    encoder = encoder_current()
    started = time.perf_counter()
    created = embeddings_compute_project(project=project, encoder=encoder)
    print(
        f"embedded {created:,} texts in {time.perf_counter() - started:.1f} s ({encoder.version})"
    )
    data = _pairs(project, encoder)
    folds = _folds(data[-1], args.folds)
    print(f"{len(folds):,} labelled pairs, {args.folds} folds")

    runs = _head_runs(args)
    results = {}
    print(
        "| model | accuracy | ECE | log loss | acc. chosen longer | acc. chosen shorter | reward-length corr. |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, config in runs.items():
        m = _cross_validate(data, folds, args.folds, config)
        results[name] = m
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        print(
            f"| {name} | {fmt(m['eval_accuracy'])} | {fmt(m['eval_ece'])} | {fmt(m['eval_log_loss'])} | "
            f"{fmt(m['eval_accuracy_chosen_longer'])} | {fmt(m['eval_accuracy_chosen_shorter'])} | "
            f"{fmt(m['eval_length_corr'])} |"
        )
    transformer_acc = "skipped"
    if not args.skip_transformer:
        from scoring.transformer import TransformerConfig

        config = TransformerConfig(
            backbone=args.transformer_backbone,
            epochs=args.transformer_epochs,
            max_length=args.transformer_max_length,
            batch_size=args.transformer_batch_size,
        )
        run_folds = min(args.transformer_folds or args.folds, args.folds)
        name = f"fine-tuned {config.backbone} ({run_folds} of {args.folds} folds)"
        m = _cross_validate_transformer(_texts(project), data, folds, run_folds, config)
        transformer_acc = f"{m['eval_accuracy']:.4f}"
        print(
            f"| {name} | {fmt(m['eval_accuracy'])} | {fmt(m['eval_ece'])} | {fmt(m['eval_log_loss'])} | "
            f"{fmt(m['eval_accuracy_chosen_longer'])} | {fmt(m['eval_accuracy_chosen_shorter'])} | "
            f"{fmt(m['eval_length_corr'])} |"
        )
    best = results[f"MLP ensemble ({args.members})"]
    print(
        f"heads_acc={best['eval_accuracy']:.4f} heads_ece={best['eval_ece']:.4f} "
        f"transformer_acc={transformer_acc} length_corr={best['eval_length_corr']:.4f}"
    )


if __name__ == "__main__":
    main()
