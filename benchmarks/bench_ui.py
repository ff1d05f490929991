"""The dashboard's job list (``GET /scheduler/ui/jobs``) with 10,000 jobs: server time and
page weight.

A started (paused) scheduler on a SQLite file holds job-0 .. job-9999 (inserted in bulk, as
bench_paginated_listing.py does; every 100th renamed "Nightly export N"); its app is driven
through a werkzeug test Client with the admin's Basic credentials, so the time includes
authmw. Timed, median of each round's requests: the first page (cold: the first request after
the store was filled; warm: repeated), page 200 (the last one, offset 9,950), a search by id
(``?q=job-99``, 111 matches) and one by name (``?q=nightly``, 100 matches; cold: the first
search, which reads every job's name from its pickled state), each showing its first 50.
Page weight: the HTML of the first page and the two assets it loads (one CSS, one JS),
uncompressed.

    python benchmarks/bench_ui.py [--quick]
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_scheduler_api import bulk_insert
from benchmarks.harness import Report, fmt, median, parser, timed_ns
from tests.api_helpers import AUTH, make_scheduler

JOBS = 10_000
#: Jobs renamed "Nightly export N": job-0, job-100 ... job-9900.
RENAMED = range(0, JOBS, 100)
PAGES = {"first page": "/scheduler/ui/jobs", "last page": "/scheduler/ui/jobs?page=200",
         "search by id q=job-99": "/scheduler/ui/jobs?q=job-99",
         "search by name q=nightly": "/scheduler/ui/jobs?q=nightly"}


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    logging.disable(logging.INFO)
    rounds = args.rounds or (2 if args.quick else 5)
    requests_per_round = 5 if args.quick else 30
    report = Report("ui", args, {"jobs": JOBS, "rounds": rounds,
                                 "requests_per_round": requests_per_round})
    with tempfile.TemporaryDirectory() as directory:
        scheduler, app = make_scheduler(Path(directory) / "jobs.sqlite")
        scheduler.start(paused=True)
        try:
            from werkzeug.test import Client

            client = Client(app)
            bulk_insert(scheduler.scheduler._jobstores["default"], JOBS)
            for index in RENAMED:
                scheduler.modify_job(f"job-{index}", name=f"Nightly export {index}")

            def get(path: str) -> bytes:
                answer = client.get(path, headers=AUTH)
                if answer.status_code != 200:
                    raise SystemExit(f"GET {path}: {answer.status_code}")
                return answer.data

            cold_ms = timed_ns(lambda: get(PAGES["first page"])) / 1e6
            page = get(PAGES["first page"])
            if b"10000 jobs; page 1 of 200" not in page:
                raise SystemExit("the first page does not say 10000 jobs")
            search_ms = timed_ns(lambda: get(PAGES["search by name q=nightly"])) / 1e6
            if f"{len(RENAMED)} jobs; page 1 of 2".encode() not in get(
                    PAGES["search by name q=nightly"]):
                raise SystemExit(f"the search by name does not find {len(RENAMED)} jobs")
            figures: dict[str, list[float]] = {name: [] for name in PAGES}
            for _ in range(rounds):
                for name, path in PAGES.items():
                    figures[name].append(median(
                        timed_ns(lambda path=path: get(path)) / 1e6
                        for _ in range(requests_per_round)))
            css = get("/scheduler/ui/static/ui.css")
            js = get("/scheduler/ui/static/ui.js")
        finally:
            scheduler.shutdown(wait=False)
    rows = [["first page, cold (one request)", fmt(cold_ms), "-"],
            ["search by name, cold (the first search)", fmt(search_ms), "-"]]
    rows += [[f"{name}, warm", fmt(median(values)), ", ".join(fmt(v) for v in values)]
             for name, values in figures.items()]
    report.table(f"Server time with {JOBS:,} jobs (ms, median of the round medians)",
                 ["page", "median ms", "per round"], rows)
    report.table("Page weight of the first page (bytes, uncompressed)", ["part", "bytes"], [
        ["HTML (50 jobs)", len(page)], ["ui.css", len(css)], ["ui.js", len(js)],
        ["total", len(page) + len(css) + len(js)]])
    for name, values in figures.items():
        report.raw(name, values)
    report.raw("cold_ms", cold_ms)
    report.raw("search_cold_ms", search_ms)
    print(report.markdown())
    report.write()


if __name__ == "__main__":
    main()
