"""Graceful SIGINT/SIGTERM: stop taking new inputs, finish what is in flight, flush.

A second signal falls back to the default behaviour (an immediate stop).
"""

from __future__ import annotations

import signal
from types import FrameType


class GracefulStop:
    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> GracefulStop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. under a test runner thread)
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else 128 + self.signum

    def requested(self) -> bool:
        """Whether a signal asked the run to stop (the driver asks before each input)."""
        return self.signum is not None
