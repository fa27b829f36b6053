"""The contract's `classify --json` object for one result, and the one-line human form."""

from __future__ import annotations

import json
from typing import Any

from pipeline.runner import Result
from telemetry.console import printable


def to_json(result: Result, model: str, device: str) -> dict[str, Any]:
    if not result.ok or result.image is None:
        error = result.error
        return {
            "path": result.path,
            "ok": False,
            "error": {"type": type(error).__name__ if error else "Error", "message": _text(str(error)) if error else ""},
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


# Characters JSON leaves raw inside strings that line splitters other than "\n" (Python's
# `str.splitlines`, JavaScript's line terminators) treat as line breaks.
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_line(result: Result, model: str, device: str) -> str:
    """`to_json` as one line of JSON, whatever the file name holds (newlines, escape
    sequences, U+2028): `json.loads(line)` works on every `splitlines()` piece."""
    line = json.dumps(to_json(result, model, device), ensure_ascii=False)
    for raw, escaped in _LINE_BREAKS.items():
        line = line.replace(raw, escaped)
    return line


def _text(text: str) -> str:
    """Valid Unicode for JSON output (lone surrogates from undecodable bytes escaped)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if not text.isascii() else text


def to_line(result: Result) -> str:
    if not result.ok:
        return f"{printable(result.path)}\tFAILED\t{type(result.error).__name__}: {printable(str(result.error))}"
    ranked = " · ".join(f"{p.label} {p.score:.4f}" for p in result.predictions)
    return f"{printable(result.path)}\t{ranked}"
