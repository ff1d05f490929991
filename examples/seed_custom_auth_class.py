"""Seed example "Custom Authentication Class": ``from flask import request`` became
``from authmw import request`` (authentication now runs before Flask)."""

from flask import Flask

from authmw import Authorization, HTTPAuth, request
from scheduler_api import APScheduler

app = Flask(__name__)
app.config["SCHEDULER_API_ENABLED"] = True
scheduler = APScheduler()
scheduler.init_app(app)


class APIKeyAuth(HTTPAuth):
    """Custom API key authentication."""

    def __init__(self, valid_keys):
        self.valid_keys = valid_keys

    def get_authorization(self):
        """Extract API key from X-API-Key header."""
        api_key = request.headers.get('X-API-Key')
        if not api_key:
            return None

        if api_key in self.valid_keys:
            return Authorization("apikey", key=api_key)
        return None

    def get_authenticate_header(self):
        """Return custom auth challenge."""
        return 'API-Key realm="Scheduler API"'


# Use custom authentication
api_keys = ["key1", "key2", "key3"]
scheduler.auth = APIKeyAuth(api_keys)


@scheduler.authenticate
def authenticate(auth):
    # API key already validated in get_authorization
    return auth["key"] in api_keys


if __name__ == "__main__":
    scheduler.start()
    app.run(host="127.0.0.1", port=5000)
