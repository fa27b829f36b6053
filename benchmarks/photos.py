"""Build a deterministic benchmark set of photos, offline, from the six sample photos.

The only real photographs available without a network are the six scikit-image samples
that ship with the package (`benchmarks/samples/`, the largest 741 px wide). This derives
N varied files from them: a random crop (60-100 % of each side), a random horizontal
flip, a rescale so the longer side lands in 640-1600 px (typical phone/web photo sizes;
upscaled where the source is smaller), and a re-encode — mostly JPEG at quality 70-95 (a
few 4:4:4, a few progressive), some PNG.
The same seed and count always give the same bytes, in the cache directory

    ~/.cache/wwts/bench-photos/seed<SEED>-n<N>/   ($WWTS_CACHE overrides ~/.cache/wwts)

Run as a script: `python -m benchmarks.photos [--count 300] [--seed 0]` prints the path.
"""

from __future__ import annotations

import argparse
import io
import random
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Pillow is imported when photos are built: `wwts bench --help` needs none of it
    from PIL import Image

SAMPLES = "benchmarks.samples"  # package data: found wherever the package is installed
SOURCE_NAMES = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")
DEFAULT_COUNT = 300
DEFAULT_SEED = 0
PNG_SHARE = 0.15
DONE = ".complete"


def cache_root() -> Path:
    from wwts.settings import default_cache_dir

    return default_cache_dir()


def photo_dir(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED, root: Path | None = None) -> Path:
    return (root or cache_root() / "bench-photos") / f"seed{seed}-n{count}"


def _variant(source: Image.Image, rng: random.Random) -> Image.Image:
    from PIL import Image, ImageOps

    width, height = source.size
    crop_w = max(64, int(width * rng.uniform(0.6, 1.0)))
    crop_h = max(64, int(height * rng.uniform(0.6, 1.0)))
    left = rng.randint(0, width - crop_w)
    top = rng.randint(0, height - crop_h)
    image = source.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    longer = rng.randint(640, 1600)
    scale = longer / max(crop_w, crop_h)
    size = (max(1, round(crop_w * scale)), max(1, round(crop_h * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def build(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED, root: Path | None = None) -> Path:
    """Create the set if it is not complete yet; return its directory."""
    target = photo_dir(count, seed, root)
    if (target / DONE).is_file():
        return target
    from PIL import Image, ImageOps

    target.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    samples = files(SAMPLES)
    sources = {
        name: ImageOps.exif_transpose(Image.open(io.BytesIO(samples.joinpath(name).read_bytes()))).convert("RGB")
        for name in SOURCE_NAMES
    }
    for index in range(count):
        name = SOURCE_NAMES[index % len(SOURCE_NAMES)]
        image = _variant(sources[name], rng)
        stem = f"{index:05d}-{Path(name).stem}"
        if rng.random() < PNG_SHARE:
            image.save(target / f"{stem}.png", format="PNG", compress_level=6)
        else:
            options = {
                "quality": rng.randint(70, 95),
                "subsampling": 0 if rng.random() < 0.15 else 2,
                "progressive": rng.random() < 0.2,
                "optimize": False,
            }
            image.save(target / f"{stem}.jpg", format="JPEG", **options)
    (target / DONE).write_text(f"{count} photos, seed {seed}\n", encoding="utf-8")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args()
    print(build(args.count, args.seed))


if __name__ == "__main__":
    main()
