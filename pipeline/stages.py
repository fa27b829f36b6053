"""The four stages, as plain functions (TorchServe's handler split, without the server).

load → preprocess → forward → postprocess. Each is testable alone; `pipeline.driver`
chains them and telemetry wraps the calls from outside. `forward` is the runtime's
(`pipeline.runtimes`): these functions need only Pillow and NumPy, so images can be
decoded while a runtime is still loading, and the ONNX Runtime path never imports torch.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from PIL import Image

from pipeline.imaging import decode, read_file
from pipeline.models import Preprocessing
from pipeline.results import ImageInfo, Prediction, Upload


def load(source: str | os.PathLike[str] | Upload, max_pixels: int) -> tuple[ImageInfo, Image.Image]:
    """Read the file once (or take the uploaded bytes); hash and decode those same bytes.
    Returns the image's facts and its upright RGB picture."""
    data = source.data if isinstance(source, Upload) else read_file(source)
    decoded = decode(data, max_pixels=max_pixels)
    info = ImageInfo(
        md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        bytes=len(data),
        width=decoded.width,
        height=decoded.height,
        mode=decoded.mode,
        format=decoded.format,
    )
    return info, decoded.image


def preprocess(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """Shorter side to `spec.resize` (bilinear, antialiased), then the centre crop: HWC uint8.

    Only the part of the picture that survives the crop is resampled (Pillow's `box`),
    with the scale of the full resize, so the pixels are those of resize-then-crop
    (within one grey level of rounding) at ~60 % of the cost. Normalising is the
    runtime's job, once per batch; uint8 keeps images waiting for the model at a quarter
    of the memory.
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


def stack(crops: list[np.ndarray]) -> np.ndarray:
    """The runtimes' input: uint8 NHWC (N, H, W, 3)."""
    return np.stack(crops)


def postprocess(logits: np.ndarray, labels: list[str], top_k: int) -> list[Prediction]:
    """Softmax over one row of logits, the k best with their labels, scores to 4 decimals."""
    row = np.asarray(logits, dtype=np.float64).ravel()
    k = min(top_k, row.shape[0])
    exp = np.exp(row - row.max())
    probabilities = exp / exp.sum()
    best = np.argpartition(probabilities, -k)[-k:] if k < row.shape[0] else np.arange(row.shape[0])
    best = best[np.argsort(-probabilities[best], kind="stable")]
    return [
        Prediction(rank=rank, label=labels[index], score=round(float(probabilities[index]), 4), class_id=int(index))
        for rank, index in enumerate(best.tolist(), start=1)
    ]
