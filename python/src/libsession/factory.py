"""Creating sessions: `connect`, and `SessionFactory` with its retry, reconnection and proxy
settings (the `diffusion_session_factory_*` functions)."""

from __future__ import annotations

import ctypes
import os
import weakref
from dataclasses import dataclass, field
from types import TracebackType
from typing import Callable, List, Mapping, Optional, Type, TypeVar, Union

from . import _native
from .errors import last_create_error, report_callback_exception
from .session import Session, State, state_of

StateCallback = Callable[[State, State], object]
"""Receives every state change of a session: (old, new)."""

_UINT32_MAX = 2**32 - 1
_F = TypeVar("_F", bound="SessionFactory")


def _milliseconds(seconds: float, what: str, maximum: int = _UINT32_MAX) -> int:
    if seconds < 0:
        raise ValueError(f"{what} must not be negative, not {seconds}")
    return min(round(seconds * 1000), maximum)


def _count(value: int, what: str) -> int:
    if not 0 <= value <= _UINT32_MAX:
        raise ValueError(f"{what} must be between 0 and {_UINT32_MAX}, not {value}")
    return value


def _take_api_error(api_error: ctypes.c_void_p) -> str:
    description = _native.lib.get_diffusion_api_error_description(api_error)
    message = description.decode("utf-8", "replace") if description else "invalid retry strategy"
    _native.lib.diffusion_api_error_free(api_error)
    return message


class Retry:
    """How a session's establishment is retried after a transient failure (refused, unreachable,
    timed out, "try later"); authentication and URL errors fail at once.

    `Retry(interval, attempts)`: up to `attempts` retries after the first attempt, `interval`
    seconds apart (diffusion_retry_strategy_create). See also `Retry.forever` and `Retry.backoff`.
    """

    def __init__(self, interval: float, attempts: int) -> None:
        self._describe = f"Retry(interval={interval}, attempts={attempts})"
        self._make(
            lambda error: _native.lib.diffusion_retry_strategy_create(
                _milliseconds(interval, "interval"), _count(attempts, "attempts"), error
            )
        )

    @classmethod
    def forever(cls, interval: float) -> "Retry":
        """Retries every `interval` seconds until the session is closed."""
        retry = cls.__new__(cls)
        retry._describe = f"Retry.forever(interval={interval})"
        retry._make(
            lambda error: _native.lib.diffusion_retry_strategy_create_interval_only(
                _milliseconds(interval, "interval"), error
            )
        )
        return retry

    @classmethod
    def backoff(cls, initial: float, maximum: float, attempts: int) -> "Retry":
        """Exponential backoff with full jitter: retry n waits a random time between 0 and
        min(maximum, initial * 2**(n-1)) seconds."""
        retry = cls.__new__(cls)
        retry._describe = f"Retry.backoff(initial={initial}, maximum={maximum}, attempts={attempts})"
        retry._make(
            lambda error: _native.lib.diffusion_retry_strategy_create_backoff(
                _milliseconds(initial, "initial"), _milliseconds(maximum, "maximum"), _count(attempts, "attempts"), error
            )
        )
        return retry

    def _make(self, create: Callable[[object], Optional[int]]) -> None:
        api_error = ctypes.c_void_p()
        strategy = create(ctypes.byref(api_error))
        if not strategy:
            raise ValueError(f"{self._describe}: {_take_api_error(api_error)}")
        self._strategy: int = strategy
        weakref.finalize(self, _native.lib.diffusion_retry_strategy_free, strategy)

    def __repr__(self) -> str:
        return self._describe


class Reconnection:
    """How a session whose connection is lost reconnects: up to `attempts` attempts, `delay`
    seconds apart (the first at once), for at most `timeout` seconds in all (the library's default,
    60 s, when None). make_reconnection_strategy_repeating_attempt."""

    def __init__(self, attempts: int, delay: float, timeout: Optional[float] = None) -> None:
        self.attempts = attempts
        self.delay = delay
        self.timeout = timeout
        strategy = _native.lib.make_reconnection_strategy_repeating_attempt(attempts, _milliseconds(delay, "delay"))
        if not strategy:
            raise ValueError(f"attempts must not be negative, not {attempts}")
        if timeout is not None:
            _native.lib.reconnection_strategy_set_timeout(strategy, _milliseconds(timeout, "timeout"))
        self._strategy: int = strategy
        weakref.finalize(self, _native.lib.free_reconnection_strategy, strategy)

    def __repr__(self) -> str:
        return f"Reconnection(attempts={self.attempts}, delay={self.delay}, timeout={self.timeout})"


@dataclass(frozen=True)
class HttpProxy:
    """An HTTP proxy reached with CONNECT; with `user`, Basic authentication is sent to it (never
    to the server)."""

    host: str
    port: int
    user: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)


def _state_listener(callback: StateCallback) -> object:
    def on_state_changed(session: int, old: int, new: int) -> None:
        try:
            callback(state_of(old), state_of(new))
        except BaseException:
            report_callback_exception("state listener")

    return _native.STATE_CB(on_state_changed)


class SessionFactory:
    """A reusable template for sessions (diffusion_session_factory_*). Each setting method returns
    the factory, so calls chain; `open` creates a session with the settings of the moment, which
    later changes do not affect.

        with SessionFactory() as factory:
            factory.principal("alice").password("secret").initial_retry_strategy(Retry(0.5, 10))
            session = factory.open("ws://127.0.0.1:8080")
    """

    def __init__(self) -> None:
        handle = _native.lib.diffusion_session_factory_init()
        if not handle:
            raise MemoryError("diffusion_session_factory_init failed")
        self._handle_value: Optional[int] = handle
        # Every ctypes callback given to the factory: sessions copy the function pointers, so
        # each session keeps these alive until it is freed.
        self._callbacks: List[object] = []
        self._free = weakref.finalize(self, _native.lib.diffusion_session_factory_free, handle)

    @property
    def _handle(self) -> int:
        if self._handle_value is None:
            raise ValueError("the session factory is closed")
        return self._handle_value

    def close(self) -> None:
        """Frees the factory. Sessions created from it are not affected."""
        self._handle_value = None
        self._free()

    def __enter__(self: _F) -> _F:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    def principal(self: _F, principal: Optional[str]) -> _F:
        """The principal to authenticate as; None for anonymous."""
        _native.lib.diffusion_session_factory_principal(
            self._handle, None if principal is None else _native.c_string(principal, "principal")
        )
        return self

    def password(self: _F, password: str) -> _F:
        """Password credentials for the principal."""
        _native.lib.diffusion_session_factory_password(self._handle, _native.c_string(password, "password"))
        return self

    def no_credentials(self: _F) -> _F:
        _native.lib.diffusion_session_factory_no_credentials(self._handle)
        return self

    def session_listener(self: _F, callback: Optional[StateCallback]) -> _F:
        """Calls `callback(old, new)` on every state change of the sessions created from now on;
        None removes it. The first call is from CONNECTING. While `open` connects, the calls run
        on the calling thread; later ones on a libsession I/O thread. An exception the callback
        raises is logged on the "libsession" logger and otherwise ignored."""
        if callback is None:
            _native.lib.diffusion_session_factory_session_listener(self._handle, None)
            return self
        trampoline = _state_listener(callback)
        self._callbacks.append(trampoline)
        listener = _native.SessionListener(trampoline, None)
        _native.lib.diffusion_session_factory_session_listener(self._handle, ctypes.byref(listener))
        return self

    def connection_timeout(self: _F, seconds: float) -> _F:
        """Bounds each connection attempt (TCP connect, upgrade, handshake); default 2 s."""
        _native.lib.diffusion_session_factory_connection_timeout(
            self._handle, _milliseconds(seconds, "connection timeout")
        )
        return self

    def write_timeout(self: _F, seconds: float) -> _F:
        """Bounds each write; default 2 s."""
        _native.lib.diffusion_session_factory_write_timeout(self._handle, _milliseconds(seconds, "write timeout"))
        return self

    def initial_retry_strategy(self: _F, retry: Optional[Retry]) -> _F:
        """How establishment is retried; None restores the default, no retry."""
        _native.lib.diffusion_session_factory_initial_retry_strategy(
            self._handle, None if retry is None else retry._strategy
        )
        return self

    def reconnection_strategy(self: _F, reconnection: Optional[Reconnection]) -> _F:
        """How a lost connection is recovered; None restores the default (every 5 s for up to
        60 s)."""
        _native.lib.diffusion_session_factory_reconnection_strategy(
            self._handle, None if reconnection is None else reconnection._strategy
        )
        return self

    def no_reconnection(self: _F) -> _F:
        """A lost connection closes the session (CLOSED_FAILED)."""
        _native.lib.diffusion_session_factory_no_reconnection(self._handle)
        return self

    def reconnection_timeout(self: _F, seconds: float) -> _F:
        """How long a session tries to reconnect (default 60 s); 0 disables reconnection."""
        _native.lib.diffusion_session_factory_reconnection_timeout(
            self._handle, _milliseconds(seconds, "reconnection timeout", 2**31 - 1)
        )
        return self

    def maximum_message_size(self: _F, size: int) -> _F:
        """The largest message accepted from the server and published, in bytes (default 1 MiB)."""
        _native.lib.diffusion_session_factory_maximum_message_size(self._handle, _count(size, "size"))
        return self

    def maximum_queue_size(self: _F, size: int) -> _F:
        """How many messages may wait to be sent (default 1000)."""
        _native.lib.diffusion_session_factory_maximum_queue_size(self._handle, _count(size, "size"))
        return self

    def property(self: _F, key: str, value: Optional[str]) -> _F:
        """A session property sent to the server; None removes the key."""
        _native.lib.diffusion_session_factory_property(
            self._handle,
            _native.c_string(key, "key"),
            None if value is None else _native.c_string(value, "value"),
        )
        return self

    def http_header(self: _F, name: str, value: str) -> _F:
        """Adds a header to the WebSocket upgrade. Raises ValueError for a header the library
        refuses (injection, or one it sets itself); sessions from the factory then fail too."""
        if not _native.lib.diffusion_session_factory_http_header(
            self._handle, _native.c_string(name, "name"), _native.c_string(value, "value")
        ):
            raise ValueError(f"header {name!r} refused: invalid, or one the library sets itself")
        return self

    def http_proxy(self: _F, host: str, port: int, user: Optional[str] = None, password: Optional[str] = None) -> _F:
        """Connects through the HTTP proxy host:port with CONNECT, sending Basic credentials when
        `user` is given (to the proxy only)."""
        auth = None
        if user is not None:
            auth = _native.lib.diffusion_proxy_authentication_basic(
                _native.c_string(user, "proxy user"),
                None if password is None else _native.c_string(password, "proxy password"),
            )
            if not auth:
                raise ValueError("invalid proxy credentials")
        try:
            _native.lib.diffusion_session_factory_http_proxy(self._handle, _native.c_string(host, "host"), port, auth)
        finally:
            _native.lib.diffusion_proxy_authentication_free(auth)
        return self

    def proxy_url(self: _F, url: str) -> _F:
        """The proxy as a URL: http://[user:password@]host[:port], https://, socks5://, socks5h://."""
        _native.lib.diffusion_session_factory_proxy_url(self._handle, _native.c_string(url, "proxy URL"))
        return self

    def no_proxy(self: _F) -> _F:
        """Connects directly, ignoring any proxy the environment names."""
        _native.lib.diffusion_session_factory_no_proxy(self._handle)
        return self

    def certificate_authority(self: _F, pem_path: Union[str, "os.PathLike[str]"]) -> _F:
        """Trusts the CA certificates in this PEM file too (for wss://)."""
        _native.lib.diffusion_session_factory_certificate_authority(
            self._handle, _native.c_string(os.fspath(pem_path), "PEM path")
        )
        return self

    def trust_system_roots(self: _F, trust: bool) -> _F:
        """Whether the system's root certificates are trusted (default True)."""
        _native.lib.diffusion_session_factory_trust_system_roots(self._handle, trust)
        return self

    def tls_server_name(self: _F, name: Optional[str]) -> _F:
        """The name verified in the server's certificate instead of the URL's host."""
        _native.lib.diffusion_session_factory_tls_server_name(
            self._handle, None if name is None else _native.c_string(name, "TLS server name")
        )
        return self

    def open(self, url: Optional[str] = None) -> Session:
        """Opens a session and waits until it is connected (CONNECTED_ACTIVE) or has failed, after
        the initial retry strategy. `url` is ws://host[:port][/path], wss://, xhr:// or xhrs://.
        Other threads run meanwhile (the wait releases the GIL).

        Raises SessionError: PARSE_URL, SOCKET_CONNECT_FAIL, AUTHENTICATION_FAILED, ...
        """
        c_url = None if url is None else _native.c_string(url, "url")
        keepalive = tuple(self._callbacks)
        handle = _native.lib.session_create_with_session_factory(self._handle, c_url)
        if not handle:
            raise last_create_error()
        return Session(handle, keepalive)


def connect(
    url: str,
    principal: Optional[str] = None,
    password: Optional[str] = None,
    *,
    on_state_change: Optional[StateCallback] = None,
    reconnection: Union[Reconnection, bool, None] = None,
    retry: Optional[Retry] = None,
    proxy: Union[HttpProxy, str, bool, None] = None,
    connection_timeout: Optional[float] = None,
    properties: Optional[Mapping[str, str]] = None,
) -> Session:
    """Opens a session to `url` and waits until it is connected; see `SessionFactory.open`.

    - `principal`, `password`: None for anonymous.
    - `on_state_change(old, new)`: every state change, see `SessionFactory.session_listener`.
    - `reconnection`: None or True for the default, False for none, or a `Reconnection`.
    - `retry`: a `Retry` for establishment; None does not retry.
    - `proxy`: None follows the environment (http_proxy, ...), False connects directly; an
      `HttpProxy` or a proxy URL string goes through that proxy.
    - `connection_timeout`: seconds per connection attempt (default 2).
    - `properties`: session properties sent to the server.

    Raises SessionError when the session cannot be opened.
    """
    with SessionFactory() as factory:
        if principal is not None:
            factory.principal(principal)
        if password is not None:
            factory.password(password)
        if on_state_change is not None:
            factory.session_listener(on_state_change)
        if reconnection is False:
            factory.no_reconnection()
        elif isinstance(reconnection, Reconnection):
            factory.reconnection_strategy(reconnection)
        if retry is not None:
            factory.initial_retry_strategy(retry)
        if proxy is False:
            factory.no_proxy()
        elif isinstance(proxy, HttpProxy):
            factory.http_proxy(proxy.host, proxy.port, proxy.user, proxy.password)
        elif isinstance(proxy, str):
            factory.proxy_url(proxy)
        if connection_timeout is not None:
            factory.connection_timeout(connection_timeout)
        for key, value in (properties or {}).items():
            factory.property(key, value)
        return factory.open(url)
