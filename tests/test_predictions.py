"""The default model's answers on the scikit-image sample photos
(../shared/reference/predictions.md), through the real load → preprocess → forward →
postprocess stages."""

from __future__ import annotations

import pytest
import torch

from pipeline import stages

# image -> [(class id or set of acceptable ids for a close call, probability)]
REFERENCE = {
    "chelsea.png": [({282, 285}, 0.38), ({282, 285}, 0.38), ({281}, 0.17)],
    "coffee.png": [({967}, 0.96), ({968}, 0.01), ({925}, 0.01)],
    "astronaut.png": [({450}, 0.13), ({560}, 0.12), ({573}, 0.07)],
    "rocket.jpg": [({657}, 0.36), ({744}, 0.25), ({540}, 0.07)],
    "motorcycle_left.png": [({665}, 0.58), ({670}, 0.12), ({535}, 0.07)],
    "camera.png": [({872}, 0.94), ({593}, 0.01), ({447}, 0.01)],
}
TOLERANCE = 0.02


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_predictions(name: str, data_dir, default_model) -> None:
    loaded = stages.load(data_dir / name)
    spec = default_model.preprocessing
    batch = stages.to_batch([stages.preprocess(loaded.image, spec)], spec)
    logits = stages.forward(default_model.module, batch, torch.device("cpu"))
    top = stages.postprocess(logits[0], default_model.labels, 3)
    for prediction, (ids, probability) in zip(top, REFERENCE[name], strict=True):
        assert prediction.class_id in ids, (name, top)
        assert prediction.score == pytest.approx(probability, abs=TOLERANCE), (name, top)
        assert prediction.label == default_model.labels[prediction.class_id]
    assert [p.rank for p in top] == [1, 2, 3]


def test_chelsea_top3_names_the_cats_in_chinese(data_dir, default_model) -> None:
    loaded = stages.load(data_dir / "chelsea.png")
    spec = default_model.preprocessing
    logits = stages.forward(
        default_model.module, stages.to_batch([stages.preprocess(loaded.image, spec)], spec), torch.device("cpu")
    )
    labels = {p.label for p in stages.postprocess(logits[0], default_model.labels, 3)}
    assert {"虎斑猫", "埃及猫"} <= labels


def test_postprocess_rounds_to_four_decimals_and_sorts() -> None:
    logits = torch.tensor([0.0, 2.0, 1.0, -1.0])
    top = stages.postprocess(logits, ["a", "b", "c", "d"], 5)
    assert [p.class_id for p in top] == [1, 2, 0, 3]
    assert [p.score for p in top] == [round(s, 4) for s in torch.softmax(logits, 0)[[1, 2, 0, 3]].tolist()]
    assert sum(p.score for p in top) == pytest.approx(1.0, abs=1e-3)


def test_reference_predictions_hold_through_the_runner(data_dir) -> None:
    """The path `wwts classify` takes: decoded ahead, crop-box resampling, uint8 crops
    normalised per batch, BatchNorm folded, channels_last, a batch of 4 plus a rest."""
    from pipeline.models import create
    from pipeline.runner import Runner

    model = create("efficientnet-lite0")  # fresh: the runner folds it in place
    names = sorted(REFERENCE)
    results = list(Runner(model, torch.device("cpu"), top_k=3, batch_size=4).run([str(data_dir / n) for n in names]))
    assert model.foldable_batchnorm and not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.module.modules())
    for name, result in zip(names, results, strict=True):
        assert result.ok, (name, result.error)
        for prediction, (ids, probability) in zip(result.predictions, REFERENCE[name], strict=True):
            assert prediction.class_id in ids, (name, result.predictions)
            assert prediction.score == pytest.approx(probability, abs=TOLERANCE), (name, result.predictions)
