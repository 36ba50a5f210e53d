from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.progress import CommandProgress


def _rates(value: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise CommandError(
            f"--flip-rates must be numbers separated by commas, not {value!r}"
        ) from None
    if not rates or any(not 0 < r < 0.5 for r in rates):
        raise CommandError("--flip-rates must be fractions between 0 and 0.5, e.g. 0.2,0.4")
    return rates


class Command(BaseCommand):
    help = (
        "Evaluate the noise detectors on a labelled file (any import format): flip a known share "
        "of labels, run every detector and cleanlab on the same folds, and print precision, "
        "recall and F1 per detector and the reward model's clean held-out accuracy when trained "
        "on noisy, curated and clean labels. Needs no database."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="JSONL(.gz), CSV(.gz) or Parquet file")
        parser.add_argument("--format", default="auto", help="auto, trl, hh-rlhf or ranked")
        parser.add_argument("--flip-rates", default="0.2,0.4", help="e.g. 0.2,0.4")
        parser.add_argument("--seeds", type=int, default=3, help="repetitions (seeds 0..N-1)")
        parser.add_argument("--seed-offset", type=int, default=0, help="first seed")
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument("--members", type=int, default=5, help="models per ensemble")
        parser.add_argument("--epochs", type=int, default=None, help="default: by data size")
        parser.add_argument(
            "--simulate-annotators",
            type=int,
            default=0,
            metavar="K",
            help="also simulate K annotators per pair and compare label aggregation",
        )
        parser.add_argument(
            "--policy",
            choices=["drop", "flip"],
            default="drop",
            help="curation policy whose accuracy is acc_curated in gap_recovered",
        )
        parser.add_argument(
            "--quick",
            action="store_true",
            help="for tests: 1 seed, 3 folds, 2 members, 3 epochs, 1 peer step",
        )
        parser.add_argument(
            "--cache-dir",
            type=Path,
            default=None,
            help="where embeddings are cached (default .local/cache/curation)",
        )
        parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")

    def handle(self, *args, **opts) -> None:
        import torch

        from curation.evaluation import (
            EvalOptions,
            embeddings_for,
            evaluate,
            file_digest,
            pairs_load,
            report,
        )

        path: Path = opts["file"]
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        if opts["threads"]:
            torch.set_num_threads(opts["threads"])
        if opts["seeds"] < 1 or opts["folds"] < 2 or opts["members"] < 1:
            raise CommandError("--seeds and --members must be at least 1, --folds at least 2")
        if opts["simulate_annotators"] < 0:
            raise CommandError("--simulate-annotators must not be negative")
        eval_opts = EvalOptions(
            flip_rates=_rates(opts["flip_rates"]),
            seeds=opts["seeds"],
            seed_offset=opts["seed_offset"],
            folds=opts["folds"],
            members=opts["members"],
            epochs=opts["epochs"],
            annotators=opts["simulate_annotators"],
            policy=opts["policy"],
        )
        if opts["quick"]:
            eval_opts.seeds, eval_opts.folds, eval_opts.members = 1, 3, 2
            eval_opts.epochs, eval_opts.peer_steps = 3, 1
        started = time.perf_counter()
        log = lambda msg: self.stderr.write(msg)  # noqa: E731
        try:
            pairs = pairs_load(path, opts["format"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if len(pairs) < 4 * eval_opts.folds:
            raise CommandError(
                f"{len(pairs)} labelled pairs are too few (need {4 * eval_opts.folds})"
            )
        log(f"{len(pairs)} labelled pairs ({pairs.skipped} rows or pairs skipped)")
        prompt, a, b = embeddings_for(
            pairs, cache_key=file_digest(path), cache_dir=opts["cache_dir"], log=log
        )
        with CommandProgress(self.stderr, unit="models") as progress:
            raw = evaluate(
                prompt,
                a,
                b,
                pairs.label_a,
                pairs.len_a,
                pairs.len_b,
                eval_opts,
                log=log,
                progress=lambda done, total: progress(done, total, "training"),
            )
        lines, last = report(raw, eval_opts)
        for line in lines:
            self.stdout.write(line)
        self.stdout.write(f"({len(pairs)} pairs, {time.perf_counter() - started:.0f} s)")
        self.stdout.write(last)
