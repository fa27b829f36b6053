"""The service's flags, their defaults and its fixed limits, each written once (the CLI
and the docs read them from here). Import-light: the CLI reads it before any work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.defaults import DEFAULT_TOP_K
from pipeline.models import DEFAULT_MODEL
from wwts.settings import DEFAULT_LOG_DIR, DEFAULT_RUNTIME

# where it listens: loopback unless told otherwise (no token is required by default)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# dynamic batching: how long the oldest waiting request may wait for company
DEFAULT_MAX_BATCH_DELAY_MS = 5.0
# requests admitted at once (reading, decoding, waiting for or in a forward pass); beyond
# that a request is refused at once (503) instead of joining an unbounded backlog
DEFAULT_MAX_QUEUE = 64
DEFAULT_MAX_BODY_MB = 20.0  # MiB

CLASSIFY_PATH = "/v1/classify"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"

MAX_TOP_K = 100  # a larger answer is a bulk export, not a classification
REQUEST_TIMEOUT_S = 30.0  # receiving the body plus waiting for a forward pass
DRAIN_TIMEOUT_S = 30.0  # after SIGTERM/SIGINT: how long in-flight requests may still take
CLOSE_TIMEOUT_S = 5.0  # then: writing the last answers, stopping the batch worker
# A body that grows past the limit: what the client still sends is read into nothing for
# at most this long (and until it pauses this long), so the 413 is not lost to a reset
DISCARD_MAX_S = 2.0
DISCARD_QUIET_S = 0.1
RETRY_AFTER_S = 1  # the Retry-After of a 503


@dataclass(frozen=True)
class ServeOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    model: str = DEFAULT_MODEL
    model_dir: Path | None = None
    device: str = "auto"
    runtime: str = DEFAULT_RUNTIME
    max_batch_size: int | None = None  # None: the pipeline's auto batch size for the device
    max_batch_delay_ms: float = DEFAULT_MAX_BATCH_DELAY_MS
    max_queue: int = DEFAULT_MAX_QUEUE
    max_body_mb: float = DEFAULT_MAX_BODY_MB
    log_dir: Path = DEFAULT_LOG_DIR
    top_k: int = DEFAULT_TOP_K  # when a request names none

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)
