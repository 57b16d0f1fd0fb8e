"""Sessions through an HTTP proxy with Basic authentication (tinyproxy)."""

from __future__ import annotations

from typing import Iterator, List

import pytest
from conftest import Proxy, Server

import libsession
from libsession import ErrorCode, HttpProxy, LogLevel, SessionError, SessionFactory, State


@pytest.fixture
def log_lines() -> Iterator[List[str]]:
    lines: List[str] = []
    libsession.set_log_callback(LogLevel.TRACE, lambda level, target, message: lines.append(message))
    yield lines
    libsession.set_log_callback(LogLevel.ERROR, None)


def test_a_session_connects_through_an_http_proxy_with_basic_authentication(
    server: Server, proxy: Proxy, log_lines: List[str]
) -> None:
    through = HttpProxy("127.0.0.1", proxy.port, proxy.user, proxy.password)

    with libsession.connect(server.url, "alice", "secret", proxy=through) as session:
        assert session.state is State.CONNECTED_ACTIVE

    assert any(str(proxy.port) in line for line in log_lines)
    assert not any(proxy.password in line for line in log_lines)
    assert proxy.password not in repr(through)


def test_a_factory_connects_through_the_proxy_too(server: Server, proxy: Proxy) -> None:
    with SessionFactory() as factory:
        factory.principal("alice").password("secret").http_proxy("127.0.0.1", proxy.port, proxy.user, proxy.password)
        with factory.open(server.url) as session:
            assert session.state is State.CONNECTED_ACTIVE


def test_wrong_proxy_credentials_raise_proxy_authentication_failed_without_them(
    server: Server, proxy: Proxy, log_lines: List[str]
) -> None:
    wrong = "wrong-proxy-pw-3b7e"

    with pytest.raises(SessionError) as raised:
        libsession.connect(server.url, "alice", "secret", proxy=HttpProxy("127.0.0.1", proxy.port, proxy.user, wrong))

    assert raised.value.code is ErrorCode.PROXY_AUTHENTICATION_FAILED
    assert f"127.0.0.1:{proxy.port}" in raised.value.message
    assert wrong not in str(raised.value)
    assert not any(wrong in line for line in log_lines)


def test_a_proxy_url_works_as_well(server: Server, proxy: Proxy) -> None:
    url = f"http://{proxy.user}:{proxy.password}@127.0.0.1:{proxy.port}"

    with libsession.connect(server.url, "alice", "secret", proxy=url) as session:
        assert session.state is State.CONNECTED_ACTIVE
