"""Shared fixtures: the sample photos, the default model built once, a traced runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from pipeline.models import LoadedModel, create

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
WWTS = [sys.executable, "-m", "wwts.cli"]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def default_model() -> LoadedModel:
    torch.manual_seed(0)
    return create("efficientnet-lite0")


def run_wwts(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "WWTS_"))}
    full_env.update(env or {})
    return subprocess.run(
        [*WWTS, *args], capture_output=True, text=True, env=full_env, cwd=cwd or ROOT, timeout=timeout, check=False
    )


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "logs"
    yield path


# -- real backends (started by `make test`; a missing one is a failure, not a skip) ----


def _backend_url(variable: str, what: str) -> str:
    url = os.environ.get(variable)
    if not url:
        pytest.fail(f"{variable} is not set: run the suite with `make test`, which starts the local {what}")
    return url


@pytest.fixture(scope="session")
def es_url() -> str:
    from elasticsearch import Elasticsearch

    url = _backend_url("WWTS_TEST_ES_URL", "Elasticsearch")
    try:
        Elasticsearch(url, request_timeout=5).cluster.health(wait_for_status="yellow", timeout="30s")
    except Exception as exc:  # noqa: BLE001 - any failure here means the backend is missing
        pytest.fail(f"Elasticsearch at {url} does not answer: {exc}")
    return url


@pytest.fixture(scope="session")
def es(es_url: str):
    from elasticsearch import Elasticsearch

    return Elasticsearch(es_url, request_timeout=30)


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


@pytest.fixture(scope="session")
def otlp_endpoint() -> str:
    """The local collector's OTLP/gRPC endpoint (it exports into the test Elasticsearch)."""
    import socket
    import urllib.parse

    url = _backend_url("WWTS_TEST_OTLP_ENDPOINT", "OpenTelemetry Collector")
    parsed = urllib.parse.urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port or 4317), timeout=5).close()
    except OSError as exc:
        pytest.fail(f"the collector at {url} does not answer: {exc}")
    return url


def run_wwts_tail(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the CLI and measure the seconds between its last stdout line (the last result)
    and its exit: the time telemetry adds at the end of a run, free of start-up noise."""
    import tempfile
    import time

    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "WWTS_"))}
    full_env.update(env or {})
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
