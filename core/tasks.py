from __future__ import annotations

from celery import shared_task

from core.runs import runs_sweep


@shared_task
def runs_sweep_task() -> dict[str, int]:
    """Celery beat runs this every RUN_SWEEP_INTERVAL_S (config/settings/base.py)."""
    return runs_sweep()
