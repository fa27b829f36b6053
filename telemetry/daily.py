"""Daily JSON-lines files (`<prefix>-YYYY-MM-DD.jsonl`, UTC) and their 7-day retention.

Shared by the ECS record handler and the local trace exporter. Writes are buffered
(no flush or fsync per record on the hot path); each record is one `write` of a whole
line, and a file left with a torn last line is closed with a newline before appending,
so a reader never sees two records glued together.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

DEFAULT_KEEP_DAYS = 7
_NAME = re.compile(r"^(?P<prefix>[a-z]+)-(?P<day>\d{4}-\d{2}-\d{2})\.jsonl$")


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class DailyFiles:
    def __init__(self, directory: Path, prefix: str, flush_interval: float = 1.0) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self.flush_interval = flush_interval
        self._day: dt.date | None = None
        self._stream: IO[str] | None = None
        self._last_flush = time.monotonic()

    def path_for(self, day: dt.date) -> Path:
        return self.directory / f"{self.prefix}-{day.isoformat()}.jsonl"

    def write(self, line: str) -> None:
        """Append one complete line; flush at most every `flush_interval` seconds."""
        stream = self._open_for(utc_today())
        stream.write(line)
        now = time.monotonic()
        if now - self._last_flush >= self.flush_interval:
            stream.flush()
            self._last_flush = now

    def flush(self) -> None:
        if self._stream is not None:
            self._stream.flush()
            self._last_flush = time.monotonic()

    def close(self) -> None:
        """Close the stream; a failing final flush (disk full) still raises, but the
        stream is gone either way."""
        stream, self._stream, self._day = self._stream, None, None
        if stream is not None:
            try:
                stream.close()
            except OSError:
                try:
                    stream.close()  # the second close releases the descriptor without flushing again
                except OSError:
                    pass
                raise

    def _open_for(self, day: dt.date) -> IO[str]:
        if self._stream is not None and self._day == day:
            return self._stream
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_for(day)
        torn = _ends_without_newline(path)
        self._stream = open(path, "a", encoding="utf-8", buffering=64 * 1024)  # noqa: SIM115
        if torn:
            self._stream.write("\n")
        self._day = day
        return self._stream


def _ends_without_newline(path: Path) -> bool:
    try:
        with open(path, "rb") as stream:
            stream.seek(-1, 2)
            return stream.read(1) != b"\n"
    except OSError:  # missing or empty
        return False


def dated_files(directory: Path) -> Iterator[tuple[Path, str, dt.date]]:
    """Every `<prefix>-YYYY-MM-DD.jsonl` in the directory with its prefix and day."""
    if not directory.is_dir():
        return
    for path in sorted(directory.iterdir()):
        match = _NAME.match(path.name)
        if match:
            yield path, match["prefix"], dt.date.fromisoformat(match["day"])


def prune(directory: Path, keep_days: int = DEFAULT_KEEP_DAYS, today: dt.date | None = None) -> list[Path]:
    """Delete daily files older than `keep_days` (today counts as day 1). Returns what went."""
    cutoff = (today or utc_today()) - dt.timedelta(days=keep_days - 1)
    removed = []
    for path, _prefix, day in dated_files(Path(directory)):
        if day < cutoff:
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                continue
    return removed
