"""Seed example "Custom Authentication Realm", with only the imports changed."""

from flask import Flask

from authmw import HTTPBasicAuth
from scheduler_api import APScheduler

app = Flask(__name__)  # the seed's fragment uses the app of the first example

# Create auth handler with custom realm
auth_handler = HTTPBasicAuth()
auth_handler.www_authenticate_realm = "Scheduler API"


class Config:
    SCHEDULER_API_ENABLED = True
    SCHEDULER_AUTH = auth_handler


app.config.from_object(Config())

scheduler = APScheduler()
scheduler.init_app(app)

if __name__ == "__main__":
    scheduler.start()
    app.run(host="127.0.0.1", port=5000)
