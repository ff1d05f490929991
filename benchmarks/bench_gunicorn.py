"""Requests/s through a real gunicorn, with and without authmw, on a protected route.

Two gunicorn servers (2 sync workers each, 127.0.0.1 only, free ports) serve the same route,
one behind authmw; a load generator (wrk, else a small Python one) alternates between them,
round by round, sending the same valid Basic credentials to both.

    python benchmarks/bench_gunicorn.py [--quick] [--loadgen auto|wrk|python]
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gunicorn_app import PASSWORD, USER
from benchmarks.harness import ROOT, Report, fmt, median, paired_ratios, parser, rotated

HOST = "127.0.0.1"  # never anything else
PATH = "/scheduler/ping"
AUTHORIZATION = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
CONNECTIONS = 32
SLICES = 5  # a round alternates the two servers in 5 slices each, so drift hits both alike
APPS = {"with": "benchmarks.gunicorn_app:with_authmw",
        "without": "benchmarks.gunicorn_app:without_authmw"}


# -- servers -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def get(port: int, authorization: str | None) -> int:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", PATH, headers={"Authorization": authorization}
                           if authorization else {})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def start_gunicorn(app: str, port: int) -> subprocess.Popen[bytes]:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = [str(gunicorn), "--workers", "2", "--worker-class", "sync", "--bind",
               f"{HOST}:{port}", "--chdir", str(ROOT), "--log-level", "warning", app]
    # Its own process group, so that the master and its workers are stopped together.
    return subprocess.Popen(command, start_new_session=True)


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn on port {port} exited with {process.returncode}")
        try:
            get(port, AUTHORIZATION)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn on port {port} did not answer within {timeout} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # the group of this gunicorn only
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def workers_cpu_seconds(master: int) -> float:
    """User + system CPU time used so far by the workers of a gunicorn master (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return float("nan")
    for pid in children:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a worker that just exited
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


# -- load generators -----------------------------------------------------------------------

def find_wrk() -> str | None:
    """wrk on the PATH, else try to install it with apt-get (as root), else None."""
    if shutil.which("wrk"):
        return shutil.which("wrk")
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: trying apt-get install -y wrk", file=sys.stderr)
        for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "wrk"]):
            try:
                subprocess.run(command, check=True, timeout=300, capture_output=True)
            except (subprocess.SubprocessError, OSError):
                return None
    return shutil.which("wrk")


def run_wrk(wrk: str, port: int, seconds: int, timeout: int = 2) -> dict[str, Any]:
    """``timeout``: wrk's, in seconds: a slower response still counts as a request, and as a
    socket error (timeout) too."""
    output = subprocess.run(
        [wrk, "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", f"--timeout={timeout}s", "-H",
         f"Authorization: {AUTHORIZATION}", f"http://{HOST}:{port}{PATH}"],
        check=True, capture_output=True, text=True, timeout=seconds + timeout + 60,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", output)
    return {"rps": rps, "requests": requests, "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "socket_errors": sum(map(int, socket_errors.groups())) if socket_errors else 0}


def _python_worker(port: int, seconds: float, connections: int) -> dict[str, int]:
    """One process: ``connections`` threads, each a keep-alive connection (re-opened when
    the server closes it, as gunicorn's sync workers do after every response)."""
    totals = {"requests": 0, "non_2xx": 0, "socket_errors": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    headers = {"Authorization": AUTHORIZATION}

    def loop() -> None:
        counts = dict.fromkeys(totals, 0)
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        while time.monotonic() < deadline:
            try:
                connection.request("GET", PATH, headers=headers)
                response = connection.getresponse()
                response.read()
                counts["requests"] += 1
                counts["non_2xx"] += not 200 <= response.status < 300
                if response.will_close:
                    connection.close()
            except (OSError, http.client.HTTPException):
                counts["socket_errors"] += 1
                connection.close()
        connection.close()
        with lock:
            for key, value in counts.items():
                totals[key] += value

    threads = [threading.Thread(target=loop) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return totals


def run_python(port: int, seconds: int, processes: int = 4) -> dict[str, Any]:
    per_process = CONNECTIONS // processes
    start = time.monotonic()
    with ProcessPoolExecutor(processes) as pool:
        results = list(pool.map(_python_worker, [port] * processes, [seconds] * processes,
                                [per_process] * processes))
    elapsed = time.monotonic() - start
    totals = {key: sum(r[key] for r in results) for key in results[0]}
    return {"rps": totals["requests"] / elapsed, **totals}


# -- main ----------------------------------------------------------------------------------

def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    args = cli.parse_args()
    rounds = args.rounds or (2 if args.quick else 3)
    if args.loadgen == "python":
        rounds = min(rounds, 3)  # the fallback is bounded: at most 3 rounds of 10 s
    seconds = 2 if args.quick else 10
    wrk = find_wrk() if args.loadgen in ("auto", "wrk") else None
    if args.loadgen == "wrk" and wrk is None:
        raise SystemExit("wrk is not installed and could not be installed")
    loadgen = wrk or "python http.client (4 processes x 8 threads)"
    report = Report("gunicorn", args, {"rounds": rounds, "seconds_per_run": seconds,
                                       "connections": CONNECTIONS, "workers": "2 sync",
                                       "load_generator": loadgen, "path": PATH})

    def load(name: str, duration: int) -> dict[str, Any]:
        master = servers[name].pid
        cpu = workers_cpu_seconds(master)
        result = run_wrk(wrk, ports[name], duration) if wrk else run_python(ports[name],
                                                                             duration)
        return {**result, "worker_cpu_s": workers_cpu_seconds(master) - cpu}

    def combine(slices: list[dict[str, Any]]) -> dict[str, Any]:
        total = {key: sum(s[key] for s in slices) for key in slices[0]}
        return {**total, "rps": total["rps"] / len(slices),
                "worker_cpu_us_per_request": total["worker_cpu_s"] / total["requests"] * 1e6}

    ports = {name: free_port() for name in APPS}
    servers: dict[str, subprocess.Popen[bytes]] = {}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in APPS}
    try:
        for name, app in APPS.items():
            servers[name] = start_gunicorn(app, ports[name])
        for name in APPS:
            wait_ready(ports[name], servers[name])
        if get(ports["with"], None) != 401 or get(ports["with"], AUTHORIZATION) != 200:
            raise SystemExit("the authmw server does not answer 401 / 200 as expected")
        for name in APPS:  # warm-up, not reported
            load(name, 1)
        slices = 2 if args.quick else SLICES
        for round_index in range(rounds):
            parts: dict[str, list[dict[str, Any]]] = {name: [] for name in APPS}
            for slice_index in range(slices):
                for name in rotated(list(APPS), round_index + slice_index):
                    parts[name].append(load(name, seconds // slices))
            for name in APPS:
                runs[name].append(combine(parts[name]))
                print(f"  round {round_index + 1}/{rounds} {name} authmw: "
                      f"{runs[name][-1]['rps']:.0f} req/s", file=sys.stderr)
    finally:
        for process in servers.values():
            stop(process)

    report.raw("runs", runs)
    ratios = paired_ratios([r["rps"] for r in runs["with"]], [r["rps"] for r in runs["without"]])
    errors = sum(r["non_2xx"] + r["socket_errors"] for name in APPS for r in runs[name])
    cpu = {name: [r["worker_cpu_us_per_request"] for r in runs[name]] for name in APPS}
    rows = [[name + " authmw", fmt(median(r["rps"] for r in runs[name]), 0),
             " ".join(fmt(r["rps"], 0) for r in runs[name]), fmt(median(cpu[name]), 1),
             sum(r["requests"] for r in runs[name]),
             sum(r["non_2xx"] for r in runs[name]), sum(r["socket_errors"] for r in runs[name])]
            for name in APPS]
    rows.append(["ratio with / without", fmt(median(ratios), 3),
                 " ".join(fmt(r, 3) for r in ratios),
                 fmt(median(paired_ratios(cpu["with"], cpu["without"])), 3), "", "", ""])
    extra_cpu = [a - b for a, b in zip(cpu["with"], cpu["without"], strict=True)]
    report.table(f"gunicorn, 2 sync workers, {CONNECTIONS} connections, {rounds} rounds of "
                 f"{seconds} s per server", ["server", "median req/s", "req/s per round",
                                             "worker CPU (us/request)", "requests", "non-2xx",
                                             "socket errors"], rows, [
        f"GET {PATH} with valid Basic credentials (sent to both servers); load generator: "
        f"{loadgen}. Load generator and servers share the machine's CPUs.",
        f"Each round alternates the two servers in {slices} slices of {seconds // slices} s "
        "(order rotated), so that drift of the shared machine hits both alike.",
        "Worker CPU: user+system time of the gunicorn workers (from /proc) per request served; "
        f"authmw adds {fmt(median(extra_cpu), 1)} us/request of worker CPU (median of rounds).",
        "gunicorn's sync workers close the connection after each response, so every request "
        "opens a new TCP connection.",
    ])
    report.target("req/s with authmw / without", median(ratios), 0.95, at_least=True)
    report.target("errors (non-2xx + socket errors), all runs", errors, 0)
    report.write()


if __name__ == "__main__":
    main()
