"""The ONNX Runtime runtime: a CPU session over the cached graph of the family's module.

With the graph cached this imports neither torch nor timm: start-up is NumPy, ONNX
Runtime and one small file check.

Threads. ONNX Runtime fixes a session's intra-op pool when the session is made, and the
pool shares two cores with a decode worker (Pillow, GIL released) while images are still
being decoded. Three things follow:

- Pool threads sleep when an operator ends instead of spinning for the next one
  (`session.intra_op.allow_spinning` = 0): a spinning thread holds a core the decoder
  needs, which slowed whole runs most of all the options tried.
- While decoding, one pool thread beside the decoder does as well as two or better (the
  run is decoding-bound): a second pool thread can only run by taking the decoder's
  core, and an operator then waits for whichever of its halves was descheduled.
- Once decoding is done every core goes to the model. So `set_threads` is honoured, by
  replacing the session with one of the new width: the switch happens about twice a run,
  and a new session costs a fraction of a second for the default model (a second or two
  for the 万物识别 one), where keeping both would hold the weights twice in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.runtimes import ONNXRUNTIME, Notify, RuntimeUnavailable, check_batch

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime

    from pipeline.models import ModelFamily

PROVIDERS = ["CPUExecutionProvider"]
QUIET = 3  # ONNX Runtime's log severity: errors only (its warnings are for developers)


def open_onnxruntime(
    family: ModelFamily, model_dir: Path | None, *, cache_dir: Path, threads: int, notify: Notify
) -> OnnxRuntime:
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"onnxruntime is not installed ({exc}): pip install onnxruntime, or --runtime torch"
        ) from exc
    from pipeline.runtimes.export import cached_graph

    return OnnxRuntime(cached_graph(family, model_dir, cache_dir, notify), family.preprocessing.crop, threads=threads)


def session_options(threads: int) -> onnxruntime.SessionOptions:
    """`threads` intra-op threads (0: ONNX Runtime's default, one per core) that sleep
    between operators, and one inter-op thread: a classifier is one chain of operators,
    nothing runs beside it."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(0, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = QUIET
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def new_session(graph: Path, threads: int) -> onnxruntime.InferenceSession:
    """A CPU session over `graph` with `session_options(threads)`."""
    import onnxruntime

    return onnxruntime.InferenceSession(str(graph), session_options(threads), providers=PROVIDERS)


class OnnxRuntime:
    name = ONNXRUNTIME
    device = "cpu"

    def __init__(self, graph: Path, crop: int, *, threads: int) -> None:
        import onnxruntime

        self.version = onnxruntime.__version__
        self.graph = graph
        self._crop = crop
        self._threads = max(1, threads)
        self._session: onnxruntime.InferenceSession | None = self._open(self._threads)
        self._input = self._session.get_inputs()[0].name

    @property
    def threads(self) -> int:
        return self._threads

    def forward(self, batch: np.ndarray) -> np.ndarray:
        check_batch(batch, self._crop)
        if self._session is None:
            raise RuntimeError("the onnxruntime runtime is closed")
        (logits,) = self._session.run(None, {self._input: batch})
        return logits

    def set_threads(self, threads: int) -> None:
        """From the next batch on, `threads` intra-op threads: a new session, made now (the
        old one is let go first, so the weights are never held twice)."""
        threads = max(1, threads)
        if self._session is None or threads == self._threads:
            return
        self._session = None
        self._session = self._open(threads)
        self._threads = threads

    def close(self) -> None:
        self._session = None

    def _open(self, threads: int) -> onnxruntime.InferenceSession:
        try:
            return new_session(self.graph, threads)
        except Exception as exc:  # ONNX Runtime raises its own Fail/InvalidGraph types
            raise RuntimeUnavailable(f"ONNX Runtime cannot load {self.graph}: {exc}") from exc
