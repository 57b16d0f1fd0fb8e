"""Sessions: publishing, subscribing, state, closing."""

from __future__ import annotations

import contextlib
import ctypes
import enum
import itertools
import threading
import weakref
from types import TracebackType
from typing import Callable, Dict, Iterator, Optional, Tuple, Type, Union

from . import _native
from .errors import ErrorCode, SessionError, report_callback_exception, session_error, take_error

MessageCallback = Callable[[str, bytes], object]
"""Receives a subscription's messages: (path, data)."""

BytesLike = Union[bytes, bytearray, memoryview]


class State(enum.IntEnum):
    """SESSION_STATE_T, with the C names and values."""

    UNKNOWN = -1
    CONNECTING = 0
    CONNECTED_INITIALISING = 1
    CONNECTED_ACTIVE = 2
    RECOVERING_RECONNECT = 3
    RECOVERING_FAILOVER = 4
    CLOSED_BY_CLIENT = 5
    CLOSED_BY_SERVER = 6
    CLOSED_FAILED = 7

    @property
    def is_closed(self) -> bool:
        return self >= State.CLOSED_BY_CLIENT


def state_of(value: int) -> State:
    try:
        return State(value)
    except ValueError:
        return State.UNKNOWN


# Message handlers: the C side holds a key, this table the Python callback. One pair of ctypes
# functions serves every subscription, so no per-subscription ctypes object has to outlive its
# handler; the library's free_context call, exactly once per handler, removes the entry.
_handlers: Dict[int, Tuple[MessageCallback, str]] = {}
_handler_keys = itertools.count(1)


def _on_message(session: int, path: bytes, data: int, length: int, context: int) -> int:
    entry = _handlers.get(context)
    if entry is not None:
        callback, subscribed = entry
        try:
            callback(path.decode("utf-8", "replace"), ctypes.string_at(data, length) if length else b"")
        except BaseException:
            report_callback_exception(f"message handler subscribed to {subscribed!r}")
    return _native.HANDLER_SUCCESS


def _free_handler(context: int) -> None:
    _handlers.pop(context, None)


_on_message_c = _native.MESSAGE_CB(_on_message)
_free_handler_c = _native.FREE_CB(_free_handler)


def _release(session: int, keepalive: Tuple[object, ...]) -> None:
    """Frees the session; `keepalive` (the ctypes callbacks it was created with) lives until
    session_free has returned, after which no callback of the session starts."""
    _native.lib.session_free(session)


def _id_string(session: int) -> Optional[str]:
    session_id = _native.lib.session_get_id(session)
    if not session_id:
        return None
    return _native.take_string(_native.lib.session_id_to_string(session_id))


class Session:
    """An open session, from `libsession.connect` or `SessionFactory.open`.

    A context manager: leaving the `with` block closes the session and frees it. Methods may be
    called from any thread, inside the session's own callbacks too; `close` is the one way to
    release it early, and a session that is garbage-collected is closed and freed then.
    """

    def __init__(self, handle: int, keepalive: Tuple[object, ...]) -> None:
        """Takes ownership of a SESSION_T; use `libsession.connect` or `SessionFactory.open`."""
        self._lock = threading.Lock()
        self._handle: Optional[int] = handle
        self._closing = False
        self._users = 0
        self._final_state = State.CLOSED_BY_CLIENT
        self._final_id: Optional[str] = None
        self._final_error: Optional[SessionError] = None
        self._release = weakref.finalize(self, _release, handle, keepalive)

    # The handle is used by any thread while close may run on another: each use counts itself,
    # and whichever of close and the last use ends last frees the session. No lock is held across
    # a C call, since those may wait for a callback that itself calls into this object.
    def _acquire(self) -> Optional[int]:
        with self._lock:
            if self._handle is not None:
                self._users += 1
            return self._handle

    def _done(self) -> None:
        with self._lock:
            self._users -= 1
            free_now = self._handle is None and self._users == 0
        if free_now:
            self._release()

    @contextlib.contextmanager
    def _use(self, required: bool = False) -> Iterator[Optional[int]]:
        """The handle, counted as in use for the block; None once closed, unless `required`."""
        handle = self._acquire()
        if handle is None and required:
            raise SessionError(ErrorCode.SESSION_CLOSED, "the session is closed (Session.close was called)")
        try:
            yield handle
        finally:
            if handle is not None:
                self._done()

    @property
    def state(self) -> State:
        """The current state; after `close`, the state it closed in."""
        with self._use() as handle:
            if handle is None:
                return self._final_state
            return state_of(_native.lib.session_state_get(handle))

    @property
    def id(self) -> Optional[str]:
        """The session id as 32 hex digits, `server_instance-value`; None until the server has
        assigned one."""
        with self._use() as handle:
            if handle is None:
                return self._final_id
            return _id_string(handle)

    @property
    def error(self) -> Optional[SessionError]:
        """Why the session closed, when it failed (CLOSED_FAILED) or the server closed it
        (CLOSED_BY_SERVER); None otherwise."""
        with self._use() as handle:
            if handle is None:
                return self._final_error
            return session_error(handle)

    def publish(self, path: str, data: BytesLike) -> None:
        """Sends `data` to every session subscribed to `path` (this one too, if subscribed).

        Raises SessionError: SESSION_CLOSED, QUEUE_FULL, MESSAGE_TOO_LARGE, ILLEGAL_ARGUMENT.
        """
        payload = data if isinstance(data, bytes) else bytes(memoryview(data))
        c_path = _native.c_string(path, "path")
        error = _native.DiffusionError()
        with self._use(required=True) as handle:
            ok = _native.lib.session_publish(handle, c_path, payload, len(payload), ctypes.byref(error))
        if not ok:
            raise take_error(error)

    def subscribe(self, path: str, callback: MessageCallback) -> None:
        """Calls `callback(path, data)` for every message on `path`, or on every path below it
        when `path` ends with '/'. Replaces an earlier callback of the same path.

        The callback runs on a libsession I/O thread, one callback of the session at a time, in
        order. An exception it raises is logged on the "libsession" logger and otherwise ignored.
        """
        if not callable(callback):
            raise TypeError("callback must be callable")
        c_path = _native.c_string(path, "path")
        key = next(_handler_keys)
        _handlers[key] = (callback, path)
        handler = _native.MessageHandler(_on_message_c, key, _free_handler_c)
        error = _native.DiffusionError()
        try:
            with self._use(required=True) as handle:
                ok = _native.lib.session_subscribe(handle, c_path, ctypes.byref(handler), ctypes.byref(error))
        except BaseException:
            _handlers.pop(key, None)
            raise
        if not ok:
            raise take_error(error)

    def unsubscribe(self, path: str) -> None:
        """Ends the subscription to `path` (exactly as subscribed); its callback is not called
        once no call to it is running."""
        c_path = _native.c_string(path, "path")
        error = _native.DiffusionError()
        with self._use(required=True) as handle:
            ok = _native.lib.session_unsubscribe(handle, c_path, ctypes.byref(error))
        if not ok:
            raise take_error(error)

    def close(self) -> None:
        """Closes the session and frees it. The state listener hears CLOSED_BY_CLIENT before this
        returns, and once it returns no callback of the session starts. Closing again does
        nothing."""
        with self._lock:
            if self._closing or self._handle is None:
                return
            self._closing = True
            handle = self._handle
            self._users += 1
        try:
            _native.lib.session_close(handle, None)
            self._final_state = state_of(_native.lib.session_state_get(handle))
            self._final_id = _id_string(handle)
            self._final_error = session_error(handle)
            with self._lock:
                self._handle = None
        finally:
            self._done()

    def __enter__(self) -> "Session":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<libsession.Session {self.state.name} id={self.id}>"

