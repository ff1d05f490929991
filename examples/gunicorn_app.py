"""The job API under gunicorn (see ``gunicorn.conf.py`` beside this file).

    SCHEDULER_API_PASSWORD=change-me gunicorn -c examples/gunicorn.conf.py

Settings come from the environment: ``SCHEDULER_API_USERNAME`` / ``SCHEDULER_API_PASSWORD``,
``SCHEDULER_JOBSTORE_URL`` (default ``sqlite:///scheduler.sqlite`` in the directory gunicorn
starts in, as for ``scheduler-api``; for several hosts a ``postgresql+psycopg://`` URL),
``SCHEDULER_API_ALLOWED_FUNCS`` (space-separated).
"""

from scheduler_api.server import create_app

app = create_app()
