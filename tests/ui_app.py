"""The app the browser tests drive (tests/test_ui_browser.py) under a real gunicorn:
the API and the dashboard on a SQLite file (``UI_TEST_STORE``), behind Basic auth with two
users, ``admin`` (every method) and ``reader`` (GET only), both with the password ``pw``.
gunicorn imports it as ``tests.ui_app:app``.
"""

from __future__ import annotations

import os
from typing import Any

from authmw import HTTPBasicAuth, Rule, compare_secrets
from scheduler_api import APScheduler
from scheduler_api.server import not_found_app

USERS = {"admin": {"roles": ["reader", "admin"]}, "reader": {"roles": ["reader"]}}


def check(auth: Any) -> Any:
    user = USERS.get(auth["username"])
    return user if user is not None and compare_secrets(auth["password"], "pw") else False


scheduler = APScheduler()
app = scheduler.init_app(not_found_app, config={
    "SCHEDULER_API_ENABLED": True,
    "SCHEDULER_AUTH": HTTPBasicAuth(realm="scheduler"),
    "SCHEDULER_JOBSTORE_URL": f"sqlite:///{os.environ['UI_TEST_STORE']}",
    "SCHEDULER_API_ALLOWED_FUNCS": ["tests.tasks:*"],
    "SCHEDULER_TIMEZONE": "UTC",
    "SCHEDULER_AUTH_OPTIONS": {"rules": [
        Rule("/scheduler", roles={"GET": {"reader", "admin"}, "*": "admin"})]},
})
scheduler.authenticate(check)
scheduler.start()
