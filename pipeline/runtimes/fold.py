"""BatchNorm folded into the convolution before it: the torch module rearranged for
inference only.

Folding (torch's `fuse_conv_bn_eval`) leaves the function unchanged up to float rounding
and removes one full pass over every activation map: EfficientNet-Lite0's forward on 2
CPU cores went from ~32 to ~17 ms per image in torch (benchmarks/README.md), and the
exported ONNX graph carries no BatchNorm to fold at load time. timm's `BatchNormAct2d`
carries the activation that follows the norm; the fold keeps that activation.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(parent: nn.Module) -> int:
    """Fold each eval-mode BatchNorm2d into the Conv2d registered just before it in the
    same parent; returns how many were folded. Call it under `torch.no_grad()`.

    Registration order stands in for data flow, which holds for the model families that
    set `foldable_batchnorm` (tests/test_inference.py compares outputs).
    """
    folded = 0
    names = list(parent._modules)
    for index, name in enumerate(names):
        child = parent._modules[name]
        after = parent._modules[names[index + 1]] if index + 1 < len(names) else None
        if isinstance(child, nn.Conv2d) and isinstance(after, nn.BatchNorm2d) and _foldable(after):
            parent._modules[name] = fuse_conv_bn_eval(child, after)
            parent._modules[names[index + 1]] = _what_follows_the_norm(after)
            folded += 1
        elif child is not None:
            folded += fold_batchnorm(child)
    return folded


def _what_follows_the_norm(norm: nn.BatchNorm2d) -> nn.Module:
    """A plain BatchNorm2d becomes the identity; timm's BatchNormAct2d keeps its
    dropout and activation (`drop`, `act`), applied in that order as it does."""
    parts = [
        part for part in (getattr(norm, "drop", None), getattr(norm, "act", None))
        if isinstance(part, nn.Module) and not isinstance(part, nn.Identity)
    ]
    if not parts:
        return nn.Identity()
    return parts[0] if len(parts) == 1 else nn.Sequential(*parts)


def _foldable(norm: nn.BatchNorm2d) -> bool:
    return not norm.training and norm.running_mean is not None and norm.running_var is not None
