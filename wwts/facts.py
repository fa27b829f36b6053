"""Startup facts for `wwts info` and the `wwts.startup` record: versions, runtime,
accelerator, model, and which backends are configured and answer. No torch import:
versions come from package metadata, GPUs from NVML. Secrets show as set/unset."""

from __future__ import annotations

import platform
import socket
import urllib.parse
from pathlib import Path
from typing import Any

from pipeline.models import DEFAULT_MODEL, names
from pipeline.runtimes import ONNXRUNTIME, TORCH, Plan, package_version
from telemetry.config import OTLP, OtelConfig
from telemetry.resources import Nvml
from telemetry.tracing import describe
from wwts import __version__
from wwts.settings import Settings


def runtime_facts(plan: Plan | None = None, model: str | None = None) -> dict[str, Any]:
    nvml = Nvml()
    facts: dict[str, Any] = {
        "wwts": __version__,
        "python": platform.python_version(),
        "onnxruntime": package_version(ONNXRUNTIME),
        "torch": package_version(TORCH),
        "gpu": nvml.names(),
        "gpu_driver": nvml.driver_version(),
        "host": socket.gethostname(),
    }
    if plan is not None:
        facts.update(runtime=plan.runtime, runtime_version=package_version(plan.runtime), device=plan.device)
    if model is not None:
        facts["model"] = model
    return facts


def startup_line(facts: dict[str, Any]) -> str:
    return (
        f"Python {facts['python']} | runtime {facts.get('runtime')} {facts.get('runtime_version')} | "
        f"device: {facts.get('device')} | GPU: {', '.join(facts['gpu']) or 'none'} | model: {facts.get('model')}"
    )


def _tcp_answers(url: str, default_port: int, timeout: float = 1.0) -> bool:
    parsed = urllib.parse.urlparse(url if "://" in url else f"http://{url}")
    try:
        with socket.create_connection((parsed.hostname or "localhost", parsed.port or default_port), timeout=timeout):
            return True
    except OSError:
        return False


def backend_facts(settings: Settings, otel: OtelConfig) -> dict[str, Any]:
    from telemetry.elastic import ping

    es = settings.elasticsearch
    elasticsearch: dict[str, Any] = {
        "url": es.url,
        "api_key": "set" if es.api_key else "unset",
        "username": "set" if es.username else "unset",
        "password": "set" if es.password else "unset",
        "ca_certs": es.ca_certs,
        "answers": ping(es) if settings.es else None,
    }
    target = describe(otel.traces, settings.log_dir)
    traces: dict[str, Any] = {"exporter": target.kind, "target": target.detail}
    if otel.traces.kind == OTLP and otel.traces.endpoint:
        traces["answers"] = _tcp_answers(otel.traces.endpoint, 4318 if otel.traces.http else 4317)
        traces["headers"] = "set" if otel.traces.headers_set else "unset"
    return {"log_dir": str(Path(settings.log_dir).resolve()), "elasticsearch": elasticsearch, "traces": traces}


def all_facts(settings: Settings) -> dict[str, Any]:
    from pipeline.runtimes import plan

    try:
        chosen: Plan | None = plan(settings.runtime, "auto")
    except Exception:  # a bad WWTS_RUNTIME is shown, not fatal, in `info`
        chosen = None
    return {
        **runtime_facts(chosen),
        "models": names(),
        "default_model": DEFAULT_MODEL,
        "model_dir": str(settings.model_dir) if settings.model_dir else None,
        "cache_dir": str(settings.cache_dir),
        **backend_facts(settings, OtelConfig.from_env()),
    }
