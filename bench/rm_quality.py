"""Reward-model quality on real preference data, with K-fold cross-validation.

Run from the repository root:

    HF_HUB_OFFLINE=1 .venv/bin/python bench/rm_quality.py ../shared/data/hh-rlhf-harmless-sample.jsonl.gz \\
        [--folds 5] [--members 5] [--epochs 30] [--skip-transformer]

It imports the file into its own PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/prefdata_rmq, dropped and re-created), embeds every
prompt and response with the bundled MiniLM, then for each fold trains on the other folds
and predicts the held-out one: a 5-member MLP ensemble, a single MLP head and a linear
ensemble. Predictions of all folds are pooled and scored with scoring.metrics.

Last line: `heads_acc=A heads_ece=E transformer_acc=T length_corr=C` (the ensemble's pooled
held-out accuracy, ECE and reward-length correlation; T is `skipped` until the fine-tuned
transformer path exists).
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--skip-transformer", action="store_true")
    args = parser.parse_args()

    _setup(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    import torch

    from annotation.services.importing import pairs_import
    from annotation.services.projects import project_create
    from scoring.services import embeddings_compute_project, encoder_current
    from scoring.train import TrainConfig

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

    runs = {
        f"MLP ensemble ({args.members})": TrainConfig(
            head="mlp", members=args.members, epochs=args.epochs, batch_size=256
        ),
        "MLP single head": TrainConfig(head="mlp", members=1, epochs=args.epochs, batch_size=256),
        f"linear ensemble ({args.members})": TrainConfig(
            head="linear", members=args.members, epochs=args.epochs, batch_size=256
        ),
        "linear single head": TrainConfig(
            head="linear", members=1, epochs=args.epochs, batch_size=256
        ),
    }
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
    best = results[f"MLP ensemble ({args.members})"]
    print(
        f"heads_acc={best['eval_accuracy']:.4f} heads_ece={best['eval_ece']:.4f} "
        f"transformer_acc=skipped length_corr={best['eval_length_corr']:.4f}"
    )


if __name__ == "__main__":
    main()
