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
