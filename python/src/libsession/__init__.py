"""Python bindings for libsession: real-time client sessions over WebSocket, through proxies
and load balancers.

    import libsession

    with libsession.connect("ws://127.0.0.1:8080", "alice", "secret") as session:
        session.subscribe("prices/", lambda path, data: print(path, data))
        session.publish("prices/eur", b"1.08")

The package calls the C library (libsession.so) through ctypes: the copy bundled with the
package, else the file LIBSESSION_LIBRARY names, else the system's.
"""

from . import _native
from .errors import ErrorCode, SessionError
from .factory import HttpProxy, Reconnection, Retry, SessionFactory, StateCallback, connect
from .log import LogCallback, LogLevel, log_to_logging, set_log_callback
from .session import MessageCallback, Session, State

__version__: str = _native.lib.libsession_version().decode("ascii")
"""The loaded library's version (libsession_version()), which is also the package's."""

library_path: str = _native.library_path
"""The shared library loaded: a path, or the soname the dynamic loader resolved."""

__all__ = [
    "ErrorCode",
    "HttpProxy",
    "LogCallback",
    "LogLevel",
    "MessageCallback",
    "Reconnection",
    "Retry",
    "Session",
    "SessionError",
    "SessionFactory",
    "State",
    "StateCallback",
    "connect",
    "library_path",
    "log_to_logging",
    "set_log_callback",
]
