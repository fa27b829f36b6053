"""What runs the forward stage: ONNX Runtime or torch, behind one small interface.

torch defines the architectures and holds the trained weights; ONNX Runtime runs a graph
exported from that torch module (`pipeline.runtimes.export`, cached per weights). `auto`
means ONNX Runtime on a CPU and torch on CUDA. Choosing a plan (`plan`) needs neither
torch nor the model, so the driver knows what it will run before any of it is loaded.

Both runtimes take the same input: a batch of centre crops as uint8 NHWC (N, H, W, 3),
exactly what `stages.preprocess` produces, and return float32 logits (N, classes) as a
NumPy array. Normalisation is the runtime's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

RUNTIMES = ("auto", "onnxruntime", "torch")
ONNXRUNTIME, TORCH = "onnxruntime", "torch"


class RuntimeUnavailable(Exception):
    """A runtime cannot be used here (not installed, wrong device, export refused)."""


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
