"""The floor `wwts classify` is measured against: the least a pipeline can do for the
default model on this machine, as a whole process, imports included.

One Pillow decode thread (each file read once, MD5 of those bytes, EXIF orientation,
RGB, then `pipeline.stages.preprocess`, which resamples only the region that survives the
centre crop) feeds ONNX Runtime in batches, on the same cached graph wwts runs (uint8
NHWC crops in, normalisation inside the graph), so the graph sees wwts's pixels: no
telemetry, no checks beyond Pillow's, no output but one summary line.

The session's options are wwts's own (`pipeline.runtimes.ort.session_options`): its
intra-op threads sleep when an operator ends instead of spinning. With ONNX Runtime's
default spinning (`--spin`) the pool's threads take the core the decode thread needs;
on a loaded 2-core machine that made this program 1.5× slower, and a floor that a
setting beats is no floor.
The gap between this and `wwts classify` is what the pipeline's structure and its
telemetry cost.

    python -m benchmarks.floor GRAPH DIR [--workers 1] [--threads CORES] [--batch 4] [--spin]

Prints `floor images=N seconds=S images_per_s=R` on stdout; the seconds start before
NumPy, Pillow and ONNX Runtime are imported (`wwts bench` times the whole process).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.defaults import CPU_AUTO_BATCH
from pipeline.models import DEFAULT_MODEL, Preprocessing, preprocessing  # data only: no torch, no NumPy

if TYPE_CHECKING:
    import numpy as np

SUMMARY = "floor"  # the summary line's first word, which `wwts bench` looks for


def prepare(path: Path, spec: Preprocessing) -> np.ndarray:
    """Read once, hash, decode upright RGB (no checks beyond Pillow's), then the
    pipeline's own crop (`stages.preprocess`, resampling only the crop): HWC uint8."""
    from PIL import Image, ImageOps

    from pipeline.stages import preprocess

    data = path.read_bytes()
    hashlib.md5(data, usedforsecurity=False).hexdigest()
    return preprocess(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"), spec)


def run(graph: Path, directory: Path, workers: int, threads: int, batch: int, spin: bool = False) -> int:
    """Classify every file in `directory` (sorted; not recursive); returns how many."""
    import numpy as np
    import onnxruntime

    from pipeline.runtimes.ort import PROVIDERS, session_options

    options = session_options(threads)
    if spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    session = onnxruntime.InferenceSession(str(graph), options, providers=PROVIDERS)
    name = session.get_inputs()[0].name
    spec = preprocessing(DEFAULT_MODEL)
    paths = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    done = 0
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(prepare, path, spec) for path in paths]
        for start in range(0, len(futures), batch):
            pixels = np.stack([future.result() for future in futures[start : start + batch]])
            done += len(session.run(None, {name: pixels})[0])
    return done


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("graph", type=Path, help="the ONNX graph (uint8 NHWC in)")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--workers", type=int, default=1, help="decode threads")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="intra-op threads")
    parser.add_argument("--batch", type=int, default=CPU_AUTO_BATCH, help="images per forward pass")
    parser.add_argument("--spin", action="store_true", help="ONNX Runtime's default: threads spin between operators")
    args = parser.parse_args(argv)
    done = run(args.graph, args.directory, args.workers, args.threads, args.batch, args.spin)
    seconds = time.perf_counter() - started
    print(f"{SUMMARY} images={done} seconds={seconds:.3f} images_per_s={done / seconds:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
