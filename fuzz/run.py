"""Run the fuzz targets for a bounded time and report executions and crashes.

    python fuzz/run.py --seconds 60                  # each target 60 s, one after the other
    python fuzz/run.py --seconds 120 --target paths  # one target
    python fuzz/run.py --engine hypothesis           # without atheris (no coverage guidance)

Exit status 0 when no target crashed, 1 otherwise; a crashing input is kept as
``<workdir>/<target>/crash-*`` (replay: ``python fuzz/fuzz_<target>.py <that file>``).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = {
    "header": {"script": HERE / "fuzz_header.py", "dict": HERE / "header.dict", "max_len": 9000},
    "paths": {"script": HERE / "fuzz_paths.py", "dict": HERE / "paths.dict", "max_len": 4097},
}


def seed_corpus(target: str, corpus: Path) -> None:
    module = load(target)
    corpus.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(module.SEEDS):
        (corpus / f"seed-{index:03d}").write_bytes(seed)


def load(target: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"fuzz_{target}", TARGETS[target]["script"])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_atheris(target: str, seconds: int, workdir: Path) -> dict:
    settings = TARGETS[target]
    corpus = workdir / "corpus"
    if not corpus.exists():
        seed_corpus(target, corpus)
    log = workdir / "libfuzzer.log"
    command = [sys.executable, str(settings["script"]), str(corpus),
               f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=2048",
               f"-max_len={settings['max_len']}", f"-dict={settings['dict']}",
               f"-artifact_prefix={workdir}/", "-print_final_stats=1"]
    started = time.monotonic()
    with log.open("w") as output:
        returncode = subprocess.call(command, stdout=output, stderr=subprocess.STDOUT,
                                     timeout=seconds + 120)
    text = log.read_text(errors="replace")
    executions = re.findall(r"stat::number_of_executed_units:\s*(\d+)", text)
    done = re.findall(r"Done (\d+) runs in (\d+) second", text)
    coverage = re.findall(r"#\d+\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)", text)
    crashes = sorted(str(path) for path in workdir.glob("crash-*")) + sorted(
        str(path) for path in workdir.glob("timeout-*"))
    return {
        "target": target, "engine": "atheris", "returncode": returncode,
        "seconds": round(time.monotonic() - started, 1),
        "executions": int(executions[-1]) if executions else (int(done[-1][0]) if done else None),
        "coverage": ({"cov": int(coverage[-1][0]), "ft": int(coverage[-1][1]),
                      "corpus": int(coverage[-1][2])} if coverage else None),
        "crashes": crashes, "log": str(log),
        "exception": _exception(text) if returncode else None,
    }


def _exception(text: str) -> str:
    match = re.search(r"=== Uncaught Python exception: ===\n(.*?)\n\n", text, re.S)
    return match.group(1)[-2000:] if match else text[-2000:]


def run_hypothesis(target: str, seconds: int, workdir: Path) -> dict:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    module = load(target)
    executions = 0
    failure: str | None = None
    crash: Path | None = None

    @settings(max_examples=2000, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.sampled_from(module.SEEDS), st.binary(max_size=TARGETS[target]["max_len"]),
                     st.builds(lambda seed, tail: seed + tail, st.sampled_from(module.SEEDS),
                               st.binary(max_size=64))))
    def batch(data: bytes) -> None:
        nonlocal executions
        executions += 1
        module.TestOneInput(data)

    started = time.monotonic()
    while time.monotonic() - started < seconds and failure is None:
        try:
            batch()
        except Exception:  # noqa: BLE001 - report whatever the target raised
            failure = traceback.format_exc()[-2000:]
            crash = workdir / "crash-hypothesis.txt"
            crash.write_text(failure)
    return {"target": target, "engine": "hypothesis", "returncode": 1 if failure else 0,
            "seconds": round(time.monotonic() - started, 1), "executions": executions,
            "coverage": None, "crashes": [str(crash)] if crash else [], "exception": failure}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    parser.add_argument("--engine", choices=["auto", "atheris", "hypothesis"], default="auto")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="corpus, logs and crashes (default: a new temporary folder)")
    args = parser.parse_args()
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "hypothesis"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="authmw-fuzz-"))
    targets = list(TARGETS) if args.target == "all" else [args.target]
    crashed = False
    for target in targets:
        folder = workdir / target
        folder.mkdir(parents=True, exist_ok=True)
        runner = run_atheris if engine == "atheris" else run_hypothesis
        result = runner(target, args.seconds, folder)
        crashed |= bool(result["returncode"] or result["crashes"])
        print(f"{target}: engine={result['engine']} seconds={result['seconds']} "
              f"executions={result['executions']} coverage={result['coverage']} "
              f"crashes={result['crashes'] or 'none'}")
        if result["exception"]:
            print(result["exception"])
    print(f"work folder: {workdir}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
