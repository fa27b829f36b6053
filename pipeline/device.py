"""`--device auto|cpu|cuda[:N]`: its spelling, what `auto` means here, and the torch device.

`check` validates the spelling and `auto` decides without importing torch where it can:
NVML answers in a millisecond whether an NVIDIA GPU exists at all, so a CPU-only machine
never pays torch's seconds of imports to learn that it has no CUDA. Only where a GPU is
visible is torch asked whether CUDA can use it. `resolve` asks torch what exists.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

CPU, CUDA, AUTO = "cpu", "cuda", "auto"
_CUDA = re.compile(r"cuda(?::(\d+))?")


class DeviceError(ValueError):
    pass


def check(spec: str) -> str:
    """The normalised spec, or `DeviceError` if it is none of auto, cpu, cuda, cuda:N."""
    spec = spec.strip().lower()
    if spec not in (AUTO, CPU) and not _CUDA.fullmatch(spec):
        raise DeviceError(f"device {spec!r} is not auto, cpu, cuda or cuda:N")
    return spec


def is_cuda(spec: str) -> bool:
    return _CUDA.fullmatch(spec) is not None


NVIDIA_CONTROL = "/dev/nvidiactl"  # the driver's control device, present wherever it runs (Linux)


def nvidia_driver_present() -> bool:
    """Whether an NVIDIA driver can be there at all: on Linux its control device exists
    (importing pynvml alone costs ~50 ms, asking it more); elsewhere, assume it may."""
    return not sys.platform.startswith("linux") or os.path.exists(NVIDIA_CONTROL)


def gpu_visible() -> bool:
    """Whether NVML sees an NVIDIA GPU (no driver, no NVML library, no GPU: False)."""
    if not nvidia_driver_present():
        return False
    try:
        import pynvml
    except ImportError:
        return False
    try:
        pynvml.nvmlInit()
    except Exception:  # pynvml raises NVMLError subclasses, and OSError without a driver
        return False
    try:
        return pynvml.nvmlDeviceGetCount() > 0
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()  # reference-counted: other users of NVML keep theirs


def auto() -> str:
    """`cuda` where CUDA can use a GPU, else `cpu`; torch is imported only if NVML sees one."""
    if not gpu_visible():
        return CPU
    import torch

    return CUDA if torch.cuda.is_available() else CPU


def resolve(spec: str) -> torch.device:
    import torch

    spec = check(spec)
    if spec == AUTO:
        spec = auto()
    if spec == CPU:
        return torch.device(CPU)
    match = _CUDA.fullmatch(spec)
    assert match is not None
    if not torch.cuda.is_available():
        raise DeviceError(f"device {spec!r} asked for, but CUDA is not available here")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise DeviceError(f"device {spec!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(CUDA, index)
