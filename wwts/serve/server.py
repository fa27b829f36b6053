"""uvicorn, with the stop the contract asks for.

SIGTERM or SIGINT: new requests are refused at once (503, `Connection: close`) while
those in flight finish — at most DRAIN_TIMEOUT_S — and only then does uvicorn close the
listening socket and the connections. A second signal stops at once. uvicorn would
re-raise the signal after a graceful stop (and the process would die of it); here a
graceful stop is a normal exit.

What happens is logged from the server's tick on the event loop, never from inside the
signal handler (which may interrupt a thread that holds a logging lock).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from telemetry.records import STARTUP_EVENT
from wwts.serve.config import CLOSE_TIMEOUT_S, DRAIN_TIMEOUT_S
from wwts.serve.service import Service

TICKS_PER_SECOND = 10  # uvicorn's main loop ticks every 0.1 s
BACKLOG = 2048  # uvicorn's default


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before uvicorn starts: a taken port is one clear error.

    Made the way asyncio's own `create_server` makes it (from `getaddrinfo`, protocol
    TCP): asyncio sets TCP_NODELAY only on connections of such a socket, and without it
    every answer written in two parts waits ~40 ms for a delayed ACK."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


class GracefulServer(uvicorn.Server):
    def __init__(
        self, app: Any, service: Service, log: logging.Logger, flush: Callable[[], None] = lambda: None
    ) -> None:
        # reset_contextvars: each request starts from an empty context. Without it, a
        # request that reads its body leaks its OpenTelemetry context into the next one on
        # the same connection (CPython gh-140947), whose SERVER span would then be a child.
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", server_header=False,
            timeout_graceful_shutdown=int(CLOSE_TIMEOUT_S), reset_contextvars=True,
        )
        super().__init__(config)
        self.service = service
        self.log = log
        self.flush = flush  # once a second: a quiet server's last records reach the file too
        self.forced: int | None = None  # the signal that cut the drain short
        self._started = time.monotonic()
        self._said_ready = self._said_stopping = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.service.stopping:  # a second signal: stop now
            self.forced = sig
            self.should_exit = self.force_exit = True
            return
        self.service.begin_stop(sig)

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        service = self.service
        if counter % TICKS_PER_SECOND == 0:
            self.flush()
        if not self._said_ready and service.batcher.ready:
            self._said_ready = True
            self.log.info("ready: model loaded in %.1f s", time.monotonic() - self._started, extra=STARTUP_EVENT)
        if not self._said_stopping and service.stopping:
            self._said_stopping = True
            self.log.info(
                "stopping (signal %d): refusing new requests, finishing %d in flight (at most %g s)",
                service.stop_signal, service.in_flight, DRAIN_TIMEOUT_S, extra=STARTUP_EVENT,
            )
        return service.drained or service.batcher.failed is not None
