"""The wheel bundles the library, is tagged for the platform, and works installed into a fresh
virtual environment with no library path set."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import BUILT_LIBRARY, PYTHON_DIR, missing


def test_the_installed_wheel_imports_with_its_bundled_library(tmp_path: Path) -> None:
    if importlib.util.find_spec("hatchling") is None:
        missing("hatchling is not installed, needed to build the wheel (pip install hatchling)")
    if not BUILT_LIBRARY.is_file():
        missing(f"{BUILT_LIBRARY} not found: run `make build` first")
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(dist), str(PYTHON_DIR)],
        check=True,
    )
    [wheel] = dist.glob("*.whl")
    assert not wheel.name.endswith("-none-any.whl"), wheel.name
    assert wheel.name.startswith("libsession-") and "-py3-none-linux_" in wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "libsession/libsession.so" in names
    assert "libsession/py.typed" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([venv / "bin" / "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheel)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("LIBSESSION_LIBRARY", "LD_LIBRARY_PATH", "PYTHONPATH")}
    result = subprocess.run(
        [
            venv / "bin" / "python",
            "-c",
            "import importlib.metadata, libsession\n"
            "print(libsession.__version__)\n"
            "print(importlib.metadata.version('libsession'))\n"
            "print(libsession.library_path)\n",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )

    version, metadata_version, library = result.stdout.splitlines()
    import libsession

    assert version == metadata_version == libsession.__version__
    assert library.startswith(str(venv)) and library.endswith("/site-packages/libsession/libsession.so")
