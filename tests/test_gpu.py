"""The torch runtime's CUDA path (fp16 autocast, pinned memory, non-blocking copies)
agrees with its CPU path.

Skipped where there is no CUDA device; the lead runs it on a GPU machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.models import family
from pipeline.runtimes import TORCH, Plan, plan
from pipeline.runtimes.torch_runtime import TorchRuntime
from tests.conftest import SAMPLES, sample_crops, softmax

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CLOSE_CALLS = {"chelsea.png": {282, 285}}  # tiger cat vs Egyptian cat: 0.38 each


def test_auto_on_a_gpu_machine_is_torch_on_cuda() -> None:
    assert plan() == Plan(TORCH, "cuda")


@pytest.mark.parametrize("batch_size", [1, 4])
def test_cuda_gives_the_cpu_top1_on_the_sample_photos(data_dir: Path, batch_size: int) -> None:
    fam = family("efficientnet-lite0")
    crops = sample_crops(data_dir)
    cpu = TorchRuntime(fam, None, device="cpu", threads=2)
    gpu = TorchRuntime(fam, None, device="cuda", threads=2)
    assert gpu.device == "cuda:0"
    batches = [crops[i : i + batch_size] for i in range(0, len(crops), batch_size)]
    on_cpu = softmax(np.concatenate([cpu.forward(b) for b in batches]))
    on_gpu = softmax(np.concatenate([gpu.forward(b) for b in batches]))
    assert on_gpu.dtype == np.float32
    for name, row_cpu, row_gpu in zip(SAMPLES, on_cpu, on_gpu, strict=True):
        top_cpu, top_gpu = int(row_cpu.argmax()), int(row_gpu.argmax())
        assert top_gpu in CLOSE_CALLS.get(name, {top_cpu}), (name, top_cpu, top_gpu)
        assert row_gpu[top_gpu] == pytest.approx(row_cpu[top_gpu], abs=0.02), name
    gpu.close()


def test_cuda_batches_are_pinned_before_the_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = TorchRuntime(family("efficientnet-lite0"), None, device="cuda", threads=1)
    batch = np.zeros((2, 224, 224, 3), dtype=np.uint8)
    seen: list[torch.Tensor] = []
    original = torch.Tensor.pin_memory

    def spy(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        pinned = original(tensor, *args, **kwargs)
        seen.append(pinned)
        return pinned

    monkeypatch.setattr(torch.Tensor, "pin_memory", spy)
    inputs = runtime._inputs(batch)
    monkeypatch.undo()
    assert len(seen) == 1 and seen[0].is_pinned() and seen[0].dtype == torch.uint8
    assert inputs.is_cuda and inputs.shape == (2, 224, 224, 3)
    assert next(runtime._module.parameters()).is_cuda  # type: ignore[union-attr]
    assert runtime.forward(batch).shape == (2, 1000)
