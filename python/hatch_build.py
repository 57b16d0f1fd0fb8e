"""Wheel build hook: bundles the shared library and tags the wheel for this platform.

The library is ../target/release/libsession.so (`make build` at the repository root), or the file
LIBSESSION_BUILD_LIBRARY names. Its debug information is stripped when `strip` is available. A
library whose libsession_version() differs from the package's version is refused.
LIBSESSION_BUNDLE=0 builds a pure-Python wheel instead, which loads an installed libsession.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Any, Dict

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def library_version(path: Path) -> str:
    version = ctypes.CDLL(str(path.resolve())).libsession_version
    version.restype = ctypes.c_char_p
    found: bytes = version()
    return found.decode("ascii")


class BundleLibrary(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: Dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable" or os.environ.get("LIBSESSION_BUNDLE") == "0":
            return
        library = Path(
            os.environ.get("LIBSESSION_BUILD_LIBRARY") or Path(self.root).parent / "target" / "release" / "libsession.so"
        )
        if not library.is_file():
            raise RuntimeError(
                f"{library} not found: run `make build` at the repository root first, set "
                "LIBSESSION_BUILD_LIBRARY=/path/to/libsession.so, or set LIBSESSION_BUNDLE=0 for a "
                "wheel that loads an installed libsession"
            )
        found = library_version(library)
        if found != self.metadata.version:
            raise RuntimeError(
                f"{library} is libsession {found}, the package is {self.metadata.version}: "
                "keep python/pyproject.toml's version equal to Cargo.toml's and rebuild the library"
            )
        self._workdir = tempfile.mkdtemp(prefix="libsession-wheel-")
        bundled = Path(self._workdir) / "libsession.so"
        shutil.copyfile(library, bundled)
        strip = shutil.which("strip")
        if strip is not None:
            subprocess.run([strip, "--strip-debug", str(bundled)], check=True)
        build_data["force_include"][str(bundled)] = "libsession/libsession.so"
        build_data["pure_python"] = False
        platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        build_data["tag"] = f"py3-none-{platform}"

    def finalize(self, version: str, build_data: Dict[str, Any], artifact_path: str) -> None:
        workdir = getattr(self, "_workdir", None)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
