"""Seed example "Advanced Authentication Callback", verbatim (the seed has no imports to change).

The seed's stored hashes are placeholders, so as written it refuses everyone; store
``hashlib.pbkdf2_hmac(...).hex()`` values to let users in.
"""

import hashlib
import hmac

from flask import Flask

from authmw import HTTPBasicAuth
from scheduler_api import APScheduler

app = Flask(__name__)
app.config.update(SCHEDULER_API_ENABLED=True, SCHEDULER_AUTH=HTTPBasicAuth())
scheduler = APScheduler()
scheduler.init_app(app)


@scheduler.authenticate
def authenticate(auth):
    """
    Advanced authentication with multiple user support and secure password checking.
    """
    # Multiple valid users
    users = {
        "admin": "hashed_admin_password",
        "operator": "hashed_operator_password",
        "readonly": "hashed_readonly_password"
    }

    username = auth.get("username")
    password = auth.get("password")

    if not username or not password:
        return False

    stored_hash = users.get(username)
    if not stored_hash:
        return False

    # Secure password comparison
    expected_hash = hashlib.pbkdf2_hmac('sha256', password.encode('utf-8'), b'salt', 100000)
    return hmac.compare_digest(stored_hash.encode(), expected_hash.hex().encode())


if __name__ == "__main__":
    scheduler.start()
    app.run(host="127.0.0.1", port=5000)
