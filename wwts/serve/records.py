"""The HTTP side of each classify request's `wwts.inference` record (ECS names):
`http.request.method`, `url.path`, `user_agent.original`, and `http.response.status_code`.

The status is known only from the result, and a batched request's result is finished
(its record written) on the batch worker's thread, inside `Pipeline.complete`. So the
pipeline's hooks are wrapped: just before an input's record is written, the status its
answer will have (`errors.status_of`, the function the answer uses too) is added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from starlette.requests import Request

from pipeline.driver import Hooks
from pipeline.results import Result


def request_fields(request: Request) -> dict[str, Any]:
    fields: dict[str, Any] = {"http": {"request": {"method": request.method}}, "url": {"path": request.url.path}}
    agent = request.headers.get("user-agent")
    if agent:
        fields["user_agent"] = {"original": agent}
    return fields


def status_fields(status: int) -> dict[str, Any]:
    return {"http": {"response": {"status_code": status}}}


class StatusHooks(Hooks):
    """`inner`, with each record's `http.response.status_code` from `status_of(error)`.
    Every other call is passed through unchanged."""

    def __init__(self, inner: Hooks, status_of: Callable[[BaseException | None], int]) -> None:
        self.inner = inner
        self.status_of = status_of

    def finish(self, request: Any, result: Result) -> None:
        self.inner.annotate(request, status_fields(self.status_of(result.error)))
        self.inner.finish(request, result)

    def begin(self, path: str, parent: Any = None) -> Any:
        return self.inner.begin(path, parent)

    def stage(self, request: Any, name: str) -> AbstractContextManager[None]:
        return self.inner.stage(request, name)

    def batch_stage(self, requests: Sequence[Any], name: str) -> AbstractContextManager[None]:
        return self.inner.batch_stage(requests, name)

    def cancel(self, request: Any) -> None:
        self.inner.cancel(request)

    def trace_id(self, request: Any) -> str | None:
        return self.inner.trace_id(request)

    def notice(self, message: str) -> None:
        self.inner.notice(message)

    def interval(self, request: Any, name: str, start_ns: int, end_ns: int) -> None:
        self.inner.interval(request, name, start_ns, end_ns)

    def annotate(self, request: Any, extra: Mapping[str, Any]) -> None:
        self.inner.annotate(request, extra)
