"""Seed example "Basic Authentication Setup", with only the imports changed.

Run ``python examples/seed_basic_auth.py``, then
``curl -u admin:secret localhost:5000/scheduler``.
"""

from flask import Flask

from authmw import HTTPBasicAuth
from scheduler_api import APScheduler


class Config:
    SCHEDULER_API_ENABLED = True
    SCHEDULER_AUTH = HTTPBasicAuth()


app = Flask(__name__)
app.config.from_object(Config())

scheduler = APScheduler()
scheduler.init_app(app)


# Define authentication callback
@scheduler.authenticate
def authenticate(auth):
    """
    Authenticate users for API access.

    Args:
    auth (Authorization): Authorization object with username/password

    Returns:
    bool: True if authentication successful, False otherwise
    """
    return auth["username"] == "admin" and auth["password"] == "secret"


scheduler.start()

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=5000)
