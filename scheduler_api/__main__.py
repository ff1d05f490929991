"""``python -m scheduler_api``: serve the demo job API on 127.0.0.1."""

from __future__ import annotations

from .server import main

if __name__ == "__main__":
    main()
