"""The install commands of the README work from a built wheel, not only from a checkout.

``python -m build`` makes an sdist and, from it, a wheel (without build isolation: the test
extra holds ``build`` and ``setuptools``, so nothing is downloaded). The wheel goes into a
fresh venv that has no copy of the checkout; its dependencies are lent by the test venv
through a path entry (installing them would need the network), so what is tested is the
wheel's own files: both packages, their ``py.typed``, the ``scheduler-api`` command, and the
metadata that ``pip install 'authmw-...whl[server,postgres]'`` reads. 10-25 s.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

from .conftest import ROOT


def build_wheel(outdir: Path) -> Path:
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir),
                    str(ROOT)], check=True, capture_output=True, timeout=180)
    (wheel,) = outdir.glob("*.whl")
    return wheel


def test_the_built_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    assert len(list((tmp_path / "dist").glob("*.tar.gz"))) == 1  # the sdist it was built from
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata_name,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
    assert {"authmw/py.typed", "scheduler_api/py.typed", "scheduler_api/logs.py",
            "scheduler_api/static/ui.css", "scheduler_api/static/ui.js"} <= names
    assert not [name for name in names if name.startswith(("tests/", "examples/"))]
    extras = set(metadata.get_all("Provides-Extra") or ())
    assert {"server", "postgres", "redis", "test"} <= extras
    requires = metadata.get_all("Requires-Dist") or []
    assert any(line.startswith("gunicorn") and 'extra == "server"' in line for line in requires)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True,
                   timeout=120)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                                "get_paths()['purelib'])"], check=True, capture_output=True,
                               text=True).stdout.strip())
    # The dependencies, lent: a plain path entry runs none of the test venv's .pth files, so
    # its editable install of the checkout is not seen; the wheel's copy comes first anyway.
    (site / "zz_lent_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    imported = subprocess.run(
        [str(python), "-c", "import authmw, scheduler_api, scheduler_api.server, "
         "scheduler_api.logs; print(authmw.__file__); print(scheduler_api.__file__)"],
        cwd=outside, check=True, capture_output=True, text=True, timeout=60).stdout.split()
    assert all(path.startswith(str(site)) for path in imported), imported
    helped = subprocess.run([str(venv / "bin" / "scheduler-api"), "--help"], cwd=outside,
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: scheduler-api") and "--jobstore-url" in helped.stdout
