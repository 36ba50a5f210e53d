"""Progress for management commands: a bar with rate and time left on a terminal (tqdm), a
plain line every few seconds when the output is a file or a pipe (CI logs, cron mail).

    with CommandProgress(self.stderr, unit="rows") as progress:
        run = import_job_execute(job=job, on_progress=progress)
    run_command_check(run, what="import")   # CommandError with the run's error unless it succeeded
"""

from __future__ import annotations

import time
from typing import TextIO

from django.core.management.base import CommandError
from tqdm import tqdm

from core.models import Run, RunStatus


class CommandProgress:
    """Call it with (done, total, phase) as often as you like; a new phase starts a new bar.
    It writes to `stream` (a command's self.stderr, so that stdout stays for results)."""

    def __init__(self, stream, *, unit: str = "", every_s: float = 5.0) -> None:
        self.out: TextIO = getattr(stream, "_out", stream)
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.unit = unit
        self.every_s = every_s
        self.phase: str | None = None
        self.bar: tqdm | None = None
        self.phase_started = time.monotonic()
        self.last_line: float | None = None

    def __call__(self, done: int, total: int | None, phase: str = "") -> None:
        if phase != self.phase:
            self._close_phase()
            self.phase = phase
            self.phase_started = time.monotonic()
            self.last_line = None
            if self.tty:
                self.bar = tqdm(
                    total=total or None,
                    desc=phase or None,
                    unit=f" {self.unit}" if self.unit else "it",
                    file=self.out,
                    dynamic_ncols=True,
                    leave=True,
                )
        if self.bar is not None:
            self.bar.total = total or None
            self.bar.update(max(0, done - self.bar.n))
            return
        now = time.monotonic()
        due = self.last_line is None or now - self.last_line >= self.every_s
        if due or (total and done >= total):
            self.last_line = now
            self.out.write(self.line(done, total, now - self.phase_started) + "\n")
            self.out.flush()

    def line(self, done: int, total: int | None, elapsed: float) -> str:
        """'writing: 40,000 / 100,000 rows (40 %, 12,345/s, 5 s left)'"""
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.phase + ': ' if self.phase else ''}{done:,}"
        rate = done / elapsed if elapsed > 0 else 0.0
        if total:
            text += f" / {total:,}{unit} ({100 * done / total:.0f} %"
            if rate > 0 and done < total:
                text += f", {rate:,.0f}/s, {_duration((total - done) / rate)} left"
            text += ")"
        else:
            text += f"{unit}" + (f" ({rate:,.0f}/s)" if rate > 0 else "")
        return text

    def _close_phase(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self._close_phase()

    def __enter__(self) -> CommandProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def run_command_check(run: Run, *, what: str) -> None:
    """Raise CommandError (a non-zero exit) with the run's own error unless it succeeded."""
    if run.status == RunStatus.SUCCEEDED:
        return
    reason = run.error or ("it was cancelled" if run.status == RunStatus.CANCELLED else "")
    raise CommandError(f"{what} #{run.pk} {run.status}: {reason}".rstrip(": "))
