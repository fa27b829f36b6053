"""Readable console lines in the seed script's style: `time [LEVEL] message`.

An inference record becomes several lines (input facts, top-k, latencies, resources),
a failure exactly one line with no traceback (that goes to the ECS record).
"""

from __future__ import annotations

import logging
from typing import Any

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def printable(text: str) -> str:
    """Escape newlines, terminal escape sequences and other non-printables."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(fmt="%(asctime)s [%(levelname)s] %(message)s", datefmt=TIME_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"{self.formatTime(record, self.datefmt)} [{record.levelname}] "
        return "\n".join(prefix + printable(line) for line in self.lines(record))

    @staticmethod
    def lines(record: logging.LogRecord) -> list[str]:
        wwts: dict[str, Any] | None = getattr(record, "wwts", None)
        if not wwts or "labels" not in wwts:
            return [record.getMessage()]
        file = getattr(record, "file", {})
        image = wwts.get("image", {})
        latency = wwts.get("latency_ms", {})
        lines = [
            f"Input: {file.get('path')} ({image.get('width')}x{image.get('height')}, {image.get('mode')}, "
            f"{image.get('format')}, {file.get('size')} bytes, MD5 {file.get('hash', {}).get('md5')})"
        ]
        lines += [f"Top-{p['rank']}: '{p['label']}' (置信度: {p['score']:.4f})" for p in wwts["labels"]]
        lines.append("Latency: " + " | ".join(f"{k} {v:.1f} ms" for k, v in latency.items()))
        resource = wwts.get("resource")
        if resource:
            lines.append(resource_line(resource))
        return lines


def resource_line(resource: dict[str, Any]) -> str:
    process, system = resource["process"], resource["system"]
    parts = [
        f"CPU {process['cpu_percent']:.0f}%",
        f"RSS {process['rss_bytes'] / 2**20:.0f} MiB",
        f"system memory {system['memory_percent']:.0f}%",
    ]
    for gpu in resource.get("gpu", []):
        text = f"GPU{gpu['index']} {gpu['memory_used_bytes'] / 2**20:.0f}/{gpu['memory_total_bytes'] / 2**20:.0f} MiB"
        if gpu.get("utilization_percent") is not None:
            text += f" {gpu['utilization_percent']:.0f}%"
        if gpu.get("temperature_c") is not None:
            text += f" {gpu['temperature_c']:.0f}°C"
        parts.append(text)
    return "Resources: " + " | ".join(parts)
