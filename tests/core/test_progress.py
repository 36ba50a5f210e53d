"""The management commands' progress: plain lines off a terminal, a tqdm bar on one."""

from __future__ import annotations

import io

import pytest
from django.core.management.base import CommandError

from core.progress import CommandProgress, run_command_check
from scoring.models import TrainingRun


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_it_writes_plain_lines_with_rate_and_time_left():
    out = io.StringIO()
    progress = CommandProgress(out, unit="rows", every_s=0)
    progress(0, 0, "reading")
    progress(50, 100, "validating")
    progress(100, 100, "validating")
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "reading: 0 rows"
    assert lines[1].startswith("validating: 50 / 100 rows (50 %")
    assert "/s, " in lines[1]
    assert "left)" in lines[1]
    assert lines[2].startswith("validating: 100 / 100 rows (100 %")


def test_off_a_terminal_it_writes_at_most_one_line_every_few_seconds():
    out = io.StringIO()
    progress = CommandProgress(out, unit="steps", every_s=3600)
    for done in range(1, 100):
        progress(done, 100, "training")
    progress(100, 100, "training")
    assert len(out.getvalue().splitlines()) == 2  # the first report and the last


def test_on_a_terminal_it_draws_a_bar_per_phase():
    out = _Tty()
    progress = CommandProgress(out, unit="rows")
    progress(10, 100, "validating")
    progress(100, 100, "validating")
    progress(40, 100, "writing")
    progress.close()
    text = out.getvalue()
    assert "validating" in text
    assert "writing" in text
    assert "100/100" in text
    assert "rows/s" in text


def test_a_failed_run_is_a_command_error_with_the_runs_reason():
    run = TrainingRun(pk=7, status="failed", error="only 3 labelled A/B pairs")
    with pytest.raises(CommandError, match=r"^training run #7 failed: only 3 labelled A/B pairs$"):
        run_command_check(run, what="training run")
    with pytest.raises(CommandError, match="it was cancelled"):
        run_command_check(TrainingRun(pk=8, status="cancelled"), what="training run")
    run_command_check(TrainingRun(pk=9, status="succeeded"), what="training run")
