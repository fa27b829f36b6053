"""The one driver of the stages: `Pipeline.run(items)` for files, used by the CLI, the
benchmarks and the tests alike (and, through `pipeline.batcher`, by the HTTP service).

One image's walk reads top to bottom: load → preprocess (on a worker thread, ahead of
the model) → forward (per batch, on the runtime) → postprocess → `Result` → hooks. The
driver never imports telemetry; instrumentation plugs in through `Hooks`.

Decoding starts before the runtime is opened: with torch (seconds of imports on a small
CPU) that hides the decoding of many images, with a cached ONNX graph it costs nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import imaging, stages
from pipeline.defaults import (
    CPU_AUTO_BATCH,
    DEFAULT_AHEAD,
    DEFAULT_MAX_PIXELS,
    DEFAULT_TOP_K,
    FORWARD,
    GPU_AUTO_BATCH,
    LOAD,
    MAX_DECODE_WORKERS,
    POSTPROCESS,
    PREPROCESS,
)
from pipeline.inputs import label
from pipeline.models import DEFAULT_MODEL, ModelFamily, family
from pipeline.results import Result, Upload
from pipeline.runtimes import Plan, Runtime, open_runtime, plan

if TYPE_CHECKING:
    import numpy as np

Item = str | os.PathLike[str] | Upload | Exception


class Hooks:
    """Instrumentation points; this base does nothing. `telemetry` provides a real one.

    A request is whatever `begin` returns; the driver hands it back to the other calls.
    """

    def begin(self, path: str, parent: Any = None) -> Any:
        """An input starts its walk (`parent`: the caller's context, e.g. an HTTP span)."""
        return None

    def stage(self, request: Any, name: str) -> AbstractContextManager[None]:
        return nullcontext()

    def batch_stage(self, requests: Sequence[Any], name: str) -> AbstractContextManager[None]:
        """One stage run once for several inputs (a batched forward pass)."""
        return nullcontext()

    def finish(self, request: Any, result: Result) -> None:
        pass

    def cancel(self, request: Any) -> None:
        """The run stopped (a signal) after this input was loaded, before its forward pass."""

    def trace_id(self, request: Any) -> str | None:
        return None

    def notice(self, message: str) -> None:
        """Something a person running the pipeline should read (e.g. a first-run export)."""

    def interval(self, request: Any, name: str, start_ns: int, end_ns: int) -> None:
        """A stage measured by the caller, already over (epoch nanoseconds): a wait that
        starts on one thread and ends on another, such as `pipeline.batcher`'s queue."""

    def annotate(self, request: Any, extra: Mapping[str, Any]) -> None:
        """Extra fields for this input's record (nested, e.g. the HTTP request's);
        merged in, and written with the record at `finish`."""


@dataclass(frozen=True)
class PipelineConfig:
    model: str = DEFAULT_MODEL
    model_dir: Path | None = None
    runtime: str = "auto"
    device: str = "auto"
    batch_size: int | None = None  # None: auto (CPU_AUTO_BATCH / GPU_AUTO_BATCH)
    top_k: int = DEFAULT_TOP_K
    workers: int = field(default_factory=lambda: default_workers())  # decode threads; 0: on the calling thread
    ahead: int = DEFAULT_AHEAD
    max_pixels: int = DEFAULT_MAX_PIXELS
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "wwts")


@dataclass
class Prepared:
    """An input between preprocess and forward."""

    result: Result
    request: Any
    crop: np.ndarray | None = None
    top_k: int | None = None  # this input's own top-k (an HTTP request's); None: the config's


class Pipeline:
    """Built from its config and hooks; `run` and `open` do the work.

    Constructing it is cheap and checks what can be checked without loading anything:
    the model name, a checkpoint directory's labels, the runtime and device spelling.
    """

    def __init__(self, config: PipelineConfig, hooks: Hooks | None = None) -> None:
        self.config = config
        self.hooks = hooks or Hooks()
        self.family: ModelFamily = family(config.model)
        self.labels = self.family.labels(config.model_dir)
        self.plan: Plan = plan(config.runtime, config.device)
        on_gpu = self.plan.device.startswith("cuda")
        self.batch_size = max(1, config.batch_size or (GPU_AUTO_BATCH if on_gpu else CPU_AUTO_BATCH))
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()
        imaging.setup(config.max_pixels)  # before any caller's thread decodes

    # -- the runtime ---------------------------------------------------------------

    def open(self, decoding: bool = False) -> Runtime:
        """Load the runtime (exporting the ONNX graph on a first run); idempotent. With
        `decoding`, its thread pool starts at the size that leaves the decode workers
        their cores (`run` widens it once decoding is done)."""
        with self._lock:
            if self._runtime is None:
                self._runtime = open_runtime(
                    self.plan, self.family, self.config.model_dir,
                    cache_dir=self.config.cache_dir, threads=self._threads(decoding),
                    notify=self.hooks.notice,
                )
            return self._runtime

    def close(self) -> None:
        with self._lock:
            if self._runtime is not None:
                self._runtime.close()
                self._runtime = None

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _threads(self, decoding: bool) -> int:
        """Intra-op threads on a CPU: the cores the decode workers leave free while they
        decode (more threads than cores makes a pool wait at every barrier for a
        descheduled thread), every core once decoding is done."""
        cores = available_cores()
        return max(1, cores - self.config.workers) if decoding else cores

    # -- files -----------------------------------------------------------------------

    def run(self, items: Iterable[Item], stopped: Callable[[], bool] = lambda: False) -> Iterator[Result]:
        """One `Result` per input, in input order; a failed input never stops the run.
        `stopped` is asked before each prepared input is taken: once it answers True,
        what was decoded ahead is cancelled (`Hooks.cancel`) and the run ends."""
        with self.prefetcher(items) as prefetch:
            on_cpu = self.plan.device == "cpu"
            widened = not on_cpu or self.config.workers == 0
            runtime = self.open(decoding=not widened)  # decoding is under way meanwhile
            if not widened:
                runtime.set_threads(self._threads(decoding=True))  # a runtime opened earlier
            batch: list[Prepared] = []
            taken = iter(prefetch)
            while not stopped():  # asked before taking: whatever is taken is completed
                prepared = next(taken, None)
                if prepared is None:
                    break
                batch.append(prepared)
                if len(batch) == self.batch_size:
                    yield from self.complete(batch, runtime)
                    batch = []
                if not widened and prefetch.waiting >= self.batch_size and prefetch.decoding_done:
                    # the decode workers are done and whole batches are left: worth the cores
                    # (a new pool costs an ONNX Runtime session; not for a last partial batch)
                    runtime.set_threads(self._threads(decoding=False))
                    widened = True
            if batch:
                yield from self.complete(batch, runtime)

    def prefetcher(self, items: Iterable[Item]) -> Prefetcher:
        return Prefetcher(
            items, self, workers=self.config.workers, ahead=self.config.ahead
        )

    def prepare(self, item: Item, parent: Any = None) -> Prepared:
        """Load and preprocess one input (any thread); a failure is kept in the result."""
        path = item.name if isinstance(item, Upload) else label(item)
        request = self.hooks.begin(path, parent)
        local = getattr(item, "path", None) if isinstance(item, Exception) else item  # a failed directory has one too
        result = Result(
            path=path, model=self.family.name,
            file=label(os.path.abspath(local)) if isinstance(local, (str, os.PathLike)) else None,
            trace_id=self.hooks.trace_id(request),
        )
        prepared = Prepared(result, request)
        try:
            if isinstance(item, Exception):
                raise item
            with self.timed(result, request, LOAD):
                result.image, picture = stages.load(item, self.config.max_pixels)  # type: ignore[arg-type]
            with self.timed(result, request, PREPROCESS):
                prepared.crop = stages.preprocess(picture, self.family.preprocessing)
        except Exception as exc:  # one bad input must not stop the others
            result.error = exc
        return prepared

    # -- forward per batch, postprocess per image --------------------------------------

    def complete(self, batch: list[Prepared], runtime: Runtime) -> Iterator[Result]:
        """Forward the batch's good inputs in one pass, postprocess each, finish all."""
        ready = [p for p in batch if p.result.error is None and p.crop is not None]
        if ready:
            self._forward(ready, runtime)
        for prepared in batch:
            result = prepared.result
            result.runtime, result.device = runtime.name, runtime.device
            self.hooks.finish(prepared.request, result)
            yield result

    def _forward(self, ready: list[Prepared], runtime: Runtime) -> None:
        requests = [p.request for p in ready]
        span = self.hooks.stage(requests[0], FORWARD) if len(ready) == 1 else self.hooks.batch_stage(requests, FORWARD)
        started = time.perf_counter_ns()
        try:
            with span:
                logits = runtime.forward(stages.stack([p.crop for p in ready]))  # type: ignore[misc]
        except Exception as exc:  # e.g. out of memory: the whole batch fails, the run goes on
            for prepared in ready:
                prepared.result.error = exc
            return
        elapsed = time.perf_counter_ns() - started
        for row, prepared in zip(logits, ready, strict=True):
            prepared.crop = None
            result = prepared.result
            result.durations_ns[FORWARD] = elapsed
            try:
                with self.timed(result, prepared.request, POSTPROCESS):
                    result.predictions = stages.postprocess(row, self.labels, prepared.top_k or self.config.top_k)
            except Exception as exc:
                result.error = exc

    @contextmanager
    def timed(self, result: Result, request: Any, name: str) -> Iterator[None]:
        """Run a stage inside its hook; its exact duration goes into the result."""
        started = time.perf_counter_ns()
        try:
            with self.hooks.stage(request, name):
                yield
        finally:
            result.durations_ns[name] = time.perf_counter_ns() - started


class Prefetcher:
    """Load and preprocess inputs ahead of the model, in input order.

    Entering submits the first `ahead` inputs; each one taken lets one more in.
    `workers=0` prepares each input when it is asked for (no threads). Leaving the
    `with` block cancels what has not started and tells the hooks about inputs that
    were prepared but never classified.
    """

    def __init__(self, items: Iterable[Item], pipeline: Pipeline, *, workers: int = 1, ahead: int = DEFAULT_AHEAD) -> None:
        self._items = iter(items)
        self._pipeline = pipeline
        self.ahead = max(1, ahead)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="wwts-load") if workers > 0 else None
        self._pending: deque[Future[Prepared]] = deque()
        self._exhausted = False

    def __enter__(self) -> Prefetcher:
        if self._pool is not None:
            self._fill()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Prepared]:
        if self._pool is None:
            for item in self._items:
                yield self._pipeline.prepare(item)
            self._exhausted = True
            return
        while True:
            self._fill()
            if not self._pending:
                return
            yield self._pending.popleft().result()

    @property
    def waiting(self) -> int:
        """Inputs submitted to the workers and not yet taken."""
        return len(self._pending)

    @property
    def decoding_done(self) -> bool:
        """Every input has been loaded and preprocessed: the workers have nothing left."""
        return self._exhausted and all(future.done() for future in self._pending)

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        for future in self._pending:
            if not future.cancelled():
                self._pipeline.hooks.cancel(future.result().request)
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _fill(self) -> None:
        assert self._pool is not None
        while not self._exhausted and len(self._pending) < self.ahead:
            try:
                item = next(self._items)
            except StopIteration:
                self._exhausted = True
                return
            self._pending.append(self._pool.submit(self._pipeline.prepare, item))


def default_workers() -> int:
    return min(available_cores(), MAX_DECODE_WORKERS)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
