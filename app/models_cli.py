"""``tater models list | search | pull | add | rm | scan | token``: models from the terminal.

The same code as the tray's Models page: :mod:`app.hub_downloads` (search, download),
:mod:`app.disk_models` (models other apps keep on disk) and :mod:`app.model_sources` (rows).
``pull`` takes ``org/repo``, ``org/repo:QUANT`` (as Ollama's ``hf.co/…:Q4_K_M``) or
``--file NAME``; without a choice it takes the largest GGUF file that fits in memory.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from app.hub_downloads import Choice, DownloadError, Progress
from app.keystore import KeystoreUnavailable
from app.model_sources import SourceError
from app.settings import SettingsStore

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
RUNTIMES = ("llama_cpp", "mlx_lm", "hf_transformers")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``models`` and its subcommands on the ``tater`` parser."""
    m = sub.add_parser("models", help="list, search, download, add and remove models")
    msub = m.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="the configured models (* = active)")
    s = msub.add_parser("search", help="search the Hugging Face Hub")
    s.add_argument("query")
    s.add_argument("--runtime", choices=RUNTIMES, default="llama_cpp")
    s.add_argument("--limit", type=int, default=20)
    p = msub.add_parser("pull", help="download a model from the Hub and add it")
    p.add_argument("repo", metavar="ORG/REPO[:QUANT]")
    p.add_argument("--file", help="the GGUF file to download (default: the largest that fits)")
    p.add_argument("--activate", action="store_true", help="make it the active model")
    a = msub.add_parser("add", help="add a GGUF file, a model folder, or a model found on disk")
    a.add_argument("what", metavar="PATH_OR_NAME", help="a path, or a name from `tater models scan`")
    a.add_argument("--activate", action="store_true", help="make it the active model")
    r = msub.add_parser("rm", help="remove a configured model (its files stay)")
    r.add_argument("model_id")
    sc = msub.add_parser("scan", help="models already on disk (Ollama, LM Studio, HF cache, folders)")
    sc.add_argument("folders", nargs="*", metavar="DIR", help="also search these folders")
    sc.add_argument("--add", action="store_true", help="add every model found")
    t = msub.add_parser("token", help="the Hugging Face token for gated models (OS keyring)")
    t.add_argument("action", choices=["set", "clear"])
    t.add_argument("value", nargs="?", help="the token, for 'set' (else read from stdin)")


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run a ``tater models`` subcommand; errors are one line on stderr and exit status 1/2."""
    try:
        return COMMANDS[args.models_command](args, out, err)
    except (DownloadError, SourceError, KeystoreUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_ERROR


def _store() -> SettingsStore:
    from app.paths import config_dir

    return SettingsStore(config_dir())


def list_models(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from app.memory_estimate import estimate_row

    settings = _store().current
    if not settings.models:
        print("No models yet: `tater models pull ORG/REPO`, `tater models scan`, or "
              "`tater models add PATH`.", file=err)
    for row in settings.models:
        mark = "*" if row.id == settings.active_model else " "
        estimate = estimate_row(row)  # weights, every parallel slot's KV cache, scratch
        needs = f"\tneeds ≈ {estimate.describe()}" if estimate is not None else ""
        print(f"{mark} {row.id}\t{row.provider}\t{row.source}{needs}", file=out)
    return EXIT_OK


def search_models(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from app.hub_downloads import search

    hits = search(args.query, args.runtime, limit=args.limit)
    if not hits:
        print(f"Nothing found for {args.query!r} ({args.runtime}).", file=err)
    for hit in hits:
        gated = "\tgated" if hit.gated else ""
        print(f"{hit.repo_id}\t{hit.downloads} downloads{gated}", file=out)
    return EXIT_OK


def pull(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from app.hub_downloads import download, list_choices
    from app.memory_estimate import human_bytes
    from app.model_sources import add_row, row_for_download

    repo, _, quant = args.repo.partition(":")
    choices = list_choices(repo)
    choice = pick_choice(choices, file=args.file, quant=quant or None)
    print(f"downloading {choice.label} from {repo} ({human_bytes(choice.size)})", file=err)
    bar = ProgressLine(err)
    path = download(choice, on_progress=bar.update)  # Ctrl-C stops it; pull again to resume
    bar.finish()
    row = add_row(_store(), row_for_download(choice, path), activate=args.activate or None)
    _report_added(row.id, out)
    return EXIT_OK


def pick_choice(choices: list[Choice], *, file: str | None, quant: str | None) -> Choice:
    """The choice a ``pull`` means: a named file, a quantisation, else the largest that fits."""
    from app.memory_estimate import available_memory, human_bytes

    if not choices:
        raise DownloadError("this repository has no GGUF file and no model folder to download")
    if file:
        named = [c for c in choices if c.filename == file]
        if not named:
            raise DownloadError(f"no file {file!r} here; choose one of: "
                                f"{', '.join(c.label for c in choices)}")
        return named[0]
    if quant:
        named = [c for c in choices if c.filename and quant.lower() in c.filename.lower()]
        if not named:
            raise DownloadError(f"no {quant} file here; choose one of: "
                                f"{', '.join(c.label for c in choices)}")
        return max(named, key=lambda c: c.size)
    fitting = [c for c in choices if c.fits]
    if not fitting:
        smallest = min(choices, key=lambda c: c.size)
        raise DownloadError(f"nothing here fits in the {human_bytes(available_memory())} of memory "
                            f"available (the smallest, {smallest.label}, is "
                            f"{human_bytes(smallest.size)}); pass --file to download anyway")
    return max(fitting, key=lambda c: c.size)


def add(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from app.disk_models import scan
    from app.model_sources import add_row, resolve_model_arg, row_for_found

    store = _store()
    path = Path(args.what).expanduser()
    if path.exists():
        row = resolve_model_arg(str(path), store.current)
    else:
        found = [m for m in scan() if args.what in (m.name, m.label)]
        if not found:
            print(f"error: {args.what!r} is neither a file or folder nor a model found by "
                  "`tater models scan`", file=err)
            return EXIT_USAGE
        row = row_for_found(found[0])
    row = add_row(store, row, activate=args.activate or None)
    _report_added(row.id, out)
    return EXIT_OK


def remove(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from app.model_sources import remove_row

    row = remove_row(_store(), args.model_id)
    print(f"removed {row.id} (its files were left where they are)", file=err)
    return EXIT_OK


def scan_models(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from app.disk_models import default_roots, scan
    from app.memory_estimate import human_bytes
    from app.model_sources import add_row, row_for_found

    found = scan(default_roots(folders=args.folders))
    if not found:
        print("No models found (Ollama, LM Studio, the Hugging Face cache"
              f"{', ' + ', '.join(args.folders) if args.folders else ''}).", file=err)
    store = _store() if args.add else None
    for model in found:
        print(f"{model.name}\t{model.provider}\t{human_bytes(model.size)}\t"
              f"{ORIGINS[model.origin]}\t{model.path}", file=out)
        if store is not None:
            add_row(store, row_for_found(model))
    return EXIT_OK


ORIGINS = {"ollama": "Ollama", "lmstudio": "LM Studio", "hf_cache": "HF cache", "folder": "folder"}


def token(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from app.hub_downloads import set_token

    if args.action == "set":
        value = args.value or sys.stdin.readline().strip()
        if not value:
            print("error: no token given", file=err)
            return EXIT_USAGE
        set_token(value)
        print("Hugging Face token stored in the OS keyring.", file=err)
    else:
        set_token(None)
        print("Hugging Face token removed.", file=err)
    return EXIT_OK


def _report_added(row_id: str, out: TextIO) -> None:
    store = _store()
    active = " (active)" if store.current.active_model == row_id else ""
    print(f"{row_id}{active}", file=out)


class ProgressLine:
    """``12.0 MiB / 45.0 MiB  3.1 MiB/s  11 s left`` on one terminal line, at most 4 times a second."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = 0.0

    def update(self, p: Progress) -> None:
        from app.memory_estimate import human_bytes

        now = time.monotonic()
        if now - self.shown < 0.25:
            return
        self.shown = now
        total = f" / {human_bytes(p.total)}" if p.total else ""
        left = f"  {p.eta:.0f} s left" if p.eta is not None else ""
        self.stream.write(f"\r{human_bytes(p.done)}{total}  {human_bytes(p.speed)}/s{left}   ")
        self.stream.flush()

    def finish(self) -> None:
        self.stream.write("\rdone" + " " * 40 + "\n")
        self.stream.flush()


COMMANDS = {"list": list_models, "search": search_models, "pull": pull, "add": add,
            "rm": remove, "scan": scan_models, "token": token}
