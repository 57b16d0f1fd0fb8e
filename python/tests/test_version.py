"""The package's version and constants agree with the library, Cargo.toml and session.h."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict

import libsession
from conftest import PYTHON_DIR, REPOSITORY
from libsession import _native

HEADER = REPOSITORY / "include" / "session.h"


def package_version(path: Path, section: str) -> str:
    """The `version` of `section` in a TOML file (read as text: tomllib is Python 3.11+)."""
    text = path.read_text()
    body = text.split(f"[{section}]", 1)[1].split("\n[", 1)[0]
    found = re.search(r'^version\s*=\s*"([^"]+)"', body, re.MULTILINE)
    assert found, f"no version in [{section}] of {path}"
    return found.group(1)


def header_constants(pattern: str) -> Dict[str, int]:
    return {name: int(value) for name, value in re.findall(pattern, HEADER.read_text(), re.MULTILINE)}


def test_version_is_the_loaded_librarys() -> None:
    assert libsession.__version__ == _native.lib.libsession_version().decode()


def test_version_is_cargo_tomls_and_pyproject_tomls() -> None:
    cargo = package_version(REPOSITORY / "Cargo.toml", "package")

    assert package_version(PYTHON_DIR / "pyproject.toml", "project") == cargo
    assert libsession.__version__ == cargo


def test_version_is_the_headers() -> None:
    found = re.search(r'#define LIBSESSION_VERSION "([^"]+)"', HEADER.read_text())
    assert found
    assert libsession.__version__ == found.group(1)


def test_error_codes_are_the_headers() -> None:
    header = header_constants(r"^\s*DIFF_ERR_(\w+) = (-?\d+),")

    assert {code.name: code.value for code in libsession.ErrorCode} == header


def test_states_are_the_headers() -> None:
    body = HEADER.read_text().split("SESSION_STATE_T;")[0].rsplit("typedef enum {", 1)[1]
    header = {name: int(value) for name, value in re.findall(r"^\s*(\w+) = (-?\d+),", body, re.MULTILINE)}
    header["UNKNOWN"] = header.pop("SESSION_STATE_UNKNOWN")

    assert {state.name: state.value for state in libsession.State} == header


def test_log_levels_are_the_headers() -> None:
    header = header_constants(r"#define LIBSESSION_LOG_(\w+) (\d+)")

    assert {level.name: level.value for level in libsession.LogLevel} == header
