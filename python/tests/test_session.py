"""Sessions against the bundled server: connecting, states, errors, messaging, callbacks that
raise, threads."""

from __future__ import annotations

import gc
import logging
import queue
import re
import threading
import time
from pathlib import Path
from typing import Any, List, Tuple

import pytest
from conftest import Server, running_server, wait_for

import libsession
from libsession import ErrorCode, Retry, SessionError, SessionFactory, State
from libsession import session as session_module

Message = Tuple[str, bytes]


def connect(server: Server, **kwargs: Any) -> libsession.Session:
    """Connects as alice, directly whatever proxy the environment names."""
    kwargs.setdefault("proxy", False)
    return libsession.connect(server.url, "alice", "secret", **kwargs)


def receiver() -> "Tuple[queue.Queue[Message], libsession.MessageCallback]":
    received: "queue.Queue[Message]" = queue.Queue()
    return received, lambda path, data: received.put((path, data))


def test_a_session_is_a_context_manager_that_closes_it(server: Server) -> None:
    with connect(server) as session:
        opened_state = session.state
        opened_id = session.id
        assert re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]{16}", opened_id or "")

    assert opened_state is State.CONNECTED_ACTIVE and not opened_state.is_closed
    assert session.state is State.CLOSED_BY_CLIENT and session.state.is_closed
    assert session.id == opened_id
    assert session.error is None


def test_close_is_idempotent_and_a_closed_session_refuses_work(server: Server) -> None:
    session = connect(server)
    session.close()
    session.close()

    with pytest.raises(SessionError) as raised:
        session.publish("a", b"x")
    assert raised.value.code is ErrorCode.SESSION_CLOSED
    with pytest.raises(SessionError):
        session.subscribe("a", lambda path, data: None)


def test_the_state_listener_hears_connecting_active_then_closed_by_client(server: Server) -> None:
    changes: List[Tuple[State, State]] = []

    with connect(server, on_state_change=lambda old, new: changes.append((old, new))):
        pass

    assert changes == [
        (State.CONNECTING, State.CONNECTED_ACTIVE),
        (State.CONNECTED_ACTIVE, State.CLOSED_BY_CLIENT),
    ]
    assert all(type(state) is State for change in changes for state in change)


def test_a_wrong_password_raises_authentication_failed_without_the_password(server: Server) -> None:
    password = "wrong-pw-5e1b"

    with pytest.raises(SessionError) as raised:
        libsession.connect(server.url, "alice", password, proxy=False)

    assert raised.value.code is ErrorCode.AUTHENTICATION_FAILED
    assert password not in str(raised.value)
    assert password not in repr(raised.value)


@pytest.mark.parametrize("url", ["ws://", "not a url", "ws://127.0.0.1:1/not-the-path"])
def test_a_bad_url_raises_parse_url(url: str) -> None:
    with pytest.raises(SessionError) as raised:
        libsession.connect(url)

    assert raised.value.code is ErrorCode.PARSE_URL
    assert raised.value.message


def test_an_unknown_error_code_is_kept_as_an_int() -> None:
    error = SessionError(999, "from a newer library")

    assert error.code == 999 and not isinstance(error.code, ErrorCode)
    assert "999" in str(error)


def test_anonymous_sessions_connect(server: Server) -> None:
    with libsession.connect(server.url, proxy=False) as session:
        assert session.state is State.CONNECTED_ACTIVE


def test_published_messages_reach_subscribers(server: Server) -> None:
    received, on_message = receiver()
    with connect(server) as subscriber, connect(server) as publisher:
        subscriber.subscribe("prices/", on_message)
        # The subscription is sent before the publication; both go in order through the server,
        # but from two sessions: wait until the subscriber's own message has come back.
        subscriber.publish("prices/ready", b"")
        assert received.get(timeout=10) == ("prices/ready", b"")

        publisher.publish("prices/eur", b"1.08\x00binary")
        publisher.publish("prices/usd", bytearray(b"0.93"))
        publisher.publish("prices/gbp", memoryview(b"xx1.17")[2:])

        assert [received.get(timeout=10) for _ in range(3)] == [
            ("prices/eur", b"1.08\x00binary"),
            ("prices/usd", b"0.93"),
            ("prices/gbp", b"1.17"),
        ]


def test_publish_refuses_str_data(server: Server) -> None:
    with connect(server) as session, pytest.raises(TypeError):
        session.publish("a", "text")  # type: ignore[arg-type]


def test_unsubscribe_stops_delivery(server: Server) -> None:
    received, on_message = receiver()
    with connect(server) as session:
        session.subscribe("a", on_message)
        session.subscribe("b", on_message)
        session.unsubscribe("a")
        session.publish("a", b"after unsubscribe")
        session.publish("b", b"marker")

        assert received.get(timeout=10) == ("b", b"marker")
        assert received.empty()


def test_unsubscribing_a_path_never_subscribed_raises_illegal_argument(server: Server) -> None:
    with connect(server) as session, pytest.raises(SessionError) as raised:
        session.unsubscribe("never")

    assert raised.value.code is ErrorCode.ILLEGAL_ARGUMENT


def test_a_raising_message_callback_is_logged_and_the_session_keeps_working(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    received, on_message = receiver()

    def explode(path: str, data: bytes) -> None:
        if data == b"boom":
            raise RuntimeError("callback failure")
        on_message(path, data)

    with caplog.at_level(logging.ERROR, logger="libsession"), connect(server) as session:
        session.subscribe("a", explode)
        session.publish("a", b"boom")
        session.publish("a", b"after")

        assert received.get(timeout=10) == ("a", b"after")
        assert session.state is State.CONNECTED_ACTIVE
        session.publish("a", b"still working")
        assert received.get(timeout=10) == ("a", b"still working")

    failures = [r for r in caplog.records if r.name == "libsession" and r.exc_info]
    assert len(failures) == 1
    assert "'a'" in failures[0].getMessage()
    assert failures[0].exc_info and isinstance(failures[0].exc_info[1], RuntimeError)


def test_a_raising_state_listener_is_logged_and_the_session_connects(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(old: State, new: State) -> None:
        raise ValueError(f"listener failure at {new.name}")

    with caplog.at_level(logging.ERROR, logger="libsession"):
        with connect(server, on_state_change=explode) as session:
            assert session.state is State.CONNECTED_ACTIVE

    assert [r.exc_info[1].args[0] for r in caplog.records if r.exc_info and r.exc_info[1]] == [
        "listener failure at CONNECTED_ACTIVE",
        "listener failure at CLOSED_BY_CLIENT",
    ]


def test_callbacks_may_call_the_session(server: Server) -> None:
    received, on_message = receiver()
    with connect(server) as session:
        session.subscribe("echo/out", on_message)
        session.subscribe("echo/in", lambda path, data: session.publish("echo/out", data.upper()))
        session.publish("echo/in", b"ping")

        assert received.get(timeout=10) == ("echo/out", b"PING")


def test_closing_inside_a_callback_works(server: Server) -> None:
    closed = threading.Event()
    session = connect(server)

    def close_here(path: str, data: bytes) -> None:
        session.close()
        closed.set()

    session.subscribe("close", close_here)
    session.publish("close", b"")

    assert closed.wait(10)
    assert session.state is State.CLOSED_BY_CLIENT


def test_every_handler_is_released_when_the_session_closes(server: Server) -> None:
    before = set(session_module._handlers)
    with connect(server) as session:
        session.subscribe("a", lambda path, data: None)
        session.subscribe("b/", lambda path, data: None)
        session.subscribe("a", lambda path, data: None)
        assert len(set(session_module._handlers) - before) == 2

    assert set(session_module._handlers) - before == set()


def test_closing_while_other_threads_publish_is_safe(server: Server) -> None:
    session = connect(server)
    outcomes: "queue.Queue[object]" = queue.Queue()

    def publish_until_closed() -> None:
        try:
            while True:
                session.publish("load", b"x" * 100)
        except SessionError as e:
            outcomes.put(e.code)
        except BaseException as e:
            outcomes.put(e)

    threads = [threading.Thread(target=publish_until_closed) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    session.close()
    for thread in threads:
        thread.join(timeout=10)

    codes = [outcomes.get_nowait() for _ in threads]
    assert all(code in (ErrorCode.SESSION_CLOSED, ErrorCode.QUEUE_FULL) for code in codes), codes
    assert session.state is State.CLOSED_BY_CLIENT


def test_a_factory_opens_sessions_with_its_settings(server: Server) -> None:
    changes: List[Tuple[State, State]] = []
    with SessionFactory() as factory:
        factory.principal("alice").password("secret").no_proxy().connection_timeout(5).property("region", "eu")
        factory.initial_retry_strategy(Retry(0.1, 3)).session_listener(lambda old, new: changes.append((old, new)))
        first = factory.open(server.url)
        second = factory.open(server.url)
    with first, second:
        assert first.state is second.state is State.CONNECTED_ACTIVE
        assert first.id != second.id
    assert len(changes) == 4


def test_retries_end_with_the_last_attempts_error(unused_port: int) -> None:
    started = time.monotonic()

    with pytest.raises(SessionError) as raised:
        libsession.connect(f"ws://127.0.0.1:{unused_port}", retry=Retry(0.1, 2), proxy=False)

    assert raised.value.code is ErrorCode.SOCKET_CONNECT_FAIL
    assert time.monotonic() - started >= 0.2


def test_invalid_strategies_raise_value_error() -> None:
    with pytest.raises(ValueError, match="interval"):
        Retry(0, 3)
    with pytest.raises(ValueError):
        Retry.backoff(1.0, 0.5, 3)
    with pytest.raises(ValueError):
        libsession.Reconnection(-1, 1.0)


def test_a_refused_header_raises_value_error() -> None:
    with SessionFactory() as factory, pytest.raises(ValueError, match="Host"):
        factory.http_header("Host", "elsewhere")


def test_connecting_lets_other_python_threads_run(unused_port: int) -> None:
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        with pytest.raises(SessionError):
            libsession.connect(f"ws://127.0.0.1:{unused_port}", retry=Retry(0.2, 2), proxy=False)
    finally:
        stop.set()
        counter.join()
    assert ticks > 50



def test_a_session_dropped_without_close_is_closed_and_freed(server: Server) -> None:
    changes: List[Tuple[State, State]] = []
    session = connect(server, on_state_change=lambda old, new: changes.append((old, new)))
    before = set(session_module._handlers)
    session.subscribe("dropped", lambda path, data: None)
    added = set(session_module._handlers) - before

    del session
    gc.collect()

    assert changes[-1] == (State.CONNECTED_ACTIVE, State.CLOSED_BY_CLIENT)
    assert len(added) == 1 and not added & set(session_module._handlers)


def test_connecting_inside_a_callback_raises_illegal_state(server: Server) -> None:
    outcome: "queue.Queue[object]" = queue.Queue()

    def connect_here(path: str, data: bytes) -> None:
        try:
            connect(server).close()
            outcome.put("connected")
        except SessionError as e:
            outcome.put(e.code)

    with connect(server) as session:
        session.subscribe("nested", connect_here)
        session.publish("nested", b"")

        assert outcome.get(timeout=10) is ErrorCode.ILLEGAL_STATE


def test_a_session_the_server_closes_says_why(tmp_path: Path) -> None:
    changes: List[Tuple[State, State]] = []
    with running_server(tmp_path) as own_server:
        session = connect(own_server, reconnection=False, on_state_change=lambda old, new: changes.append((old, new)))
    # The server has stopped (SIGTERM), closing its sessions with a reason.

    wait_for(lambda: session.state.is_closed, 10, "the session to close")
    assert changes[-1] == (State.CONNECTED_ACTIVE, session.state)
    assert session.state is State.CLOSED_BY_SERVER
    assert session.error is not None and session.error.code is ErrorCode.SESSION_CLOSED
    assert "shutting down" in session.error.message
    session.close()
    assert session.error is not None and session.error.code is ErrorCode.SESSION_CLOSED


def test_reconnection_settings_are_accepted(server: Server) -> None:
    with connect(server, reconnection=libsession.Reconnection(3, 0.1, timeout=5)) as session:
        assert session.state is State.CONNECTED_ACTIVE
    with connect(server, reconnection=False) as session:
        assert session.state is State.CONNECTED_ACTIVE
