"""The pipeline's names and defaults, each written once and imported wherever used.

Cheap to import (no NumPy, no Pillow): the CLI's settings read these before any work.
"""

from __future__ import annotations

LOAD, PREPROCESS, QUEUE, FORWARD, POSTPROCESS = "load", "preprocess", "queue", "forward", "postprocess"
STAGES = (LOAD, PREPROCESS, FORWARD, POSTPROCESS)  # one image's walk in `classify`
SERVE_STAGES = (LOAD, PREPROCESS, QUEUE, FORWARD, POSTPROCESS)  # `serve` waits for a batch slot
TOTAL = "total"

DEFAULT_TOP_K = 5
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit
# Images decoded ahead of the model: 256 crops of 224x224x3 uint8 are ~38 MB.
DEFAULT_AHEAD = 256
# Decode threads: one per core (a run is decode-bound on a CPU: Pillow releases the GIL
# while it decodes and resamples), at most this many.
MAX_DECODE_WORKERS = 8
# Images per forward pass when the batch size is `auto` (benchmarks/README.md has the
# measurements): on a CPU small batches keep latency low at little cost per image.
CPU_AUTO_BATCH = 4
GPU_AUTO_BATCH = 32
