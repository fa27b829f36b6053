"""Drive the four stages over many inputs: prefetching, batching, one result per input.

Decoding and preprocessing run ahead on worker threads (Pillow and torch release the
GIL) while the calling thread runs the forward pass, so the CPU cores stay busy.
Instrumentation plugs in through `Hooks`; the runner itself never imports telemetry.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from pipeline import stages
from pipeline.imaging import DEFAULT_MAX_PIXELS
from pipeline.inputs import label
from pipeline.models import LoadedModel
from pipeline.stages import LoadedImage, Prediction

STAGES = ("load", "preprocess", "forward", "postprocess")


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

    def stage(self, request: Any, name: str) -> AbstractContextManager[None]:
        return nullcontext()

    def batch_stage(self, requests: Sequence[Any], name: str) -> AbstractContextManager[None]:
        return nullcontext()

    def loaded(self, request: Any, image: LoadedImage) -> None:
        pass

    def finish(self, request: Any, result: Result) -> None:
        pass

    def trace_id(self, request: Any) -> str | None:
        return None


@dataclass
class _Prepared:
    result: Result
    request: Any
    tensor: torch.Tensor | None = None


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
        draft: bool = False,
    ) -> None:
        self.model = model
        self.device = device
        self.top_k = top_k
        self.batch_size = max(1, batch_size)
        self.hooks = hooks or Hooks()
        self.workers = workers
        self.max_pixels = max_pixels
        self.draft = model.preprocessing.resize if draft else None
        self.module = inference_module(model.module, device)

    def run(self, inputs: Iterable[str | Exception]) -> Iterator[Result]:
        """Yield one `Result` per input, in input order; a failed input never stops the run."""
        batch: list[_Prepared] = []
        for prepared in self._prefetch(inputs):
            batch.append(prepared)
            if len(batch) == self.batch_size:
                yield from self._complete(batch)
                batch = []
        if batch:
            yield from self._complete(batch)

    # -- load and preprocess, ahead of the forward pass -------------------------------

    def _prefetch(self, inputs: Iterable[str | Exception]) -> Iterator[_Prepared]:
        if self.workers <= 0:
            yield from map(self._prepare, inputs)
            return
        ahead = max(2 * self.batch_size, 2 * self.workers)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="wwts-load") as pool:
            pending: deque[Future[_Prepared]] = deque()
            for item in inputs:
                pending.append(pool.submit(self._prepare, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _prepare(self, item: str | Exception) -> _Prepared:
        path = label(item)  # shown in results and records; `item` is what gets opened
        request = self.hooks.begin(path)
        result = Result(path=path, ok=False, trace_id=self.hooks.trace_id(request))
        prepared = _Prepared(result, request)
        try:
            if isinstance(item, Exception):
                raise item
            with self._timed(result, request, "load"):
                loaded = stages.load(item, max_pixels=self.max_pixels, draft=self.draft)
            self.hooks.loaded(request, loaded)
            with self._timed(result, request, "preprocess"):
                prepared.tensor = stages.preprocess(loaded.image, self.model.preprocessing)
            result.image = replace(loaded, image=None)
        except Exception as exc:  # one bad input must not stop the others
            result.error = exc
        return prepared

    # -- forward per batch, postprocess per image --------------------------------------

    def _complete(self, batch: list[_Prepared]) -> Iterator[Result]:
        ready = [p for p in batch if p.result.error is None and p.tensor is not None]
        if ready:
            self._forward(ready)
        for prepared in batch:
            result = prepared.result
            if result.error is None:
                result.ok = True
                result.latency_ms["total"] = round(sum(result.latency_ms.values()), 3)
            self.hooks.finish(prepared.request, result)
            yield result

    def _forward(self, ready: list[_Prepared]) -> None:
        requests = [p.request for p in ready]
        stage: Callable[[], AbstractContextManager[None]]
        if len(ready) == 1:
            stage = lambda: self.hooks.stage(requests[0], "forward")  # noqa: E731
        else:
            stage = lambda: self.hooks.batch_stage(requests, "forward")  # noqa: E731
        started = time.perf_counter()
        try:
            with stage():
                logits = stages.forward(self.module, self._stack([p.tensor for p in ready]), self.device)
        except Exception as exc:  # e.g. out of memory: the whole batch fails, the run goes on
            for prepared in ready:
                prepared.result.error = exc
            return
        elapsed = _ms(started)
        for row, prepared in zip(logits, ready, strict=True):
            prepared.tensor = None
            result = prepared.result
            result.latency_ms["forward"] = elapsed
            try:
                with self._timed(result, prepared.request, "postprocess"):
                    result.predictions = stages.postprocess(row, self.model.labels, self.top_k)
            except Exception as exc:
                result.error = exc

    def _stack(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """One NCHW batch; in page-locked memory when it goes to a GPU, so the copy can
        run asynchronously (`non_blocking=True` in `stages.forward`)."""
        batch = torch.stack(tensors)
        return batch.pin_memory() if self.device.type == "cuda" else batch

    @contextmanager
    def _timed(self, result: Result, request: Any, name: str) -> Iterator[None]:
        started = time.perf_counter()
        with self.hooks.stage(request, name):
            yield
        result.latency_ms[name] = _ms(started)


def inference_module(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The module the runner calls: channels_last on `device`, in eval mode (converted in
    place: a copy would double the memory of a large model)."""
    return module.to(device).to(memory_format=torch.channels_last).eval()


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)
