"""Run by the reloader test: the demo app under werkzeug's reloader, recording job runs."""

from __future__ import annotations

import os
import sys

from werkzeug.serving import run_simple

from tests.cluster_app import app

if __name__ == "__main__":
    run_simple("127.0.0.1", int(sys.argv[1]), app, use_reloader=True,
               reloader_type="stat", extra_files=[os.environ["RUN_LOG"] + ".touch"])
