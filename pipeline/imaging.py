"""Decode image bytes into an upright RGB picture, whatever the file's mode.

Why by hand: Pillow's `convert("RGB")` drops alpha onto black and clips 16-bit
samples; a classifier then sees a different picture than a person does.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit
WHITE = (255, 255, 255)
ORIENTATION_TAG = 0x0112
SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that turn the picture by 90 degrees


class ImageRejected(ValueError):
    """The bytes are not an image we may decode (empty, a bomb, …)."""


class DecompressionBomb(ImageRejected):
    pass


@dataclass(frozen=True)
class Decoded:
    image: Image.Image  # RGB, upright
    width: int
    height: int
    mode: str  # the file's own mode, before conversion
    format: str


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, draft: int | None = None) -> Decoded:
    """Decode the first frame, apply EXIF orientation, convert to RGB.

    The pixel count is checked from the header, before any pixel is decoded.
    `draft` lets a JPEG decode at a reduced DCT scale whose shorter side stays >= draft;
    width and height always report the full, upright size.
    """
    if not data:
        raise ImageRejected("empty file")
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own guard stays on, at our limit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we refuse it just below
        image = Image.open(io.BytesIO(data))
    width, height = image.size
    if width * height > max_pixels:
        raise DecompressionBomb(
            f"image declares {width}x{height} = {width * height} pixels, over the limit of {max_pixels}"
        )
    if image.getexif().get(ORIENTATION_TAG, 1) in SWAPS_AXES:
        width, height = height, width
    source_mode, source_format = image.mode, image.format or "unknown"
    if draft and source_format == "JPEG" and min(width, height) >= 2 * draft:
        image.draft("RGB", (draft, draft))
    image.load()
    upright = ImageOps.exif_transpose(image) or image
    return Decoded(to_rgb(upright), width, height, source_mode, source_format)


def to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _scale_high_depth(image)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        return _flatten_on_white(image.convert("RGBA"))
    if mode == "L" and "transparency" in image.info:
        return _flatten_on_white(image.convert("RGBA"))
    if mode == "RGB" and "transparency" in image.info:
        return _flatten_on_white(image.convert("RGBA"))
    return image.convert("RGB")


def _flatten_on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGB", rgba.size, WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _scale_high_depth(image: Image.Image) -> Image.Image:
    """16/32-bit grey to 8 bits by scaling the sample range, never by clipping."""
    samples = np.asarray(image)
    if samples.ndim == 3:  # some high-depth modes decode with a channel axis
        samples = samples[..., 0]
    samples = samples.astype(np.float64)
    if image.mode == "F":
        low, high = float(samples.min()), float(samples.max())
        scaled = (samples - low) * (255.0 / (high - low)) if high > low else np.zeros_like(samples)
    else:
        full_scale = 65535.0 if image.mode.startswith("I;16") or samples.max() > 255 else 255.0
        scaled = samples * (255.0 / full_scale)
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")
