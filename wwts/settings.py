"""Settings from the environment: every `WWTS_*` variable, its default, read once.

Secrets are kept out of `repr` (see `telemetry.elastic.EsConfig`), so that no log line or
traceback can print them. Import-light: `wwts logs search` reads these before anything else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.defaults import DEFAULT_MAX_PIXELS
from telemetry.elastic import EsConfig
from telemetry.thresholds import DEFAULT_GPU_TEMPERATURE_ALERT_C, DEFAULT_LATENCY_ALERT_MS, Thresholds

DEFAULT_LOG_DIR = Path("logs")
DEFAULT_RUNTIME = "auto"


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`$WWTS_CACHE`, else `~/.cache/wwts`: exported graphs, downloaded servers, bench photos."""
    value = (os.environ if environ is None else environ).get("WWTS_CACHE", "").strip()
    return Path(value) if value else Path.home() / ".cache" / "wwts"


@dataclass(frozen=True)
class Settings:
    log_dir: Path = DEFAULT_LOG_DIR
    model_dir: Path | None = None
    runtime: str = DEFAULT_RUNTIME
    cache_dir: Path = field(default_factory=default_cache_dir)
    elasticsearch: EsConfig = field(default_factory=lambda: EsConfig(url=None))
    thresholds: Thresholds = field(default_factory=Thresholds)
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    kibana_url: str | None = None
    api_token: str | None = field(default=None, repr=False)

    @property
    def es(self) -> EsConfig | None:
        """Where records are shipped and searched; None when WWTS_ES_URL is not set."""
        return self.elasticsearch if self.elasticsearch.url else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, default: float) -> float:
            raw = text(name)
            try:
                return float(raw) if raw else default
            except ValueError as exc:
                raise ValueError(f"{name}={raw!r} is not a number") from exc

        model_dir, es_url = text("WWTS_MODEL_DIR"), text("WWTS_ES_URL")
        return cls(
            log_dir=Path(text("WWTS_LOG_DIR") or DEFAULT_LOG_DIR),
            model_dir=Path(model_dir) if model_dir else None,
            runtime=text("WWTS_RUNTIME") or DEFAULT_RUNTIME,
            cache_dir=default_cache_dir(env),
            elasticsearch=EsConfig(
                url=es_url, api_key=text("WWTS_ES_API_KEY"), username=text("WWTS_ES_USERNAME"),
                password=text("WWTS_ES_PASSWORD"), ca_certs=text("WWTS_ES_CA_CERTS"),
            ),
            thresholds=Thresholds(
                number("WWTS_LATENCY_ALERT_MS", DEFAULT_LATENCY_ALERT_MS),
                number("WWTS_GPU_TEMP_ALERT_C", DEFAULT_GPU_TEMPERATURE_ALERT_C),
            ),
            max_image_pixels=int(number("WWTS_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS)),
            kibana_url=text("KIBANA_URL"),
            api_token=text("WWTS_API_TOKEN"),
        )
