"""Startup facts for `wwts info` and the `wwts.startup` record: runtime, accelerator,
model, and which backends are configured and answer. Secrets show as set/unset."""

from __future__ import annotations

import platform
import socket
import urllib.parse
from pathlib import Path
from typing import Any

from pipeline.models import DEFAULT_MODEL, names
from telemetry.resources import Nvml
from telemetry.tracing import choose_exporter_kind, describe_target, otlp_endpoint
from wwts import __version__
from wwts.settings import Settings


def runtime_facts(device: str | None = None) -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    nvml = Nvml()
    facts: dict[str, Any] = {
        "wwts": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "gpu": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "gpu_driver": nvml.driver_version(),
        "cpu_threads": torch.get_num_threads(),
        "host": socket.gethostname(),
    }
    if device is not None:
        facts["device"] = device
    return facts


def _tcp_answers(url: str, default_port: int, timeout: float = 1.0) -> bool:
    parsed = urllib.parse.urlparse(url if "://" in url else f"http://{url}")
    try:
        with socket.create_connection((parsed.hostname or "localhost", parsed.port or default_port), timeout=timeout):
            return True
    except OSError:
        return False


def backend_facts(settings: Settings) -> dict[str, Any]:
    from telemetry.elastic import ping

    trace_target = describe_target(settings.log_dir)
    elasticsearch: dict[str, Any] = {
        "url": settings.es_url,
        "api_key": "set" if settings.es_api_key else "unset",
        "username": "set" if settings.es_username else "unset",
        "password": "set" if settings.es_password else "unset",
        "ca_certs": settings.es_ca_certs,
        "answers": ping(settings) if settings.es_url else None,
    }
    traces: dict[str, Any] = {"exporter": trace_target.kind, "target": trace_target.detail}
    if choose_exporter_kind() == "otlp":
        traces["answers"] = _tcp_answers(otlp_endpoint(), 4317)
        traces["headers"] = "set" if _otlp_headers_set() else "unset"
    return {"log_dir": str(Path(settings.log_dir).resolve()), "elasticsearch": elasticsearch, "traces": traces}


def _otlp_headers_set() -> bool:
    import os

    return bool(os.environ.get("OTEL_EXPORTER_OTLP_HEADERS") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS"))


def all_facts(settings: Settings) -> dict[str, Any]:
    return {
        **runtime_facts(),
        "models": names(),
        "default_model": DEFAULT_MODEL,
        "model_dir": str(settings.model_dir) if settings.model_dir else None,
        **backend_facts(settings),
    }
