"""The HTTP side of each classify request's `wwts.inference` record (ECS names):
`http.request.method`, `url.path`, `user_agent.original`, and `http.response.status_code`.

The status is known only from the result, and a batched request's result is finished
(its record written) on the batch worker's thread, inside `Pipeline.complete`. So the
telemetry hooks are given `result_status` for each result: the status its answer will
have (`errors.status_of`, the function the answer uses too).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from pipeline.results import Result
from wwts.serve.errors import status_of


def request_fields(request: Request) -> dict[str, Any]:
    fields: dict[str, Any] = {"http": {"request": {"method": request.method}}, "url": {"path": request.url.path}}
    agent = request.headers.get("user-agent")
    if agent:
        fields["user_agent"] = {"original": agent}
    return fields


def result_status(result: Result) -> dict[str, Any]:
    """The record fields of the answer a result gets (`Telemetry.hooks(result_fields=...)`)."""
    return {"http": {"response": {"status_code": status_of(result.error)}}}
