"""The library's log, routed to Python callbacks and to `logging`."""

from __future__ import annotations

import logging
from typing import Iterator, List, Tuple

import pytest
from conftest import Server

import libsession
from libsession import LogLevel, SessionError

Line = Tuple[LogLevel, str, str]


@pytest.fixture(autouse=True)
def restore_the_default_log() -> Iterator[None]:
    yield
    libsession.set_log_callback(LogLevel.ERROR, None)


def exercise(server: Server, wrong_password: str) -> None:
    """Connects, subscribes, publishes, receives and closes, then fails to authenticate."""
    with libsession.connect(server.url, "alice", "secret", proxy=False) as session:
        session.subscribe("log/", lambda path, data: None)
        session.publish("log/a", b"payload")
    with pytest.raises(SessionError):
        libsession.connect(server.url, "alice", wrong_password, proxy=False)


def test_the_log_callback_at_trace_receives_lines_and_never_a_password(server: Server) -> None:
    lines: List[Line] = []
    libsession.set_log_callback(LogLevel.TRACE, lambda level, target, message: lines.append((level, target, message)))

    exercise(server, "wrong-pw-77aa")

    assert {level for level, _, _ in lines} >= {LogLevel.INFO, LogLevel.DEBUG}
    assert all(type(level) is LogLevel and target and message for level, target, message in lines)
    text = "\n".join(f"{target} {message}" for _, target, message in lines)
    assert "secret" not in text
    assert "wrong-pw-77aa" not in text


def test_the_log_callback_gets_its_level_and_more_important_lines_only(server: Server) -> None:
    lines: List[Line] = []
    libsession.set_log_callback(LogLevel.INFO, lambda level, target, message: lines.append((level, target, message)))

    exercise(server, "wrong")

    assert lines
    assert all(level <= LogLevel.INFO for level, _, _ in lines)


def test_no_line_arrives_once_the_default_is_restored(server: Server) -> None:
    lines: List[Line] = []
    libsession.set_log_callback(LogLevel.TRACE, lambda level, target, message: lines.append((level, target, message)))
    libsession.set_log_callback(LogLevel.TRACE, None)

    exercise(server, "wrong")

    assert lines == []


def test_a_raising_log_callback_is_reported_and_the_library_carries_on(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(level: LogLevel, target: str, message: str) -> None:
        raise RuntimeError("log callback failure")

    with caplog.at_level(logging.ERROR, logger="libsession"):
        libsession.set_log_callback(LogLevel.INFO, explode)
        exercise(server, "wrong")

    assert any("log callback" in r.getMessage() for r in caplog.records if r.exc_info)


def test_log_to_logging_routes_lines_to_loggers_named_for_their_targets(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(libsession.log.TRACE, logger="libsession"):
        libsession.log_to_logging(LogLevel.TRACE)
        exercise(server, "wrong-pw-91d0")
        libsession.set_log_callback(LogLevel.TRACE, None)

    routed = [r for r in caplog.records if r.name.startswith("libsession.") and not r.exc_info]
    assert {r.levelno for r in routed} >= {logging.INFO, logging.DEBUG}
    assert all("::" not in r.name for r in routed)
    assert "wrong-pw-91d0" not in caplog.text


def test_log_to_logging_maps_every_level(caplog: pytest.LogCaptureFixture) -> None:
    # The library logs at TRACE rarely; the line is handed over here as the library would.
    with caplog.at_level(libsession.log.TRACE, logger="libsession"):
        libsession.log_to_logging(LogLevel.TRACE)
        for level in LogLevel:
            libsession.log._on_log(level, b"session::net::socket", f"at {level.name}".encode(), None)

    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("libsession.session.net.socket", logging.ERROR, "at ERROR"),
        ("libsession.session.net.socket", logging.WARNING, "at WARN"),
        ("libsession.session.net.socket", logging.INFO, "at INFO"),
        ("libsession.session.net.socket", logging.DEBUG, "at DEBUG"),
        ("libsession.session.net.socket", libsession.log.TRACE, "at TRACE"),
    ]
