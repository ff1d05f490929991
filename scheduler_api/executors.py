"""An executor that starts a job only once its next run time is safely in the store.

APScheduler submits a due job to its executor *before* it writes the job's next run time
back to the store. If the process dies in between (kill -9, OOM), the job has run but the
store still says it is due, and the next leader runs it again. The write can take a while
(an fsync; another writer holding SQLite's lock), so that window is real. This executor holds
each submission until the scheduler announces it (``EVENT_JOB_SUBMITTED``, dispatched after
the store was updated), which leaves a window of microseconds instead::

    scheduler.configure(executors={"default": StoreFirstThreadPoolExecutor(10)})
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from apscheduler.events import EVENT_JOB_SUBMITTED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job


class StoreFirstThreadPoolExecutor(ThreadPoolExecutor):  # type: ignore[misc]
    """APScheduler's thread pool, releasing each job after the store write that follows it."""

    def __init__(self, max_workers: int = 10, pool_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__(max_workers, pool_kwargs)
        self._held: list[tuple[Job, list[datetime]]] = []
        self._held_lock = threading.Lock()

    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        scheduler.add_listener(self._release, EVENT_JOB_SUBMITTED)

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        with self._held_lock:
            self._held.append((job, run_times))

    def _release(self, event: object = None) -> None:
        with self._held_lock:
            held, self._held = self._held, []
        for job, run_times in held:
            super()._do_submit_job(job, run_times)

    def shutdown(self, wait: bool = True) -> None:
        self._release()
        super().shutdown(wait)
