"""The inference-only rearrangements: BatchNorm folding, crop-box resampling, the batch
layout, and the prefetcher that runs before torch is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from pipeline import stages
from pipeline.runtimes.fold import fold_batchnorm
from pipeline.models import create, family, preprocessing
from pipeline.models import resnest101_general as rg

ROOT = Path(__file__).resolve().parent.parent


def _randomise_batchnorm(module: torch.nn.Module) -> None:
    """Trained-looking statistics: with the defaults (mean 0, var 1) a fold is trivial."""
    generator = torch.Generator().manual_seed(3)
    for norm in module.modules():
        if isinstance(norm, torch.nn.BatchNorm2d):
            channels = norm.num_features
            norm.running_mean.copy_(torch.randn(channels, generator=generator) * 0.1)
            norm.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
            norm.weight.data.copy_(torch.rand(channels, generator=generator) + 0.5)
            norm.bias.data.copy_(torch.randn(channels, generator=generator) * 0.1)


def _fold_and_compare(module: torch.nn.Module, inputs: torch.Tensor) -> tuple[int, float]:
    module.eval()
    with torch.inference_mode():
        expected = module(inputs)
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules())
    with torch.no_grad():
        folded = fold_batchnorm(module)
    assert folded == norms - sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules())
    with torch.inference_mode():
        actual = module(inputs)
    return folded, (actual - expected).abs().max().item() / expected.abs().max().item()


def test_folding_efficientnet_lite0_keeps_its_outputs() -> None:
    model = create("efficientnet-lite0")  # fresh: folding changes the module in place
    inputs = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    folded, relative = _fold_and_compare(model.module, inputs)
    assert family("efficientnet-lite0").foldable_batchnorm and folded == 49  # all of them
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.module.modules())
    assert relative < 1e-5


def test_folding_resnest_keeps_its_outputs() -> None:
    """In float64: the fold's algebra is checked, not 101 layers of float32 rounding on
    random weights (in float32 one CI run saw 5e-3 of the output, over a 1e-3 bound)."""
    module = timm.create_model(rg.ARCHITECTURE, pretrained=False, num_classes=10).double()
    _randomise_batchnorm(module)
    inputs = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    folded, relative = _fold_and_compare(module, inputs)
    assert family(rg.NAME).foldable_batchnorm
    assert folded == 138 and relative < 1e-9  # all but the stem's (after a Sequential)


def test_fold_leaves_a_norm_that_follows_no_convolution_alone() -> None:
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.BatchNorm2d(4)).eval()
    assert fold_batchnorm(module) == 0
    assert isinstance(module[2], torch.nn.BatchNorm2d)


@pytest.mark.parametrize("size", [(451, 300), (300, 451), (1600, 1199), (256, 256), (640, 257)])
def test_crop_box_resampling_matches_resize_then_crop(size: tuple[int, int]) -> None:
    spec = preprocessing("efficientnet-lite0")
    rng = np.random.default_rng(0)
    smooth = Image.fromarray(rng.integers(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8))
    image = smooth.resize(size, Image.Resampling.BICUBIC)  # photo-like: not pure noise
    width, height = size
    short = spec.resize
    full = (short, int(short * height / width)) if width <= height else (int(short * width / height), short)
    left, top = int(round((full[0] - spec.crop) / 2.0)), int(round((full[1] - spec.crop) / 2.0))
    expected = np.asarray(
        image.resize(full, Image.Resampling.BILINEAR).crop((left, top, left + spec.crop, top + spec.crop)), dtype=np.int16
    )
    actual = stages.preprocess(image, spec)
    assert actual.shape == (spec.crop, spec.crop, 3) and actual.dtype == np.uint8
    assert np.abs(actual.astype(np.int16) - expected).max() <= 1  # rounding, one grey level


def test_images_are_loaded_before_torch_is_imported(data_dir: Path) -> None:
    """What lets `wwts classify` decode while a runtime loads: the prefetch path needs
    neither torch nor the model."""
    script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from pipeline.driver import Pipeline, PipelineConfig
pipeline = Pipeline(PipelineConfig(runtime="torch", device="cpu"))
with pipeline.prefetcher([{str(data_dir / 'coffee.png')!r}, {str(data_dir / 'rocket.jpg')!r}]) as prefetch:
    prepared = list(prefetch)
assert all(p.result.error is None and p.crop.shape == (224, 224, 3) for p in prepared), prepared
assert "torch" not in sys.modules and "timm" not in sys.modules, "the prefetch path imported torch"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_closing_a_prefetcher_cancels_what_was_never_classified(data_dir: Path, make_pipeline) -> None:
    from pipeline.driver import Hooks

    class Recorder(Hooks):
        def __init__(self) -> None:
            self.begun: list[str] = []
            self.cancelled: list[str] = []

        def begin(self, path: str, parent: object = None) -> str:
            self.begun.append(path)
            return path

        def cancel(self, request: str) -> None:
            self.cancelled.append(request)

    hooks = Recorder()
    pipeline = make_pipeline(hooks, ahead=3)
    paths = [str(data_dir / "coffee.png")] * 6
    with pipeline.prefetcher(paths) as prefetch:
        taken = next(iter(prefetch))
    assert taken.result.error is None
    # one taken by the consumer, the rest begun ahead: each of those is cancelled
    assert len(hooks.cancelled) == len(hooks.begun) - 1 >= 0
