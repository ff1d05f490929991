# The job API under gunicorn (examples/gunicorn.conf.py), as a non-root user.
#
#   docker build -t authmw-scheduler .
#   docker run -e SCHEDULER_API_PASSWORD=change-me -p 127.0.0.1:8000:8000 \
#       -v scheduler-data:/data authmw-scheduler
#
# The SQLite store is /data/scheduler.sqlite (a volume); for several containers set
# SCHEDULER_JOBSTORE_URL to a PostgreSQL URL (see compose.yaml). Without
# SCHEDULER_API_PASSWORD the server refuses to start. The same image runs the Celery
# workers that runs can be handed to (compose.celery.yaml, docs/celery.md).

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY authmw ./authmw
COPY scheduler_api ./scheduler_api
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SCHEDULER_JOBSTORE_URL=sqlite:////data/scheduler.sqlite
COPY --from=build /dist /dist
# DL3013 asks for pinned versions: the one package installed here is the wheel just built,
# its dependencies resolve from its own metadata.
# hadolint ignore=DL3013
RUN wheel="$(ls /dist/*.whl)" \
    && pip install --no-cache-dir "${wheel}[server,postgres,celery]" \
    && rm -rf /dist \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app \
    && mkdir /data \
    && chown app /data
COPY examples/gunicorn.conf.py examples/gunicorn_app.py examples/tasks.py /app/
WORKDIR /data
VOLUME /data
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/scheduler/health', timeout=4)"]
CMD ["gunicorn", "-c", "/app/gunicorn.conf.py", "--bind", "0.0.0.0:8000"]
