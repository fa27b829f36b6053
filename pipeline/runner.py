"""Drive the four stages over many inputs: prefetching, batching, one result per input.

`Prefetcher` loads and preprocesses on worker threads (Pillow releases the GIL while
it decodes and resamples), up to `ahead` images in advance, from the moment it is
started. It needs neither torch nor the model, so `wwts classify` starts it before it
imports torch and builds the model: on a 2-core machine that start-up (~6 s) is long
enough to decode a few hundred photos. `Runner` then runs forward per batch and
postprocess per image on the calling thread.

Instrumentation plugs in through `Hooks`; the runner itself never imports telemetry.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pipeline import stages
from pipeline.imaging import DEFAULT_MAX_PIXELS
from pipeline.inputs import label
from pipeline.models import LoadedModel, Preprocessing
from pipeline.stages import LoadedImage, Prediction

if TYPE_CHECKING:
    import numpy as np
    import torch

STAGES = ("load", "preprocess", "forward", "postprocess")
# Images decoded ahead of the model: 256 crops of 224x224x3 uint8 are ~38 MB.
DEFAULT_AHEAD = 256


@dataclass
class Result:
    path: str
    ok: bool
    image: LoadedImage | None = None  # metadata; the pixels are dropped after preprocess
    predictions: list[Prediction] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    error: BaseException | None = None
    trace_id: str | None = None


class Hooks:
    """Instrumentation points; this base does nothing. `telemetry` provides a real one."""

    def begin(self, path: str) -> Any:
        return None

    def set_device(self, device: str) -> None:
        """The device is known only once torch is imported, after loading has begun."""

    def stage(self, request: Any, name: str) -> AbstractContextManager[None]:
        return nullcontext()

    def batch_stage(self, requests: Sequence[Any], name: str) -> AbstractContextManager[None]:
        return nullcontext()

    def loaded(self, request: Any, image: LoadedImage) -> None:
        pass

    def finish(self, request: Any, result: Result) -> None:
        pass

    def cancel(self, request: Any) -> None:
        """The run stopped (a signal) after this input was loaded, before its forward pass."""

    def trace_id(self, request: Any) -> str | None:
        return None


@dataclass
class Prepared:
    result: Result
    request: Any
    pixels: np.ndarray | None = None


class Prefetcher:
    """Load and preprocess inputs ahead of the model, in input order.

    `start()` submits the first `ahead` inputs at once; each image taken from the
    iterator lets one more in. `workers=0` prepares each input when it is asked for
    (no threads). `close()` (or leaving the `with` block) cancels what has not started
    and tells the hooks about images that were prepared but never classified.
    """

    def __init__(
        self,
        inputs: Iterable[str | Exception],
        preprocessing: Preprocessing,
        hooks: Hooks | None = None,
        *,
        workers: int = 1,
        ahead: int = DEFAULT_AHEAD,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self._inputs = iter(inputs)
        self.preprocessing = preprocessing
        self.hooks = hooks or Hooks()
        self.ahead = max(1, ahead)
        self.max_pixels = max_pixels
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="wwts-load") if workers > 0 else None
        self._pending: deque[Future[Prepared]] = deque()
        self._exhausted = False

    def start(self) -> Prefetcher:
        if self._pool is not None:
            self._fill()
        return self

    def __enter__(self) -> Prefetcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Prepared]:
        if self._pool is None:
            for item in self._inputs:
                yield self._prepare(item)
            self._exhausted = True
            return
        while True:
            self._fill()
            if not self._pending:
                return
            yield self._pending.popleft().result()

    @property
    def decoding_done(self) -> bool:
        """Every input has been loaded and preprocessed: the workers have nothing left."""
        return self._exhausted and all(future.done() for future in self._pending)

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        for future in self._pending:
            if not future.cancelled():
                self.hooks.cancel(future.result().request)
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _fill(self) -> None:
        assert self._pool is not None
        while not self._exhausted and len(self._pending) < self.ahead:
            try:
                item = next(self._inputs)
            except StopIteration:
                self._exhausted = True
                return
            self._pending.append(self._pool.submit(self._prepare, item))

    def _prepare(self, item: str | Exception) -> Prepared:
        path = label(item)  # shown in results and records; `item` is what gets opened
        request = self.hooks.begin(path)
        result = Result(path=path, ok=False, trace_id=self.hooks.trace_id(request))
        prepared = Prepared(result, request)
        try:
            if isinstance(item, Exception):
                raise item
            with timed(self.hooks, result, request, "load"):
                loaded = stages.load(item, max_pixels=self.max_pixels)
            self.hooks.loaded(request, loaded)
            with timed(self.hooks, result, request, "preprocess"):
                prepared.pixels = stages.preprocess(loaded.image, self.preprocessing)
            result.image = replace(loaded, image=None)
        except Exception as exc:  # one bad input must not stop the others
            result.error = exc
        return prepared


@dataclass(frozen=True)
class CpuThreads:
    """Torch's intra-op threads on a CPU: `while_decoding` leaves cores to the load
    workers (more threads than cores makes torch's pool wait at every barrier for a
    descheduled thread); once every input is decoded the model gets `after_decoding`."""

    while_decoding: int
    after_decoding: int


class Runner:
    def __init__(
        self,
        model: LoadedModel,
        device: torch.device,
        *,
        top_k: int = 5,
        batch_size: int = 1,
        hooks: Hooks | None = None,
        workers: int = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        cpu_threads: CpuThreads | None = None,
    ) -> None:
        from pipeline.inference import inference_module

        self.model = model
        self.device = device
        self.top_k = top_k
        self.batch_size = max(1, batch_size)
        self.hooks = hooks or Hooks()
        self.workers = workers
        self.max_pixels = max_pixels
        self.cpu_threads = cpu_threads if device.type == "cpu" else None
        self.module = inference_module(model, device)

    def prefetcher(self, inputs: Iterable[str | Exception]) -> Prefetcher:
        return Prefetcher(
            inputs, self.model.preprocessing, self.hooks, workers=self.workers, max_pixels=self.max_pixels
        )

    def run(self, inputs: Iterable[str | Exception]) -> Iterator[Result]:
        """Yield one `Result` per input, in input order; a failed input never stops the run."""
        with self.prefetcher(inputs) as prefetch:
            yield from self.complete(prefetch, prefetch)

    def complete(self, prepared: Iterable[Prepared], prefetch: Prefetcher | None = None) -> Iterator[Result]:
        """Forward and postprocess already prepared inputs (`prefetch`, when given, says
        when decoding is over, for `cpu_threads`)."""
        plan = self.cpu_threads
        if plan is not None:
            import torch

            torch.set_num_threads(plan.while_decoding)
        widened = plan is None or prefetch is None or plan.after_decoding == plan.while_decoding
        for batch in _batches(prepared, self.batch_size):
            if not widened and prefetch.decoding_done:  # type: ignore[union-attr]
                torch.set_num_threads(plan.after_decoding)  # type: ignore[union-attr]
                widened = True
            yield from self._complete(batch)

    # -- forward per batch, postprocess per image --------------------------------------

    def _complete(self, batch: list[Prepared]) -> Iterator[Result]:
        ready = [p for p in batch if p.result.error is None and p.pixels is not None]
        if ready:
            self._forward(ready)
        for prepared in batch:
            result = prepared.result
            if result.error is None:
                result.ok = True
                result.latency_ms["total"] = round(sum(result.latency_ms.values()), 3)
            self.hooks.finish(prepared.request, result)
            yield result

    def _forward(self, ready: list[Prepared]) -> None:
        requests = [p.request for p in ready]
        stage: Callable[[], AbstractContextManager[None]]
        if len(ready) == 1:
            stage = lambda: self.hooks.stage(requests[0], "forward")  # noqa: E731
        else:
            stage = lambda: self.hooks.batch_stage(requests, "forward")  # noqa: E731
        started = time.perf_counter()
        try:
            with stage():
                batch = self._batch([p.pixels for p in ready])  # type: ignore[misc]
                logits = stages.forward(self.module, batch, self.device)
        except Exception as exc:  # e.g. out of memory: the whole batch fails, the run goes on
            for prepared in ready:
                prepared.result.error = exc
            return
        elapsed = _ms(started)
        for row, prepared in zip(logits, ready, strict=True):
            prepared.pixels = None
            result = prepared.result
            result.latency_ms["forward"] = elapsed
            try:
                with timed(self.hooks, result, prepared.request, "postprocess"):
                    result.predictions = stages.postprocess(row, self.model.labels, self.top_k)
            except Exception as exc:
                result.error = exc

    def _batch(self, pixels: list[np.ndarray]) -> torch.Tensor:
        """The normalised batch; in page-locked memory when it goes to a GPU, so the copy
        can run asynchronously (`non_blocking=True` in `stages.forward`)."""
        batch = stages.to_batch(pixels, self.model.preprocessing)
        return batch.pin_memory() if self.device.type == "cuda" else batch


def _batches(items: Iterable[Prepared], size: int) -> Iterator[list[Prepared]]:
    batch: list[Prepared] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@contextmanager
def timed(hooks: Hooks, result: Result, request: Any, name: str) -> Iterator[None]:
    started = time.perf_counter()
    with hooks.stage(request, name):
        yield
    result.latency_ms[name] = _ms(started)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)
