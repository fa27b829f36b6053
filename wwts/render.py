"""How a `Result` is shown: the `--json` object of the interface (README.md), the stdout line, and the
seed script's console lines — all from the result itself, rounded once here."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pipeline.results import Result
from pipeline.text import printable, valid

if TYPE_CHECKING:
    from telemetry.resources import Snapshot

JSON_DECIMALS = 2  # latency_ms in --json and HTTP answers
# Characters JSON leaves raw inside strings that line splitters other than "\n" (Python's
# `str.splitlines`, JavaScript's line terminators) treat as line breaks.
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def error_json(error: BaseException | None) -> dict[str, str]:
    """The `error` object of a failed result or HTTP answer."""
    return {"type": type(error).__name__ if error else "Error", "message": valid(str(error)) if error else ""}


def to_json(result: Result) -> dict[str, Any]:
    if not result.ok or result.image is None:
        return {"path": result.path, "ok": False, "error": error_json(result.error), "trace_id": result.trace_id}
    image = result.image
    return {
        "path": result.path,
        "ok": True,
        "md5": image.md5,
        "bytes": image.bytes,
        "width": image.width,
        "height": image.height,
        "mode": image.mode,
        "format": image.format,
        "labels": [p.as_dict() for p in result.predictions],
        "latency_ms": result.latency_ms(JSON_DECIMALS),
        "model": result.model,
        "runtime": result.runtime,
        "device": result.device,
        "trace_id": result.trace_id,
    }


def json_line(result: Result) -> str:
    """`to_json` as one line of JSON, whatever the file name holds (newlines, escape
    sequences, U+2028): `json.loads(line)` works on every `splitlines()` piece."""
    line = json.dumps(to_json(result), ensure_ascii=False)
    for raw, escaped in _LINE_BREAKS.items():
        line = line.replace(raw, escaped)
    return line


def stdout_line(result: Result) -> str:
    if not result.ok:
        return f"{printable(result.path)}\tFAILED\t{failure(result)}"
    ranked = " · ".join(f"{p.label} {p.score:.4f}" for p in result.predictions)
    return f"{printable(result.path)}\t{ranked}"


def failure(result: Result) -> str:
    """`Type: reason` of a failed input (its one stderr line adds the path)."""
    error = result.error
    return f"{type(error).__name__}: {printable(str(error))}"


def console_lines(result: Result, snapshot: Snapshot | None) -> list[str]:
    """The seed script's lines for one classified image: input facts, top-k, stage
    latencies, resource figures."""
    image = result.image
    assert image is not None
    lines = [
        f"Input: {result.path} ({image.width}x{image.height}, {image.mode}, {image.format}, "
        f"{image.bytes} bytes, MD5 {image.md5})"
    ]
    lines += [f"Top-{p.rank}: '{p.label}' (置信度: {p.score:.4f})" for p in result.predictions]
    lines.append("Latency: " + " | ".join(f"{k} {v:.1f} ms" for k, v in result.latency_ms(1).items()))
    if snapshot is not None:
        lines.append(resource_line(snapshot))
    return lines


def resource_line(snapshot: Snapshot) -> str:
    parts = [
        f"CPU {snapshot.process_cpu_utilization * 100:.0f}%",
        f"RSS {snapshot.process_rss_bytes / 2**20:.0f} MiB",
        f"system memory {snapshot.system_memory_utilization * 100:.0f}%",
    ]
    for gpu in snapshot.gpus:
        text = f"GPU{gpu.index} {gpu.memory_used_bytes / 2**20:.0f}/{gpu.memory_total_bytes / 2**20:.0f} MiB"
        if gpu.utilization is not None:
            text += f" {gpu.utilization * 100:.0f}%"
        if gpu.temperature_c is not None:
            text += f" {gpu.temperature_c:.0f}°C"
        parts.append(text)
    return "Resources: " + " | ".join(parts)
