"""Seed example "No Authentication (Development Only)", with only the imports changed.

A warning is logged: the API is served without authentication.
"""

from flask import Flask

from scheduler_api import APScheduler


class Config:
    SCHEDULER_API_ENABLED = True
    # SCHEDULER_AUTH not set - no authentication required


app = Flask(__name__)
app.config.from_object(Config())
scheduler = APScheduler()
scheduler.init_app(app)

# Or explicitly disable
scheduler.auth = None

if __name__ == "__main__":
    scheduler.start()
    app.run(host="127.0.0.1", port=5000)
