"""The default model's answers on the scikit-image sample photos (the table in
benchmarks/samples/README.md), through the real load → preprocess → forward → postprocess path,
on both runtimes."""

from __future__ import annotations

import numpy as np
import pytest

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


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_reference_predictions_hold_through_the_pipeline(runtime: str, data_dir, make_pipeline) -> None:
    """The path `wwts classify` takes: decoded ahead, crop-box resampling, uint8 crops,
    a batch of 4 plus a rest, on the runtime named."""
    names = sorted(REFERENCE)
    with make_pipeline(runtime=runtime, top_k=3, batch_size=4) as pipeline:
        results = list(pipeline.run([str(data_dir / n) for n in names]))
    for name, result in zip(names, results, strict=True):
        assert result.ok, (name, result.error)
        assert result.runtime == runtime
        for prediction, (ids, probability) in zip(result.predictions, REFERENCE[name], strict=True):
            assert prediction.class_id in ids, (name, result.predictions)
            assert prediction.score == pytest.approx(probability, abs=TOLERANCE), (name, result.predictions)
            assert prediction.label == pipeline.labels[prediction.class_id]
        assert [p.rank for p in result.predictions] == [1, 2, 3]


def test_chelsea_top3_names_the_cats_in_chinese(data_dir, make_pipeline) -> None:
    with make_pipeline(top_k=3) as pipeline:
        [result] = list(pipeline.run([str(data_dir / "chelsea.png")]))
    assert {"虎斑猫", "埃及猫"} <= {p.label for p in result.predictions}


def test_postprocess_rounds_to_four_decimals_and_sorts() -> None:
    logits = np.array([0.0, 2.0, 1.0, -1.0], dtype=np.float32)
    top = stages.postprocess(logits, ["a", "b", "c", "d"], 5)
    assert [p.class_id for p in top] == [1, 2, 0, 3]
    exp = np.exp(logits - logits.max())
    softmax = exp / exp.sum()
    assert [p.score for p in top] == [round(float(s), 4) for s in softmax[[1, 2, 0, 3]]]
    assert sum(p.score for p in top) == pytest.approx(1.0, abs=1e-3)


def test_postprocess_takes_the_k_best_of_many_classes() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=54092).astype(np.float32)
    top = stages.postprocess(logits, [str(i) for i in range(54092)], 5)
    assert [p.class_id for p in top] == np.argsort(-logits)[:5].tolist()
