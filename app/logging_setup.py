"""Logging: a rotating file in the platform log folder, with secrets redacted everywhere.

Every record that reaches a handler installed here — and every record logged on Hypercorn's
``hypercorn.access`` / ``hypercorn.error`` loggers, whatever handlers Hypercorn adds later — goes
through :class:`RedactingFilter`, which removes Tater API keys (``tater-`` + 64 hex), ``api_key``
query/JSON values, ``Authorization`` header values (``Bearer …``) and ``X-API-Key`` values.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import threading
from pathlib import Path

from app import APP_ID, paths

LOG_FILE_NAME = f"{APP_ID}.log"
MAX_BYTES = 5 * 1024 * 1024
BACKUP_COUNT = 5
REDACTED = "[REDACTED]"
LOG_FORMAT = "%(asctime)s %(levelname)-7s [%(threadName)s] %(name)s: %(message)s"
# Loggers whose records get the filter at logger level, so handlers added by libraries later
# (Hypercorn replaces its loggers' handlers when given a path or "-") still see redacted records.
FILTERED_LOGGERS = ("", "hypercorn.access", "hypercorn.error")

_Q = r"""['"]?"""  # an optional quote closing a header name
_VQ = r"""(?:b?['"])?"""  # an optional (bytes) quote opening a header value
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Values in context first (they remove the whole value), then bare key shapes anywhere.
    # Authorization values: "Authorization: Bearer x", "'authorization': 'x'", (b'authorization', b'x').
    (
        re.compile(rf"(?i)(authorization{_Q}\s*[:=,]\s*{_VQ})(?:(?:bearer|basic|token)\s+)?[^\s,'\"]+"),
        r"\1" + REDACTED,
    ),
    # Any remaining "Bearer <token>".
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + REDACTED),
    # X-API-Key header values in the same shapes.
    (re.compile(rf"(?i)(x-api-key{_Q}\s*[:=,]\s*{_VQ})[^\s,'\"]+"), r"\1" + REDACTED),
    # api_key=... in URLs and form bodies (also api-key, apikey, url-encoded underscore).
    (re.compile(r"(?i)(\bapi(?:_|-|%5f)?key=)[^&\s\"'#;]+"), r"\1" + REDACTED),
    # "api_key": "..." in JSON / dict reprs.
    (re.compile(r"""(?i)(["']api_?key["']\s*:\s*b?["'])[^"']*"""), r"\1" + REDACTED),
    # Tater API keys anywhere.
    (re.compile(r"tater-[0-9a-fA-F]{64}"), "tater-" + REDACTED),
    # OpenAI-style secret keys (remote provider keys).
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), "sk-" + REDACTED),
)


_extra_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(secret: str) -> None:
    """Also redact this literal value (e.g. a remote provider key that matches no pattern)."""
    if len(secret) >= 6:  # very short values would redact ordinary words
        with _secrets_lock:
            _extra_secrets.add(secret)


def redact(text: str) -> str:
    """``text`` with every known secret shape replaced by ``[REDACTED]``."""
    with _secrets_lock:
        secrets = sorted(_extra_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record in place so its message, exception text and stack carry no secrets.

    The message is rendered (``msg % args``) and replaced by its redacted form; args are dropped.
    It never rejects a record.
    """

    _exc_formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` and keep it."""
        try:
            message = record.getMessage()
        except Exception:  # bad format args: keep something readable, still redacted
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exc_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RedactingFormatter(logging.Formatter):
    """A formatter that redacts its final output too (covers custom fields and ``extra=``)."""

    def format(self, record: logging.LogRecord) -> str:
        """Format, then redact."""
        return redact(super().format(record))


_FILTER = RedactingFilter()
_OWNED = "_tater_owned"


def default_log_dir() -> Path:
    """``$TATER_LOG_DIR`` if set, else the platform's user log folder for the app."""
    return paths.log_dir()


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Add the redacting filter to ``logger`` (default: root) and to each of its handlers."""
    logger = logger if logger is not None else logging.getLogger()
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    for handler in logger.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def setup_logging(
    level: int | str = logging.INFO, *, log_dir: Path | None = None, console: bool = True
) -> Path:
    """Configure the root logger: a rotating UTF-8 log file (+ stderr if ``console``), redacted.

    Calling it again replaces the handlers it installed before. Returns the log file path.
    """
    directory = Path(log_dir) if log_dir is not None else default_log_dir()
    directory.mkdir(parents=True, exist_ok=True)
    if os.name == "posix":
        directory.chmod(0o700)  # logs may hold prompts and file paths
    log_file = directory / LOG_FILE_NAME

    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OWNED, False)]:
        root.removeHandler(handler)
        handler.close()

    formatter = RedactingFormatter(LOG_FORMAT)
    file_handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8", delay=False
    )
    handlers: list[logging.Handler] = [file_handler]
    if console:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _OWNED, True)
        root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)

    for name in FILTERED_LOGGERS:
        install_redaction(logging.getLogger(name))
    for existing in list(logging.root.manager.loggerDict.values()):
        if isinstance(existing, logging.Logger) and existing.handlers:
            for handler in existing.handlers:
                if _FILTER not in handler.filters:
                    handler.addFilter(_FILTER)
    # Hypercorn's access logger is created with propagate=False only when given a path or "-";
    # handed a Logger object (what the app does) it propagates to our handlers.
    logging.captureWarnings(True)
    return log_file
