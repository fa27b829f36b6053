"""What runs the forward stage: ONNX Runtime or torch, behind one small interface.

torch defines the architectures and holds the trained weights; ONNX Runtime runs a graph
exported from that torch module (`pipeline.runtimes.export`, cached per weights). `auto`
means ONNX Runtime on a CPU (several times faster than torch eager there, and with a
cached graph it never imports torch) and torch on CUDA (fp16 on cuDNN; ONNX Runtime's
CUDA provider is not used). Choosing a plan (`plan`) needs neither torch nor the model,
so the driver knows what it will run before any of it is loaded.

Both runtimes take the same input: a batch of centre crops as uint8 NHWC (N, H, W, 3),
exactly what `stages.preprocess` produces, and return float32 logits (N, classes) as a
NumPy array. Normalisation is the runtime's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pipeline import device as devices

if TYPE_CHECKING:
    import numpy as np

    from pipeline.models import ModelFamily

AUTO, ONNXRUNTIME, TORCH = "auto", "onnxruntime", "torch"
RUNTIMES = (AUTO, ONNXRUNTIME, TORCH)


class RuntimeUnavailable(Exception):
    """A runtime cannot be used here (unknown name, not installed, wrong device, export
    refused)."""


@dataclass(frozen=True)
class Plan:
    """Which runtime runs on which device: decided before anything heavy is imported."""

    runtime: str  # onnxruntime | torch
    device: str  # cpu | cuda | cuda:N


class Runtime(Protocol):
    name: str  # onnxruntime | torch
    version: str  # the runtime library's version
    device: str  # cpu, cuda:0, ...

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """uint8 NHWC crops (N, H, W, 3) → float32 logits (N, classes)."""
        ...

    def set_threads(self, threads: int) -> None:
        """Intra-op threads from now on (a hint; a runtime may keep its pool)."""
        ...

    def close(self) -> None: ...


Notify = Callable[[str], None]


def package_version(name: str) -> str | None:
    """An installed distribution's version (None where it is not installed); the metadata
    machinery is imported only when a version is asked for."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def plan(runtime: str = "auto", device: str = "auto") -> Plan:
    """What will run where, from the spellings of `--runtime` and `--device`.

    Refuses an unknown runtime (`RuntimeUnavailable`) or device (`DeviceError`), and ONNX
    Runtime on CUDA. `auto` device asks NVML, and torch only where NVML sees a GPU.
    """
    name = runtime.strip().lower()
    if name not in RUNTIMES:
        raise RuntimeUnavailable(f"runtime {runtime!r} is not {', '.join(RUNTIMES[:-1])} or {RUNTIMES[-1]}")
    where = devices.check(device)
    if where == devices.AUTO:
        where = devices.CPU if name == ONNXRUNTIME else devices.auto()
    if name == AUTO:
        name = TORCH if devices.is_cuda(where) else ONNXRUNTIME
    if name == ONNXRUNTIME and devices.is_cuda(where):
        raise RuntimeUnavailable(
            f"onnxruntime runs on the CPU only here (its CUDA provider is not used); for {where} use --runtime torch"
        )
    return Plan(runtime=name, device=where)


def open_runtime(
    plan: Plan,
    family: ModelFamily,
    model_dir: Path | None,
    *,
    cache_dir: Path,
    threads: int,
    notify: Notify | None = None,
) -> Runtime:
    """The runtime of `plan`, ready to run `family`. ONNX Runtime exports and caches the
    graph under `cache_dir` on a first run (one `notify` line says so); `threads` is the
    intra-op pool on a CPU."""
    tell: Notify = notify if notify is not None else (lambda message: None)
    if plan.runtime == ONNXRUNTIME:
        from pipeline.runtimes.ort import open_onnxruntime

        return open_onnxruntime(family, model_dir, cache_dir=cache_dir, threads=threads, notify=tell)
    if plan.runtime == TORCH:
        try:
            from pipeline.runtimes.torch_runtime import TorchRuntime
        except ImportError as exc:
            raise RuntimeUnavailable(f"torch is not installed ({exc})") from exc
        return TorchRuntime(family, model_dir, device=plan.device, threads=threads)
    raise RuntimeUnavailable(f"no runtime {plan.runtime!r}: make a Plan with plan()")


def check_batch(batch: np.ndarray, crop: int) -> None:
    """Refuse anything but uint8 (N, crop, crop, 3), naming what came instead."""
    shape = tuple(getattr(batch, "shape", ()))
    if getattr(batch, "dtype", None) != "uint8" or len(shape) != 4 or shape[0] < 1 or shape[1:] != (crop, crop, 3):
        raise ValueError(
            f"a batch is uint8 (N, {crop}, {crop}, 3); got {getattr(batch, 'dtype', type(batch).__name__)} {shape}"
        )
