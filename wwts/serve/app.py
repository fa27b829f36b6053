"""The ASGI app: `POST /v1/classify`, `GET /healthz`, `GET /readyz`, `GET /metrics`, every
error as the contract's JSON, and OpenTelemetry's FastAPI instrumentation around all of it
(the SERVER span, and the `http.server.request.duration` histogram).

The instrumentation makes the HTTP SERVER span (joining an incoming `traceparent`
through the configured propagators) and, with the trace-response propagator, adds a
`traceresponse` header to every answer. Handlers read the current context for the trace
id; nothing here parses a trace header.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.propagators import TraceResponsePropagator, set_global_response_propagator
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.results import Result
from telemetry.metrics import PROMETHEUS_CONTENT_TYPE
from telemetry.records import trace_id_hex
from wwts import __version__
from wwts.render import to_json
from wwts.serve.config import CLASSIFY_PATH, HEALTH_PATH, METRICS_PATH, READY_PATH
from wwts.serve.errors import (
    BadRequest,
    HttpError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    error_body,
    headers_of,
    status_of,
)
from wwts.serve.service import Service


def current_trace_id() -> str | None:
    return trace_id_hex(trace.get_current_span().get_span_context())


def error_response(error: BaseException) -> JSONResponse:
    return JSONResponse(error_body(error, current_trace_id()), status_code=status_of(error), headers=headers_of(error))


def answer(result: Result) -> JSONResponse:
    """A classify answer: `to_json(result)` with the status and headers of its error."""
    return JSONResponse(to_json(result), status_code=status_of(result.error), headers=headers_of(result.error))


def create_app(
    service: Service,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    metrics_text: Callable[[], bytes] = lambda: b"",
) -> FastAPI:
    """`metrics_text` renders the Prometheus exposition of `meter_provider`'s metrics."""
    app = FastAPI(title="wwts", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)

    @app.post(CLASSIFY_PATH)
    async def classify(request: Request) -> JSONResponse:
        service.authorize(request)  # 401 before anything is read; no record for it
        return answer(await service.classify(request))

    @app.get(HEALTH_PATH)
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "status": "alive"}

    @app.get(READY_PATH)
    async def readyz() -> JSONResponse:
        if not service.ready:
            return error_response(service.not_ready())
        pipeline = service.pipeline
        runtime = pipeline.open()  # open already: returns at once
        return JSONResponse({
            "ok": True, "status": "ready", "model": pipeline.family.name, "runtime": runtime.name,
            "device": runtime.device, "max_batch_size": service.batcher.max_batch_size,
        })

    @app.get(METRICS_PATH)
    async def metrics() -> Response:
        return Response(metrics_text(), media_type=PROMETHEUS_CONTENT_TYPE)

    @app.exception_handler(HttpError)
    async def refused(request: Request, exc: HttpError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def routing(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: NotFound, 405: MethodNotAllowed}.get(exc.status_code, BadRequest)
        response = error_response(kind(str(exc.detail)))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(BadRequest(str(exc.errors())[:300]))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        return error_response(InternalError(f"{type(exc).__name__}: {exc}"))

    set_global_response_propagator(TraceResponsePropagator())
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=tracer_provider, meter_provider=meter_provider, exclude_spans=["receive", "send"]
    )
    return app
