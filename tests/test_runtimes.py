"""The forward-stage runtimes: the plan, the ONNX export cache, and ONNX Runtime against
torch. Cache behaviour is tested on a tiny registered family (exports in seconds); the
agreement and the torch-free start on the default model."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipeline import device as devices
from pipeline.models import LoadedModel, ModelFamily, Preprocessing, family, register
from pipeline.runtimes import (
    ONNXRUNTIME,
    TORCH,
    Plan,
    Runtime,
    RuntimeUnavailable,
    cache,
    export,
    open_runtime,
    plan,
)
from pipeline.runtimes.torch_runtime import TorchRuntime
from tests.conftest import SAMPLES, sample_crops, softmax

ROOT = Path(__file__).resolve().parent.parent
TINY = Preprocessing(resize=20, crop=16, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
CPU_ORT = Plan(ONNXRUNTIME, "cpu")
_names = itertools.count()


# -- a tiny family: a conv, a BatchNorm to fold, a classifier; weights in a tmp file -----


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU()
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.bn(self.conv(x))).mean((2, 3)))


class Unfaithful(Tiny):
    """Exports to a graph that is not the module: what the check must refuse."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        return logits + 0.5 if torch.compiler.is_exporting() else logits


def save_weights(path: Path, seed: int) -> None:
    torch.manual_seed(seed)
    module = Tiny()
    module.bn.running_mean.uniform_(-0.2, 0.2)
    module.bn.running_var.uniform_(0.5, 1.5)
    torch.save(module.state_dict(), path)


def tiny_family(weights: Path, kind: type[Tiny] = Tiny) -> ModelFamily:
    """Registered under a fresh name, so `family()` finds it and no two tests share one."""
    name = f"test-tiny-{next(_names)}"

    def build(model_dir: Path | None) -> LoadedModel:
        module = kind()
        module.load_state_dict(torch.load(weights, weights_only=True))
        return LoadedModel(name, module.eval(), [str(i) for i in range(10)], TINY)

    registered = register(ModelFamily(
        name, TINY, weights=lambda _: weights, labels=lambda _: [str(i) for i in range(10)], build=build,
        foldable_batchnorm=True,
    ))
    assert family(name) is registered
    return registered


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pt"
    save_weights(path, seed=1)
    return path


class Notices(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


def open_ort(fam: ModelFamily, cache_dir: Path, notices: Callable[[str], None] | None = None) -> Runtime:
    return open_runtime(CPU_ORT, fam, None, cache_dir=cache_dir, threads=2, notify=notices)


def graphs(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / export.MODELS).glob("*.onnx"))


def tiny_batch(count: int = 3) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (count, TINY.crop, TINY.crop, 3), dtype=np.uint8)


def torch_logits(fam: ModelFamily, batch: np.ndarray) -> np.ndarray:
    return TorchRuntime(fam, None, device="cpu", threads=1).forward(batch)


# -- the cache ------------------------------------------------------------------------


def test_a_fresh_cache_exports_once_and_writes_graph_and_metadata(
    tmp_path: Path, weights: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    fam, notices = tiny_family(weights), Notices()
    capfd.readouterr()
    runtime = open_ort(fam, tmp_path, notices)
    assert capfd.readouterr() == ("", "")  # the exporter's progress lines and warnings stay off the console
    assert len(notices) == 1 and notices[0].startswith(f"exported {fam.name} to ONNX in "), notices
    assert "max |logit diff|" in notices[0] and "\n" not in notices[0]
    (graph,) = graphs(tmp_path)
    record = json.loads(export.metadata_path(graph).read_text())
    assert record["graph"]["bytes"] == graph.stat().st_size
    assert record["graph"]["sha256"] == cache.sha256_file(graph)
    assert record["key"]["model"] == fam.name and record["key"]["weights_sha256"] == cache.sha256_file(weights)
    assert {"torch", "opset", "format"} <= record["key"].keys()
    assert record["max_logit_diff"] <= export.MAX_LOGIT_DIFF and record["export_seconds"] > 0
    assert not list((tmp_path / export.MODELS).glob(".*.tmp"))  # no temporary left behind
    batch = tiny_batch()
    np.testing.assert_allclose(runtime.forward(batch), torch_logits(fam, batch), atol=1e-5)
    assert runtime.name == ONNXRUNTIME and runtime.device == "cpu" and runtime.version


def test_a_warm_cache_is_reused_without_hashing_anything(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fam = tiny_family(weights)
    open_ort(fam, tmp_path).close()
    (graph,) = graphs(tmp_path)
    before = graph.stat()

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"{path} hashed again")

    monkeypatch.setattr(cache, "sha256_file", no_hashing)
    monkeypatch.setattr(export, "sha256_file", no_hashing)
    notices = Notices()
    runtime = open_ort(fam, tmp_path, notices)
    assert notices == [] and graphs(tmp_path) == [graph]
    assert (graph.stat().st_mtime_ns, graph.stat().st_size) == (before.st_mtime_ns, before.st_size)
    assert runtime.forward(tiny_batch(1)).shape == (1, 10)


def _truncate(graph: Path) -> None:
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])


def _garbage(graph: Path) -> None:
    graph.write_bytes(np.random.default_rng(0).bytes(graph.stat().st_size))  # same size: only the hash tells


def _bad_metadata(graph: Path) -> None:
    export.metadata_path(graph).write_text("{not json")


def _stale(graph: Path) -> None:
    metadata = export.metadata_path(graph)
    record = json.loads(metadata.read_text())
    record["key"]["format"] = -1
    metadata.write_text(json.dumps(record))


@pytest.mark.parametrize(
    ("damage", "said"),
    [(_truncate, "truncated"), (_garbage, "damaged"), (_bad_metadata, "no readable metadata"), (_stale, "stale")],
)
def test_a_damaged_cache_is_told_in_one_line_and_rebuilt(
    tmp_path: Path, weights: Path, damage: Callable[[Path], None], said: str
) -> None:
    fam = tiny_family(weights)
    open_ort(fam, tmp_path).close()
    (graph,) = graphs(tmp_path)
    damage(graph)
    notices = Notices()
    runtime = open_ort(fam, tmp_path, notices)
    assert len(notices) == 1 and said in notices[0] and "exported" in notices[0] and "\n" not in notices[0], notices
    assert export.problem(graph, export.key_parts(fam, None, tmp_path / export.MODELS)) is None
    batch = tiny_batch()
    np.testing.assert_allclose(runtime.forward(batch), torch_logits(fam, batch), atol=1e-5)


def test_new_weights_get_a_new_key_and_a_new_export(tmp_path: Path, weights: Path) -> None:
    fam = tiny_family(weights)
    open_ort(fam, tmp_path).close()
    (first,) = graphs(tmp_path)
    save_weights(weights, seed=2)  # same path, new content: the memoised hash must not be used
    notices = Notices()
    runtime = open_ort(fam, tmp_path, notices)
    assert len(notices) == 1 and notices[0].startswith("exported"), notices
    assert len(graphs(tmp_path)) == 2 and first in graphs(tmp_path)
    batch = tiny_batch()
    np.testing.assert_allclose(runtime.forward(batch), torch_logits(fam, batch), atol=1e-5)


def test_a_graph_that_differs_from_torch_is_refused_and_not_cached(tmp_path: Path, weights: Path) -> None:
    fam, notices = tiny_family(weights, kind=Unfaithful), Notices()
    with pytest.raises(RuntimeUnavailable, match="differs from torch by 0.5"):
        open_ort(fam, tmp_path, notices)
    assert notices == []
    assert [p.name for p in (tmp_path / export.MODELS).iterdir() if p.suffix in (".onnx", ".json", ".tmp")] == [
        cache.WEIGHTS_MEMO
    ]


def test_the_weights_hash_is_remembered_by_path_size_and_mtime(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = cache.sha256_file(weights)
    assert cache.weights_sha256(weights, tmp_path) == expected
    monkeypatch.setattr(cache, "sha256_file", lambda path: "not hashed again")
    assert cache.weights_sha256(weights, tmp_path) == expected
    save_weights(weights, seed=3)
    assert cache.weights_sha256(weights, tmp_path) == "not hashed again"


def test_set_threads_replaces_the_session_and_keeps_the_results(tmp_path: Path, weights: Path) -> None:
    runtime = open_ort(tiny_family(weights), tmp_path)
    batch = tiny_batch()
    first = runtime.forward(batch)
    runtime.set_threads(1)  # while decoding
    assert runtime.threads == 1  # type: ignore[attr-defined]
    np.testing.assert_allclose(runtime.forward(batch), first, atol=1e-6)
    runtime.set_threads(2)  # decoding done
    assert runtime.threads == 2  # type: ignore[attr-defined]
    np.testing.assert_allclose(runtime.forward(batch), first, atol=1e-6)
    runtime.close()
    with pytest.raises(RuntimeError, match="closed"):
        runtime.forward(batch)


def test_runtimes_refuse_a_batch_that_is_not_uint8_nhwc(tmp_path: Path, weights: Path) -> None:
    fam = tiny_family(weights)
    for runtime in (open_ort(fam, tmp_path), TorchRuntime(fam, None, device="cpu", threads=1)):
        with pytest.raises(ValueError, match="uint8"):
            runtime.forward(tiny_batch().astype(np.float32))
        with pytest.raises(ValueError, match="uint8"):
            runtime.forward(tiny_batch()[:, :8])


# -- the default model: ONNX Runtime against torch, and a start without torch ----------


@pytest.fixture(scope="module")
def lite0_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache_dir = tmp_path_factory.mktemp("cache")
    open_ort(family("efficientnet-lite0"), cache_dir).close()
    return cache_dir


def test_onnxruntime_agrees_with_torch_on_the_sample_photos(lite0_cache: Path, data_dir: Path) -> None:
    fam = family("efficientnet-lite0")
    batch = sample_crops(data_dir)
    ort_runtime = open_ort(fam, lite0_cache)
    torch_runtime = TorchRuntime(fam, None, device="cpu", threads=2)
    ort_scores, torch_scores = softmax(ort_runtime.forward(batch)), softmax(torch_runtime.forward(batch))
    for name, ours, theirs in zip(SAMPLES, ort_scores, torch_scores, strict=True):
        assert list(np.argsort(-ours)[:5]) == list(np.argsort(-theirs)[:5]), name
        assert np.abs(ours - theirs).max() < 0.002, name
    one = ort_runtime.forward(batch[:1])  # batch 1 too: the batch axis is dynamic
    np.testing.assert_allclose(one[0], ort_runtime.forward(batch)[0], atol=1e-4)


def test_a_warm_cache_runs_without_importing_torch(lite0_cache: Path, data_dir: Path) -> None:
    script = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(ROOT)!r})
from pipeline import stages
from pipeline.models import family
from pipeline.runtimes import open_runtime, plan
notices = []
fam = family("efficientnet-lite0")
runtime = open_runtime(plan(), fam, None, cache_dir=Path({str(lite0_cache)!r}), threads=2, notify=notices.append)
_, picture = stages.load({str(data_dir / 'coffee.png')!r}, 10**8)
logits = runtime.forward(stages.stack([stages.preprocess(picture, fam.preprocessing)]))
assert logits.shape == (1, 1000) and notices == [], (logits.shape, notices)
imported = [name for name in ("torch", "timm", "torchvision") if name in sys.modules]
assert not imported, imported
print("ok", runtime.name)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok onnxruntime", done.stderr


# -- the plan -------------------------------------------------------------------------


def test_auto_on_a_machine_without_gpu_is_onnxruntime_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "gpu_visible", lambda: False)
    assert plan() == Plan(ONNXRUNTIME, "cpu")
    assert plan("torch") == Plan(TORCH, "cpu")
    assert plan(" ONNXRuntime ", "CPU") == Plan(ONNXRUNTIME, "cpu")


@pytest.mark.skipif(devices.gpu_visible(), reason="this machine has a GPU")
def test_auto_here_is_onnxruntime_on_cpu_and_asks_no_torch() -> None:
    script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from pipeline.runtimes import plan
print(plan())
assert "torch" not in sys.modules
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "Plan(runtime='onnxruntime', device='cpu')", done.stderr


def test_cuda_means_torch_and_onnxruntime_on_cuda_is_refused() -> None:
    assert plan("auto", "cuda") == Plan(TORCH, "cuda")
    assert plan("torch", "cuda:1") == Plan(TORCH, "cuda:1")
    for where in ("cuda", "cuda:0"):
        with pytest.raises(RuntimeUnavailable, match="CPU only"):
            plan("onnxruntime", where)


@pytest.mark.parametrize("runtime", ["tensorrt", "onnx", "", "torch2"])
def test_unknown_runtimes_are_refused(runtime: str) -> None:
    with pytest.raises(RuntimeUnavailable, match="is not auto, onnxruntime or torch"):
        plan(runtime)


@pytest.mark.parametrize("where", ["gpu", "cuda:x", "cuda:", "tpu", ""])
def test_unknown_devices_are_refused(where: str) -> None:
    with pytest.raises(devices.DeviceError):
        plan("auto", where)
