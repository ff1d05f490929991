"""The leader's side of running jobs on Celery workers: an executor that sends each run.

The leader still decides every run once (election, store-first order: a run is sent only
once the store has the job's next run time), then, instead of starting the job in its own
thread pool, publishes one message to a Celery queue; a worker on any host runs it through
one generic task (:mod:`scheduler_api.celery_worker`), which checks the func against the
allow-list again, holds ``max_instances`` across workers, records the run in the same store
and reports a run that waited past its ``misfire_grace_time`` as missed::

    executor = CeleryExecutor(Celery(broker="amqp://guest:guest@127.0.0.1:5672//"),
                              signing_key=os.environ["SCHEDULER_CELERY_SIGNING_KEY"])
    scheduler.init_app(app, {"SCHEDULER_EXECUTORS": {"default": executor}})

or by settings: ``SCHEDULER_EXECUTOR = "celery"`` with ``SCHEDULER_CELERY_BROKER_URL`` (or
``SCHEDULER_CELERY_APP = "module:attr"``) and ``SCHEDULER_CELERY_SIGNING_KEY``; jobs whose
``executor`` is ``"leader"`` stay in the leader's thread pool.

The message is JSON (never a pickle: whoever can publish to the broker must not be able to
run code on the workers by it), signed with the key the workers share (:func:`seal`): the
job's id, name, func reference, args and kwargs, its run times, why it runs,
``misfire_grace_time``, ``max_instances`` and the store's identity. A job whose args JSON
cannot carry is not sent: its run is recorded as an error that says so.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from queue import SimpleQueue
from typing import Any

from apscheduler.job import Job
from apscheduler.util import ref_to_obj
from kombu.utils import json

from .config import DEFAULT_CELERY_QUEUE
from .engine import ManualRun, StoreFirstThreadPoolExecutor

logger = logging.getLogger("scheduler_api")

#: The generic tasks: a run acknowledged when a worker takes it (at most once), or when it
#: ends (``acks_late``: a run whose worker died is delivered again, at least once).
TASK = "scheduler_api.run"
TASK_ACKS_LATE = "scheduler_api.run_acks_late"
#: Attempts to publish one run, and the pause between them (the broker restarting).
SEND_ATTEMPTS = 3
SEND_RETRY_SECONDS = 0.5
#: How long a run may wait for the sender, at most: past it, it is recorded as not sent
#: without trying. While the broker is away each run takes its attempts (seconds each, the
#: connection timing out): without a bound, runs queue up faster than they fail, the outbox
#: grows without end and each is recorded only after every run before it failed.
OUTBOX_WAIT_SECONDS = 60.0
#: The shortest SCHEDULER_CELERY_SIGNING_KEY taken.
MIN_KEY_LENGTH = 16


def check_signing_key(key: object) -> bytes:
    """The signing key as bytes; ValueError naming the setting if it is missing or short."""
    if not isinstance(key, (str, bytes)) or len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"SCHEDULER_CELERY_SIGNING_KEY must be set, at least {MIN_KEY_LENGTH} "
                         "characters, the same for the scheduler and its workers (whoever can "
                         "publish to the broker cannot then send runs of their own)")
    return key.encode() if isinstance(key, str) else key


def seal(message: dict[str, Any], key: bytes) -> dict[str, str]:
    """The message as the workers take it: its JSON text and that text's HMAC-SHA256."""
    payload: str = json.dumps(message)  # type: ignore[no-untyped-call]
    return {"payload": payload,
            "signature": hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()}


def unseal(sealed: object, key: bytes, max_bytes: int) -> Any:
    """The message a leader holding ``key`` sealed; ValueError for anything else (unsigned,
    signed with another key, changed on the way, over ``max_bytes``)."""
    if not isinstance(sealed, dict) or not isinstance(sealed.get("payload"), str) or \
            not isinstance(sealed.get("signature"), str):
        raise ValueError("run message: not a sealed message (payload and signature)")
    payload = sealed["payload"].encode("utf-8", "surrogatepass")
    if len(payload) > max_bytes:
        raise ValueError(f"run message: over {max_bytes} bytes")
    expected = hmac.new(key, payload, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, sealed["signature"]):
        raise ValueError("run message: its signature does not match (not sent by a scheduler "
                         "with this worker's SCHEDULER_CELERY_SIGNING_KEY)")
    try:
        return json.loads(sealed["payload"])  # type: ignore[no-untyped-call]
    except RecursionError:  # signed, yet nested past the parser's depth: not ours to run
        raise ValueError("run message: nested too deep") from None


def run_message(job: Job, run_times: list[datetime], reason: str,
                store_id: str | None) -> dict[str, Any]:
    """What a worker needs to run ``job`` for ``run_times``: JSON types only. ``store_id``:
    the store's identity (a worker of another store refuses the run)."""
    return {"job_id": job.id, "name": job.name, "func": job.func_ref,
            "args": list(job.args), "kwargs": dict(job.kwargs),
            "run_times": [run_time.isoformat() for run_time in run_times], "reason": reason,
            "misfire_grace_time": job.misfire_grace_time, "max_instances": job.max_instances,
            "store": store_id, "sent_at": time.time()}


class CeleryExecutor(StoreFirstThreadPoolExecutor):
    """Sends each run, once the store has the job's next state, to Celery workers.

    ``celery_app``: the Celery app whose broker the workers read. ``queue``: the queue they
    consume (``celery -A scheduler_api.celery_worker worker`` reads ``scheduler_api``).
    ``acks_late``: a run is acknowledged when it ends instead of when a worker takes it, so
    that a run whose worker dies is delivered again (see docs/celery.md for what each gives).
    ``signing_key``: each message is signed with it (HMAC-SHA256); the workers, holding the
    same key, run only what it signed. ``record_unsent(job_id, reason, run_time, error)``: how
    a run that could not be sent is recorded, and ``store_id``: the identity of the store
    the workers must share (both given by the scheduler as it starts).

    ``max_instances`` is held by the workers, in the store, across every worker and host:
    here a run counts as an instance only until it is sent.
    """

    def __init__(self, celery_app: Any, *, signing_key: str | bytes,
                 queue: str = DEFAULT_CELERY_QUEUE, acks_late: bool = False,
                 record_unsent: Callable[[str, str, datetime, BaseException], None] | None = None
                 ) -> None:
        super().__init__(max_workers=1)
        self.celery_app = celery_app
        self.signing_key = check_signing_key(signing_key)
        self.store_id: str | None = None
        self.queue = queue
        self.acks_late = acks_late
        self.record_unsent = record_unsent
        self._outbox: SimpleQueue[dict[str, Any] | None] = SimpleQueue()
        self._sender: threading.Thread | None = None

    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        if self._sender is None or not self._sender.is_alive():
            self._sender = threading.Thread(target=self._send_all, daemon=True,
                                            name=f"scheduler_api-celery-{alias}")
            self._sender.start()

    def submit_job(self, job: Job, run_times: list[datetime]) -> None:
        """As APScheduler's, without counting instances here: the workers hold
        ``max_instances``, across hosts (a run sent is not an instance of this process)."""
        with self._lock:
            self._do_submit_job(job, run_times)

    def _drop_job(self, job_id: str) -> None:
        with self._held_lock:  # not written (or changed elsewhere meanwhile): not sent
            self._held.pop(job_id, None)

    def _submit(self, job: Job, run_times: list[datetime]) -> None:
        """Hand the run to the sender thread: publishing (a broker that is slow or away)
        must not hold the scheduling thread that released it."""
        reason = "run" if isinstance(run_times, ManualRun) else "schedule"
        try:
            message = run_message(job, run_times, reason, self.store_id)
            json.dumps(message)  # type: ignore[no-untyped-call] # what JSON cannot carry
        except Exception as error:  # noqa: BLE001 - a job APScheduler keeps, we cannot send
            self._unsent(job.id, reason, run_times, error)
        else:
            self._outbox.put(message)

    def _send_all(self) -> None:
        while (message := self._outbox.get()) is not None:
            self._send(message)

    def _send(self, message: dict[str, Any]) -> None:
        task = TASK_ACKS_LATE if self.acks_late else TASK
        waited = time.time() - message["sent_at"]
        if waited > OUTBOX_WAIT_SECONDS:
            error = TimeoutError(f"waited {waited:.0f} s for the broker, which is away or slow")
            self._unsent_message(message, error)
            return
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                self.celery_app.send_task(task, args=[seal(message, self.signing_key)],
                                          queue=self.queue,
                                          ignore_result=True, retry=False)
                return
            except Exception as error:  # noqa: BLE001 - the broker away: tried again, recorded
                if attempt == SEND_ATTEMPTS:
                    self._unsent_message(message, error)
                    return
                time.sleep(SEND_RETRY_SECONDS)

    def _unsent_message(self, message: dict[str, Any], error: BaseException) -> None:
        run_times = [datetime.fromisoformat(text) for text in message["run_times"]]
        self._unsent(message["job_id"], message["reason"], run_times, error)

    def _unsent(self, job_id: str, reason: str, run_times: list[datetime],
                error: BaseException) -> None:
        logger.error("run of job %.100r not sent to Celery: %s", job_id, error)
        if self.record_unsent is not None:
            for run_time in run_times:
                self.record_unsent(job_id, reason, run_time, error)

    def shutdown(self, wait: bool = True) -> None:
        super().shutdown(wait)
        sender, self._sender = self._sender, None
        if sender is not None:
            self._outbox.put(None)  # after what is queued: sent first
            if wait:
                sender.join(SEND_ATTEMPTS * (SEND_RETRY_SECONDS + 5))


def celery_app_from(settings: Mapping[str, Any]) -> Any:
    """The Celery app of ``SCHEDULER_CELERY_APP`` (an app, or ``"module:attr"``), or one
    for ``SCHEDULER_CELERY_BROKER_URL``; ValueError naming what is missing or wrong."""
    given = settings.get("SCHEDULER_CELERY_APP")
    broker = settings.get("SCHEDULER_CELERY_BROKER_URL")
    if given is not None and broker is not None:
        raise ValueError("SCHEDULER_CELERY_APP and SCHEDULER_CELERY_BROKER_URL are both set: "
                         "give one (the app has its broker)")
    if isinstance(given, str):
        try:
            return ref_to_obj(given)
        except (LookupError, ValueError) as error:
            raise ValueError(f"SCHEDULER_CELERY_APP: {error}") from None
    if given is not None:
        return given
    if not broker:
        raise ValueError("SCHEDULER_EXECUTOR is 'celery': set SCHEDULER_CELERY_BROKER_URL "
                         "(or SCHEDULER_CELERY_APP)")
    from celery import Celery

    app = Celery("scheduler_api", broker=broker)
    configure(app, settings.get("SCHEDULER_CELERY_QUEUE", DEFAULT_CELERY_QUEUE))
    return app


def configure(celery_app: Any, queue: str = DEFAULT_CELERY_QUEUE) -> None:
    """Celery settings fit for runs: JSON only; runs go to (and are read from) ``queue``;
    a worker takes one run at a time (a long run holds no other run back in its prefetch)."""
    celery_app.conf.update(
        task_serializer="json", accept_content=["json"], task_ignore_result=True,
        task_default_queue=queue, worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True)
