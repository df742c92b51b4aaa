"""Log line formats of every pathwatch process: `text` and `json`.

`text` on a terminal is rich's coloured output; anywhere else (systemd, a pipe, a
file) it is one plain line per record, never wrapped, with the date:
`2025-01-31T12:00:00.123+00:00 WARNING pathwatch.runtime.bus: nats agent-x: disconnected`.

`json` is one object per line with stable keys: `ts` (RFC 3339, UTC, milliseconds),
`level`, `logger`, `message`, and `exception` (the formatted traceback) when there is
one. It is a small stdlib formatter encoded by msgspec rather than python-json-logger:
renaming that library's fields to these keys and fixing its timestamp takes as many
lines as the formatter, and the keys stay ours.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

import msgspec
from rich.console import Console
from rich.logging import RichHandler

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """`<RFC 3339 time> <LEVEL> <logger>: <message>` on one line (traceback lines after)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message[, exception]."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return msgspec.json.encode(line).decode()


def log_handler(log_format: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    """The handler for `log_format` writing to `stream` (default stderr)."""
    stream = stream or sys.stderr
    if log_format == "json":
        handler: logging.Handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
    elif stream.isatty():
        console = Console(file=stream)
        handler = RichHandler(
            console=console,
            show_path=False,
            rich_tracebacks=True,
            log_time_format="%Y-%m-%d %H:%M:%S",
        )
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(TextFormatter())
    return handler
