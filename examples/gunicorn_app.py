"""The job API under gunicorn.

    SCHEDULER_API_PASSWORD=change-me gunicorn --workers 1 --threads 8 \\
        --bind 127.0.0.1:8000 examples.gunicorn_app:app

One worker process: until leader election lands (see README, "Deployment"), every worker
would start its own scheduler on the shared store and run each job once per worker.
"""

from scheduler_api.server import create_app

app = create_app()
