"""scheduler_api's paginated listing: does a page cost the same with 100 jobs as with 10,000?

``GET /scheduler/jobs?limit=100&offset=O`` answers ``{"jobs": [...], "total": N, "limit":
100, "offset": O}``. For the memory store and the default SQLite store (SQLAlchemyJobStore,
on a temp file), with N = 100 and N = 10,000 jobs, this times the first page (offset 0) and
the last one (offset N-100), both:

- cold: the first request after the store was (re)filled, so every job on the page is
  serialised (and, on SQLite, unpickled);
- warm: repeated requests for the same page of unchanged jobs, served from the listing's
  cache of each job's JSON.

The target (page(10k) / page(100) <= 3, per round, median) is judged on warm pages. Every
variant (store x N) is its own scheduler_api app, driven through a werkzeug test Client, as
in bench_scheduler_api.py; the scheduler is paused.

    python benchmarks/bench_paginated_listing.py [--quick]
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apscheduler.jobstores.memory import MemoryJobStore
from werkzeug.test import Client

from benchmarks.bench_scheduler_api import Variant, ours
from benchmarks.harness import Report, fmt, median, paired_ratios, parser, rotated, timed_ns

LIMIT = 100
SIZES = (100, 10_000)
STORES = ("memory", "sqlite")
KINDS = ("first", "last")  # offset 0, offset N - LIMIT
SLICES = 5  # warm pages: each round alternates the variants in 5 slices
SLICE_SECONDS = 0.05  # warm requests per page and slice: about this long, 10 to 500 of them


def offset(kind: str, size: int) -> int:
    return 0 if kind == "first" else max(0, size - LIMIT)


def url(kind: str, size: int) -> str:
    return f"/scheduler/jobs?limit={LIMIT}&offset={offset(kind, size)}"


def get_page(variant: Variant, path: str, times: int = 1) -> bytes:
    body = b""
    for _ in range(times):
        response = variant.client.get(path)
        if response.status_code != 200:
            raise SystemExit(f"{variant.label}: GET {path} gave {response.status_code}")
        body = response.get_data()
    return body


def check_pages(variant: Variant, size: int) -> None:
    """Both pages hold the right slice of the whole listing, and the right envelope."""
    whole = [job["id"] for job in json.loads(get_page(variant, "/scheduler/jobs"))]
    if sorted(whole) != sorted(f"job-{i}" for i in range(size)):
        raise SystemExit(f"{variant.label}: the listing does not hold the {size} jobs")
    for kind in KINDS:
        page = json.loads(get_page(variant, url(kind, size)))
        start = offset(kind, size)
        expected = {"total": size, "limit": LIMIT, "offset": start}
        if ({key: page[key] for key in expected} != expected
                or [job["id"] for job in page["jobs"]] != whole[start:start + LIMIT]):
            raise SystemExit(f"{variant.label}: page {kind} of {size} jobs is not "
                             f"jobs [{start}, {start + LIMIT}) of the whole listing")


def floor_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The test client's own cost: a GET answered with a small JSON object."""
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"jobs":[],"total":0,"limit":100,"offset":0}']


def get_floor(client: Client, path: str, times: int) -> None:
    for _ in range(times):
        client.get(path).get_data()


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    sizes = (100, 1000) if args.quick else SIZES
    slices = 2 if args.quick else SLICES
    slice_seconds = SLICE_SECONDS / 10 if args.quick else SLICE_SECONDS
    cold_samples = {size: max(1, min(5, 3000 // size)) for size in sizes}
    report = Report("paginated_listing", args, {
        "rounds": rounds, "sizes": sizes, "limit": LIMIT, "slices": slices,
        "warm_seconds_per_page_and_slice": slice_seconds,
        "cold_samples_per_page_and_round": cold_samples,
        "client": "werkzeug.test.Client", "scheduler": "paused",
    })
    logging.getLogger("authmw").setLevel(logging.ERROR)  # the auth=None warning
    small, big = sizes

    # (store, size, kind) -> ns per page, one figure per round
    cold: dict[tuple[str, int, str], list[float]] = {
        (s, n, k): [] for s in STORES for n in sizes for k in KINDS}
    warm: dict[tuple[str, int, str], list[float]] = {key: [] for key in cold}
    floor: list[float] = []
    floor_client = Client(floor_app)
    with tempfile.TemporaryDirectory(prefix="bench_paginated_listing_") as tmp:
        variants: dict[tuple[str, int], Variant] = {}
        try:
            for size in sizes:
                variants["memory", size] = ours(f"scheduler_api (memory, N={size})",
                                                {"default": MemoryJobStore()})
                variants["sqlite", size] = ours(
                    f"scheduler_api (SQLite, N={size})", None,
                    f"sqlite:///{Path(tmp) / f'jobs_{size}.sqlite'}")
            for (_, size), variant in variants.items():
                variant.fill(size)
                check_pages(variant, size)
            # Warm requests per page and slice: enough for about slice_seconds each.
            repeats: dict[tuple[str, int, str], int] = {}
            for store, size, kind in warm:
                page_ns = timed_ns(partial(get_page, variants[store, size], url(kind, size),
                                           5)) / 5
                repeats[store, size, kind] = max(10, min(500, int(slice_seconds * 1e9
                                                                  / page_ns)))
            repeats_floor = 500 if not args.quick else 20
            for round_index in range(rounds):
                # Cold: refill, then time the first request (the mean of a few refills).
                for store in rotated(STORES, round_index):
                    for size in rotated(sizes, round_index):
                        variant = variants[store, size]
                        for kind in rotated(KINDS, round_index):
                            samples = []
                            for _ in range(cold_samples[size]):
                                variant.fill(size)
                                gc.collect()
                                samples.append(timed_ns(partial(get_page, variant,
                                                                url(kind, size))))
                            cold[store, size, kind].append(sum(samples) / len(samples))
                # Warm: the same pages again, the variants alternated in slices.
                totals = dict.fromkeys(warm, 0)
                for slice_index in range(slices):
                    order = rotated([(s, n, k) for s in STORES for n in sizes for k in KINDS],
                                    round_index + slice_index)
                    for store, size, kind in order:
                        totals[store, size, kind] += timed_ns(partial(
                            get_page, variants[store, size], url(kind, size),
                            repeats[store, size, kind]))
                    floor.append(timed_ns(partial(get_floor, floor_client, url("first", small),
                                                  repeats_floor)) / repeats_floor)
                for key, total in totals.items():
                    warm[key].append(total / (slices * repeats[key]))
                print(f"  round {round_index + 1}/{rounds}", file=sys.stderr)
        finally:
            for variant in variants.values():
                variant.shutdown()
    floor_per_round = [median(floor[i * slices:(i + 1) * slices]) for i in range(rounds)]
    report.raw("cold_ns_per_page", {f"{s} N={n} {k}": v for (s, n, k), v in cold.items()})
    report.raw("warm_ns_per_page", {f"{s} N={n} {k}": v for (s, n, k), v in warm.items()})
    report.raw("client_floor_ns", floor_per_round)
    report.raw("warm_requests_per_slice", {f"{s} N={n} {k}": v
                                           for (s, n, k), v in repeats.items()})

    def ms(values: list[float]) -> str:
        return fmt(median(values) / 1e6, 3)

    def ratio(times: dict[tuple[str, int, str], list[float]], store: str, kind: str,
              net: bool = False) -> list[float]:
        top, bottom = times[store, big, kind], times[store, small, kind]
        if net:
            top = [t - f for t, f in zip(top, floor_per_round, strict=True)]
            bottom = [b - f for b, f in zip(bottom, floor_per_round, strict=True)]
        return paired_ratios(top, bottom)

    rows = []
    for store in STORES:
        for kind in KINDS:
            warm_ratios = ratio(warm, store, kind)
            rows.append([store, f"{kind} (offset 0 / {offset(kind, big)})" if kind == "last"
                         else f"{kind} (offset 0)",
                         ms(cold[store, small, kind]), ms(cold[store, big, kind]),
                         fmt(median(ratio(cold, store, kind)), 2),
                         ms(warm[store, small, kind]), ms(warm[store, big, kind]),
                         fmt(median(warm_ratios), 2),
                         fmt(median(ratio(warm, store, kind, net=True)), 2),
                         " ".join(fmt(r, 2) for r in warm_ratios)])
    report.table(
        f"GET /scheduler/jobs?limit={LIMIT}&offset=..., N = {small} and {big} (ms per page, "
        f"median of {rounds} rounds)",
        ["store", "page", f"cold N={small}", f"cold N={big}", "cold ratio",
         f"warm N={small}", f"warm N={big}", "warm ratio (target)", "warm ratio net of client",
         "warm ratio per round"], rows, [
            "Ratio = page with N=10,000 / page with N=100, taken per round, median of rounds. "
            "The target (<= 3) is judged on warm pages: repeated requests for a page of "
            "unchanged jobs, which the listing cache serves from each job's stored JSON.",
            "Cold: the first request for the page after the store was refilled with N fresh "
            f"jobs (every job on the page serialised; on SQLite also unpickled), mean of "
            f"{', '.join(f'{cold_samples[n]} (N={n})' for n in sizes)} refills per round; "
            "report only.",
            f"Warm: per round, {slices} slices (order rotated) in which every page of every "
            f"variant is requested {min(repeats.values())} to {max(repeats.values())} times "
            f"(about {fmt(slice_seconds * 1e3, 0)} ms each, fixed before round 1); the figure "
            "is the mean time per request.",
            f"The last page with N={small} is the first page (offset 0).",
            "Every variant is its own scheduler_api app (paused scheduler, no authentication), "
            "filled outside the API with N interval jobs; both pages were checked once against "
            "the whole listing (ids, order, total, limit, offset).",
            f"Client floor: the werkzeug test Client's GET of a trivial WSGI app, "
            f"{fmt(median(floor_per_round) / 1e3, 1)} us; 'net' ratios subtract it from both "
            "sides (report only).",
            "SQLite: the default store (SQLAlchemyJobStore) on a temp file; a page is one "
            "ORDER BY ... LIMIT/OFFSET query plus a COUNT(*).",
        ])
    for store in STORES:
        for kind in KINDS:
            report.target(f"warm page N={big} / N={small}, {store} store, {kind} page "
                          f"(offset {offset(kind, big)})", median(ratio(warm, store, kind)), 3)
    report.write()


if __name__ == "__main__":
    main()
