"""Alibaba's 万物识别-中文-通用领域 (ModelScope damo/cv_resnest101_general_recognition).

A checkpoint directory holds `pytorch_model.pt` (a state dict, possibly nested under
`state_dict`, keys possibly prefixed `module.`) and `meta_info.txt` (line i is class i,
the label is its second tab-separated field). ModelScope's own loader silently skips
tensors that do not fit; we refuse them, naming each, because a half-loaded classifier
answers confidently and wrongly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.models import LoadedModel, ModelError, ModelFamily, Preprocessing, register

NAME = "resnest101-general"
NUM_CLASSES = 54092
ARCHITECTURE = "resnest101e"
WEIGHTS_FILE = "pytorch_model.pt"
LABELS_FILE = "meta_info.txt"
PREPROCESSING = Preprocessing(
    resize=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)


def read_meta_labels(path: Path) -> list[str]:
    labels = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) < 2 or not fields[1].strip():
            raise ModelError(f"{path}:{number}: expected a tab-separated label in the second field")
        labels.append(fields[1].strip())
    return labels


def unwrap_state_dict(raw: Any) -> dict[str, Any]:
    """Accept `{'state_dict': {...}}` and DataParallel's `module.` prefixes."""
    if isinstance(raw, Mapping) and "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping):
        raise ModelError(f"{WEIGHTS_FILE} does not hold a state dict (found {type(raw).__name__})")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in raw.items()}


def check_fit(state: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """Refuse missing, unexpected and mis-shaped tensors in one message that names them."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(v.shape)
    ]
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            shown = ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
            problems.append(f"{len(keys)} {what}: {shown}")
    if problems:
        raise ModelError(f"checkpoint does not fit {ARCHITECTURE}: " + "; ".join(problems))


def checkpoint_dir(model_dir: Path | None) -> Path:
    """The checkpoint directory, checked to hold both files."""
    if model_dir is None:
        raise ModelError(f"{NAME} needs a checkpoint directory: --model-dir or WWTS_MODEL_DIR")
    model_dir = Path(model_dir)
    for name in (WEIGHTS_FILE, LABELS_FILE):
        if not (model_dir / name).is_file():
            raise ModelError(f"{model_dir / name} not found (a ModelScope checkpoint directory holds {WEIGHTS_FILE} and {LABELS_FILE})")
    return model_dir


def weights_path(model_dir: Path | None) -> Path:
    return checkpoint_dir(model_dir) / WEIGHTS_FILE


def labels(model_dir: Path | None) -> list[str]:
    return read_meta_labels(checkpoint_dir(model_dir) / LABELS_FILE)


def build(model_dir: Path | None = None) -> LoadedModel:
    model_dir = checkpoint_dir(model_dir)

    import timm
    import torch

    labels = read_meta_labels(model_dir / LABELS_FILE)
    module = timm.create_model(ARCHITECTURE, pretrained=False, num_classes=NUM_CLASSES)
    try:
        raw = torch.load(model_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise ModelError(f"{model_dir / WEIGHTS_FILE} cannot be read: {exc}") from exc
    state = unwrap_state_dict(raw)
    check_fit(state, module.state_dict())
    module.load_state_dict(state, strict=True)
    classes = module.get_classifier().out_features
    if len(labels) != classes:
        raise ModelError(f"{LABELS_FILE} has {len(labels)} labels but the classifier has {classes} classes")
    return LoadedModel(NAME, module, labels, PREPROCESSING)


FAMILY = register(
    ModelFamily(NAME, PREPROCESSING, weights=weights_path, labels=labels, build=build, foldable_batchnorm=True)
)
