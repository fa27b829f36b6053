"""One classify request, from admission to its `Result`, and the state the probes and the
graceful stop read (ready, stopping, requests in flight).

A request is admitted before its body is read, so at most `--max-queue` requests hold
memory at once; beyond that it is refused at once (503). Then: the body within its limit,
load and preprocess on a worker thread (never on the event loop), the batcher, the
answer. Every admitted or refused request — not an unauthenticated one — ends as one
`Result` with one inference record, whatever went wrong: the answer and the record are
made from the same result, so they agree.

All of this runs on the event loop's thread except `Pipeline.prepare` (the prepare
pool) and the forward pass (the batcher's worker).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry import context as otel_context
from starlette.requests import Request

from pipeline.batcher import Batcher, BatcherStopped
from pipeline.batcher import QueueFull as BatchQueueFull
from pipeline.driver import Hooks, Pipeline, Prepared
from pipeline.results import Result
from wwts.serve.body import check_token, parse_top_k, read_upload
from wwts.serve.config import DRAIN_TIMEOUT_S, REQUEST_TIMEOUT_S, ServeOptions
from wwts.serve.errors import HttpError, NotReady, QueueFull, QueueTimeout, RequestTimeout, ServerStopping
from wwts.serve.records import request_fields


class Service:
    def __init__(self, pipeline: Pipeline, options: ServeOptions, token: str | None, workers: int) -> None:
        self.pipeline = pipeline
        self.hooks: Hooks = pipeline.hooks
        self.batcher = Batcher(
            pipeline, max_batch_size=pipeline.batch_size, max_delay_s=options.max_batch_delay_ms / 1000,
            max_queue=options.max_queue, incoming=lambda: self.incoming,
        )
        self.options = options
        self.token = token
        self.in_flight = 0  # admitted, not answered yet (touched on the event loop only)
        self.incoming = 0  # admitted, not handed to the batcher yet (read by its worker)
        self.served = 0
        self.stop_signal: int | None = None
        self._drain_deadline: float | None = None
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="wwts-prepare")

    # -- state ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.batcher.ready and not self.stopping

    @property
    def stopping(self) -> bool:
        return self.stop_signal is not None

    def not_ready(self) -> HttpError:
        """Why the service does not take requests now (for 503 answers)."""
        if self.stopping:
            return ServerStopping("the server is stopping")
        if self.batcher.failed is not None:
            return NotReady(f"the model could not be loaded: {self.batcher.failed}")
        return NotReady("the model is still loading")

    def start(self) -> None:
        """Start the batch worker, which loads the model (`ready` once it is loaded)."""
        self.batcher.start()

    def begin_stop(self, signum: int) -> None:
        """Refuse new requests from now on; the in-flight ones have DRAIN_TIMEOUT_S."""
        self.stop_signal = signum
        self._drain_deadline = time.monotonic() + DRAIN_TIMEOUT_S

    @property
    def drained(self) -> bool:
        """Stopping, and nothing is in flight any more (or the drain time is up)."""
        if self._drain_deadline is None:
            return False
        return self.in_flight == 0 or time.monotonic() >= self._drain_deadline

    def close(self, timeout: float) -> bool:
        """Stop the batch worker (finishing what it holds) and the prepare pool; False if
        the worker is still busy after `timeout` (e.g. still loading the model)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        return self.batcher.stop(timeout)

    # -- a request -----------------------------------------------------------------------

    def authorize(self, request: Request) -> None:
        if self.token is not None:
            check_token(request.headers.get("authorization"), self.token)

    async def classify(self, request: Request) -> Result:
        """The request's result; every failure is kept in it (see errors.status_of)."""
        parent = otel_context.get_current()  # the SERVER span: parent of wwts.classify
        http = request_fields(request)
        if not self.ready:
            return self._refuse(self.not_ready(), parent, http)
        if self.in_flight >= self.options.max_queue:
            return self._refuse(
                QueueFull(f"{self.in_flight} requests are in progress (--max-queue {self.options.max_queue})"), parent, http
            )
        self.in_flight += 1
        self.incoming += 1
        try:
            return await self._admitted(request, parent, http)
        finally:
            self.in_flight -= 1
            self.served += 1

    async def _admitted(self, request: Request, parent: Any, http: dict[str, Any]) -> Result:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REQUEST_TIMEOUT_S
        try:  # `incoming` until the batcher holds it (a batch waits only for requests on their way)
            prepared = await self._prepare(request, parent, http, deadline)
            if isinstance(prepared, Result):
                return prepared
            try:
                future = self.batcher.submit(prepared)
            except (BatchQueueFull, BatcherStopped) as exc:
                return self._finish(prepared, exc)
        finally:
            self.incoming -= 1
        waiting = asyncio.wrap_future(future)
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), max(0.0, deadline - loop.time()))
        except TimeoutError:
            if future.cancel():  # still queued: it will not be forwarded
                return self._finish(prepared, QueueTimeout(f"no forward pass took the request within {REQUEST_TIMEOUT_S:g} s"))
            return await waiting  # already in a forward pass: its answer is moments away

    async def _prepare(self, request: Request, parent: Any, http: dict[str, Any], deadline: float) -> Prepared | Result:
        """The request's input, received, loaded and preprocessed; or its result, if that failed."""
        try:
            top_k = parse_top_k(request.query_params.getlist("top_k"), self.options.top_k)
            async with asyncio.timeout_at(deadline):
                upload = await read_upload(request, self.options.max_body_bytes)
        except TimeoutError:
            return self._refuse(RequestTimeout(f"the body did not arrive within {REQUEST_TIMEOUT_S:g} s"), parent, http)
        except HttpError as exc:
            return self._refuse(exc, parent, http)
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(self._pool, self.pipeline.prepare, upload, parent)
        prepared.top_k = top_k
        self.hooks.annotate(prepared.request, http)
        if prepared.result.error is not None:  # not an image we may decode
            return self._finish(prepared)
        return prepared

    def _refuse(self, error: HttpError, parent: Any, http: dict[str, Any]) -> Result:
        """A request that ends before its image is decoded: a result and record all the same."""
        prepared = self.pipeline.prepare(error, parent)
        self.hooks.annotate(prepared.request, http)
        return self._finish(prepared)

    def _finish(self, prepared: Prepared, error: BaseException | None = None) -> Result:
        if error is not None:
            prepared.result.error = error
        prepared.crop = None
        self.hooks.finish(prepared.request, prepared.result)
        return prepared.result
