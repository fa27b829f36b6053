"""A registry of classification models, one file per family (the timm way).

A family is data: its preprocessing, where its weights and labels are (found without
importing torch), and a builder that returns the torch module on the CPU. The runtimes
(`pipeline.runtimes`) turn that module into something that runs; the cheap parts let
`wwts classify` start decoding, and the ONNX Runtime path run, without torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "efficientnet-lite0"


class ModelError(Exception):
    """A model cannot be built: unknown name, missing directory, broken checkpoint."""


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image becomes the model's input: shorter side to `resize`, centre crop
    `crop`, then (x / 255 - mean) / std per channel."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass
class LoadedModel:
    """The trained torch module on the CPU, in eval mode."""

    name: str
    module: torch.nn.Module
    labels: list[str]
    preprocessing: Preprocessing


@dataclass(frozen=True)
class ModelFamily:
    """One registered model. `weights` and `labels` must not import torch."""

    name: str
    preprocessing: Preprocessing
    weights: Callable[[Path | None], Path]  # the file whose content keys exported graphs
    labels: Callable[[Path | None], list[str]]
    build: Callable[[Path | None], LoadedModel]  # imports torch and timm
    # True where tests prove that every Conv2d directly followed by a BatchNorm2d in its
    # parent's module order feeds that BatchNorm (pipeline.runtimes.fold folds them).
    foldable_batchnorm: bool = False


_FAMILIES: dict[str, ModelFamily] = {}
# name -> module that registers it; imported only when asked for, so `wwts info` stays fast.
_MODULES = {
    "efficientnet-lite0": "pipeline.models.efficientnet_lite0",
    "resnest101-general": "pipeline.models.resnest101_general",
}


def register(family: ModelFamily) -> ModelFamily:
    _FAMILIES[family.name] = family
    return family


def names() -> list[str]:
    return sorted(_MODULES)


def family(name: str) -> ModelFamily:
    """The registered family; its module is imported on first use (no torch at import)."""
    if name not in _FAMILIES:
        if name not in _MODULES:
            raise ModelError(f"unknown model {name!r}; choose one of: {', '.join(names())}")
        importlib.import_module(_MODULES[name])
    return _FAMILIES[name]


def preprocessing(name: str) -> Preprocessing:
    """How the model wants its input, without building the model."""
    return family(name).preprocessing


def create(name: str, model_dir: Path | None = None) -> LoadedModel:
    """Build a registered model on the CPU, in eval mode (imports torch and timm)."""
    model = family(name).build(model_dir)
    model.module.eval()
    return model


def read_label_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()
