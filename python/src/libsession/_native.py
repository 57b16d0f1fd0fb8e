"""Finds and loads the shared library, and declares the C functions the package calls.

The declarations follow include/session.h, the contract of the C API; nothing else in the package
touches ctypes prototypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_int,
    c_long,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

ENV_LIBRARY = "LIBSESSION_LIBRARY"
"""Environment variable naming the shared library to load when the package bundles none."""

LIBRARY_FILE = "libsession.so"
SONAME = "libsession.so.0"

HANDLER_SUCCESS = 0


def _open(name: str) -> ctypes.CDLL:
    library = ctypes.CDLL(name)
    if not hasattr(library, "libsession_version"):
        raise OSError(f"{name} is not libsession (it has no libsession_version)")
    return library


def system_candidates() -> List[str]:
    """What the system search tries: what ctypes.util.find_library finds, then the soname, which
    the dynamic loader looks up (LD_LIBRARY_PATH, the ld.so cache, the default directories)."""
    found = ctypes.util.find_library("session")
    return [found, SONAME] if found and found != SONAME else [SONAME]


def load(
    package_dir: Path, environ: Mapping[str, str], system: Optional[Sequence[str]] = None
) -> Tuple[ctypes.CDLL, str]:
    """Loads the library: the copy in `package_dir` (a wheel bundles one), else the file named by
    LIBSESSION_LIBRARY, else the system's (`system`, by default `system_candidates()`). Returns
    the library and what was loaded.

    A bundled copy or a LIBSESSION_LIBRARY that exists but fails to load is an error rather than a
    reason to look further, so that a broken install never silently runs another version.
    """
    looked: list[str] = []
    bundled = package_dir / LIBRARY_FILE
    if bundled.exists():
        try:
            return _open(str(bundled)), str(bundled)
        except OSError as e:
            raise ImportError(f"cannot load the libsession bundled with the package, {bundled}: {e}") from e
    looked.append(f"{bundled} (bundled with the package): not there")

    explicit = environ.get(ENV_LIBRARY)
    if explicit:
        try:
            return _open(explicit), explicit
        except OSError as e:
            raise ImportError(f"cannot load libsession from {ENV_LIBRARY}={explicit}: {e}") from e
    looked.append(f"{ENV_LIBRARY}: not set")

    for candidate in system_candidates() if system is None else system:
        try:
            return _open(candidate), candidate
        except OSError as e:
            looked.append(f"{candidate}: {e}")
    raise ImportError(
        "libsession's shared library was not found. Looked at:\n  "
        + "\n  ".join(looked)
        + f"\nInstall a wheel that bundles it, set {ENV_LIBRARY}=/path/to/libsession.so, "
        "or install the library (make install) where the dynamic loader finds it."
    )


lib, library_path = load(Path(__file__).parent, os.environ)

# Strings the library allocates with malloc are released with the C library's free, found
# through the library's own dependencies so that it is the allocator the library used.
free = lib.free
free.argtypes = [c_void_p]
free.restype = None


class DiffusionError(Structure):
    """DIFFUSION_ERROR_T. `message` stays a raw pointer so that it can be released."""

    _fields_ = [("code", c_int), ("message", c_void_p), ("context", c_void_p)]


class SessionId(Structure):
    """SESSION_ID_T."""

    _fields_ = [("server_instance", c_uint64), ("value", c_uint64)]


STATE_CB = CFUNCTYPE(None, c_void_p, c_int, c_int)
MESSAGE_CB = CFUNCTYPE(c_int, c_void_p, c_char_p, c_void_p, c_size_t, c_void_p)
FREE_CB = CFUNCTYPE(None, c_void_p)
LOG_CB = CFUNCTYPE(None, c_int, c_char_p, c_char_p, c_void_p)


class SessionListener(Structure):
    """SESSION_LISTENER_T."""

    _fields_ = [("on_state_changed", STATE_CB), ("on_handler_error", c_void_p)]


class MessageHandler(Structure):
    """SESSION_MESSAGE_HANDLER_T."""

    # on_error (a C function pointer) stays NULL: refusals are not reported to Python handlers yet.
    _fields_ = [
        ("on_message", MESSAGE_CB),
        ("context", c_void_p),
        ("free_context", FREE_CB),
        ("on_error", c_void_p),
    ]


ERROR_P = POINTER(DiffusionError)


_PROTOTYPES: List[Tuple[str, object, List[object]]] = [
    ("libsession_version", c_char_p, []),
    ("libsession_set_log_callback", None, [c_int, LOG_CB, c_void_p]),
    ("diffusion_error_free", None, [ERROR_P]),
    ("session_last_error", c_int, [ERROR_P]),
    # Factory
    ("diffusion_session_factory_init", c_void_p, []),
    ("diffusion_session_factory_free", None, [c_void_p]),
    ("diffusion_session_factory_session_listener", None, [c_void_p, POINTER(SessionListener)]),
    ("diffusion_session_factory_principal", None, [c_void_p, c_char_p]),
    ("diffusion_session_factory_password", None, [c_void_p, c_char_p]),
    ("diffusion_session_factory_no_credentials", None, [c_void_p]),
    ("diffusion_session_factory_connection_timeout", None, [c_void_p, c_uint32]),
    ("diffusion_session_factory_write_timeout", None, [c_void_p, c_uint32]),
    ("diffusion_session_factory_initial_retry_strategy", None, [c_void_p, c_void_p]),
    ("diffusion_session_factory_reconnection_strategy", None, [c_void_p, c_void_p]),
    ("diffusion_session_factory_no_reconnection", None, [c_void_p]),
    ("diffusion_session_factory_reconnection_timeout", None, [c_void_p, c_int]),
    ("diffusion_session_factory_maximum_message_size", None, [c_void_p, c_uint32]),
    ("diffusion_session_factory_maximum_queue_size", None, [c_void_p, c_uint32]),
    ("diffusion_session_factory_property", None, [c_void_p, c_char_p, c_char_p]),
    ("diffusion_session_factory_http_header", c_int, [c_void_p, c_char_p, c_char_p]),
    ("diffusion_session_factory_http_proxy", None, [c_void_p, c_char_p, c_int, c_void_p]),
    ("diffusion_session_factory_proxy_url", None, [c_void_p, c_char_p]),
    ("diffusion_session_factory_no_proxy", None, [c_void_p]),
    ("diffusion_session_factory_certificate_authority", None, [c_void_p, c_char_p]),
    ("diffusion_session_factory_trust_system_roots", None, [c_void_p, c_bool]),
    ("diffusion_session_factory_tls_server_name", None, [c_void_p, c_char_p]),
    ("session_create_with_session_factory", c_void_p, [c_void_p, c_char_p]),
    # Proxy authentication, retry and reconnection strategies
    ("diffusion_proxy_authentication_basic", c_void_p, [c_char_p, c_char_p]),
    ("diffusion_proxy_authentication_free", None, [c_void_p]),
    ("diffusion_retry_strategy_create", c_void_p, [c_uint32, c_uint32, POINTER(c_void_p)]),
    ("diffusion_retry_strategy_create_interval_only", c_void_p, [c_uint32, POINTER(c_void_p)]),
    ("diffusion_retry_strategy_create_backoff", c_void_p, [c_uint32, c_uint32, c_uint32, POINTER(c_void_p)]),
    ("diffusion_retry_strategy_free", None, [c_void_p]),
    ("get_diffusion_api_error_description", c_char_p, [c_void_p]),
    ("diffusion_api_error_free", None, [c_void_p]),
    ("make_reconnection_strategy_repeating_attempt", c_void_p, [c_long, c_long]),
    ("reconnection_strategy_set_timeout", None, [c_void_p, c_long]),
    ("free_reconnection_strategy", None, [c_void_p]),
    # Sessions
    ("session_close", c_int, [c_void_p, ERROR_P]),
    ("session_free", None, [c_void_p]),
    ("session_state_get", c_int, [c_void_p]),
    ("session_get_id", POINTER(SessionId), [c_void_p]),
    ("session_id_to_string", c_void_p, [POINTER(SessionId)]),
    ("session_get_error", c_int, [c_void_p, ERROR_P]),
    ("session_publish", c_int, [c_void_p, c_char_p, c_void_p, c_size_t, ERROR_P]),
    ("session_subscribe", c_int, [c_void_p, c_char_p, POINTER(MessageHandler), ERROR_P]),
    ("session_unsubscribe", c_int, [c_void_p, c_char_p, ERROR_P]),
]
for _name, _restype, _argtypes in _PROTOTYPES:
    getattr(lib, _name).restype = _restype
    getattr(lib, _name).argtypes = _argtypes


def c_string(value: str, what: str) -> bytes:
    """`value` as a NUL-terminated UTF-8 string; a NUL inside would silently cut it short."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if "\0" in value:
        raise ValueError(f"{what} contains a NUL character")
    return value.encode("utf-8")


def take_string(pointer: int) -> str:
    """The malloc'd C string at `pointer`, released."""
    try:
        return ctypes.string_at(pointer).decode("utf-8", "replace")
    finally:
        free(pointer)
