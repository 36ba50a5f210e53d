"""Simulate the routing policies on a labelled file and report reward-model accuracy."""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.progress import CommandProgress
from curation.routing.simulation import SimConfig, data_load, last_line, simulate, summary, table


def _budgets(value: str) -> tuple[float, ...]:
    try:
        budgets = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise CommandError(f"--budgets takes fractions like 0.1,0.3,0.5, not {value!r}") from None
    if not budgets or any(not 0.0 < b <= 1.0 for b in budgets):
        raise CommandError("--budgets takes fractions in (0, 1], e.g. 0.1,0.3,0.5")
    return budgets


class Command(BaseCommand):
    help = (
        "Simulate human/AI routing on a labelled file (its labels are the human answers) and "
        "report held-out reward-model accuracy per policy and budget. Last line: "
        "acc_hyper_30=... acc_uncertainty_30=... acc_random_30=... acc_all_ai=... acc_all_human=..."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path, help="Any import-format file (TRL, hh-rlhf, ...).")
        parser.add_argument("--budgets", default="0.1,0.3,0.5", help="Human budgets (fractions).")
        parser.add_argument("--seeds", type=int, default=3, help="Repetitions (splits, noise).")
        parser.add_argument(
            "--human-noise", type=float, default=0.0, help="Flip this share of human answers."
        )
        parser.add_argument(
            "--ai-judge", default="reward-model", choices=["reward-model", "local-llm", "llm"]
        )
        parser.add_argument(
            "--llm-base-url", default="", help="With --ai-judge llm: an OpenAI-compatible URL."
        )
        parser.add_argument("--llm-model", default="default", help="With --ai-judge llm.")
        parser.add_argument(
            "--quick", action="store_true", help="Tiny models and at most 200 pairs (tests)."
        )

    def handle(self, *args, file: Path, **opts) -> None:
        if not file.is_file():
            raise CommandError(f"{file}: no such file")
        if opts["seeds"] < 1:
            raise CommandError("--seeds must be at least 1")
        budgets = _budgets(opts["budgets"])
        if not any(abs(b - 0.3) < 1e-9 for b in budgets):
            budgets = tuple(sorted((*budgets, 0.3)))
            self.stdout.write("added the 30 % budget: the last line reports it")
        if opts["ai_judge"] == "llm" and not opts["llm_base_url"]:
            raise CommandError("--ai-judge llm needs --llm-base-url")
        config = SimConfig(
            budgets=budgets,
            seeds=opts["seeds"],
            human_noise=opts["human_noise"],
            ai_judge=opts["ai_judge"],
            llm_base_url=opts["llm_base_url"],
            llm_model=opts["llm_model"],
            quick=opts["quick"],
        )
        started = time.perf_counter()
        log = self.stdout.write
        try:
            import torch

            torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
            data = data_load(file, log=log, limit=200 if opts["quick"] else None)
            log(f"{len(data):,} labelled pairs from {file.name}")
            with CommandProgress(self.stderr, unit="runs") as progress:
                results = simulate(
                    data, config, log=log, progress=lambda done, total: progress(done, total, "")
                )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        rows = summary(results)
        log(table(rows))
        log(f"({config.seeds} seeds, human noise {config.human_noise}, AI judge "
            f"{config.ai_judge}, {time.perf_counter() - started:.0f} s)")  # fmt: skip
        log(last_line(rows))
