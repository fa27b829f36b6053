"""Readable console lines in the seed script's style: `time [LEVEL] message`.

Only plain messages come through here (startup facts, warnings, alerts); the front door
renders each result itself, from the `Result`, so inference records are filtered out.
"""

from __future__ import annotations

import logging
import time

from pipeline.text import printable
from telemetry.records import DOCUMENT

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def line(level: str, text: str, when: float | None = None) -> str:
    """One console line; `level` as logging names it (INFO, WARNING, ERROR)."""
    stamp = time.strftime(TIME_FORMAT, time.localtime(when))
    return f"{stamp} [{level}] {printable(text)}"


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return line(record.levelname, record.getMessage(), record.created)


def not_inference(record: logging.LogRecord) -> bool:
    """A console filter: inference records go to the files, not to the terminal."""
    return not hasattr(record, DOCUMENT)
