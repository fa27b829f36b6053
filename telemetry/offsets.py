"""How far each daily file has been shipped, and its complete lines from there on.

The local files are the source of truth; a registry beside them (like Filebeat's)
remembers the byte offset acknowledged for each file, persisted atomically, so a ship
that is cut off resumes where it stopped and a repeat sends nothing twice. Only complete
lines are read: a line still being written waits for the next pass.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path


def complete_lines(file: Path, start: int) -> Iterator[tuple[bytes, int]]:
    """(stripped line, offset just past it) for each complete line from `start`."""
    with open(file, "rb") as stream:
        stream.seek(start)
        offset = start
        for raw in stream:
            if not raw.endswith(b"\n"):
                return  # a line still being written
            offset += len(raw)
            yield raw.strip(), offset


class Registry:
    """Acknowledged byte offsets per file, persisted atomically next to the files."""

    def __init__(self, directory: Path, name: str) -> None:
        self.path = directory / name
        try:
            self.offsets: dict[str, int] = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.offsets = {}

    def offset(self, file: Path) -> int:
        offset = self.offsets.get(file.name, 0)
        try:
            size = file.stat().st_size
        except OSError:
            return 0
        return offset if offset <= size else 0  # the file was replaced or truncated: start over

    def advance(self, file: Path, offset: int) -> None:
        self.offsets[file.name] = offset
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.offsets, sort_keys=True), encoding="utf-8")
        os.replace(temporary, self.path)

    def forget_missing(self, directory: Path) -> None:
        self.offsets = {name: off for name, off in self.offsets.items() if (directory / name).exists()}
