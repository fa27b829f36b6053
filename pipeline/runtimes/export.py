"""The torch module exported to an ONNX graph, checked against torch, cached per weights.

Exporting costs seconds and imports torch; a cached graph costs neither. The cache key
is everything the graph depends on — the weights' content, the model, the exporter and
its versions, and our own format — so a new checkpoint or a new torch exports anew and
an old graph never runs for new weights. Each graph is checked against its metadata
(size, sha256) before use: a truncated or damaged file is exported again rather than
failing inside ONNX Runtime or, worse, answering wrongly.

Why these choices (both measured on the default model):
- `torch.onnx.export(dynamo=True)`: the TorchScript exporter is several times quicker to
  export but deprecated, and its graph of timm's TF-"same" padding keeps the padding
  arithmetic as ~500 shape nodes; dynamo's graph is the convolutions alone and runs
  faster. Its progress lines and warnings are captured: a user sees one line.
- Normalisation inside the graph (uint8 NHWC in): ONNX Runtime casts, scales and
  transposes inside its own pool, in the same time or less than NumPy would take holding
  the main thread, and the graph is self-contained.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.runtimes import Notify, RuntimeUnavailable, package_version
from pipeline.runtimes.cache import read_json, replacing, sha256_file, weights_sha256, write_json

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from pipeline.models import ModelFamily

FORMAT_VERSION = 1  # ours: bump when what goes into a graph changes (inputs, normalisation)
OPSET = 18
EXPORTER = "torch.onnx.export(dynamo=True)"
MODELS = "models"  # the cache's subdirectory for graphs
INPUT, OUTPUT = "pixels", "logits"
MAX_LOGIT_DIFF = 1e-3  # a graph that differs from torch by more is refused
EXAMPLE_BATCH = 2  # torch.export specialises sizes 0 and 1: 2 keeps the batch axis free
CHECK_BATCH = 3  # not the example's: the check also proves the batch axis dynamic
CHECK_SEED = 0
MISSING = "missing"  # what `problem` says on a first run
EXPORTER_LOGGERS = ("torch", "onnxscript", "onnx_ir")  # quieted while exporting


def cached_graph(family: ModelFamily, model_dir: Path | None, cache_dir: Path, notify: Notify) -> Path:
    """The checked graph for `family` with the weights in `model_dir`, exported (and one
    line told) where none is cached or the cached one is damaged or stale."""
    folder = cache_dir / MODELS
    parts = key_parts(family, model_dir, folder)
    graph = folder / f"{family.name}-{cache_key(parts)}.onnx"
    if problem(graph, parts) is None:
        return graph
    with _locked(graph):  # a second process exporting the same graph waits, then reuses it
        found = problem(graph, parts)
        if found is None:
            return graph
        seconds, diff = export(family, model_dir, graph, parts)
    done = f"{family.name} to ONNX in {seconds:.1f} s (max |logit diff| {diff:.0e}); cached at {graph}"
    notify(f"exported {done}" if found == MISSING else f"cached ONNX graph {found}: exported {done}")
    return graph


def key_parts(family: ModelFamily, model_dir: Path | None, folder: Path) -> dict[str, Any]:
    """What a graph depends on; found without importing torch."""
    return {
        "model": family.name,
        "weights_sha256": weights_sha256(family.weights(model_dir), folder),
        "exporter": EXPORTER,
        "torch": package_version("torch"),
        "onnxscript": package_version("onnxscript"),
        "opset": OPSET,
        "format": FORMAT_VERSION,
    }


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def metadata_path(graph: Path) -> Path:
    return graph.with_suffix(".json")


def problem(graph: Path, parts: dict[str, Any]) -> str | None:
    """None if `graph` is the intact export for `parts`; else what is wrong with it
    (`MISSING` on a first run). The graph is hashed only when its modification time is
    not the one recorded at export, so an untouched graph costs a `stat`."""
    metadata = metadata_path(graph)
    if not graph.exists() and not metadata.exists():
        return MISSING
    record = read_json(metadata)
    if not isinstance(record, dict) or not isinstance(record.get("graph"), dict):
        return f"{graph.name} has no readable metadata"
    if record.get("key") != parts:
        return f"{graph.name} is stale (exported for other weights or versions)"
    expected = record["graph"]
    try:
        stat = graph.stat()
    except FileNotFoundError:
        return f"{graph.name} is missing"
    if stat.st_size != expected.get("bytes"):
        return f"{graph.name} is truncated or overwritten ({stat.st_size} bytes, {expected.get('bytes')} expected)"
    if stat.st_mtime_ns != expected.get("mtime_ns") and sha256_file(graph) != expected.get("sha256"):
        return f"{graph.name} is damaged (its sha256 is not the exported one)"
    return None


def export(family: ModelFamily, model_dir: Path | None, graph: Path, parts: dict[str, Any]) -> tuple[float, float]:
    """Export, check against torch, and cache `graph` with its metadata; returns the
    seconds it took and the max |logit difference|. Refuses (RuntimeUnavailable, nothing
    cached) a graph that differs from torch by more than MAX_LOGIT_DIFF."""
    started = time.perf_counter()
    try:
        from pipeline.runtimes.torch_runtime import inference_module
    except ImportError as exc:
        raise RuntimeUnavailable(f"exporting {family.name} to ONNX (once, then cached) needs torch: {exc}") from exc
    module = inference_module(family, model_dir)
    crop = family.preprocessing.crop
    with replacing(graph) as temporary:
        write_graph(module, crop, temporary)
        diff = max_logit_diff(module, temporary, comparison_input(crop))
        if not diff <= MAX_LOGIT_DIFF:  # NaN is refused too
            raise RuntimeUnavailable(
                f"the ONNX graph of {family.name} differs from torch by {diff:.2g} (more than {MAX_LOGIT_DIFF:g}); "
                "not cached: use --runtime torch"
            )
        sha256, size = sha256_file(temporary), temporary.stat().st_size
    seconds = time.perf_counter() - started
    write_json(metadata_path(graph), {
        "key": parts,
        "graph": {"file": graph.name, "bytes": size, "sha256": sha256, "mtime_ns": graph.stat().st_mtime_ns},
        "input": {"name": INPUT, "dtype": "uint8", "shape": ["batch", crop, crop, 3]},
        "output": OUTPUT,
        "max_logit_diff": diff,
        "export_seconds": round(seconds, 3),
        "versions": {name: package_version(name) for name in ("torch", "onnxscript", "onnx", "onnxruntime")},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    return seconds, diff


def write_graph(module: nn.Module, crop: int, path: Path) -> None:
    """uint8 NHWC in (dynamic batch), float32 logits out, weights inside the one file;
    whatever the exporter prints or warns is kept off the console (and in the error)."""
    import torch

    example = torch.zeros((EXAMPLE_BATCH, crop, crop, 3), dtype=torch.uint8)
    with _captured() as output:
        try:
            torch.onnx.export(
                module, (example,), str(path), input_names=[INPUT], output_names=[OUTPUT], opset_version=OPSET,
                dynamo=True, external_data=False, dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False,
            )
        except Exception as exc:  # the exporter raises many types; the message and its last words say why
            said = " | ".join(output.getvalue().strip().splitlines()[-3:])
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RuntimeUnavailable(f"exporting to ONNX failed: {first}" + (f" ({said})" if said else "")) from exc


def comparison_input(crop: int) -> np.ndarray:
    """The fixed input the check compares on: seeded, so every export is checked alike."""
    import numpy as np

    return np.random.default_rng(CHECK_SEED).integers(0, 256, (CHECK_BATCH, crop, crop, 3), dtype=np.uint8)


def max_logit_diff(module: nn.Module, graph: Path, pixels: np.ndarray) -> float:
    """max |ONNX Runtime − torch| over the logits of `pixels` (inf if the shapes differ)."""
    import numpy as np
    import torch

    from pipeline.runtimes.ort import new_session

    with torch.inference_mode():
        expected = module(torch.from_numpy(pixels)).float().numpy()
    try:
        session = new_session(graph, threads=0)
        (actual,) = session.run([OUTPUT], {INPUT: pixels})
    except Exception as exc:  # ONNX Runtime's own Fail/InvalidGraph/NotImplemented types
        raise RuntimeUnavailable(f"ONNX Runtime cannot run the exported graph: {exc}") from exc
    if actual.shape != expected.shape:
        return math.inf
    return float(np.abs(actual.astype(np.float32) - expected).max())


@contextmanager
def _captured() -> Iterator[io.StringIO]:
    """Prints, warnings and the exporters' log records below ERROR, kept from the console."""
    output = io.StringIO()
    loggers = [logging.getLogger(name) for name in EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), redirect_stdout(output), redirect_stderr(output):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield output
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


@contextmanager
def _locked(graph: Path) -> Iterator[None]:
    lock = graph.with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
