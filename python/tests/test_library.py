"""Where the package finds the shared library: bundled in the package, then LIBSESSION_LIBRARY,
then the system; and what it says when it finds none. Each load runs in a fresh interpreter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Set

import pytest
from conftest import LIBRARY_PROBLEM, PYTHON_DIR, missing

REPORT_LOADED = (
    "import libsession\n"
    "print(libsession.library_path)\n"
    "print(sorted({line.split()[-1] for line in open('/proc/self/maps') if 'libsession' in line}))\n"
)


def test_the_library_loads() -> None:
    if LIBRARY_PROBLEM is not None:
        missing(LIBRARY_PROBLEM)


@pytest.fixture
def library() -> Path:
    if LIBRARY_PROBLEM is not None:
        missing(LIBRARY_PROBLEM)
    import libsession

    path = Path(libsession.library_path)
    if not path.is_file():
        missing(f"the tests loaded {path}, not a file they can copy")
    return path


def run_python(code: str, env: Dict[str, str], pythonpath: Path = PYTHON_DIR / "src") -> "subprocess.CompletedProcess[str]":
    """Runs `code` in a new interpreter, with no library path from this one's environment."""
    clean = {k: v for k, v in os.environ.items() if k not in ("LIBSESSION_LIBRARY", "LD_LIBRARY_PATH", "PYTHONPATH")}
    clean["PYTHONPATH"] = str(pythonpath)
    clean.update(env)
    return subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, timeout=60)


def loaded(result: "subprocess.CompletedProcess[str]") -> "tuple[str, Set[str]]":
    assert result.returncode == 0, result.stderr
    path, mapped = result.stdout.splitlines()
    return path, set(eval(mapped))


def test_LIBSESSION_LIBRARY_names_the_library_to_load(library: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "libsession.so"
    copy.parent.mkdir()
    shutil.copyfile(library, copy)

    path, mapped = loaded(run_python(REPORT_LOADED, {"LIBSESSION_LIBRARY": str(copy)}))

    assert path == str(copy)
    assert mapped == {str(copy)}


def test_a_LIBSESSION_LIBRARY_that_does_not_load_is_an_import_error_naming_it(tmp_path: Path) -> None:
    absent = tmp_path / "absent" / "libsession.so"

    result = run_python("import libsession", {"LIBSESSION_LIBRARY": str(absent)})

    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert f"LIBSESSION_LIBRARY={absent}" in result.stderr


def test_without_LIBSESSION_LIBRARY_the_dynamic_loader_finds_the_soname(library: Path, tmp_path: Path) -> None:
    copy = tmp_path / "libsession.so.0"
    shutil.copyfile(library, copy)

    path, mapped = loaded(run_python(REPORT_LOADED, {"LD_LIBRARY_PATH": str(tmp_path)}))

    assert path == "libsession.so.0"
    assert mapped == {str(copy)}


def test_the_library_bundled_in_the_package_comes_first(library: Path, tmp_path: Path) -> None:
    package = tmp_path / "site" / "libsession"
    shutil.copytree(PYTHON_DIR / "src" / "libsession", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(library, package / "libsession.so")

    path, mapped = loaded(
        run_python(REPORT_LOADED, {"LIBSESSION_LIBRARY": str(tmp_path / "absent.so")}, pythonpath=package.parent)
    )

    assert path == str(package / "libsession.so")
    assert mapped == {str(package / "libsession.so")}


def test_finding_nothing_is_an_import_error_naming_every_place_looked(library: Path, tmp_path: Path) -> None:
    from libsession import _native

    with pytest.raises(ImportError) as raised:
        _native.load(tmp_path, {}, ["libsession-absent.so.0"])

    message = str(raised.value)
    assert str(tmp_path / "libsession.so") in message
    assert "LIBSESSION_LIBRARY" in message
    assert "libsession-absent.so.0" in message


def test_a_library_that_is_not_libsession_is_refused(library: Path, tmp_path: Path) -> None:
    from libsession import _native

    with pytest.raises(ImportError, match="is not libsession"):
        _native.load(tmp_path, {"LIBSESSION_LIBRARY": "libm.so.6"}, [])
