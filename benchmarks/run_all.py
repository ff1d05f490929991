"""Run every benchmark, each in its own process, and write one summary of the run.

    python benchmarks/run_all.py            # full run, a few minutes per benchmark
    python benchmarks/run_all.py --quick    # smoke run
    python benchmarks/run_all.py --only middleware,scheduler_api

Results: benchmarks/results/<stamp>/ (one .json and .md per benchmark, the profiles, and
summary.md), and benchmarks/results/latest.md, a copy of the last full run's summary.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import RESULTS_DIR, context_markdown, parser, render_markdown, stamp

HERE = Path(__file__).resolve().parent

#: name -> script; the name is also the results file's. Add new benchmarks here: a script
#: that takes the harness's command line (--quick, --rounds, --out-dir) and writes a Report.
BENCHMARKS: dict[str, str] = {
    "middleware": "bench_middleware.py",
    "gunicorn": "bench_gunicorn.py",
    "credential_cache": "bench_credential_cache.py",    # bcrypt htpasswd, cached vs not
    "scheduler_api": "bench_scheduler_api.py",
    "paginated_listing": "bench_paginated_listing.py",  # GET /scheduler/jobs?limit=...
    "metrics": "bench_metrics.py",  # GET /scheduler/metrics, 10,000 jobs, 1,000,000 runs
    "run_history": "bench_run_history.py",  # last_run listings, lateness, bursts, run pages
    "ui": "bench_ui.py",  # the dashboard's job list, 10,000 jobs: server time, page weight
    "celery": "bench_celery.py",  # 200 CPU-bound runs on 2/4 Celery workers vs the thread pool
    "profile": "profile_hot_paths.py",
}
TIMEOUT_SECONDS = 20 * 60


def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--only", default=",".join(BENCHMARKS),
                     help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    args = cli.parse_args()
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    out_dir: Path = args.out_dir or RESULTS_DIR / stamp()
    out_dir.mkdir(parents=True, exist_ok=True)

    failed: dict[str, str] = {}
    for name in names:
        command = [sys.executable, str(HERE / BENCHMARKS[name]), "--out-dir", str(out_dir)]
        if args.quick:
            command.append("--quick")
        if args.rounds:
            command += ["--rounds", str(args.rounds)]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        try:
            result = subprocess.run(command, timeout=TIMEOUT_SECONDS, check=False)
            if result.returncode:
                failed[name] = f"exit status {result.returncode}"
        except subprocess.TimeoutExpired:
            failed[name] = f"timed out after {TIMEOUT_SECONDS} s"
        print(f"== {name}: {time.monotonic() - started:.0f} s", flush=True)

    summary = write_summary(out_dir, names, failed)
    if not args.quick and names == list(BENCHMARKS) and not failed:
        shutil.copyfile(summary, RESULTS_DIR / "latest.md")
    print(f"summary: {summary}")
    if failed:
        raise SystemExit(f"failed: {failed}")


def write_summary(out_dir: Path, names: list[str], failed: dict[str, str]) -> Path:
    reports = [json.loads((out_dir / f"{name}.json").read_text())
               for name in names if (out_dir / f"{name}.json").exists()]
    lines = ["# Benchmark run " + out_dir.name, ""]
    if reports:
        lines += context_markdown({**reports[0], "finished": reports[-1].get("finished")})
        lines += [""]
        targets = [t for report in reports for t in report["targets"]]
        lines += ["## Targets", "", "```"]
        lines += [f"{'PASS' if t['pass'] else 'FAIL'}  {t['label']}: {t['value']:.3f} "
                  f"(target {t['op']} {t['threshold']})" for t in targets]
        lines += ["```", ""]
    lines += [f"- **{name} did not finish: {why}**" for name, why in failed.items()]
    for report in reports:
        lines += [render_markdown(report, 2, context=False), ""]
    path = out_dir / "summary.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


if __name__ == "__main__":
    main()
