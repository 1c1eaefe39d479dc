"""Logs without secrets: plain tracebacks (no local variables), every line redacted.

Both structlog (the application's own events) and the standard library's logging (uvicorn,
SQLAlchemy) go through `redact`, which hides:

- the values of `Authorization`, `Proxy-Authorization`, `Cookie` and `Set-Cookie` headers,
  and `Bearer …` / `Basic …` credentials wherever they appear (as text or as bytes' repr);
- API keys (`hab_…`) and the password of any `scheme://user:password@` URL;
- the values of the secret settings (`HABITUE_ADMIN_KEY`, `HABITUE_HMAC_KEY`,
  `HABITUE_SESSION_SECRET`, any setting named like a key, secret, password or token, and the
  passwords in URL settings such as `HABITUE_DATABASE_URL`), registered by `configure`.

Tracebacks are the standard library's: file, line and code, never the frames' variables.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog

REDACTED = "[redacted]"

_known: list[str] = []
"""Literal secret values, longest first."""

_MIN_SECRET = 6
"""Shorter values are not searched for: they would blank out ordinary words."""

_SECRET_SETTING = re.compile(r"(key|secret|password|passwd|token)s?$", re.IGNORECASE)
_SECRET_FIELD = re.compile(
    r"^(authorization|proxy[-_]authorization|cookie|set[-_]cookie|x[-_]api[-_]key"
    r"|password|passwd|secret|token|api[-_]key|admin[-_]key|hmac[-_]key|session[-_]secret)$",
    re.IGNORECASE,
)
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # ('authorization', 'Bearer …'), (b'cookie', b'…'), "cookie": "…"
    (
        re.compile(
            r"""(?i)(b?['"](?:proxy-)?(?:authorization|cookie|set-cookie|x-api-key)['"]"""
            r"""\s*[,:]\s*b?(['"]))(?:(?!\2).)*"""
        ),
        rf"\1{REDACTED}",
    ),
    # Authorization: … / cookie=… up to the end of the line or the quote
    (
        re.compile(
            r"""(?i)\b((?:proxy-)?(?:authorization|cookie|set-cookie|x-api-key)\s*[:=]\s*)"""
            r"""[^\r\n'"]+"""
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=\-]+"), rf"\1\2{REDACTED}"),
    (re.compile(r"\bhab_[A-Za-z0-9]+_[A-Za-z0-9_\-]{8,}"), f"hab_{REDACTED}"),
    # scheme://user:password@host
    (
        re.compile(r"""(?i)\b([a-z][a-z0-9+.\-]*://[^\s/:@'"]*:)[^\s@'"/]+@"""),
        rf"\1{REDACTED}@",
    ),
]


def redact(text: str) -> str:
    """`text` with every secret it holds replaced by `[redacted]`."""
    for secret in _known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes | bytearray):
        return redact(bytes(value).decode("latin-1"))
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and _SECRET_FIELD.match(k) else _redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(repr(value))


def secrets_of(settings: Any) -> list[str]:
    """The secret values among `settings`' fields (a pydantic model)."""
    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if not isinstance(value, str) or not value:
            continue
        if _SECRET_SETTING.search(name):
            found.append(value)
        if "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password:
                found.extend({password, unquote(password)})
    return found


def register_secrets(values: Iterable[str]) -> None:
    """Add literal values that must never appear in a log line."""
    merged = set(_known) | {v for v in values if v and len(v) >= _MIN_SECRET}
    _known[:] = sorted(merged, key=len, reverse=True)


# -- structlog ------------------------------------------------------------------------------


def _redact_event(_logger: Any, _method: str, event_dict: Any) -> Any:
    return {
        key: (REDACTED if _SECRET_FIELD.match(key) else _redact_value(value))
        for key, value in event_dict.items()
    }


class _RedactedRenderer:
    """Renders with `inner`, then redacts the whole line once more."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, logger: Any, method: str, event_dict: Any) -> str:
        return redact(str(self.inner(logger, method, event_dict)))


# -- standard library -----------------------------------------------------------------------


class RedactingFilter(logging.Filter):
    """Redacts a record's message and traceback before any handler formats it."""

    _plain = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what there is
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._plain.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def _install_filter() -> None:
    """Put the filter on every handler there is (uvicorn's, the root's, the last resort)."""
    root = logging.getLogger()
    if not root.handlers:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        if root.level == logging.NOTSET or root.level > logging.WARNING:
            root.setLevel(logging.WARNING)
    loggers = [root] + [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    handlers = {h for logger in loggers for h in logger.handlers}
    if logging.lastResort is not None:
        handlers.add(logging.lastResort)
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    """A logger writing to the `sys.stderr` of the moment (tests and servers swap it)."""
    return structlog.PrintLogger(sys.stderr)


def configure(settings: Any = None, *, json: bool | None = None) -> None:
    """Set up structlog and the standard library's logging for the process.

    Production writes JSON lines, other environments a console format; both to stderr.
    """
    if settings is not None:
        register_secrets(secrets_of(settings))
    if json is None:
        json = getattr(settings, "env", "development") == "production"
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,  # plain text: no local variables
            _redact_event,
            _RedactedRenderer(renderer),
        ],
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    _install_filter()
