"""Credentials in URIs (`http://user:pass@host`) never leave the process in clear.

`redact` is the one function that hides them: `scheme://user:pass@` becomes `scheme://***@`. It is
applied to everything rethink writes to MLflow (params, tags, dict artifacts: `rethink.run.track`), to
every log record of a process (`install`: at the record's creation, so it holds for the handlers
Hydra configures and re-configures per job) and to what the launching process prints on its console
(Hydra's job-failure report, tracebacks). MLflow itself gets the URI without credentials and the
credentials through MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (`split_credentials`), so no
URL it prints or puts into an error message carries them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
# A scheme (its "://" possibly escaped as Hydra prints overrides: `http\://`), then the userinfo up to "@".
USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*\\*://)(?P<userinfo>[^\s/@'\"]+)@")


def redact(text: str) -> str:
    """`text` with the userinfo of every URI in it replaced by `***`."""
    return USERINFO.sub(rf"\g<scheme>{MASK}@", text)


def redact_values(obj: Any) -> Any:
    """A copy of a (nested) dict / list / string with every string redacted; other values as they are."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_values(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(redact_values(v) for v in obj)
    return obj


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(`uri` without user and password, user, password) when it carries both; else (uri, None, None)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc or parts.password is None:
        return uri, None, None
    bare = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
    return urlunsplit(bare), unquote(parts.username or ""), unquote(parts.password)


# --- logs and console ---


def redact_record(record: logging.LogRecord) -> None:
    """Redact a log record's message (formatted now, only when it holds credentials) and traceback."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: leave it to the handler to report
        return
    if (clean := redact(message)) != message:
        record.msg, record.args = clean, ()
    if record.exc_info and not record.exc_text:
        text = logging.Formatter().formatException(record.exc_info)
        if (clean := redact(text)) != text:
            record.exc_text = clean


class RedactingStream:
    """A text stream that redacts what is written to it (everything else goes to the wrapped stream)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def redacting(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """A log record factory: `factory`'s records, redacted."""

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        redact_record(record)
        return record

    make.redacts = True  # type: ignore[attr-defined]
    return make


def install() -> None:
    """Redact every log record this process creates from now on, and its sys.stdout / sys.stderr."""
    if not getattr(logging.getLogRecordFactory(), "redacts", False):
        logging.setLogRecordFactory(redacting(logging.getLogRecordFactory()))
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))
