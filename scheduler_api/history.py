"""Run history: every run of every job, in the job store's database, read by any process.

Four tables beside APScheduler's (``<table>`` is ``SCHEDULER_JOBSTORE_TABLE``):

- ``<table>_history``: one row per run (:class:`Run`), numbered in the order runs were
  recorded (``seq``); indexed by job, by outcome and by scheduled time, so that the newest
  page of a history of 1,000,000 runs costs what one of 1,000 does;
- ``<table>_history_counts``: how many runs each job (and all jobs) has per outcome, kept in
  the same transactions as the runs, so that a page's ``total`` is not a count of the table;
- ``<table>_last_runs``: each job's last run, as the JSON its listing shows (``last_run``),
  or a marker (``run_id`` empty) dated when the job was forgotten (removed, or added anew);
- ``<table>_run_stats``: what the metrics count and never decrease (run durations and start
  lateness by bucket, leader changes; :mod:`scheduler_api.run_stats`), beside the counts'
  scopes ``ran`` and ``ran_all`` (runs ended, by job and outcome, never pruned);
- ``<table>_events``: what happened (jobs, runs, the leader, the state), numbered, for the
  live event stream.

Writes come from one thread per process (:mod:`scheduler_api.recorder`); reads are plain
queries::

    history = RunHistory(engine, "apscheduler_jobs")
    history.create_schema()
    page = history.page(job_id="report", outcomes=["error"], limit=20)
    page.total, [run.to_json() for run in page.runs]
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from .config import make_engine, read_snapshot
from .coordination import advisory_key
from .jobs import JSON, iso_8601
from .run_stats import stat_deltas

#: What a run's ``outcome`` can be. ``running`` until it ends; ``lost`` when the process
#: running it died (found by the next leader).
OUTCOMES = ("running", "success", "error", "missed", "skipped", "lost")
#: Why a job ran: its trigger fired, or ``POST /jobs/<id>/run`` (``run_job``) asked.
REASONS = ("schedule", "run")
#: What an event of the live stream can be (its ``kind``; see docs/events.md).
EVENT_KINDS = ("job_added", "job_changed", "job_removed", "all_jobs_removed", "run_started",
               "run_finished", "leader_changed", "scheduler_state")
#: How much of an error message, a return value's repr and a traceback is kept (characters).
MAX_MESSAGE = 2000
MAX_RESULT = 2000
MAX_TRACEBACK = 16_000
#: The key (scope, job id) of the counter of changes to the last runs (outcome "").
_CHANGES = ("changes", "last_runs")
#: The key of the counts of all jobs together (a job id is a job's key).
_ALL = ("all", "")
#: The scopes of the counts of runs ended, by job and of all jobs, which pruning leaves.
RAN, RAN_ALL = "ran", "ran_all"


@dataclass(frozen=True)
class Run:
    """One run of a job, as the history holds it (times in the scheduler's time zone)."""

    id: str
    job_id: str
    reason: str
    outcome: str
    scheduled_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration: float | None
    error_type: str | None
    error_message: str | None
    traceback: str | None
    result: str | None
    host: str
    pid: int

    def to_json(self) -> JSON:
        """The run as the API shows it."""
        error = None if self.error_type is None else {
            "type": self.error_type, "message": self.error_message, "traceback": self.traceback}
        return {"id": self.id, "job_id": self.job_id, "reason": self.reason,
                "scheduled_at": iso_8601(self.scheduled_at),
                "started_at": iso_8601(self.started_at),
                "finished_at": iso_8601(self.finished_at), "duration": self.duration,
                "outcome": self.outcome, "error": error, "result": self.result,
                "host": self.host, "pid": self.pid}


@dataclass(frozen=True)
class RunPage:
    """A page of runs, newest first, and how many runs match in all."""

    runs: list[Run]
    total: int


def storable(text: str) -> str:
    """``text`` as every database takes it: lone surrogates (from a file name decoded with
    surrogateescape, say) and NUL (PostgreSQL refuses it) written as escapes."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def clip(text: str, limit: int) -> str:
    """``text`` made storable and cut to at most ``limit`` characters, keeping its end (where
    a traceback says what failed) as well as its start."""
    text = storable(text)
    if len(text) <= limit:
        return text
    marker = f"\n... [{len(text)} characters, cut] ...\n"
    if len(marker) >= limit:
        return text[:limit]
    head = (limit - len(marker)) // 4
    return text[:head] + marker + text[len(text) - (limit - len(marker) - head):]


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (a zombie, dead but not yet reaped
    by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user's
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc to tell: it exists


def private_sqlite_engine() -> Engine:
    """A SQLite file of this process's own, removed at exit: the run history of a scheduler
    whose job store is not a SQL database."""
    directory = tempfile.mkdtemp(prefix="scheduler_api-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return make_engine(f"sqlite:///{directory}/history.sqlite")


class RunHistory:
    """The history tables of one job store, and the queries on them."""

    def __init__(self, engine: Engine, tablename: str = "apscheduler_jobs",
                 timezone: tzinfo = timezone.utc) -> None:
        self.engine = engine
        self.timezone = timezone
        self.tablename = tablename  # the job store's: the history's tables are named after it
        metadata = MetaData()
        self.runs = Table(
            f"{tablename}_history", metadata,
            Column("seq", Integer, primary_key=True, autoincrement=True),
            Column("id", String(32), nullable=False, unique=True),
            Column("job_id", String(191), nullable=False),
            Column("reason", String(16), nullable=False),
            Column("outcome", String(16), nullable=False),
            # Seconds since the epoch: the same on every database, and cheap to compare.
            Column("scheduled_at", Float, nullable=False),
            Column("started_at", Float),
            Column("finished_at", Float),
            Column("duration", Float),
            Column("heartbeat_at", Float),
            Column("error_type", String(255)),
            Column("error_message", Text),
            Column("traceback", Text),
            Column("result", Text),
            Column("host", String(255), nullable=False),
            Column("node", String(255), nullable=False),  # host and pid namespace
            Column("pid", Integer, nullable=False),
        )
        Index(f"ix_{tablename}_history_job", self.runs.c.job_id, self.runs.c.seq)
        # One job's runs of some outcomes: without it, SQLite pages a job's errors through
        # the outcome index, scanning every job's errors (36 ms instead of 6 for 1M runs).
        Index(f"ix_{tablename}_history_job_outcome", self.runs.c.job_id, self.runs.c.outcome,
              self.runs.c.seq)
        Index(f"ix_{tablename}_history_outcome", self.runs.c.outcome, self.runs.c.seq)
        Index(f"ix_{tablename}_history_scheduled", self.runs.c.scheduled_at)
        self.counts = Table(
            f"{tablename}_history_counts", metadata,
            Column("scope", String(8), primary_key=True),
            Column("job_id", String(191), primary_key=True),
            Column("outcome", String(16), primary_key=True),
            Column("n", BigInteger, nullable=False),
        )
        self.last_runs = Table(
            f"{tablename}_last_runs", metadata,
            Column("job_id", String(191), primary_key=True),
            Column("run_id", String(32), nullable=False),
            Column("at", Float, nullable=False),  # when it started (or was due)
            Column("summary", Text, nullable=False),
        )
        self.stats = Table(
            f"{tablename}_run_stats", metadata,
            Column("metric", String(32), primary_key=True),
            Column("bucket", String(16), primary_key=True),
            Column("value", Float, nullable=False),
        )
        self.events = Table(
            f"{tablename}_events", metadata,
            Column("seq", Integer, primary_key=True, autoincrement=True),
            Column("kind", String(32), nullable=False),
            Column("data", Text, nullable=False),
            Column("at", Float, nullable=False),
        )
        Index(f"ix_{tablename}_events_at", self.events.c.at)
        #: One row: this store's identity, made by the first process that asks for it (a
        #: Celery worker compares it with the leader's: the same database, however named).
        self.identity = Table(
            f"{tablename}_store", metadata,
            Column("key", String(16), primary_key=True),
            Column("value", String(32), nullable=False),
        )
        self.metadata = metadata
        #: Every job's last run as last read, and the count of changes it was read at.
        self._summaries: tuple[int, dict[str, str]] | None = None
        # Built once: a job listing reads both, and building them cost more than running
        # them (about 60 us a listing of 100 jobs).
        last_runs, counts = self.last_runs, self.counts
        self._last_runs_query = select(last_runs.c.job_id, last_runs.c.summary).where(
            last_runs.c.run_id != "")  # not a marker
        self._changes_query = select(counts.c.n).where(
            counts.c.scope == _CHANGES[0], counts.c.job_id == _CHANGES[1], counts.c.outcome == "")
        #: The PostgreSQL channel a recorder notifies after writing events.
        self.channel = f"{tablename}_events"
        self._events_lock = advisory_key(f"{tablename}_events")

    def create_schema(self) -> None:
        self.metadata.create_all(self.engine)
        # create_all adds no index to a table that exists: those added since, here.
        for index in self.runs.indexes:
            index.create(self.engine, checkfirst=True)

    def store_id(self) -> str:
        """This store's identity (made once, then the same for every process)."""
        table = self.identity
        for _ in range(2):
            with self.engine.connect() as connection:
                found = connection.execute(select(table.c.value).where(
                    table.c.key == "id")).scalar()
            if found is not None:
                return str(found)
            try:
                with self.engine.begin() as connection:
                    connection.execute(table.insert().values(key="id", value=uuid.uuid4().hex))
            except IntegrityError:
                pass  # another process made it meanwhile: read that one
        raise RuntimeError("the store's identity cannot be read")

    # -- JSON ------------------------------------------------------------------------------

    def moment(self, seconds: float | None) -> datetime | None:
        return None if seconds is None else self.time_at(seconds)

    def time_at(self, seconds: float) -> datetime:
        """A stored time in the scheduler's time zone; in UTC where that zone cannot show it
        (a run due in year 1 is in year 0 west of UTC: an OverflowError lost the run, and
        a 500 answered every page that held it)."""
        try:
            return datetime.fromtimestamp(seconds, self.timezone)
        except (OverflowError, ValueError, OSError):
            return datetime.fromtimestamp(seconds, timezone.utc)

    def run_from_row(self, row: Any) -> Run:
        return Run(id=row.id, job_id=row.job_id, reason=row.reason, outcome=row.outcome,
                   scheduled_at=self.time_at(row.scheduled_at),
                   started_at=self.moment(row.started_at),
                   finished_at=self.moment(row.finished_at), duration=row.duration,
                   error_type=row.error_type, error_message=row.error_message,
                   traceback=row.traceback, result=row.result, host=row.host, pid=row.pid)

    def summary(self, row: Mapping[str, Any]) -> str:
        """A job's ``last_run`` field, as JSON text: what a listing shows of its last run."""
        return json.dumps({
            "id": row["id"], "outcome": row["outcome"],
            "scheduled_at": iso_8601(self.moment(row["scheduled_at"])),
            "started_at": iso_8601(self.moment(row.get("started_at"))),
            "duration": row.get("duration"), "error_message": row.get("error_message"),
        }, separators=(",", ":"))

    # -- reading ---------------------------------------------------------------------------

    def page(self, job_id: str | None = None, outcomes: Collection[str] = (),
             since: datetime | None = None, until: datetime | None = None,
             limit: int = 100, offset: int = 0) -> RunPage:
        """Runs newest first, of one job or all, with these outcomes (all when empty),
        scheduled in ``[since, until)``."""
        runs = self.runs
        conditions = []
        if job_id is not None:
            conditions.append(runs.c.job_id == job_id)
        if outcomes:
            conditions.append(runs.c.outcome.in_(list(outcomes)))
        if since is not None:
            conditions.append(runs.c.scheduled_at >= since.timestamp())
        if until is not None:
            conditions.append(runs.c.scheduled_at < until.timestamp())
        query = select(runs).where(*conditions).order_by(runs.c.seq.desc())
        try:
            with read_snapshot(self.engine) as connection:
                if since is None and until is None:
                    total = self._counted(connection, job_id, outcomes)
                else:  # a range: counted through the scheduled-time index
                    total = connection.execute(
                        select(func.count()).select_from(runs).where(*conditions)).scalar_one()
                # Past the total the page is empty: an OFFSET read would walk every run.
                rows = [] if offset >= total else connection.execute(
                    query.limit(limit).offset(offset)).all()
        except (OperationalError, ProgrammingError):
            if self._tables_exist():
                raise
            return RunPage([], 0)  # no process has started on this store yet: no runs
        return RunPage([self.run_from_row(row) for row in rows], int(total))

    def _tables_exist(self) -> bool:
        return inspect(self.engine).has_table(self.runs.name)

    def _counted(self, connection: Connection, job_id: str | None,
                 outcomes: Collection[str]) -> int:
        counts = self.counts
        scope, key = _ALL if job_id is None else ("job", job_id)
        query = select(func.coalesce(func.sum(counts.c.n), 0)).where(
            counts.c.scope == scope, counts.c.job_id == key)
        if outcomes:
            query = query.where(counts.c.outcome.in_(list(outcomes)))
        return int(connection.execute(query).scalar_one())

    def get(self, run_id: str) -> Run | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(self.runs).where(self.runs.c.id == run_id)).first()
        return None if row is None else self.run_from_row(row)

    def last_run_summaries(self, job_ids: Iterable[str] | None = None) -> dict[str, str]:
        """Job id -> its ``last_run`` JSON text, for these jobs (all when None)."""
        table, query = self.last_runs, self._last_runs_query
        found: dict[str, str] = {}
        try:
            with self.engine.connect() as connection:
                if job_ids is None:
                    return self._every_last_run(connection, query)
                ids = list(job_ids)
                for start in range(0, len(ids), 500):  # within every database's limit
                    found.update(connection.execute(
                        query.where(table.c.job_id.in_(ids[start:start + 500]))).all())
        except (OperationalError, ProgrammingError):
            if self._tables_exist():
                raise
            return {}  # no process has started on this store yet: no runs
        return found

    def _every_last_run(self, connection: Connection, query: Any) -> dict[str, str]:
        """Every job's last run: read again only when a change was counted since (a listing
        of 10,000 jobs read 10,000 rows each time; now one)."""
        changes = connection.execute(self._changes_query).scalar()
        cached = self._summaries
        if cached is not None and changes is not None and cached[0] == changes:
            return cached[1]
        summaries = dict(connection.execute(query).all())
        if changes is not None:
            self._summaries = (int(changes), summaries)
        return summaries

    def _count_last_run_change(self, connection: Connection) -> None:
        """Count a change of the last runs, in the transaction that makes it."""
        upsert(connection, self.counts, [{"scope": _CHANGES[0], "job_id": _CHANGES[1],
                                          "outcome": "", "n": 1}],
               ("scope", "job_id", "outcome"), lambda table, new: {"n": table.c.n + new.n})

    def events_after(self, seq: int, limit: int = 100) -> list[tuple[int, str, str]]:
        """Events numbered above ``seq``, oldest first: (seq, kind, JSON data)."""
        events = self.events
        with self.engine.connect() as connection:
            return list(connection.execute(
                select(events.c.seq, events.c.kind, events.c.data)
                .where(events.c.seq > seq).order_by(events.c.seq).limit(limit)))

    def last_event(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(
                select(func.coalesce(func.max(self.events.c.seq), 0))).scalar_one())

    # -- writing (the recorder's thread; the leader's housekeeping) ------------------------

    def write(self, connection: Connection, inserts: list[dict[str, Any]],
              finishes: list[dict[str, Any]], events: list[dict[str, Any]],
              forgotten: Collection[tuple[str | None, float]] = (),
              not_last: Collection[str] = ()) -> None:
        """Record new runs, the ends of runs recorded earlier, and events, in one transaction;
        first forget the last runs of ``forgotten`` jobs ((job id, when): removed or added
        anew; None: all jobs). The runs whose ids are in ``not_last`` (noted before their job
        was forgotten) do not become their job's last run.

        ``inserts`` and ``finishes`` are whole rows of the runs table. A finish whose run is
        no longer ``running`` (the next leader took it for lost while it still ran) sets the
        outcome it really had. Rows are locked in one order (by key) in every transaction
        that changes them, so that two never wait for each other (PostgreSQL deadlocks).
        """
        if forgotten:
            self._forget_last_runs(connection, forgotten)
        finishes = sorted(finishes, key=lambda row: row["id"])
        deltas: Counter[tuple[str, str]] = Counter()
        if inserts:
            connection.execute(insert(self.runs), inserts)
            for row in inserts:
                deltas[row["job_id"], row["outcome"]] += 1
        if finishes:
            for row, previous in zip(finishes, self._finish(connection, finishes), strict=True):
                if previous is not None:
                    deltas[row["job_id"], previous] -= 1
                    deltas[row["job_id"], row["outcome"]] += 1
        self.add_counts(connection, deltas)
        self.set_last_runs(connection, [row for row in (*inserts, *finishes)
                                        if row["id"] not in not_last])
        self.add_stats(connection, *stat_deltas(inserts, finishes, events))
        if events:
            if connection.dialect.name == "postgresql":
                # Numbers and commits in one order: a stream reads "events after n", and an
                # event numbered below one already read, committed after it, would never be
                # seen. Taken last, so no transaction holding it waits for another's rows.
                # (SQLite has one writer at a time already.)
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": self._events_lock})
            connection.execute(insert(self.events), events)

    _FINISH_FIELDS = ("outcome", "finished_at", "duration", "error_type", "error_message",
                      "traceback", "result")

    def _finish(self, connection: Connection, rows: list[dict[str, Any]]) -> list[str | None]:
        """End these runs; each one's outcome before (None: the row is gone, pruned)."""
        runs = self.runs
        values: dict[str, Any] = {
            field: bindparam(f"new_{field}") for field in self._FINISH_FIELDS}
        params = [{"run_id": row["id"], **{f"new_{field}": row.get(field)
                                            for field in self._FINISH_FIELDS}}
                  for row in rows]
        still_running = connection.execute(
            update(runs).where(runs.c.id == bindparam("run_id"), runs.c.outcome == "running")
            .values(values), params)
        if connection.dialect.supports_sane_multi_rowcount and \
                still_running.rowcount == len(rows):
            return ["running"] * len(rows)
        # Some were marked lost meanwhile (rare): find them, and set what really happened.
        ids = [row["id"] for row in rows]
        found = dict(connection.execute(select(runs.c.id, runs.c.outcome).where(
            runs.c.id.in_(ids))).all())
        previous: list[str | None] = []
        for row, param in zip(rows, params, strict=True):
            outcome = found.get(row["id"])
            if outcome is None or outcome == row["outcome"]:
                previous.append(None if outcome is None else "running")
                continue
            connection.execute(update(runs).where(runs.c.id == bindparam("run_id"))
                               .values(values), param)
            previous.append(outcome)
        return previous

    def add_counts(self, connection: Connection, deltas: Mapping[tuple[str, str], int]) -> None:
        """Add ``deltas`` ((job id, outcome) -> runs) to the counts of each job and of all."""
        by_key: Counter[tuple[str, str, str]] = Counter()
        for (job_id, outcome), delta in deltas.items():
            by_key["job", job_id, outcome] += delta
            by_key[_ALL[0], _ALL[1], outcome] += delta
        rows = [{"scope": scope, "job_id": job_id, "outcome": outcome, "n": delta}
                for (scope, job_id, outcome), delta in sorted(by_key.items()) if delta]
        if rows:
            upsert(connection, self.counts, rows, ("scope", "job_id", "outcome"),
                   lambda table, new: {"n": table.c.n + new.n})

    def add_stats(self, connection: Connection, totals: Mapping[tuple[str, str], int],
                  stats: Mapping[tuple[str, str], float]) -> None:
        """Add runs ended ((job id, outcome) -> runs) and (metric, bucket) amounts to what the
        metrics count (:func:`~scheduler_api.run_stats.stat_deltas`)."""
        by_key: Counter[tuple[str, str, str]] = Counter()
        for (job_id, outcome), delta in totals.items():
            by_key[RAN, job_id, outcome] += delta
            by_key[RAN_ALL, "", outcome] += delta
        rows = [{"scope": scope, "job_id": job_id, "outcome": outcome, "n": delta}
                for (scope, job_id, outcome), delta in sorted(by_key.items()) if delta]
        if rows:
            upsert(connection, self.counts, rows, ("scope", "job_id", "outcome"),
                   lambda table, new: {"n": table.c.n + new.n})
        values = [{"metric": metric, "bucket": bucket, "value": value}
                  for (metric, bucket), value in sorted(stats.items()) if value]
        if values:
            upsert(connection, self.stats, values, ("metric", "bucket"),
                   lambda table, new: {"value": table.c.value + new.value})

    def forget_last_run_now(self, job_id: str | None, at: float) -> None:
        """Forget ``job_id``'s last run (None: every job's) in a transaction of its own, as
        :meth:`write` does."""
        with self.engine.begin() as connection:
            self._forget_last_runs(connection, [(job_id, at)])

    def _forget_last_runs(self, connection: Connection,
                          forgotten: Collection[tuple[str | None, float]]) -> None:
        """Forget the last runs of jobs (job id, when; None: every job). A job's row becomes
        a marker (``summary`` null) dated when it was forgotten, so that a run which started
        before, and ends after (in a later transaction, maybe another process), does not
        become the last run of the job added under its id: later runs only replace a row."""
        table, runs = self.last_runs, self.runs
        markers: dict[str, float] = {}
        for job_id, at in forgotten:
            if job_id is None:
                # Every job: those with a last run, and those whose only run is going on.
                connection.execute(update(table).where(table.c.at <= at).values(
                    run_id="", at=at, summary="null"))
                for running in connection.execute(select(runs.c.job_id).where(
                        runs.c.outcome == "running").distinct()).scalars():
                    markers[running] = max(at, markers.get(running, at))
            else:
                key = storable(job_id)
                markers[key] = max(at, markers.get(key, at))
        if markers:
            upsert(connection, table, [
                {"job_id": job_id, "run_id": "", "at": at, "summary": "null"}
                for job_id, at in sorted(markers.items())], ("job_id",),
                lambda table, new: {"run_id": new.run_id, "at": new.at, "summary": new.summary},
                only_if=lambda table, new: table.c.at <= new.at)
        self._count_last_run_change(connection)

    def set_last_runs(self, connection: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        """Make each run its job's last run, unless one started later is."""
        newest: dict[str, Mapping[str, Any]] = {}
        for row in rows:
            current = newest.get(row["job_id"])
            if current is None or _started(row) >= _started(current):
                newest[row["job_id"]] = row
        if newest:
            upsert(connection, self.last_runs, [
                {"job_id": job_id, "run_id": row["id"], "at": _started(row),
                 "summary": self.summary(row)} for job_id, row in sorted(newest.items())],
                ("job_id",), lambda table, new: {"run_id": new.run_id, "at": new.at,
                                                 "summary": new.summary},
                only_if=lambda table, new: table.c.at <= new.at)
            self._count_last_run_change(connection)

    def heartbeat(self, run_ids: Collection[str], now: float) -> None:
        """Renew the heartbeat of runs this process is running."""
        runs = self.runs
        with self.engine.begin() as connection:
            connection.execute(update(runs).where(runs.c.id.in_(list(run_ids)),
                                                  runs.c.outcome == "running")
                               .values(heartbeat_at=now))

    def notify(self) -> None:
        """Wake the event streams of other processes now (PostgreSQL); SQLite's poll."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as connection:
                connection.execute(text("SELECT pg_notify(:channel, '')"),
                                   {"channel": self.channel})

    # -- housekeeping (the leader's) -------------------------------------------------------

    def mark_lost(self, node: str, pid: int, mine: Collection[str],
                  stale_before: float) -> list[dict[str, Any]]:
        """Mark lost the runs still ``running`` whose process is gone: on this node (host and
        pid namespace), a pid that no longer exists (or this process, for a run that is not
        among ``mine``); elsewhere, a heartbeat older than ``stale_before``. Returns the runs
        marked."""
        runs = self.runs
        with self.engine.connect() as connection:
            result = connection.execute(select(runs).where(runs.c.outcome == "running"))
            columns = list(result.keys())
            rows = [SimpleNamespace(**dict(zip(columns, row, strict=True))) for row in result]
        def is_lost(row: Any) -> bool:
            if row.node == node and row.pid == pid:
                # This process knows its own runs, whatever their heartbeat (not written
                # while the database was away).
                return row.id not in mine
            return ((row.heartbeat_at or row.scheduled_at) < stale_before
                    or (row.node == node and not process_alive(row.pid)))

        lost = sorted((row for row in rows if is_lost(row)), key=lambda row: row.id)
        if not lost:
            return []
        marked = []
        with self.engine.begin() as connection:
            for row in lost:
                message = (f"the process running it ({row.host}, pid {row.pid}) stopped before "
                           f"it ended; found by {node.partition('/')[0]}, pid {pid}")
                changed = connection.execute(update(runs).where(
                    runs.c.id == row.id, runs.c.outcome == "running").values(
                    outcome="lost", error_type="ProcessLost", error_message=message)).rowcount
                if changed:
                    marked.append({**vars(row), "outcome": "lost",
                                   "error_type": "ProcessLost", "error_message": message})
            self.add_counts(connection, _moves(marked, "running", "lost"))
            self.set_last_runs(connection, marked)
            self.add_stats(connection, *stat_deltas([], marked))
        return marked

    def prune(self, keep_runs: int, keep_seconds: float, keep_events_seconds: float,
              live_jobs: Collection[str], batch: int = 500) -> int:
        """Delete runs older than ``keep_seconds`` except each live job's last ``keep_runs``
        (a removed job's runs are kept for their age only), with what only they kept (their
        count rows, a removed job's last run); and events older than ``keep_events_seconds``.
        In transactions of ``batch`` rows, so that no writer waits long. Returns runs deleted.
        """
        runs = self.runs
        cutoff = time.time() - keep_seconds
        with self.engine.connect() as connection:
            # The oldest run first, from its index: the jobs' query scans every run (SQLite
            # groups by the job index), 1.7 s of CPU each minute for a history of 1,000,000
            # runs with none to prune.
            oldest = connection.execute(select(func.min(runs.c.scheduled_at))).scalar()
            old_jobs = set() if oldest is None or oldest >= cutoff else set(connection.execute(
                select(runs.c.job_id).where(*self._old(cutoff))
                .group_by(runs.c.job_id)).scalars())
        removed = sorted(old_jobs - set(live_jobs))
        deleted = 0
        for start in range(0, len(removed), batch):
            deleted += self._delete_old(removed[start:start + batch], None, cutoff, batch)
        for job_id in sorted(old_jobs & set(live_jobs)):
            with self.engine.connect() as connection:
                boundary = connection.execute(
                    select(runs.c.seq).where(runs.c.job_id == job_id)
                    .order_by(runs.c.seq.desc()).limit(1).offset(keep_runs)).scalar()
            if boundary is not None:  # more than keep_runs runs
                deleted += self._delete_old([job_id], boundary, cutoff, batch)
        with self.engine.begin() as connection:
            counts, last_runs = self.counts, self.last_runs
            connection.execute(delete(counts).where(counts.c.scope == "job", counts.c.n == 0))
            # A removed job none of whose runs is left leaves the metrics too (its series
            # ends): job ids that come and go would otherwise grow the table for ever.
            with_runs = set(connection.execute(select(counts.c.job_id).where(
                counts.c.scope == "job").group_by(counts.c.job_id)).scalars())
            ended = sorted(set(connection.execute(select(counts.c.job_id).where(
                counts.c.scope == RAN).group_by(counts.c.job_id)).scalars())
                - with_runs - set(live_jobs))
            for start in range(0, len(ended), batch):
                connection.execute(delete(counts).where(
                    counts.c.scope == RAN, counts.c.job_id.in_(ended[start:start + batch])))
            gone = sorted(set(connection.execute(select(last_runs.c.job_id).where(
                last_runs.c.at < cutoff)).scalars()) - set(live_jobs))
            for start in range(0, len(gone), batch):
                connection.execute(delete(last_runs).where(
                    last_runs.c.job_id.in_(gone[start:start + batch])))
            if gone:
                self._count_last_run_change(connection)
        events = self.events
        event_cutoff = time.time() - keep_events_seconds
        while True:
            with self.engine.begin() as connection:
                seqs = connection.execute(select(events.c.seq).where(
                    events.c.at < event_cutoff).order_by(events.c.seq).limit(batch)
                ).scalars().all()
                if not seqs:
                    break
                connection.execute(delete(events).where(events.c.seq.in_(seqs)))
        return deleted

    def _old(self, cutoff: float) -> tuple[ColumnElement[bool], ...]:
        """Runs older than ``cutoff``: a run's age counts from its start, a run that never
        started (missed, skipped) from when it was due. Both conditions: the first is the
        index's (a run due in year 1 that ran a minute ago is young)."""
        runs = self.runs
        return (runs.c.scheduled_at < cutoff,
                func.coalesce(runs.c.started_at, runs.c.scheduled_at) < cutoff)

    def _delete_old(self, job_ids: list[str], up_to: int | None, cutoff: float,
                    batch: int) -> int:
        """Delete these jobs' ended runs scheduled before ``cutoff`` (and numbered at most
        ``up_to``), ``batch`` rows per transaction."""
        runs = self.runs
        conditions = [runs.c.job_id.in_(job_ids), *self._old(cutoff),
                      runs.c.outcome != "running"]
        if up_to is not None:
            conditions.append(runs.c.seq <= up_to)
        deleted = 0
        while True:
            with self.engine.begin() as connection:
                rows = connection.execute(select(runs.c.seq, runs.c.job_id, runs.c.outcome)
                                          .where(*conditions).order_by(runs.c.seq)
                                          .limit(batch)).all()
                if not rows:
                    return deleted
                connection.execute(delete(runs).where(runs.c.seq.in_([row.seq for row in rows])))
                self.add_counts(connection, Counter(
                    {key: -n for key, n in Counter((row.job_id, row.outcome)
                                                   for row in rows).items()}))
            deleted += len(rows)

def _moves(rows: Iterable[Mapping[str, Any]], old: str, new: str) -> Counter[tuple[str, str]]:
    """Count deltas for runs that went from outcome ``old`` to ``new``."""
    deltas: Counter[tuple[str, str]] = Counter()
    for row in rows:
        deltas[row["job_id"], old] -= 1
        deltas[row["job_id"], new] += 1
    return deltas


def _started(row: Mapping[str, Any]) -> float:
    started = row.get("started_at")
    return float(row["scheduled_at"] if started is None else started)


def upsert(connection: Connection, table: Table, rows: list[dict[str, Any]],
           key: tuple[str, ...], changes: Callable[[Table, Any], dict[str, Any]],
           only_if: Callable[[Table, Any], Any] | None = None) -> None:
    """Insert ``rows``, or where a row with the same ``key`` exists, apply ``changes(table,
    new)`` to it (``new``: the row proposed; ``only_if``: a condition on both)."""
    dialect = connection.dialect.name
    if dialect in ("sqlite", "postgresql"):
        statement: Any = (sqlite_insert if dialect == "sqlite" else postgresql_insert)(table)
        new: Any = statement.excluded
        connection.execute(statement.on_conflict_do_update(
            index_elements=list(key), set_=changes(table, new),
            where=None if only_if is None else only_if(table, new)), rows)
        return
    for row in rows:  # other databases: one row at a time
        matches = [table.c[name] == row[name] for name in key]
        found = connection.execute(select(func.count()).select_from(table).where(
            *matches)).scalar_one()
        if not found:
            connection.execute(insert(table).values(row))
            continue
        new = SimpleNamespace(**row)
        condition = [] if only_if is None else [only_if(table, new)]
        connection.execute(update(table).where(*matches, *condition).values(
            changes(table, new)))
