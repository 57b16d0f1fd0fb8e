"""Error codes and the exception the package raises for the library's failures."""

from __future__ import annotations

import ctypes
import enum
import logging
from typing import Optional, Union

from . import _native


class ErrorCode(enum.IntEnum):
    """ERROR_CODE_T: each member is the C constant without its DIFF_ERR_ prefix, with its value."""

    SUCCESS = 0
    UNKNOWN = 1
    SESSION_CREATE_FAILED = 3
    TRANSPORT_CREATE_FAILED = 4
    ADDR_LOOKUP_FAIL = 10
    SOCKET_CREATE_FAIL = 11
    SOCKET_CONNECT_FAIL = 12
    HANDSHAKE_SEND_FAIL = 13
    HANDSHAKE_RECV_FAIL = 14
    INVALID_CONNECTION_PROTOCOL = 15
    CONNECTION_REJECTED = 18
    CONNECTION_ERROR_UNDEFINED = 19
    PARSE_URL = 22
    UNKNOWN_TRANSPORT = 23
    SOCKET_READ_FAIL = 24
    SOCKET_WRITE_FAIL = 25
    CONNECTION_UNSUPPORTED = 27
    RECONNECTION_UNSUPPORTED = 29
    CONNECTION_PROTOCOL_ERROR = 30
    AUTHENTICATION_FAILED = 31
    PROTOCOL_VERSION = 32
    UNKNOWN_SESSION = 33
    MESSAGE_LOSS = 34
    ILLEGAL_STATE = 36
    ILLEGAL_ARGUMENT = 48
    COMMUNICATION_ERROR = 100
    SESSION_CLOSED = 101
    REQUEST_TIME_OUT = 102
    ACCESS_DENIED = 103
    PROXY_UNREACHABLE = 200
    PROXY_AUTHENTICATION_FAILED = 201
    PROXY_TUNNEL_REFUSED = 202
    PROXY_PROTOCOL_ERROR = 203
    TLS_CERTIFICATE_UNTRUSTED = 210
    TLS_CERTIFICATE_EXPIRED = 211
    TLS_CERTIFICATE_NAME_MISMATCH = 212
    TLS_HANDSHAKE_FAILED = 213
    TLS_NOT_TLS = 214
    TLS_CERTIFICATE_REJECTED = 215
    QUEUE_FULL = 220
    MESSAGE_TOO_LARGE = 221


_logger = logging.getLogger("libsession")


def report_callback_exception(what: str) -> None:
    """Logs the exception being handled, raised by the application's `what` callback.

    An exception cannot propagate into the library's thread: it is reported on the "libsession"
    logger, and the callback returns what the C contract expects.
    """
    _logger.exception("exception in %s (ignored; the callback returned to libsession as usual)", what)


def error_code(value: int) -> Union[ErrorCode, int]:
    """The ErrorCode of `value`, or the plain int for a code this package does not know."""
    try:
        return ErrorCode(value)
    except ValueError:
        return value


class SessionError(Exception):
    """A failure the library reported: `code` says what kind, `message` what failed and where.

    Messages come from the library, which never puts credentials in them.
    """

    code: Union[ErrorCode, int]
    message: str

    def __init__(self, code: Union[ErrorCode, int], message: str) -> None:
        self.code = error_code(int(code))
        self.message = message
        super().__init__(self.code, message)

    def __str__(self) -> str:
        name = self.code.name if isinstance(self.code, ErrorCode) else f"error code {self.code}"
        return f"{self.message} ({name})"


def take_error(error: _native.DiffusionError) -> SessionError:
    """The exception for a filled DIFFUSION_ERROR_T, whose message is released."""
    message = ctypes.string_at(error.message).decode("utf-8", "replace") if error.message else ""
    _native.lib.diffusion_error_free(ctypes.byref(error))
    return SessionError(error.code, message)


def last_create_error() -> SessionError:
    """Why the last session create on this thread returned NULL (session_last_error)."""
    error = _native.DiffusionError()
    if not _native.lib.session_last_error(ctypes.byref(error)):
        return SessionError(ErrorCode.UNKNOWN, "the session could not be created, for no reason given")
    return take_error(error)


def session_error(session: int) -> Optional[SessionError]:
    """Why `session` closed, when it failed or the server closed it (session_get_error)."""
    error = _native.DiffusionError()
    if not _native.lib.session_get_error(session, ctypes.byref(error)):
        return None
    return take_error(error)
