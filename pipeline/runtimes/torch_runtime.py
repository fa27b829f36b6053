"""The torch runtime: the family's own module, rearranged for inference.

Used on CUDA (where ONNX Runtime's CPU provider is no match for cuDNN in fp16), on a CPU
when asked for, and by the exporter, which exports exactly the module this runtime runs:
normalisation included (`Normalised`), so both runtimes take the same uint8 NHWC crops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.device import resolve
from pipeline.models import ModelFamily, Preprocessing
from pipeline.runtimes import TORCH, check_batch
from pipeline.runtimes.fold import fold_batchnorm


class Normalised(nn.Module):
    """uint8 NHWC crops → (x - 255·mean) / (255·std) as NCHW → the model.

    NHWC memory viewed as NCHW *is* channels_last, the layout the model runs in, so the
    permute costs nothing; offset and scale are computed once, as buffers that follow
    the module to its device (and into an exported graph as constants).
    """

    def __init__(self, model: nn.Module, spec: Preprocessing) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("offset", torch.tensor([255.0 * m for m in spec.mean]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([1.0 / (255.0 * s) for s in spec.std]).view(1, 3, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        inputs = (pixels.permute(0, 3, 1, 2).float() - self.offset) * self.scale
        return self.model(inputs)


def inference_module(family: ModelFamily, model_dir: Path | None) -> nn.Module:
    """A freshly built module (never one someone else holds: folding rewrites it), BatchNorm
    folded where the family allows it, wrapped in its normalisation, in eval mode, on the
    CPU, without gradients."""
    model = family.build(model_dir).module.eval()
    if family.foldable_batchnorm:
        with torch.no_grad():
            fold_batchnorm(model)
    return Normalised(model, family.preprocessing).eval().requires_grad_(False)


class TorchRuntime:
    """torch eager, channels_last; on CUDA fp16 autocast, the batch copied from pinned
    memory without blocking (the uint8 crops travel, a quarter of the float bytes, and are
    normalised on the GPU)."""

    name = TORCH

    def __init__(self, family: ModelFamily, model_dir: Path | None, *, device: str, threads: int) -> None:
        self._device = resolve(device)
        self._cuda = self._device.type == "cuda"
        self.device = str(self._device)
        self.version = torch.__version__
        self._crop = family.preprocessing.crop
        self.set_threads(threads)
        module = inference_module(family, model_dir).to(self._device)
        self._module: nn.Module | None = module.to(memory_format=torch.channels_last)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        check_batch(batch, self._crop)
        if self._module is None:
            raise RuntimeError("the torch runtime is closed")
        with torch.inference_mode():
            pixels = self._inputs(batch)
            if self._cuda:
                with torch.autocast("cuda", dtype=torch.float16):
                    logits = self._module(pixels)
            else:
                logits = self._module(pixels)
            return logits.float().cpu().numpy()

    def _inputs(self, batch: np.ndarray) -> torch.Tensor:
        """The batch on the runtime's device (via page-locked memory to a GPU, so the copy
        runs asynchronously)."""
        pixels = torch.from_numpy(batch if batch.flags.writeable else batch.copy())
        if not self._cuda:
            return pixels
        return pixels.pin_memory().to(self._device, non_blocking=True)

    def set_threads(self, threads: int) -> None:
        """torch's intra-op pool resizes between calls; a GPU needs no CPU threads."""
        if not self._cuda:
            torch.set_num_threads(max(1, threads))

    def close(self) -> None:
        self._module = None
        if self._cuda:
            torch.cuda.empty_cache()
