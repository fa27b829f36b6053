"""A registry of classification models, one file per family (the timm way).

A model file registers a builder and its preprocessing; the builder returns a
`LoadedModel` on the CPU with its labels, so the stages need nothing else to run it.
The preprocessing is known without building (or importing timm and torch), which lets
`wwts classify` start decoding images while the model is still being built.
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
    """How an RGB image becomes the model's input tensor."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass
class LoadedModel:
    name: str
    module: torch.nn.Module
    labels: list[str]
    preprocessing: Preprocessing
    # True where tests prove that every Conv2d directly followed by a BatchNorm2d in its
    # parent's module order feeds that BatchNorm (pipeline/inference.py folds them).
    foldable_batchnorm: bool = False


Builder = Callable[[Path | None], LoadedModel]

_BUILDERS: dict[str, Builder] = {}
_PREPROCESSING: dict[str, Preprocessing] = {}
# name -> module that registers it; imported only when asked for, so `wwts info` stays fast.
_FAMILIES = {
    "efficientnet-lite0": "pipeline.models.efficientnet_lite0",
    "resnest101-general": "pipeline.models.resnest101_general",
}


def register(name: str, preprocessing: Preprocessing) -> Callable[[Builder], Builder]:
    def wrap(builder: Builder) -> Builder:
        _BUILDERS[name] = builder
        _PREPROCESSING[name] = preprocessing
        return builder

    return wrap


def names() -> list[str]:
    return sorted(_FAMILIES)


def _family(name: str) -> None:
    if name not in _FAMILIES:
        raise ModelError(f"unknown model {name!r}; choose one of: {', '.join(names())}")
    if name not in _BUILDERS:
        importlib.import_module(_FAMILIES[name])  # model files import timm/torch only to build


def preprocessing(name: str) -> Preprocessing:
    """How the model wants its input, without building the model."""
    _family(name)
    return _PREPROCESSING[name]


def create(name: str, model_dir: Path | None = None) -> LoadedModel:
    """Build a registered model on the CPU, in eval mode."""
    _family(name)
    model = _BUILDERS[name](model_dir)
    model.module.eval()
    return model


def read_label_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()
