"""Requests/s through a real gunicorn when the credentials are bcrypt hashes (cost 12).

Basic auth re-sends the password with every request; verifying it against a bcrypt hash of
cost 12 takes about 240 ms, so without a cache a worker serves ~4 requests a second. Three
gunicorn servers (2 sync workers each, 127.0.0.1 only, free ports) serve the same route
behind authmw, with the same valid Basic credentials sent to all three:

- plaintext: the callback compares the password with the plaintext one (compare_secrets);
- cached: ``HtpasswdFile(path, cache=True).authenticate`` on an htpasswd file whose hash
  was made by ``hash_password(password, "bcrypt", cost=12)``;
- uncached: the same file with ``cache=False`` (report only, in shorter runs).

Each round alternates plaintext and cached in slices (as bench_gunicorn.py does), then runs
uncached alone and waits until its workers have finished the requests still queued.

    python benchmarks/bench_credential_cache.py [--quick] [--loadgen auto|wrk|python]
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authmw import HtpasswdFile, hash_password
from benchmarks.bench_gunicorn import (
    AUTHORIZATION,
    CONNECTIONS,
    PATH,
    SLICES,
    find_wrk,
    free_port,
    get,
    run_python,
    run_wrk,
    start_gunicorn,
    stop,
    wait_ready,
    workers_cpu_seconds,
)
from benchmarks.gunicorn_app import HTPASSWD_ENV, PASSWORD, USER
from benchmarks.harness import Report, fmt, median, paired_ratios, parser, rotated, timed_ns

BCRYPT_COST = 12
WRONG = "Basic " + base64.b64encode(f"{USER}:not-{PASSWORD}".encode()).decode()
APPS = {
    "plaintext": "benchmarks.gunicorn_app:with_authmw",
    "cached": "benchmarks.gunicorn_app:htpasswd_app(cache=True)",
    "uncached": "benchmarks.gunicorn_app:htpasswd_app(cache=False)",
}
LABELS = {
    "plaintext": "plaintext callback (compare_secrets)",
    "cached": f"HtpasswdFile, bcrypt cost {BCRYPT_COST}, cache on",
    "uncached": f"HtpasswdFile, bcrypt cost {BCRYPT_COST}, cache off",
}
PAIRED = ("plaintext", "cached")
UNCACHED_WRK_TIMEOUT = 30  # s: at ~8 req/s, 32 connections wait ~4 s for an answer


def write_htpasswd(directory: Path) -> tuple[Path, float]:
    """The htpasswd file (``user:hash`` lines), and one verification's time in ms (median of
    3, in this process)."""
    path = directory / "htpasswd"
    lines = [f"{USER}:{hash_password(PASSWORD, 'bcrypt', cost=BCRYPT_COST)}"]
    # A few other users, so the file is not a one-liner; never used by the load.
    lines += [f"user{i}:{hash_password(f'pw-{i}', 'bcrypt', cost=BCRYPT_COST)}" for i in range(3)]
    path.write_text("\n".join(lines) + "\n")
    users = HtpasswdFile(path, cache=False)
    if not users.check_password(USER, PASSWORD) or users.check_password(USER, "wrong"):
        raise SystemExit("the htpasswd file does not verify as expected")
    verify_ms = median(timed_ns(lambda: users.check_password(USER, PASSWORD)) / 1e6
                       for _ in range(3))
    return path, verify_ms


def wait_idle(master: int, timeout: float = 60) -> float:
    """Wait until the workers of ``master`` stop using CPU; return the seconds waited.

    When wrk stops, the requests it sent last are still queued at the server; without a
    cache each costs a worker ~240 ms, and that must not run into the next measurement.
    """
    start = time.monotonic()
    before = workers_cpu_seconds(master)
    while time.monotonic() - start < timeout:
        time.sleep(0.5)
        now = workers_cpu_seconds(master)
        if now - before < 0.02:  # under 4 % of one core over the last half second
            return time.monotonic() - start
        before = now
    print(f"  warning: workers of {master} still busy after {timeout} s", file=sys.stderr)
    return time.monotonic() - start


def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    args = cli.parse_args()
    rounds = args.rounds or (2 if args.quick else 3)
    seconds = 2 if args.quick else 10
    uncached_seconds = 2 if args.quick else 5
    slices = 2 if args.quick else SLICES
    wrk = find_wrk() if args.loadgen in ("auto", "wrk") else None
    if args.loadgen == "wrk" and wrk is None:
        raise SystemExit("wrk is not installed and could not be installed")
    loadgen = wrk or "python http.client (4 processes x 8 threads)"
    report = Report("credential_cache", args, {
        "rounds": rounds, "seconds_per_run": {"plaintext": seconds, "cached": seconds,
                                              "uncached": uncached_seconds},
        "slices": slices, "connections": CONNECTIONS, "workers": "2 sync",
        "load_generator": loadgen, "path": PATH, "bcrypt_cost": BCRYPT_COST,
        "credential_cache": "HtpasswdFile's default CredentialCache (ttl 60 s), one per worker",
    })

    def load(name: str, duration: int, timeout: int = 2) -> dict[str, Any]:
        master = servers[name].pid
        cpu = workers_cpu_seconds(master)
        result = (run_wrk(wrk, ports[name], duration, timeout) if wrk
                  else run_python(ports[name], duration))
        return {**result, "worker_cpu_s": workers_cpu_seconds(master) - cpu}

    def combine(parts: list[dict[str, Any]]) -> dict[str, Any]:
        total = {key: sum(p[key] for p in parts) for key in parts[0]}
        return {**total, "rps": total["rps"] / len(parts),
                "worker_cpu_us_per_request": total["worker_cpu_s"] / total["requests"] * 1e6
                if total["requests"] else float("nan")}

    ports = {name: free_port() for name in APPS}
    servers: dict[str, subprocess.Popen[bytes]] = {}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in APPS}
    drained: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench_credential_cache_") as tmp:
        htpasswd, verify_ms = write_htpasswd(Path(tmp))
        os.environ[HTPASSWD_ENV] = str(htpasswd)  # inherited by the gunicorn servers
        try:
            for name, app in APPS.items():
                servers[name] = start_gunicorn(app, ports[name])
            for name in APPS:
                wait_ready(ports[name], servers[name])
            for name in APPS:
                statuses = (get(ports[name], None), get(ports[name], AUTHORIZATION),
                            get(ports[name], WRONG))
                if statuses != (401, 200, 401):
                    raise SystemExit(f"{name}: no credentials / valid / wrong password gave "
                                     f"{statuses}, expected (401, 200, 401)")
            for name in PAIRED:  # warm-up, not reported (each worker's first hash: 240 ms)
                load(name, 2)
            for round_index in range(rounds):
                parts: dict[str, list[dict[str, Any]]] = {name: [] for name in PAIRED}
                for slice_index in range(slices):
                    for name in rotated(list(PAIRED), round_index + slice_index):
                        parts[name].append(load(name, seconds // slices))
                for name in PAIRED:
                    runs[name].append(combine(parts[name]))
                runs["uncached"].append(combine([load("uncached", uncached_seconds,
                                                      UNCACHED_WRK_TIMEOUT)]))
                drained.append(wait_idle(servers["uncached"].pid))
                print(f"  round {round_index + 1}/{rounds}: " + ", ".join(
                    f"{name} {runs[name][-1]['rps']:.1f} req/s" for name in APPS),
                    file=sys.stderr)
        finally:
            for process in servers.values():
                stop(process)
            os.environ.pop(HTPASSWD_ENV, None)

    report.raw("runs", runs)
    report.raw("uncached_drain_seconds", drained)
    rps = {name: [r["rps"] for r in runs[name]] for name in APPS}
    cpu = {name: [r["worker_cpu_us_per_request"] for r in runs[name]] for name in APPS}
    ratios = paired_ratios(rps["cached"], rps["plaintext"])
    uncached_ratios = paired_ratios(rps["uncached"], rps["plaintext"])
    errors = sum(r["non_2xx"] + r["socket_errors"] for name in APPS for r in runs[name])
    rows = [[LABELS[name], fmt(median(rps[name]), 0 if name in PAIRED else 1),
             " ".join(fmt(v, 0 if name in PAIRED else 1) for v in rps[name]),
             fmt(median(cpu[name]), 1), sum(r["requests"] for r in runs[name]),
             sum(r["non_2xx"] for r in runs[name]), sum(r["socket_errors"] for r in runs[name])]
            for name in APPS]
    rows.append(["ratio cached / plaintext", fmt(median(ratios), 3),
                 " ".join(fmt(r, 3) for r in ratios),
                 fmt(median(paired_ratios(cpu["cached"], cpu["plaintext"])), 3), "", "", ""])
    rows.append(["ratio uncached / plaintext (report only)", fmt(median(uncached_ratios), 4),
                 " ".join(fmt(r, 4) for r in uncached_ratios), "", "", "", ""])
    report.table(
        f"gunicorn, 2 sync workers, {CONNECTIONS} connections, {rounds} rounds: plaintext and "
        f"cached {seconds} s each per round, uncached {uncached_seconds} s",
        ["credentials", "median req/s", "req/s per round", "worker CPU (us/request)",
         "requests", "non-2xx", "socket errors"], rows, [
            f"GET {PATH} with the same valid Basic credentials to every server; load "
            f"generator: {loadgen}. Load generator and servers share the machine's CPUs.",
            f"The htpasswd file holds bcrypt cost {BCRYPT_COST} hashes written with "
            f"hash_password(password, 'bcrypt', cost={BCRYPT_COST}); one verification takes "
            f"{fmt(verify_ms, 0)} ms here (median of 3, in the benchmark's process).",
            f"Each round alternates plaintext and cached in {slices} slices of "
            f"{seconds // slices} s (order rotated), so drift hits both alike; the ratio is "
            "taken per round.",
            "Each gunicorn worker loads the file and has its own cache (default ttl 60 s): "
            "its first request, and one a minute after that, pays a full bcrypt "
            "verification; the 2 s warm-up of each server is not reported.",
            f"Uncached: report only, shorter runs ({uncached_seconds} s per round, after the "
            f"paired slices), wrk timeout {UNCACHED_WRK_TIMEOUT} s (answers take seconds with "
            f"{CONNECTIONS} connections queued on 2 workers). After each run the benchmark waits "
            "until the workers have finished the requests still queued (median "
            f"{fmt(median(drained), 1)} s), so they cannot slow the next measurement.",
            "Worker CPU: user+system time of the gunicorn workers (from /proc) per request "
            "served.",
        ])
    report.target("req/s, bcrypt htpasswd with cache / plaintext callback", median(ratios),
                  0.8, at_least=True)
    report.target("errors (non-2xx + socket errors), all runs", errors, 0)
    report.write()


if __name__ == "__main__":
    main()
