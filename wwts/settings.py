"""Settings from the environment (the contract's `WWTS_*` variables).

Secrets are kept out of `repr` so that no log line or traceback can print them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.imaging import DEFAULT_MAX_PIXELS


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a number") from exc


def _text(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


@dataclass(frozen=True)
class Settings:
    log_dir: Path = Path("logs")
    model_dir: Path | None = None
    es_url: str | None = None
    es_api_key: str | None = field(default=None, repr=False)
    es_username: str | None = None
    es_password: str | None = field(default=None, repr=False)
    es_ca_certs: str | None = None
    latency_alert_ms: float = 1000.0
    gpu_temp_alert_c: float = 80.0
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    kibana_url: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        model_dir = _text("WWTS_MODEL_DIR")
        return cls(
            log_dir=Path(_text("WWTS_LOG_DIR") or "logs"),
            model_dir=Path(model_dir) if model_dir else None,
            es_url=_text("WWTS_ES_URL"),
            es_api_key=_text("WWTS_ES_API_KEY"),
            es_username=_text("WWTS_ES_USERNAME"),
            es_password=_text("WWTS_ES_PASSWORD"),
            es_ca_certs=_text("WWTS_ES_CA_CERTS"),
            latency_alert_ms=_float("WWTS_LATENCY_ALERT_MS", 1000.0),
            gpu_temp_alert_c=_float("WWTS_GPU_TEMP_ALERT_C", 80.0),
            max_image_pixels=int(_float("WWTS_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS)),
            kibana_url=_text("KIBANA_URL"),
        )
