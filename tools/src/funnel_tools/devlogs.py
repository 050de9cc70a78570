"""JSON log files for what `funnel dev` runs besides the services: the supervisor's own
messages and the embedded broker's output, in the same shape as the services' lines
(``funnel_common.telemetry.JsonFormatter``), so one tool reads every file in
``.funnel/logs/``."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import IO

from funnel_common.telemetry import JsonFormatter

# Terminal colour and cursor sequences: programs that colour their output for a
# terminal (the broker's tracing output may) would leave them in the JSON.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_LEVEL = re.compile(r"\b(TRACE|DEBUG|INFO|WARN|WARNING|ERROR)\b")
_LEVELS = {
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
}


def json_file_logger(name: str, path: Path, *, service: str) -> logging.Logger:
    """A logger writing JSON lines to ``path`` only (not to the terminal, not to root)."""
    logger = logging.getLogger(name)
    for handler in logger.handlers:
        handler.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter(service))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def close(logger: logging.Logger) -> None:
    for handler in logger.handlers:
        handler.close()
    logger.handlers.clear()


def line_level(line: str) -> int:
    """The level a plain-text log line names (INFO when it names none)."""
    found = _LEVEL.search(line)
    return _LEVELS[found.group(1)] if found else logging.INFO


def pump_lines(stream: IO[bytes], logger: logging.Logger) -> threading.Thread:
    """Copy a child's output, line by line, into ``logger`` as JSON, until it closes."""

    def pump() -> None:
        with stream:
            for raw in stream:
                line = _ANSI.sub("", raw.decode("utf-8", errors="replace")).rstrip()
                if line:
                    logger.log(line_level(line), line)

    thread = threading.Thread(target=pump, name=f"{logger.name}-log", daemon=True)
    thread.start()
    return thread
