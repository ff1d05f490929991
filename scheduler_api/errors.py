"""The scheduler's own errors that the job API answers (APScheduler's are its own)."""

from __future__ import annotations

#: Attempts to change a job another process keeps changing (see :class:`JobKeptChanging`).
MODIFY_ATTEMPTS = 5


class JobKeptChanging(Exception):
    """A change to a job not made: another process wrote the job between this process's
    reading it and writing the change, at each of :data:`MODIFY_ATTEMPTS` attempts."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Job {job_id} was changed by another process at each of "
                         f"{MODIFY_ATTEMPTS} attempts to change it")
        self.job_id = job_id
