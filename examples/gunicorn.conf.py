"""gunicorn settings for the job API: several workers, one job runner among them.

    SCHEDULER_API_PASSWORD=change-me gunicorn -c examples/gunicorn.conf.py
    LOG_FORMAT=json SCHEDULER_API_PASSWORD=change-me gunicorn -c examples/gunicorn.conf.py

Every worker calls ``scheduler.start()``; the workers elect one leader (a lock beside the
SQLite file, or a PostgreSQL advisory lock) that runs the jobs, and all of them serve the API
from the shared store. ``preload_app`` is safe: the scheduler starts in each worker after
the fork, never in the master.

The working directory is left as it is: the default store, ``scheduler.sqlite``, is the
same file the demo server (``scheduler-api``) uses when started from the same directory, and
the start-up log names its absolute path. This directory is put on ``sys.path`` so that
``gunicorn_app`` and ``tasks`` import from wherever gunicorn starts.

Logs: the project's loggers (job runs, leader changes, ``authmw.audit``) and gunicorn's own
go to stderr with time, level and logger name; ``LOG_FORMAT=json`` writes JSON lines,
``LOG_LEVEL`` (default INFO) sets the project's level. To send them elsewhere, change
``logconfig_dict`` here (see docs/deployment.md).

Metrics (with the ``metrics`` extra): each server start gets a fresh directory for
prometheus-client's multiprocess mode, unless ``PROMETHEUS_MULTIPROC_DIR`` names one, so that
authmw's answers and the 503s are counted over every worker (docs/metrics.md).
"""

import importlib.util
import os
import tempfile

from scheduler_api.logs import logging_config_from_env

bind = "127.0.0.1:8000"  # in a container: --bind 0.0.0.0:8000 on the command line
workers = 4
threads = 8
# Each event stream (GET /scheduler/events) holds a thread for up to two minutes: at most half
# of each worker's threads stream, so the API and the health checks always have threads left
# (a stream past the cap is a 503, not a request queued behind the streams).
os.environ.setdefault("SCHEDULER_EVENTS_MAX_STREAMS", str(threads // 2))
preload_app = True
pythonpath = os.path.dirname(os.path.abspath(__file__))
wsgi_app = "gunicorn_app:app"
logconfig_dict = logging_config_from_env()

if importlib.util.find_spec("prometheus_client") and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    # Set before the app is loaded (preload_app): prometheus-client reads it at import.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="scheduler-api-metrics-")


def child_exit(server, worker):
    """A worker's live gauges go with it (its counters stay counted)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ and importlib.util.find_spec("prometheus_client"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
