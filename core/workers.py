"""Workers report themselves: each Celery worker process writes a WorkerBeat row every
WORKER_HEARTBEAT_S from a thread of its own, with its queues and the tasks it is running.

Why not only Celery's inspect/control API (`app.control.inspect().active()`): a worker
answers it from its main loop, and a solo-pool worker (what `make run` starts) runs its task
in that loop, so a worker busy with a ten-minute training run would not answer and would
show as gone; a snapshot task sent through beat would also wait behind that run in the
queue. A thread beside the loop answers either way, and needs neither beat nor a free slot.
What it reads is what `inspect().active()` and `active_queues()` report: the worker's own
consumer queues and `celery.worker.state.active_requests`.

    worker_beat_record(...)   write one heartbeat (the thread's step; the tests call it too)
    worker_beat_stop(...)     mark a worker stopped (a clean shutdown)
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models.functions import Now

from core.models import WorkerBeat

logger = logging.getLogger(__name__)

# Rows of workers not seen for this long are deleted when a worker starts.
FORGET_AFTER = timedelta(days=7)
MAX_ARGS = 200


def worker_beat_record(
    *, hostname: str, queues: list[str], active: list[dict], pid: int, started_at: datetime
) -> WorkerBeat:
    """Write `hostname`'s heartbeat now (the database's clock), with its queues and active
    tasks; a restart under the same name takes the row over. Idempotent per beat."""
    beat, _ = WorkerBeat.objects.update_or_create(
        hostname=hostname,
        defaults={
            "pid": pid,
            "queues": sorted(queues),
            "active": active,
            "started_at": started_at,
            "seen_at": Now(),
            "stopped_at": None,
        },
    )
    return beat


def worker_beat_stop(*, hostname: str) -> int:
    """Mark `hostname` stopped now (it shut down cleanly); rows updated."""
    return WorkerBeat.objects.filter(hostname=hostname, stopped_at__isnull=True).update(
        stopped_at=Now(), active=[]
    )


def _active_of(requests) -> list[dict]:
    """The worker's executing requests as JSON, as `inspect().active()` lists them."""
    active = []
    for request in requests:
        args = request.argsrepr if getattr(request, "argsrepr", None) is not None else ""
        active.append(
            {
                "id": request.id,
                "name": request.name,
                "args": str(args)[:MAX_ARGS],
                "started": getattr(request, "time_start", None),
            }
        )
    return sorted(active, key=lambda task: task["started"] or 0)


class _Heartbeat(threading.Thread):
    def __init__(self, consumer) -> None:
        super().__init__(name="worker-heartbeat", daemon=True)
        self.consumer = consumer
        self.hostname = consumer.hostname
        self.started_at = datetime.now().astimezone()
        self.stopping = threading.Event()

    def queues(self) -> list[str]:
        task_consumer = getattr(self.consumer, "task_consumer", None)
        if task_consumer is not None:
            return [queue.name for queue in task_consumer.queues]
        return list(self.consumer.app.amqp.queues.consume_from or {})

    def active(self) -> list[dict]:
        from celery.worker import state

        # The consumer's thread changes the set while we copy it: try again, it is rare.
        for _ in range(5):
            try:
                return _active_of(list(state.active_requests))
            except RuntimeError:
                continue
        return []

    def run(self) -> None:
        interval = settings.WORKER_HEARTBEAT_S
        while True:
            try:
                close_old_connections()
                worker_beat_record(
                    hostname=self.hostname,
                    queues=self.queues(),
                    active=self.active(),
                    pid=os.getpid(),
                    started_at=self.started_at,
                )
            except Exception:  # the database restarting: try again at the next beat
                logger.warning("worker heartbeat of %s failed", self.hostname, exc_info=True)
                connection.close()
            if self.stopping.wait(interval):
                break
        connection.close()


_heartbeat: _Heartbeat | None = None


@worker_ready.connect
def _worker_ready(sender=None, **kwargs) -> None:
    """Start the heartbeat in the worker's main process (sender: its consumer)."""
    global _heartbeat
    if _heartbeat is not None or sender is None:
        return
    try:
        WorkerBeat.objects.filter(seen_at__lt=datetime.now().astimezone() - FORGET_AFTER).delete()
    except Exception:
        logger.warning("could not forget old workers", exc_info=True)
    _heartbeat = _Heartbeat(sender)
    _heartbeat.start()


@worker_shutdown.connect
def _worker_shutdown(sender=None, **kwargs) -> None:
    global _heartbeat
    if _heartbeat is None:
        return
    beat, _heartbeat = _heartbeat, None
    beat.stopping.set()
    beat.join(timeout=5)
    try:
        worker_beat_stop(hostname=beat.hostname)
    except Exception:
        logger.warning("could not mark %s stopped", beat.hostname, exc_info=True)
    finally:
        connection.close()
