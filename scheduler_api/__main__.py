"""``python -m scheduler_api``: the ``scheduler-api`` command (serve the demo job API on
127.0.0.1, ``jobs ...``, ``check``)."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
