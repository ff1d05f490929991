"""Shared helpers of the benchmarks: timing, medians, paired ratios and the results files.

The machine is shared and noisy, so every benchmark measures our code and its peer in the
same process and the same round, takes a ratio *per round*, and reports the median of those
ratios (absolute times drift between rounds; ratios taken within a round hold)::

    report = Report("middleware", args, settings={"rounds": 7})
    report.table("per request", ["case", "ours", "peer"], rows)
    report.target("authmw / peer overhead, unprotected", ratio, 0.15)
    report.write()   # results/<stamp>/middleware.json and .md
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"

#: Reported with every result: ours, the peers, and what both stand on.
PACKAGES = (
    "authmw", "Werkzeug", "WebOb", "APScheduler", "SQLAlchemy", "Flask", "Flask-HTTPAuth",
    "Flask-APScheduler", "wsgi-basic-auth", "gunicorn", "pyinstrument",
)


# -- timing --------------------------------------------------------------------------------

def ns_per_call(call: Callable[[], object], iterations: int) -> float:
    """Mean wall time of ``call()`` in nanoseconds, over ``iterations`` back-to-back calls."""
    perf = time.perf_counter_ns
    start = perf()
    for _ in range(iterations):
        call()
    return (perf() - start) / iterations


def timed_ns(action: Callable[[], object]) -> int:
    """Wall time of one ``action()`` in nanoseconds."""
    start = time.perf_counter_ns()
    action()
    return time.perf_counter_ns() - start


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Round-by-round ratios (``nan`` where the denominator is 0)."""
    return [n / d if d else float("nan") for n, d in zip(numerators, denominators, strict=True)]


def rotated(items: Sequence[Any], round_index: int) -> list[Any]:
    """``items`` rotated by the round number, so no variant is always measured first."""
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


def fmt(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


# -- context -------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "loadavg_at_start": [round(load, 2) for load in os.getloadavg()]
        if hasattr(os, "getloadavg") else None,
    }


def code_state() -> dict[str, Any]:
    """Which code was measured: the commit, uncommitted changes, a digest of the sources.

    Other people edit authmw/ and scheduler_api/ while benchmarks run; the digest tells two
    results files apart even when the commit is the same.
    """
    def git(*command: str) -> str:
        try:
            return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10, check=False).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    digest = hashlib.sha256()
    for path in sorted([*ROOT.glob("authmw/*.py"), *ROOT.glob("scheduler_api/*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted": git("status", "--porcelain", "--", "authmw", "scheduler_api").splitlines(),
        "sources_sha256": digest.hexdigest()[:16],
    }


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def stamp() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d_%H%M%S")


def parser(description: str) -> argparse.ArgumentParser:
    """The common command line: ``--quick`` for a smoke run, ``--out-dir`` for the results."""
    cli = argparse.ArgumentParser(description=description)
    cli.add_argument("--quick", action="store_true",
                     help="smoke run: fewer iterations and rounds (figures not meaningful)")
    cli.add_argument("--rounds", type=int, default=None, help="override the number of rounds")
    cli.add_argument("--out-dir", type=Path, default=None,
                     help="where to write the results (default benchmarks/results/<stamp>/)")
    return cli


# -- results -------------------------------------------------------------------------------

class Report:
    """Tables, raw per-round figures and targets of one benchmark, written as JSON and MD."""

    def __init__(self, name: str, args: argparse.Namespace, settings: dict[str, Any]) -> None:
        self.name = name
        self.out_dir: Path = args.out_dir or RESULTS_DIR / stamp()
        self.data: dict[str, Any] = {
            "benchmark": name,
            "started": dt.datetime.now().isoformat(timespec="seconds"),
            "quick": bool(args.quick),
            "machine": machine(),
            "packages": package_versions(),
            "code": code_state(),
            "settings": settings,
            "tables": [],
            "targets": [],
            "notes": [],
            "raw": {},
        }

    def table(self, title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
              notes: Iterable[str] = ()) -> None:
        self.data["tables"].append({"title": title, "columns": list(columns),
                                    "rows": [list(row) for row in rows], "notes": list(notes)})

    def note(self, text: str) -> None:
        self.data["notes"].append(text)

    def raw(self, key: str, value: Any) -> None:
        """Per-round figures, kept in the JSON file only."""
        self.data["raw"][key] = value

    def target(self, label: str, value: float, threshold: float, *,
               at_least: bool = False) -> bool:
        passed = value >= threshold if at_least else value <= threshold
        self.data["targets"].append({"label": label, "value": value, "threshold": threshold,
                                     "op": ">=" if at_least else "<=", "pass": passed})
        return passed

    def target_lines(self) -> list[str]:
        return [
            f"{'PASS' if t['pass'] else 'FAIL'}  {t['label']}: {fmt(t['value'], 3)} "
            f"(target {t['op']} {t['threshold']})"
            for t in self.data["targets"]
        ]

    def markdown(self, heading_level: int = 2) -> str:
        return render_markdown(self.data, heading_level)

    def write(self) -> Path:
        self.data["finished"] = dt.datetime.now().isoformat(timespec="seconds")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{self.name}.json"
        path.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        (self.out_dir / f"{self.name}.md").write_text(self.markdown(1) + "\n")
        print("\n".join(self.target_lines()))
        print(f"results: {path} (and .md)")
        return path


def render_markdown(data: dict[str, Any], heading_level: int = 2, context: bool = True) -> str:
    h = "#" * heading_level
    lines = [f"{h} {data['benchmark']}", ""]
    if data.get("quick"):
        lines += ["**Quick smoke run: the figures are not meaningful.**", ""]
    if context:
        lines += [*context_markdown(data), ""]
    else:  # in a summary: the code can change between benchmarks (others edit it meanwhile)
        code = data["code"]
        lines += [f"Code: commit {code['commit']}, sources sha256 {code['sources_sha256']}, "
                  f"uncommitted: {', '.join(code['uncommitted']) or 'none'}", ""]
    lines.append(f"Settings: `{json.dumps(data['settings'], default=str)}`")
    lines.append("")
    for table in data["tables"]:
        lines += [f"{h}# {table['title']}", "",
                  "| " + " | ".join(table["columns"]) + " |",
                  "|" + "---|" * len(table["columns"])]
        lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in table["rows"]]
        lines += [""] + [f"- {note}" for note in table["notes"]] + [""]
    if data["targets"]:
        lines += [f"{h}# Targets", "", "```"]
        lines += [
            f"{'PASS' if t['pass'] else 'FAIL'}  {t['label']}: {fmt(t['value'], 3)} "
            f"(target {t['op']} {t['threshold']})" for t in data["targets"]
        ]
        lines += ["```", ""]
    lines += [f"- {note}" for note in data["notes"]]
    return "\n".join(lines).rstrip()


def context_markdown(data: dict[str, Any]) -> list[str]:
    m, code = data["machine"], data["code"]
    packages = ", ".join(f"{name} {version}" for name, version in data["packages"].items())
    return [
        f"- Started {data['started']}, finished {data.get('finished', '?')}",
        f"- Machine: {m['nproc']} CPUs ({m['usable_cpus']} usable), {m['cpu_model']}, "
        f"{m['python']}, {m['platform']}, load average at start {m['loadavg_at_start']}",
        f"- Packages: {packages}",
        f"- Code: commit {code['commit']}, sources sha256 {code['sources_sha256']}, "
        f"uncommitted: {', '.join(code['uncommitted']) or 'none'}",
    ]
