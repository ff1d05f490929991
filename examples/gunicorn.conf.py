"""gunicorn settings for the job API: several workers, one job runner among them.

    SCHEDULER_API_PASSWORD=change-me gunicorn -c examples/gunicorn.conf.py

Every worker calls ``scheduler.start()``; the workers elect one leader (a lock beside the
SQLite file, or a PostgreSQL advisory lock) that runs the jobs, and all of them serve the API
from the shared store. ``preload_app`` is safe: the scheduler starts in each worker after
the fork, never in the master.
"""

bind = "127.0.0.1:8000"
workers = 4
threads = 4
preload_app = True
chdir = "examples"
wsgi_app = "gunicorn_app:app"
