"""The library's log, routed to a Python callback (libsession_set_log_callback) or to `logging`."""

from __future__ import annotations

import atexit
import enum
import logging
from typing import Callable, Dict, Optional, Union

from . import _native
from .errors import report_callback_exception


class LogLevel(enum.IntEnum):
    """LIBSESSION_LOG_*: a log line's importance, ERROR the most important."""

    ERROR = 1
    WARN = 2
    INFO = 3
    DEBUG = 4
    TRACE = 5


LogCallback = Callable[[LogLevel, str, str], object]
"""Receives a log line: (level, target, message); `target` names the part of the library that
logged, e.g. "session::session::driver"."""

TRACE = 5
"""The `logging` level libsession's TRACE lines get (below logging.DEBUG)."""

_LOGGING_LEVELS: Dict[int, int] = {
    LogLevel.ERROR: logging.ERROR,
    LogLevel.WARN: logging.WARNING,
    LogLevel.INFO: logging.INFO,
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.TRACE: TRACE,
}

_callback: Optional[LogCallback] = None
_reset_at_exit = False


def _level(value: int) -> LogLevel:
    return LogLevel(min(max(value, LogLevel.ERROR), LogLevel.TRACE))


def _on_log(level: int, target: bytes, message: bytes, context: Optional[int]) -> None:
    callback = _callback
    if callback is None:
        return
    try:
        callback(_level(level), target.decode("utf-8", "replace"), message.decode("utf-8", "replace"))
    except BaseException:
        report_callback_exception("log callback")


_on_log_c = _native.LOG_CB(_on_log)


def set_log_callback(level: Union[LogLevel, int], callback: Optional[LogCallback]) -> None:
    """Routes the library's log lines at `level` and more important ones to `callback`; None
    restores the default (standard error when LIBSESSION_LOG is set, nothing otherwise).

    The callback runs on the thread that logs (an I/O thread, or the application's inside a
    libsession call), at times on several threads at once: it must be thread-safe, return soon,
    and call nothing of libsession (the library may hold a session's locks meanwhile). Log lines
    never contain credentials. An exception it raises is logged on the "libsession" logger and
    otherwise ignored. Once this returns with None, the previous callback is never called again.
    """
    global _callback, _reset_at_exit
    if callback is None:
        _native.lib.libsession_set_log_callback(int(level), _native.LOG_CB(), None)
        _callback = None
        return
    if not callable(callback):
        raise TypeError("callback must be callable or None")
    _callback = callback
    _native.lib.libsession_set_log_callback(int(level), _on_log_c, None)
    if not _reset_at_exit:
        # The I/O threads outlive the interpreter: they must not call into it once it is gone.
        atexit.register(_reset)
        _reset_at_exit = True


def _reset() -> None:
    if _callback is not None:
        set_log_callback(LogLevel.ERROR, None)


def log_to_logging(level: Union[LogLevel, int] = LogLevel.INFO, logger: Optional[logging.Logger] = None) -> None:
    """Routes the library's log lines at `level` and more important ones into `logging`: each
    line goes to the child of `logger` (default: the "libsession" logger) named for its target
    ("session::session::driver" becomes "libsession.session.session.driver"), at the matching
    level (WARN as WARNING, TRACE as 5, below DEBUG)."""
    base = logger if logger is not None else logging.getLogger("libsession")

    def emit(line_level: LogLevel, target: str, message: str) -> None:
        base.getChild(target.replace("::", ".")).log(_LOGGING_LEVELS[line_level], "%s", message)

    set_log_callback(level, emit)
