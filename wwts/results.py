"""The contract's `classify --json` object for one result, and the one-line human form."""

from __future__ import annotations

from typing import Any

from pipeline.runner import Result
from telemetry.console import printable


def to_json(result: Result, model: str, device: str) -> dict[str, Any]:
    if not result.ok or result.image is None:
        error = result.error
        return {
            "path": result.path,
            "ok": False,
            "error": {"type": type(error).__name__ if error else "Error", "message": str(error) if error else ""},
            "trace_id": result.trace_id,
        }
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
        "latency_ms": {k: round(v, 2) for k, v in result.latency_ms.items()},
        "model": model,
        "device": device,
        "trace_id": result.trace_id,
    }


def to_line(result: Result) -> str:
    if not result.ok:
        return f"{printable(result.path)}\tFAILED\t{type(result.error).__name__}: {printable(str(result.error))}"
    ranked = " · ".join(f"{p.label} {p.score:.4f}" for p in result.predictions)
    return f"{printable(result.path)}\t{ranked}"
