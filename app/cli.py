"""The ``tater`` command: the tray app, ``serve`` (headless), ``key`` (API key management),
``models`` (list, search, pull, add, rm, scan: :mod:`app.models_cli`)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from app import APP_NAME, __version__, models_cli

if TYPE_CHECKING:
    from app.services import Services
    from app.settings import ModelRow

log = logging.getLogger("tater")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

SHUTDOWN_GRACE_SECONDS = 4.0
"""After SIGTERM/SIGINT the process ends within this long, even with a runtime call stuck in C
(in-flight requests get this long to finish; logs are flushed before a forced exit)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tater", description=f"{APP_NAME}: a local OpenAI-compatible API.")
    p.add_argument("--version", action="version", version=f"tater {__version__}")
    p.add_argument("--selftest", action="store_true",
                   help="start the server on a free port, run checks, print a report and exit")
    p.add_argument("--selftest-model", metavar="PATH", help="model for --selftest (default: a tiny one)")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command")

    s = sub.add_parser("serve", help="run the API server headless (no Qt)")
    s.add_argument("--host", help="address to bind (default from settings: 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default from settings: 8501)")
    s.add_argument("--model", metavar="PATH_OR_ID", help="a GGUF file, a model folder, or a model id")
    s.add_argument("--provider", choices=["llama_cpp", "mlx_lm", "hf_transformers"],
                   help="runtime for --model PATH (default: guessed from the path)")
    s.add_argument("--mode", choices=["direct", "hydra"], help="default mode for requests naming no alias")
    s.add_argument("--context-size", type=int, metavar="TOKENS",
                   help="context window for --model, in tokens (default: the model's own, capped)")
    s.add_argument("--parallel", type=int, metavar="SLOTS",
                   help="requests --model decodes together (llama.cpp, MLX; default 4, 1 = one at a time)")

    k = sub.add_parser("key", help="show, rotate, set or clear the API key (kept in the OS keyring)")
    k.add_argument("action", choices=["show", "rotate", "set", "clear"])
    k.add_argument("value", nargs="?", help="the key, for 'set' (else read from stdin)")

    models_cli.add_parser(sub)
    sub.add_parser("tray", help="start the tray app (the default)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    if args.selftest:
        from app.selftest import run_selftest

        return run_selftest(model=args.selftest_model)
    if args.command == "serve":
        return serve(args)
    if args.command == "key":
        return key_command(args)
    if args.command == "models":
        return models_cli.run(args)
    return tray()


def _setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    try:
        from app.logging_setup import setup_logging
    except ImportError:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return
    setup_logging(level)


def tray() -> int:
    """Start the tray app (needs a display)."""
    try:
        from app.ui.main import run_tray
    except ImportError as exc:
        print(f"The tray app is not available in this installation ({exc}). "
              "Run the API headless with: tater serve", file=sys.stderr)
        return EXIT_USAGE
    return run_tray()


def serve(args: argparse.Namespace) -> int:
    """Run the API server without Qt until Ctrl-C / SIGTERM."""
    from app.model_sources import SourceError, resolve_model_arg
    from app.providers.base import ProviderError
    from app.server.runner import ServerStartError
    from app.services import build_services

    services = build_services()
    store = services.settings
    if args.model:
        try:
            row = resolve_model_arg(args.model, store.current, args.provider)
        except (SourceError, KeyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if args.context_size:
            row = with_context_size(row, args.context_size)
        if args.parallel is not None:
            if args.parallel < 1:
                print(f"error: --parallel must be at least 1, not {args.parallel}", file=sys.stderr)
                return EXIT_USAGE
            row = row.model_copy(update={"options": {**row.options, "parallel": args.parallel}})
        saved = store.saved.models
        models = ([row if r.id == row.id else r for r in saved] if store.saved.row(row.id)
                  else [*saved, row])
        store.update(models=models, active_model=row.id)
    if args.mode:
        store.override(mode=args.mode)
    if "TATER_OPENAI_API_ENABLED" not in os.environ:
        store.override(api_enabled=True)  # serving headless means serving; the env var can say no
    settings = store.current
    if settings.active_model:
        try:
            services.hub.load(settings.active_model).result()
        except ProviderError as exc:
            print(f"error: the model could not be loaded: {exc.message}", file=sys.stderr)
            services.hub.close()
            return EXIT_ERROR
    try:
        services.start(host=args.host, port=args.port)
    except ServerStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        services.hub.close()
        return EXIT_ERROR
    status = services.keys.status(fresh=True)
    print(f"{APP_NAME} API serving at {services.server.base_url}", flush=True)
    print(f"  model: {settings.active_model or '(none: requests get 503 until you pass --model)'}"
          f"; mode: {settings.mode}; API {'enabled' if settings.api_enabled else 'DISABLED (404)'}")
    if status.key:
        print(f"  API key: from the {status.source} (show it with `tater key show`)")
    else:
        print(f"  API key: none, so requests get 403. {status.problem}", flush=True)
    return _wait_for_signal(services)


CONTEXT_OPTION = {"llama_cpp": "n_ctx"}
"""The row option holding the context size, per provider (``context_size`` elsewhere)."""


def with_context_size(row: ModelRow, tokens: int) -> ModelRow:
    """``row`` with its context window set to ``tokens``, under the provider's option name."""
    if tokens <= 0:
        raise SystemExit(f"error: --context-size must be a positive number of tokens, not {tokens}")
    option = CONTEXT_OPTION.get(row.provider, "context_size")
    return row.model_copy(update={"options": {**row.options, option: tokens}})


def _wait_for_signal(services: Services) -> int:
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop.wait(0.5):
        if not services.server.running:
            print(f"error: the server stopped: {services.server.error}", file=sys.stderr)
            services.shutdown()
            return EXIT_ERROR
    print("stopping…", flush=True)
    exit_anyway_after(SHUTDOWN_GRACE_SECONDS)
    services.shutdown()
    return EXIT_OK


def exit_anyway_after(seconds: float) -> threading.Timer:
    """End the process in ``seconds`` if it is still running (a thread stuck in a runtime call
    can keep the orderly shutdown, or the interpreter's exit, waiting forever)."""

    def force() -> None:
        log.warning("shutdown took longer than %.0f s (a model call is stuck); exiting now", seconds)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(EXIT_OK)

    timer = threading.Timer(seconds, force)
    timer.daemon = True
    timer.start()
    return timer


def key_command(args: argparse.Namespace) -> int:
    """``tater key show|rotate|set|clear``."""
    from app.keystore import KeyStore, KeystoreUnavailable

    keys = KeyStore()
    try:
        if args.action == "show":
            st = keys.status(fresh=True)
            if not st.key:
                print(f"No API key. {st.problem}", file=sys.stderr)
                return EXIT_ERROR
            print(st.key)
            if st.source != "keyring":
                print(f"(from the {st.source})", file=sys.stderr)
        elif args.action == "rotate":
            print(keys.rotate())
            print("The old key no longer works.", file=sys.stderr)
        elif args.action == "set":
            value = args.value if args.value else sys.stdin.readline().strip()
            keys.set(value)
            print("API key stored in the OS keyring.", file=sys.stderr)
        elif args.action == "clear":
            keys.clear()
            print("API key removed: the API answers 403 until a new key is set.", file=sys.stderr)
    except KeystoreUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
