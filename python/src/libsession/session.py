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


def _on_message(session: int, path: bytes, data: Optional[int], length: int, context: Optional[int]) -> int:
    entry = _handlers.get(context or 0)
    if entry is not None:
        callback, subscribed = entry
        try:
            callback(path.decode("utf-8", "replace"), ctypes.string_at(data, length) if data and length else b"")
        except BaseException:
            report_callback_exception(f"message handler subscribed to {subscribed!r}")
    return _native.HANDLER_SUCCESS


def _free_handler(context: Optional[int]) -> None:
    _handlers.pop(context or 0, None)


_on_message_c = _native.MESSAGE_CB(_on_message)
_free_handler_c = _native.FREE_CB(_free_handler)


class _Handle:
    """A SESSION_T shared by the threads that use it. Each use is counted; once the handle is
    retired no use starts, and the end of the last one frees the session. No lock is held across
    a C call, since those may wait for a callback that itself uses the session."""

    def __init__(self, pointer: int, keepalive: Tuple[object, ...]) -> None:
        self._lock = threading.Lock()
        self._pointer: Optional[int] = pointer  # None once retired
        self._owned: Optional[int] = pointer  # None once freed
        self._users = 0
        # The ctypes callbacks the session was created with, alive until session_free has
        # returned, after which no callback of the session starts.
        self._keepalive: Optional[Tuple[object, ...]] = keepalive

    def acquire(self) -> Optional[int]:
        """The pointer, counted as in use until `release`; None once retired."""
        with self._lock:
            if self._pointer is None:
                return None
            self._users += 1
            return self._pointer

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._pointer is not None or self._users > 0 or self._owned is None:
                return
            pointer, self._owned = self._owned, None
        _native.lib.session_free(pointer)
        self._keepalive = None

    def retire(self) -> Optional[int]:
        """Starts no more uses; returns the pointer counted as a last use (to close it), or None
        when retired already."""
        with self._lock:
            if self._pointer is None:
                return None
            pointer, self._pointer = self._pointer, None
            self._users += 1
            return pointer

    def discard(self) -> None:
        """For the garbage collector and interpreter exit: frees the session, or, while another
        thread still uses it, closes it (no callback starts afterwards) and leaves the free to the
        end of that use."""
        pointer = self.retire()
        if pointer is None:
            return
        with self._lock:
            busy = self._users > 1
        if busy:
            _native.lib.session_close(pointer, None)
        self.release()


def _id_string(session: int) -> Optional[str]:
    session_id = _native.lib.session_get_id(session)
    if not session_id:
        return None
    return _native.take_string(_native.lib.session_id_to_string(session_id))


class Session:
    """An open session, from `libsession.connect` or `SessionFactory.open`.

    A context manager: leaving the `with` block closes the session and frees it. Methods may be
    called from any thread, inside the session's own callbacks too; a session that is
    garbage-collected, or still open at interpreter exit, is closed and freed then.
    """

    def __init__(self, pointer: int, keepalive: Tuple[object, ...]) -> None:
        """Takes ownership of a SESSION_T; use `libsession.connect` or `SessionFactory.open`."""
        self._handle = _Handle(pointer, keepalive)
        self._final_state = State.CLOSED_BY_CLIENT
        self._final_id: Optional[str] = None
        self._final_error: Optional[SessionError] = None
        weakref.finalize(self, self._handle.discard)

    @contextlib.contextmanager
    def _use(self, required: bool = False) -> Iterator[Optional[int]]:
        """The pointer, counted as in use for the block; None once closed, unless `required`."""
        pointer = self._handle.acquire()
        if pointer is None and required:
            raise SessionError(ErrorCode.SESSION_CLOSED, "the session is closed (Session.close was called)")
        try:
            yield pointer
        finally:
            if pointer is not None:
                self._handle.release()

    @property
    def state(self) -> State:
        """The current state; after `close`, the state it closed in."""
        with self._use() as pointer:
            if pointer is None:
                return self._final_state
            return state_of(_native.lib.session_state_get(pointer))

    @property
    def id(self) -> Optional[str]:
        """The session id as 32 hex digits, `server_instance-value`; None until the server has
        assigned one."""
        with self._use() as pointer:
            if pointer is None:
                return self._final_id
            return _id_string(pointer)

    @property
    def error(self) -> Optional[SessionError]:
        """Why the session closed, when it failed (CLOSED_FAILED) or the server closed it
        (CLOSED_BY_SERVER); None otherwise."""
        with self._use() as pointer:
            if pointer is None:
                return self._final_error
            return session_error(pointer)

    def publish(self, path: str, data: BytesLike) -> None:
        """Sends `data` to every session subscribed to `path` (this one too, if subscribed).

        Raises SessionError: SESSION_CLOSED, QUEUE_FULL, MESSAGE_TOO_LARGE, ILLEGAL_ARGUMENT.
        """
        payload = data if isinstance(data, bytes) else bytes(memoryview(data))
        c_path = _native.c_string(path, "path")
        error = _native.DiffusionError()
        with self._use(required=True) as pointer:
            ok = _native.lib.session_publish(pointer, c_path, payload, len(payload), ctypes.byref(error))
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
            with self._use(required=True) as pointer:
                ok = _native.lib.session_subscribe(pointer, c_path, ctypes.byref(handler), ctypes.byref(error))
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
        with self._use(required=True) as pointer:
            ok = _native.lib.session_unsubscribe(pointer, c_path, ctypes.byref(error))
        if not ok:
            raise take_error(error)

    def close(self) -> None:
        """Closes the session and frees it. The state listener hears CLOSED_BY_CLIENT before this
        returns, and once it returns no callback of the session starts. Closing again does
        nothing."""
        pointer = self._handle.retire()
        if pointer is None:
            return
        try:
            self._final_id = _id_string(pointer)
            _native.lib.session_close(pointer, None)
            self._final_state = state_of(_native.lib.session_state_get(pointer))
            self._final_error = session_error(pointer)
        finally:
            self._handle.release()

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

