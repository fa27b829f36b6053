"""The CUDA path (autocast fp16, pinned memory, non-blocking copies) agrees with the CPU.

Skipped where there is no CUDA device; the lead runs it on a GPU machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.models import create
from pipeline.runner import Runner

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SAMPLES = ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg"]
CLOSE_CALLS = {"chelsea.png": {282, 285}}  # tiger cat vs Egyptian cat: 0.38 each


@pytest.mark.parametrize("batch_size", [1, 4])
def test_cuda_gives_the_cpu_top1_on_the_sample_photos(data_dir: Path, batch_size: int) -> None:
    # fresh models: a runner folds and moves its model in place
    paths = [str(data_dir / name) for name in SAMPLES]
    cpu = list(Runner(create("efficientnet-lite0"), torch.device("cpu"), batch_size=batch_size, workers=0).run(paths))
    gpu = list(Runner(create("efficientnet-lite0"), torch.device("cuda"), batch_size=batch_size).run(paths))
    for name, on_cpu, on_gpu in zip(SAMPLES, cpu, gpu, strict=True):
        assert on_cpu.ok and on_gpu.ok, (name, on_cpu.error, on_gpu.error)
        top_cpu, top_gpu = on_cpu.predictions[0], on_gpu.predictions[0]
        accepted = CLOSE_CALLS.get(name, {top_cpu.class_id})
        assert top_gpu.class_id in accepted, (name, top_cpu, top_gpu)
        assert top_gpu.score == pytest.approx(top_cpu.score, abs=0.02), (name, top_cpu, top_gpu)


def test_cuda_batches_are_pinned_before_the_copy() -> None:
    runner = Runner(create("efficientnet-lite0"), torch.device("cuda"), batch_size=2)
    batch = runner._batch([np.zeros((224, 224, 3), dtype=np.uint8)] * 2)
    assert batch.is_pinned() and batch.shape == (2, 3, 224, 224)
    assert next(runner.module.parameters()).is_cuda
