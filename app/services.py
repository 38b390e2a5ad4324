"""The composition root: settings, key, model hub, request log and the API server, wired once.

The tray and ``tater serve`` both build a :class:`Services`; the UI talks to these objects
directly, the HTTP server shares the very same ones on its own thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.keystore import KeyStore
from app.model_hub import ModelHub
from app.paths import config_dir as default_config_dir
from app.server.app import create_app
from app.server.context import ServerContext
from app.server.request_log import RequestLog
from app.server.runner import ApiServer
from app.settings import Settings, SettingsStore

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything a running Tater shares between its threads."""

    settings: SettingsStore
    keys: KeyStore
    hub: ModelHub
    request_log: RequestLog
    context: ServerContext
    server: ApiServer
    _following: bool = field(default=False, init=False, repr=False)

    def start_server(self, host: str | None = None, port: int | None = None) -> None:
        """Start the listener on the configured (or given) address.  Raises ServerStartError."""
        s = self.settings.current
        self.server.start(host or s.bind_host, s.port if port is None else port)

    def start(self, host: str | None = None, port: int | None = None) -> None:
        """What both the tray and ``tater serve`` run: follow settings changes, unload idle models
        in the background, then start the listener.  Raises ServerStartError (the first two stay
        running, so a port fixed later in the settings takes effect).  Safe to call again."""
        self.follow_settings()
        self.hub.start_janitor()
        self.start_server(host=host, port=port)

    def follow_settings(self) -> None:
        """Restart the listener when host, port or LAN access change (other settings apply live).
        Subscribes once, however often it is called."""
        if self._following:
            return
        self._following = True

        def on_change(old: Settings, new: Settings) -> None:
            if (old.bind_host, old.port) != (new.bind_host, new.port) and self.server.running:
                threading.Thread(target=self._rebind, args=(new,), daemon=True).start()

        self.settings.subscribe(on_change)

    def _rebind(self, new: Settings) -> None:
        try:
            self.server.restart(new.bind_host, new.port)
        except Exception as exc:
            self.server.error = str(exc)
            log.error("could not restart the listener: %s", exc)

    def shutdown(self) -> None:
        """Stop the server (in-flight requests finish or are cancelled), then free models."""
        self.server.stop()
        mcp = self.context.hydra.mcp if self.context.hydra is not None else None
        if mcp is not None:
            mcp.close()  # stop the MCP servers Hydra started
        self.hub.close()


def build_services(config_dir: Path | None = None, env: Mapping[str, str] | None = None,
                   keys: KeyStore | None = None) -> Services:
    """Wire the shared objects (nothing starts yet)."""
    env = os.environ if env is None else env
    settings = SettingsStore(config_dir or default_config_dir(), env)
    for w in settings.warnings:
        log.warning(w)
    keys = keys or KeyStore(env)
    hub = ModelHub(settings)
    request_log = RequestLog()
    context = ServerContext(settings=settings, keys=keys, hub=hub, request_log=request_log)
    attach_hydra(context)
    server = ApiServer(lambda: create_app(context))
    return Services(settings, keys, hub, request_log, context, server)


def attach_hydra(context: ServerContext) -> None:
    """Give the server its Hydra agent and the Verbas it may use (broken plugins are reported)."""
    try:
        from app.hydra import HydraAgent
        from app.keystore import SecretStore
        from app.mcp.clients import McpClients
        from app.verbas.registry import VerbaRegistry

        verbas = VerbaRegistry.discover(context.settings.config_dir)
        for problem in verbas.problems:
            log.warning("Verba plugin %s skipped: %s", problem.name, problem.error)
        secrets = SecretStore()
        mcp = McpClients(context.settings, secrets)
        verbas.attach(mcp)  # each tool of a configured MCP server is a Verba
        context.hydra = HydraAgent(context.settings, verbas, secrets, mcp=mcp)
    except Exception:
        log.exception("Hydra could not start; Hydra requests will fail with a clear error")
