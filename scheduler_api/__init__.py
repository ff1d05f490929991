"""scheduler_api: Flask-APScheduler's job API for any WSGI app, safe and persistent by default.

::

    from scheduler_api import APScheduler
    scheduler = APScheduler()
    app = scheduler.init_app(app, config={"SCHEDULER_API_ENABLED": True})
    scheduler.start()
"""

from __future__ import annotations

from .api import SchedulerAPI
from .funcs import ForbiddenFunc, FuncPolicy
from .scheduler import APScheduler

__all__ = ["APScheduler", "ForbiddenFunc", "FuncPolicy", "SchedulerAPI"]
