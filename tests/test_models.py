"""The model registry and both loaders: the timm key mapping and the ModelScope layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from pipeline.models import ModelError, create, names
from pipeline.models import resnest101_general as rg
from pipeline.models.efficientnet_lite0 import weights_path


def test_registry_lists_both_models_and_refuses_unknown() -> None:
    assert names() == ["efficientnet-lite0", "resnest101-general"]
    with pytest.raises(ModelError, match="unknown model"):
        create("vgg-nonexistent")


def test_timm_mapping_reproduces_the_original_implementation_exactly() -> None:
    from efficientnet_lite_pytorch import EfficientNet

    default_model = create("efficientnet-lite0")  # fresh: the runner converts modules in place

    original = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights_path())).eval()
    inputs = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = original(inputs)
        actual = default_model.module(inputs)
    assert torch.equal(expected, actual)
    assert len(default_model.labels) == 1000


# -- resnest101-general: a ModelScope-layout checkpoint with random weights ------------

LABELS_IN_META = 54092


@pytest.fixture(scope="module")
def reference_state() -> dict[str, torch.Tensor]:
    model = timm.create_model(rg.ARCHITECTURE, pretrained=False, num_classes=rg.NUM_CLASSES)
    return model.state_dict()


def write_checkpoint(directory: Path, state: object, labels: int = LABELS_IN_META) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / rg.WEIGHTS_FILE)
    lines = (f"{i}\t类别{i}\tcategory-{i}" for i in range(labels))
    (directory / rg.LABELS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def test_resnest_loads_a_nested_module_prefixed_checkpoint(tmp_path: Path, reference_state) -> None:
    wrapped = {"state_dict": {f"module.{k}": v for k, v in reference_state.items()}, "epoch": 3}
    directory = write_checkpoint(tmp_path / "ckpt", wrapped)
    model = create("resnest101-general", directory)
    assert model.labels[0] == "类别0" and model.labels[-1] == f"类别{LABELS_IN_META - 1}"
    assert model.preprocessing.mean == (0.485, 0.456, 0.406)
    loaded = model.module.state_dict()
    key = "fc.weight"
    assert torch.equal(loaded[key], reference_state[key])
    with torch.inference_mode():
        logits = model.module(torch.zeros(1, 3, 224, 224))
    assert logits.shape == (1, rg.NUM_CLASSES)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing", r"1 missing: layer4\.2\.bn3\.weight"),
        ("unexpected", r"1 unexpected: extra\.head\.weight"),
        ("misshaped", r"1 mis-shaped: fc\.bias \(10,\) != \(54092,\)"),
    ],
)
def test_resnest_refuses_a_checkpoint_that_does_not_fit(tmp_path: Path, reference_state, breakage: str, message: str) -> None:
    state = dict(reference_state)
    if breakage == "missing":
        del state["layer4.2.bn3.weight"]
    elif breakage == "unexpected":
        state["extra.head.weight"] = torch.zeros(3)
    else:
        state["fc.bias"] = torch.zeros(10)
    directory = write_checkpoint(tmp_path / breakage, state)
    with pytest.raises(ModelError, match=message):
        create("resnest101-general", directory)


def test_resnest_refuses_a_label_count_that_differs_from_the_classifier(tmp_path: Path, reference_state) -> None:
    directory = write_checkpoint(tmp_path / "labels", reference_state, labels=1000)
    with pytest.raises(ModelError, match="1000 labels but the classifier has 54092"):
        create("resnest101-general", directory)


def test_resnest_needs_a_directory_with_both_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="needs a checkpoint directory"):
        create("resnest101-general", None)
    with pytest.raises(ModelError, match="pytorch_model.pt not found"):
        create("resnest101-general", tmp_path)


def test_meta_info_label_is_the_second_tab_field(tmp_path: Path) -> None:
    meta = tmp_path / "meta_info.txt"
    meta.write_text("0\t猫\tcat\n1\t狗\tdog\n", encoding="utf-8")
    assert rg.read_meta_labels(meta) == ["猫", "狗"]
    meta.write_text("0 猫\n", encoding="utf-8")
    with pytest.raises(ModelError, match="meta_info.txt:1"):
        rg.read_meta_labels(meta)
