"""The four stages, as plain functions (TorchServe's handler split, without the server).

load → preprocess → forward → postprocess. Each is testable alone; the runner chains
them and telemetry wraps the calls from outside.

`load` and `preprocess` need only Pillow and NumPy: `wwts classify` starts them on a
worker thread while the main thread is still importing torch and building the model
(several seconds on a small CPU), so torch is imported by the stages that use it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from pipeline.imaging import DEFAULT_MAX_PIXELS, decode, read_file
from pipeline.models import Preprocessing

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LoadedImage:
    path: str
    md5: str
    bytes: int
    width: int
    height: int
    mode: str
    format: str
    image: Image.Image  # RGB, upright


@dataclass(frozen=True)
class Prediction:
    rank: int
    label: str
    score: float
    class_id: int

    def as_dict(self) -> dict[str, object]:
        return {"rank": self.rank, "label": self.label, "score": self.score, "class_id": self.class_id}


def load(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read the file once; hash and decode those same bytes."""
    data = read_file(path)  # refuses FIFOs and devices; short reasons for missing/unreadable files
    decoded = decode(data, max_pixels=max_pixels)
    return LoadedImage(
        path=str(path),
        md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        bytes=len(data),
        width=decoded.width,
        height=decoded.height,
        mode=decoded.mode,
        format=decoded.format,
        image=decoded.image,
    )


def preprocess(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """Shorter side to `spec.resize` (bilinear, antialiased), then the centre crop: HWC uint8.

    Only the part of the picture that survives the crop is resampled (Pillow's `box`),
    with the scale of the full resize, so the pixels are those of resize-then-crop
    (within one grey level of rounding) at ~60 % of the cost. Normalising is left to
    `to_batch`, one vectorised step per batch; uint8 keeps images waiting for the model
    at a quarter of the memory.
    """
    width, height = image.size
    if width <= height:
        size = (spec.resize, int(spec.resize * height / width))
    else:
        size = (int(spec.resize * width / height), spec.resize)
    left = int(round((size[0] - spec.crop) / 2.0))
    top = int(round((size[1] - spec.crop) / 2.0))
    if size == image.size:
        cropped = image.crop((left, top, left + spec.crop, top + spec.crop))
    else:
        sx, sy = width / size[0], height / size[1]
        box = (left * sx, top * sy, (left + spec.crop) * sx, (top + spec.crop) * sy)
        cropped = image.resize((spec.crop, spec.crop), Image.Resampling.BILINEAR, box=box)
    return np.asarray(cropped, dtype=np.uint8)


def to_batch(pixels: list[np.ndarray], spec: Preprocessing) -> torch.Tensor:
    """Normalised float32 NCHW batch in channels_last layout, from HWC uint8 crops.

    NHWC memory viewed as NCHW *is* channels_last, the layout the model runs in, so
    the only copies are the stack and the float conversion.
    """
    import torch

    batch = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2)
    offset, scale = _normalisation(spec)
    return batch.float().sub_(offset).mul_(scale)


@lru_cache(maxsize=8)
def _normalisation(spec: Preprocessing) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel offset (255·mean) and scale (1/(255·std)), built once per model."""
    import torch

    offset = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    scale = torch.tensor([1.0 / (255.0 * s) for s in spec.std], dtype=torch.float32).view(1, 3, 1, 1)
    return offset, scale


def forward(module: torch.nn.Module, batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Logits for an NCHW batch, computed without autograd; returned as float32 on the CPU."""
    import torch

    with torch.inference_mode():
        inputs = batch.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                logits = module(inputs)
        else:
            logits = module(inputs)
        return logits.float().cpu()


def postprocess(logits: torch.Tensor, labels: list[str], top_k: int) -> list[Prediction]:
    """Softmax over one row of logits, the k best with their labels, scores to 4 decimals."""
    import torch

    probabilities = torch.softmax(logits.float(), dim=-1)
    k = min(top_k, probabilities.shape[-1])
    scores, indices = torch.topk(probabilities, k)
    return [
        Prediction(rank=r + 1, label=labels[i], score=round(s, 4), class_id=i)
        for r, (s, i) in enumerate(zip(scores.tolist(), indices.tolist(), strict=True))
    ]
