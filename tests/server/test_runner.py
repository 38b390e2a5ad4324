"""Hypercorn on a worker thread: start, stop, restart, busy port, no leaked threads or fds."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import httpx
import pytest

from app.server.runner import ServerStartError
from app.services import build_services


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_busy_port_is_reported_clearly(clean_env: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    services = build_services(clean_env, env={})
    try:
        with pytest.raises(ServerStartError, match=f"Port {port} on 127.0.0.1 is already in use"):
            services.start_server(host="127.0.0.1", port=port)
        assert not services.server.running
    finally:
        blocker.close()


def test_start_stop_cycles_leak_nothing(clean_env: Path) -> None:
    services = build_services(clean_env, env={})
    services.settings.update(api_enabled=True)
    services.keys.rotate()
    services.start_server(host="127.0.0.1", port=0)
    services.server.stop()
    threads, fds = threading.active_count(), _fds()
    for _ in range(10):
        services.start_server(host="127.0.0.1", port=0)
        r = httpx.get(services.server.base_url + "/models", headers={"X-API-Key": services.keys.get()})
        assert r.status_code == 200
        services.server.stop()
    assert threading.active_count() <= threads
    assert _fds() <= fds + 1


def test_port_change_in_settings_restarts_the_listener(clean_env: Path) -> None:
    services = build_services(clean_env, env={})
    services.settings.update(api_enabled=True)
    services.keys.rotate()
    services.start_server(host="127.0.0.1", port=0)
    services.follow_settings()
    old_port = services.server.port
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    new_port = probe.getsockname()[1]
    probe.close()
    try:
        services.settings.update(port=new_port)
        for _ in range(100):
            if services.server.port == new_port and services.server.running:
                break
            threading.Event().wait(0.05)
        assert services.server.port == new_port
        r = httpx.get(f"http://127.0.0.1:{new_port}/v1/models", headers={"X-API-Key": services.keys.get()})
        assert r.status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{old_port}/v1/models")
    finally:
        services.shutdown()


def test_setting_changes_apply_on_the_next_request_without_restart(clean_env: Path) -> None:
    services = build_services(clean_env, env={})
    services.settings.update(api_enabled=True)
    key = services.keys.rotate()
    services.start_server(host="127.0.0.1", port=0)
    url = services.server.base_url + "/models"
    try:
        with httpx.Client(headers={"X-API-Key": key}) as c:  # one keep-alive connection
            assert c.get(url).status_code == 200
            services.settings.update(api_enabled=False)
            assert c.get(url).status_code == 404
            services.settings.update(api_enabled=True)
            new = services.keys.rotate()
            assert c.get(url).status_code == 401
            assert c.get(url, headers={"X-API-Key": new}).status_code == 200
    finally:
        services.shutdown()
