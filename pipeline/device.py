"""Resolve `--device auto|cpu|cuda[:N]` to a torch device, with a clear refusal.

`check` validates the spelling without importing torch, so a typo is refused before
`wwts classify` starts any work; `resolve` asks torch what exists.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_CUDA = re.compile(r"cuda(?::(\d+))?")


class DeviceError(ValueError):
    pass


def check(spec: str) -> str:
    """The normalised spec, or `DeviceError` if it is none of auto, cpu, cuda, cuda:N."""
    spec = spec.strip().lower()
    if spec not in ("auto", "cpu") and not _CUDA.fullmatch(spec):
        raise DeviceError(f"device {spec!r} is not auto, cpu, cuda or cuda:N")
    return spec


def resolve(spec: str) -> torch.device:
    import torch

    spec = check(spec)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    match = _CUDA.fullmatch(spec)
    assert match is not None
    if not torch.cuda.is_available():
        raise DeviceError(f"device {spec!r} asked for, but CUDA is not available here")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise DeviceError(f"device {spec!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device("cuda", index)
