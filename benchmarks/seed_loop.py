"""The seed article's loop, reproduced faithfully as the baseline to beat.

Per image, in one thread, exactly the article's pattern: open the picture with Pillow and
convert to RGB; read the whole file again for its MD5; torchvision transforms (Resize(256)
bilinear with antialias, CenterCrop(224), ToTensor, Normalize(0.498, 0.502)); forward at
batch 1 under `torch.no_grad()`; softmax; the top-5 logged line by line through
`logging.basicConfig`; a psutil snapshot (CPU, RSS, system memory) logged after each image.
The model is the same one wwts runs: `pipeline.models.create(DEFAULT_MODEL)`, as the
article builds it (timm, BatchNorm not folded, contiguous memory).

    python -m benchmarks.seed_loop DIR [--log FILE] [--limit N]

Prints one summary line on stdout: `seed_loop images=N seconds=S loop_seconds=L
images_per_s=R` (seconds since `main` started, imports included; the rate is the loop's).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

SUMMARY = "seed_loop"  # the summary line's first word, which `wwts bench` looks for
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def article_model() -> tuple[Any, list[str], Any]:
    """The default model in eval mode, its labels, and the article's torchvision transform
    from its preprocessing (256, 224, 0.498, 0.502); the naive server of
    `benchmarks.serve_bench` builds its handler from the same."""
    from torchvision import transforms

    from pipeline.models import DEFAULT_MODEL, create

    loaded = create(DEFAULT_MODEL)
    spec = loaded.preprocessing
    transform = transforms.Compose(
        [
            transforms.Resize(spec.resize, interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
            transforms.CenterCrop(spec.crop),
            transforms.ToTensor(),
            transforms.Normalize(mean=list(spec.mean), std=list(spec.std)),
        ]
    )
    return loaded.module.eval(), loaded.labels, transform


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description="The seed article's per-image loop.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--log", type=Path, default=None, help="log file (default: stderr)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many images (0: all)")
    args = parser.parse_args(argv)

    # the article's imports, at the top of the run
    import psutil
    import torch
    from PIL import Image
    from torchvision import transforms  # noqa: F401 - the article imports it here; used by article_model

    if args.log is not None:
        logging.basicConfig(
            filename=str(args.log), level=logging.INFO, format="%(asctime)s [%(levelname)s] %(message)s"
        )
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(levelname)s] %(message)s")
    log = logging.getLogger(__name__)

    model, labels, transform = article_model()
    process = psutil.Process()
    python, cuda = sys.version.split()[0], torch.cuda.is_available()
    log.info("Python %s | torch %s | CUDA available: %s", python, torch.__version__, cuda)

    paths = sorted(p for p in args.directory.iterdir() if p.suffix.lower() in SUFFIXES)
    if args.limit:
        paths = paths[: args.limit]
    loop_started = time.perf_counter()
    for path in paths:
        t0 = time.perf_counter()
        image = Image.open(path).convert("RGB")
        with open(path, "rb") as stream:
            md5 = hashlib.md5(stream.read()).hexdigest()
        log.info("Input: %s (%dx%d, MD5 %s)", path, image.width, image.height, md5)
        tensor = transform(image).unsqueeze(0)
        with torch.no_grad():
            logits = model(tensor)
        probabilities = torch.nn.functional.softmax(logits[0], dim=0)
        scores, indices = torch.topk(probabilities, 5)
        for rank, (score, index) in enumerate(zip(scores.tolist(), indices.tolist()), start=1):
            log.info("Top-%d: '%s' (置信度: %.4f)", rank, labels[index], score)
        log.info("Latency: %.1f ms", (time.perf_counter() - t0) * 1000.0)
        memory = psutil.virtual_memory()
        log.info(
            "Resources: CPU %.0f%% | RSS %.0f MiB | system memory %.0f%%",
            process.cpu_percent(None), process.memory_info().rss / 2**20, memory.percent,
        )
    finished = time.perf_counter()
    loop_s = finished - loop_started
    print(
        f"{SUMMARY} images={len(paths)} seconds={finished - started:.3f} loop_seconds={loop_s:.3f} "
        f"images_per_s={len(paths) / loop_s if loop_s else 0.0:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
