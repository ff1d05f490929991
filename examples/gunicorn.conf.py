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
"""

import os

from scheduler_api.logs import logging_config_from_env

bind = "127.0.0.1:8000"  # in a container: --bind 0.0.0.0:8000 on the command line
workers = 4
threads = 4
preload_app = True
pythonpath = os.path.dirname(os.path.abspath(__file__))
wsgi_app = "gunicorn_app:app"
logconfig_dict = logging_config_from_env()
