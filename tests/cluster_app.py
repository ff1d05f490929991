"""The demo app for the multi-process tests, recording every job run to a file.

gunicorn imports it (``tests.cluster_app:app``); its settings come from the environment like
the demo server's, plus ``RUN_LOG``: a file that gets one line per executed run,
``<job id> <scheduled run time> <pid> <finished at>``; and for the run history's retention,
``SCHEDULER_HISTORY_KEEP_RUNS``, ``SCHEDULER_HISTORY_KEEP_DAYS`` and
``HISTORY_HOUSEKEEPING_SECONDS`` (how often the leader prunes; 60 s by default).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent

from scheduler_api import APScheduler, recorder
from scheduler_api.server import create_app

scheduler = APScheduler()
if "SCHEDULER_HISTORY_KEEP_RUNS" in os.environ:
    scheduler.keep_runs = int(os.environ["SCHEDULER_HISTORY_KEEP_RUNS"])
if "SCHEDULER_HISTORY_KEEP_DAYS" in os.environ:
    scheduler.keep_days = float(os.environ["SCHEDULER_HISTORY_KEEP_DAYS"])
if "HISTORY_HOUSEKEEPING_SECONDS" in os.environ:
    recorder.HOUSEKEEPING_SECONDS = float(os.environ["HISTORY_HOUSEKEEPING_SECONDS"])
app = create_app(scheduler=scheduler)


def record_run(event: JobExecutionEvent) -> None:
    line = (f"{event.job_id} {event.scheduled_run_time.isoformat()} {os.getpid()} "
            f"{datetime.now(timezone.utc).isoformat()}\n")
    fd = os.open(os.environ["RUN_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())  # one write with O_APPEND: lines never interleave
    finally:
        os.close(fd)


scheduler.add_listener(record_run, EVENT_JOB_EXECUTED)
