"""The four stages, as plain functions (TorchServe's handler split, without the server).

load → preprocess → forward → postprocess. Each is testable alone; the runner chains
them and telemetry wraps the calls from outside.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.imaging import DEFAULT_MAX_PIXELS, decode, read_file
from pipeline.models import Preprocessing


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


def load(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, draft: int | None = None) -> LoadedImage:
    """Read the file once; hash and decode those same bytes."""
    data = read_file(path)  # refuses FIFOs and devices; short reasons for missing/unreadable files
    decoded = decode(data, max_pixels=max_pixels, draft=draft)
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


def preprocess(image: Image.Image, spec: Preprocessing) -> torch.Tensor:
    """Shorter side to `spec.resize` (bilinear, antialiased), centre crop, normalise: CHW float32."""
    width, height = image.size
    if width <= height:
        size = (spec.resize, int(spec.resize * height / width))
    else:
        size = (int(spec.resize * width / height), spec.resize)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    left = int(round((size[0] - spec.crop) / 2.0))
    top = int(round((size[1] - spec.crop) / 2.0))
    image = image.crop((left, top, left + spec.crop, top + spec.crop))
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
    offset, scale = _normalisation(spec)
    return (pixels.float() - offset) * scale


@lru_cache(maxsize=8)
def _normalisation(spec: Preprocessing) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel offset (255·mean) and scale (1/(255·std)), built once per model."""
    offset = torch.tensor(spec.mean, dtype=torch.float32).view(3, 1, 1) * 255.0
    scale = torch.tensor([1.0 / (255.0 * s) for s in spec.std], dtype=torch.float32).view(3, 1, 1)
    return offset, scale


def forward(module: torch.nn.Module, batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Logits for an NCHW batch, computed without autograd; returned as float32 on the CPU."""
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
    probabilities = torch.softmax(logits.float(), dim=-1)
    k = min(top_k, probabilities.shape[-1])
    scores, indices = torch.topk(probabilities, k)
    return [
        Prediction(rank=r + 1, label=labels[i], score=round(s, 4), class_id=i)
        for r, (s, i) in enumerate(zip(scores.tolist(), indices.tolist(), strict=True))
    ]
