"""Dynamic batching: inputs prepared one by one, on many threads, share forward passes.

A server prepares each request (`Pipeline.prepare`) as it arrives and submits it here.
One worker thread opens the runtime, then takes up to `max_batch_size` waiting inputs —
waiting at most `max_delay_s` after the oldest one arrived for the batch to fill, and
not at all when no other input is on its way — and runs them through
`Pipeline.complete` as one batch. Each submission gets a
`concurrent.futures.Future`: thread-safe to resolve from the worker and to await from an
event loop (`asyncio.wrap_future`).

The queue is bounded: a full one refuses at once (`QueueFull`) instead of growing. Each
input's wait, from submission until its batch is taken, is its `queue` stage: in
`Result.durations_ns` and, through `Hooks.interval`, as a stage span. No HTTP, no
telemetry here.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.defaults import QUEUE
from pipeline.results import Result

if TYPE_CHECKING:
    from pipeline.driver import Pipeline, Prepared
    from pipeline.runtimes import Runtime


class QueueFull(Exception):
    """As many inputs as the queue holds are waiting already."""


class BatcherStopped(Exception):
    """The batcher takes no more inputs: it is stopping, or its runtime did not open."""


@dataclass
class _Waiting:
    prepared: Prepared
    future: Future[Result]
    queued_ns: int  # perf_counter_ns: the exact wait
    queued_epoch_ns: int  # time_ns: where the queue span starts


class Batcher:
    def __init__(
        self, pipeline: Pipeline, *, max_batch_size: int, max_delay_s: float, max_queue: int,
        incoming: Callable[[], int] = lambda: 1,
    ) -> None:
        """`incoming` says how many inputs are on their way (being received or prepared):
        with none, a batch is not held back waiting for company that cannot come."""
        self.pipeline = pipeline
        self.incoming = incoming
        self.max_batch_size = max(1, max_batch_size)
        self.max_delay_s = max(0.0, max_delay_s)
        self.max_queue = max(1, max_queue)
        self.failed: BaseException | None = None  # why the runtime did not open
        self._waiting: deque[_Waiting] = deque()
        self._condition = threading.Condition()
        self._stopping = False
        self._ready = threading.Event()
        self._worker = threading.Thread(target=self._run, name="wwts-batcher", daemon=True)

    # -- the caller's side ------------------------------------------------------------

    def start(self) -> Batcher:
        """Start the worker; it opens the runtime first (`ready` once that is done)."""
        self._worker.start()
        return self

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self.failed is None

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the runtime is open or failed to open; True when it is open."""
        self._ready.wait(timeout)
        return self.ready

    @property
    def depth(self) -> int:
        """Inputs waiting for a batch."""
        return len(self._waiting)

    def submit(self, prepared: Prepared) -> Future[Result]:
        """Queue a prepared input; its future resolves with the finished `Result`.

        A cancelled future (the caller gave up waiting) is skipped: the input is not
        forwarded, and finishing it is the caller's business."""
        waiting = _Waiting(prepared, Future(), time.perf_counter_ns(), time.time_ns())
        with self._condition:
            if self._stopping or self.failed is not None:
                raise BatcherStopped("the batcher is stopping" if self._stopping else f"the runtime did not open: {self.failed}")
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"{len(self._waiting)} inputs are waiting for a batch (at most {self.max_queue})")
            self._waiting.append(waiting)
            self._condition.notify()
        return waiting.future

    def stop(self, timeout: float | None = None) -> bool:
        """Take no more inputs, finish the queued ones, end the worker; True if it ended
        within `timeout`."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        if self._worker.is_alive():
            self._worker.join(timeout)
        return not self._worker.is_alive()

    # -- the worker ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            runtime = self.pipeline.open()
        except BaseException as exc:  # noqa: BLE001 - reported through `failed`, the server decides
            self.failed = exc
            self._ready.set()
            self._fail_waiting(exc)
            return
        self._ready.set()
        while (batch := self._take()) is not None:
            self._complete(batch, runtime)

    def _take(self) -> list[_Waiting] | None:
        """The next batch: the oldest input and whatever arrives before it has waited
        `max_delay_s` (fewer when the batch fills first); None once stopped and drained."""
        with self._condition:
            while not self._waiting:
                if self._stopping:
                    return None
                self._condition.wait()
            deadline = self._waiting[0].queued_ns / 1e9 + self.max_delay_s
            while len(self._waiting) < self.max_batch_size and not self._stopping and self.incoming() > 0:
                remaining = deadline - time.perf_counter_ns() / 1e9
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            taken = [self._waiting.popleft() for _ in range(min(self.max_batch_size, len(self._waiting)))]
        return [w for w in taken if w.future.set_running_or_notify_cancel()]

    def _complete(self, batch: list[_Waiting], runtime: Runtime) -> None:
        if not batch:
            return
        taken_ns = time.perf_counter_ns()
        try:
            for waiting in batch:
                waited = taken_ns - waiting.queued_ns
                waiting.prepared.result.durations_ns[QUEUE] = waited
                self.pipeline.hooks.interval(
                    waiting.prepared.request, QUEUE, waiting.queued_epoch_ns, waiting.queued_epoch_ns + waited
                )
            for waiting, result in zip(batch, self.pipeline.complete([w.prepared for w in batch], runtime), strict=True):
                waiting.future.set_result(result)
        except Exception as exc:  # e.g. a hook failed: answer everyone, keep serving
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)

    def _fail_waiting(self, error: BaseException) -> None:
        with self._condition:
            while self._waiting:
                waiting = self._waiting.popleft()
                if waiting.future.set_running_or_notify_cancel():
                    waiting.future.set_exception(BatcherStopped(f"the runtime did not open: {error}"))
