"""Seed example "Direct Authentication Assignment", with only the imports changed."""

import hashlib
import hmac

from flask import Flask

from authmw import HTTPBasicAuth
from scheduler_api import APScheduler


class User:
    """Stands in for the seed's user database, which the seed leaves to the reader."""

    def __init__(self, password):
        self.salt = b"example-salt"
        self.digest = hashlib.pbkdf2_hmac("sha256", password.encode(), self.salt, 100_000)

    def check_password(self, password):
        attempt = hashlib.pbkdf2_hmac("sha256", password.encode(), self.salt, 100_000)
        return hmac.compare_digest(attempt, self.digest)


USERS = {"admin": User("secret")}


def get_user_from_database(username):
    return USERS.get(username)


scheduler = APScheduler()
scheduler.auth = HTTPBasicAuth()  # Set directly on scheduler instance


@scheduler.authenticate
def authenticate(auth):
    # Check against database, LDAP, etc.
    user = get_user_from_database(auth["username"])
    return user and user.check_password(auth["password"])


app = Flask(__name__)
app.config["SCHEDULER_API_ENABLED"] = True
scheduler.init_app(app)

if __name__ == "__main__":
    scheduler.start()
    app.run(host="127.0.0.1", port=5000)
