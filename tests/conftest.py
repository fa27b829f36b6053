"""Shared fixtures: the sample photos, the default torch model, pipelines, the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.photos import SOURCE_NAMES as SAMPLES  # the six photos in DATA
from pipeline import stages
from pipeline.defaults import DEFAULT_MAX_PIXELS
from pipeline.driver import Hooks, Pipeline, PipelineConfig
from pipeline.models import LoadedModel, create, family
from wwts.settings import default_cache_dir

# the real backends (Elasticsearch, collector, Jaeger), started or reused for the session
pytest_plugins = ["tests.backends"]

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "samples"  # the six sample photos (they ship in the wheel for `wwts bench`)
WWTS = [sys.executable, "-m", "wwts.cli"]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


def sample_crops(data_dir: Path) -> np.ndarray:
    """The sample photos (SAMPLES, in order) as one batch of the default model's crops."""
    spec = family("efficientnet-lite0").preprocessing
    return np.stack([stages.preprocess(stages.load(data_dir / name, DEFAULT_MAX_PIXELS)[1], spec) for name in SAMPLES])


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@pytest.fixture(scope="session")
def default_model() -> LoadedModel:
    torch.manual_seed(0)
    return create("efficientnet-lite0")


@pytest.fixture(scope="session")
def make_pipeline():
    """A factory of pipelines over the shared model cache (the ONNX graph is exported once
    per cache, by whichever test needs it first)."""

    def make(hooks: Hooks | None = None, **config: object) -> Pipeline:
        config.setdefault("cache_dir", default_cache_dir())
        return Pipeline(PipelineConfig(**config), hooks)  # type: ignore[arg-type]

    return make


# Latency alerts depend on how fast and loaded the machine is; a test that counts console
# lines must not. Runs get an unreachable threshold unless a test sets one (alert tests do).
NO_LATENCY_ALERTS = {"WWTS_LATENCY_ALERT_MS": "1e9"}


def user_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """A user's environment: no OTEL_* or WWTS_* settings but the shared cache, no latency
    alerts, plus `env`."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "WWTS_")) or k == "WWTS_CACHE"}
    full_env.update(NO_LATENCY_ALERTS)
    full_env.update(env or {})
    return full_env


def run_wwts(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    full_env = user_env(env)
    return subprocess.run(
        [*WWTS, *args], capture_output=True, text=True, env=full_env, cwd=cwd or ROOT, timeout=timeout, check=False
    )


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "logs"
    yield path


def unique_photos(folder: Path, count: int, data_dir: Path = DATA) -> list[Path]:
    """Photos with MD5s no other test shares: a sample photo with a few random pixels."""
    import uuid

    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    base = np.asarray(Image.open(data_dir / "coffee.png").convert("RGB")).copy()
    rng = np.random.default_rng(uuid.uuid4().int % 2**32)
    paths = []
    for index in range(count):
        pixels = base.copy()
        pixels[:4, :4] = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        path = folder / f"photo_{index}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_wwts_tail(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the CLI and measure the seconds between its last stdout line (the last result)
    and its exit: the time telemetry adds at the end of a run, free of start-up noise."""
    import tempfile
    import time

    full_env = user_env(env)
    with tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([*WWTS, *args], stdout=subprocess.PIPE, stderr=err, text=True, env=full_env, cwd=ROOT)
        assert process.stdout is not None
        lines, last = [], time.monotonic()
        for line in process.stdout:
            lines.append(line)
            last = time.monotonic()
        code = process.wait(timeout=timeout)
        tail = time.monotonic() - last
        err.seek(0)
        return subprocess.CompletedProcess(process.args, code, "".join(lines), err.read()), tail
