"""Fixtures: the library built in the repository, and the bundled server and tinyproxy as real
processes on 127.0.0.1 with ephemeral ports, stopped by PID.

A missing prerequisite (the built library, the server, tinyproxy) skips the tests that need it
and says why; under CI=true it fails them instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator, List, NoReturn, Optional

import pytest

PYTHON_DIR = Path(__file__).resolve().parents[1]
REPOSITORY = PYTHON_DIR.parent
RELEASE = REPOSITORY / "target" / "release"
BUILT_LIBRARY = RELEASE / "libsession.so"

# Before anything imports libsession: the library built in this repository, unless the
# environment names another.
if "LIBSESSION_LIBRARY" not in os.environ and BUILT_LIBRARY.is_file():
    os.environ["LIBSESSION_LIBRARY"] = str(BUILT_LIBRARY)

try:
    import libsession  # noqa: F401

    LIBRARY_PROBLEM: Optional[str] = None
except ImportError as e:
    LIBRARY_PROBLEM = f"libsession cannot be imported (run `make build` first): {e}"
    # Only test_library.py runs, whose first test reports it.
    collect_ignore = [p.name for p in Path(__file__).parent.glob("test_*.py") if p.name != "test_library.py"]


def missing(reason: str) -> NoReturn:
    """A prerequisite is missing: a failure under CI=true, a skip saying why elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing prerequisite fails the run)", pytrace=False)
    pytest.skip(reason)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def stop(process: "subprocess.Popen[bytes]") -> None:
    """Stops the process by its PID: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Server:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


SERVER_USERS = ["alice:secret"]


@contextlib.contextmanager
def running_server(directory: Path) -> Iterator[Server]:
    """session-server --listen 127.0.0.1:0 --allow-anonymous --user alice:secret, until the block
    ends."""
    binary = Path(os.environ.get("SESSION_SERVER", str(RELEASE / "session-server")))
    if not os.access(binary, os.X_OK):
        missing(f"{binary} not found: run `make build` first")
    port_file = directory / "port"
    log = directory / "server.log"
    users: List[str] = [arg for user in SERVER_USERS for arg in ("--user", user)]
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [str(binary), "--listen", "127.0.0.1:0", "--port-file", str(port_file), "--allow-anonymous", *users],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if process.poll() is not None:
                raise AssertionError(f"session-server exited ({process.returncode}): {log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"session-server wrote no port file in 30 s: {log.read_text()}")
            time.sleep(0.02)
        yield Server(int(port_file.read_text()), log)
    finally:
        stop(process)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The bundled server, shared by the tests."""
    with running_server(tmp_path_factory.mktemp("server")) as running:
        yield running


@dataclass
class Proxy:
    port: int
    user: str
    password: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def unused_port() -> int:
    """A port nothing listens on (free a moment ago)."""
    return _free_port()


@pytest.fixture(scope="session")
def proxy(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """tinyproxy on 127.0.0.1 with Basic authentication, allowing CONNECT to the server only."""
    tinyproxy = shutil.which("tinyproxy")
    if tinyproxy is None:
        missing("tinyproxy is not installed (scripts/install-deps.sh installs it)")
    directory = tmp_path_factory.mktemp("proxy")
    credentials = Proxy(0, "proxy-user", "proxy-pw-81c3")
    # tinyproxy cannot pick a free port itself: take one that was free a moment ago, and try
    # again if another process got it first.
    for _ in range(10):
        port = _free_port()
        conf = directory / "tinyproxy.conf"
        conf.write_text(
            f"Port {port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Info\nAllow 127.0.0.1\n"
            f"ConnectPort {server.port}\nBasicAuth {credentials.user} {credentials.password}\n"
        )
        log = directory / "tinyproxy.log"
        output: IO[bytes]
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [tinyproxy, "-d", "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            if "Starting main loop" in log.read_text(errors="replace"):
                try:
                    yield Proxy(port, credentials.user, credentials.password)
                finally:
                    stop(process)
                return
            time.sleep(0.02)
        stop(process)
    raise AssertionError(f"tinyproxy did not start; its last log: {log.read_text(errors='replace')}")
