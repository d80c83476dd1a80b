"""Each image copies every module its entry points import: the Dockerfiles' COPY lines are
replayed into an empty folder and the entry modules imported from there alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Dockerfile -> the modules its container runs (CMD, healthcheck, `make e2e`'s exec)
IMAGES = {
    "services/api/Dockerfile": ["services.api.main", "services.api.server"],
    "services/upstream/Dockerfile": ["services.upstream.__main__", "services.upstream.app"],
    "loadtest/Dockerfile": ["loadtest.locustfile", "loadtest.shapes", "loadtest.e2e"],
}


def _replay_copies(dockerfile: Path, into: Path) -> None:
    for line in dockerfile.read_text().splitlines():
        if not line.startswith("COPY ") or "--from" in line:
            continue
        *sources, dest = line.split()[1:]
        for source in sources:
            if dest.startswith("/tmp"):  # requirements: installed, not run
                continue
            src, target = ROOT / source, into / dest
            if src.is_dir():
                shutil.copytree(src, into / dest, dirs_exist_ok=True)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, target / src.name)


@pytest.mark.parametrize("dockerfile", sorted(IMAGES))
def test_image_has_every_module_its_entry_points_import(dockerfile: str, tmp_path: Path) -> None:
    _replay_copies(ROOT / dockerfile, tmp_path)
    code = "import sys; sys.path.insert(0, '.'); import " + ", ".join(IMAGES[dockerfile])
    # -I: no user site, no PYTHONPATH, and the repository is not on sys.path: only the copies.
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code],
        cwd=tmp_path,
        env={"API_VARIANT": "sync", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
