"""The driver's instrumentation: a `wwts.classify` span per input with a child span per
stage, one ECS inference record per input, alerts, and the pipeline metrics. Attributes
and record fields come from the one mapping in `telemetry.fields`.

Metrics are recorded once per input, when it finishes, from the result's exact stage
durations, each in the context of the span it measures (the stage span, or for a batch's
forward pass the input's own `wwts.classify` span): the exemplars then name the trace
that `wwts trace show` opens."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, Status, StatusCode, Tracer

from pipeline.defaults import FORWARD
from pipeline.driver import Hooks
from pipeline.results import Result
from telemetry import fields
from telemetry.metrics import ERROR_TYPE, MODEL, OUTCOME, RUNTIME, STAGE, PipelineMetrics
from telemetry.names import ALERT, CLASSIFY_SPAN
from telemetry.records import DOCUMENT, STARTUP_EVENT, trace_fields, trace_id_hex
from telemetry.resources import ResourceSampler, Snapshot
from telemetry.thresholds import Thresholds

# a front door's own record fields for a finished result (`serve`: the answer's HTTP status)
ResultFields = Callable[[Result], Mapping[str, Any]]

BATCH_SIZE = "wwts.batch.size"
BATCH_INDEX = "wwts.batch.index"
CANCELLED = "wwts.cancelled"


@dataclass
class Request:
    span: Span
    # extra ECS fields for this input's record (nested), e.g. the HTTP request's
    extra: dict[str, Any] = field(default_factory=dict)
    # the stage spans in this input's own trace (exemplar contexts for its stage figures)
    stages: dict[str, Span] = field(default_factory=dict)
    batch: int = 0  # > 0: this input led a forward pass of that many inputs


class TelemetryHooks(Hooks):
    def __init__(
        self,
        tracer: Tracer,
        logger: logging.Logger,
        *,
        sampler: ResourceSampler | None = None,
        thresholds: Thresholds = Thresholds(),
        metrics: PipelineMetrics | None = None,
        result_fields: ResultFields | None = None,
    ) -> None:
        self.tracer = tracer
        self.logger = logger
        self.sampler = sampler
        self.thresholds = thresholds
        self.metrics = metrics
        self.result_fields = result_fields

    def _snapshot(self) -> Snapshot | None:
        return self.sampler.latest if self.sampler is not None else None

    def begin(self, path: str, parent: Any = None) -> Request:
        """A new trace, or a child of `parent` (an OpenTelemetry context or span)."""
        if parent is None:
            context = trace.set_span_in_context(trace.INVALID_SPAN)  # always a new trace
        elif isinstance(parent, Span):
            context = trace.set_span_in_context(parent)
        else:
            context = parent
        span = self.tracer.start_span(CLASSIFY_SPAN, context=context, attributes={fields.INPUT.span: path})
        return Request(span)

    def trace_id(self, request: Request) -> str | None:
        return trace_id_hex(request.span.get_span_context())

    def stage(self, request: Request, name: str) -> Any:
        if name == FORWARD:
            request.batch = 1
        return self._span(name, request.span, [request])

    def batch_stage(self, requests: Sequence[Request], name: str) -> Any:
        if name == FORWARD:
            requests[0].batch = len(requests)
        links = [Link(r.span.get_span_context(), {BATCH_INDEX: i}) for i, r in enumerate(requests)]
        return self._span(name, requests[0].span, requests, links, {BATCH_SIZE: len(requests)})

    @contextmanager
    def _span(
        self,
        name: str,
        parent: Span,
        requests: Sequence[Request],
        links: list[Link] | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Iterator[None]:
        span = self.tracer.start_span(name, context=trace.set_span_in_context(parent), links=links, attributes=attributes)
        requests[0].stages[name] = span  # the parent's trace; the others' traces only link to it
        try:
            yield
        except Exception as exc:
            _fail(span, exc)
            for request in requests:
                request.span.set_status(Status(StatusCode.ERROR, f"{name} failed: {exc}"))
            raise
        finally:
            snapshot = self._snapshot()
            if snapshot is not None:
                span.set_attributes(snapshot.attributes)
            span.end()

    def interval(self, request: Request, name: str, start_ns: int, end_ns: int) -> None:
        """A child stage span with the caller's times (e.g. the batch queue's wait)."""
        span = self.tracer.start_span(name, context=trace.set_span_in_context(request.span), start_time=start_ns)
        request.stages[name] = span
        snapshot = self._snapshot()
        if snapshot is not None:
            span.set_attributes(snapshot.attributes)
        span.end(end_time=end_ns)

    def annotate(self, request: Request, extra: Mapping[str, Any]) -> None:
        fields.merge(request.extra, extra)

    def finish(self, request: Request, result: Result) -> None:
        span = request.span
        snapshot = self._snapshot()
        attributes, document = fields.derive(
            result, request.extra, self.result_fields(result) if self.result_fields is not None else None,
            snapshot.fields if snapshot is not None else None, trace_fields(span.get_span_context()),
        )
        span.set_attributes(attributes)  # error.type included
        if result.error is not None:
            if not _has_error_status(span):  # failed before any stage ran (e.g. an unlistable directory)
                span.record_exception(result.error)
            span.set_status(Status(StatusCode.ERROR, str(result.error)))
        self._record(result, document)
        if result.ok:
            self._alerts(request, result, snapshot)
        if self.metrics is not None:
            _measure(self.metrics, request, result)
        span.end()

    def cancel(self, request: Request) -> None:
        """Loaded and preprocessed, then the run was stopped: the span ends, marked, and
        no inference record is written (the input has no result)."""
        request.span.set_attribute(CANCELLED, True)
        request.span.add_event(CANCELLED, {"reason": "the run was stopped before this input's forward pass"})
        request.span.end()

    def notice(self, message: str) -> None:
        self.logger.info(message, extra=STARTUP_EVENT)

    # -- records -------------------------------------------------------------------

    def _record(self, result: Result, document: dict[str, Any]) -> None:
        extra = {DOCUMENT: document}
        if result.ok:
            top = result.predictions[0]
            self.logger.info("%s: %s (%.4f)", result.path, top.label, top.score, extra=extra)
        else:
            error = result.error
            self.logger.error("%s: %s: %s", result.path, type(error).__name__, error, extra=extra)

    def _alerts(self, request: Request, result: Result, snapshot: Snapshot | None) -> None:
        total = result.total_ns / 1e6
        if total > self.thresholds.latency_ms:
            self._alert(request, result, "latency_ms", total, self.thresholds.latency_ms,
                        f"{result.path}: latency {total:.1f} ms over {self.thresholds.latency_ms:g} ms")
        temperature = snapshot.max_gpu_temperature if snapshot else None
        if temperature is not None and temperature > self.thresholds.gpu_temperature_c:
            self._alert(request, result, "gpu_temperature_c", temperature, self.thresholds.gpu_temperature_c,
                        f"GPU temperature {temperature:.0f} °C over {self.thresholds.gpu_temperature_c:g} °C")

    def _alert(self, request: Request, result: Result, metric: str, value: float, threshold: float, message: str) -> None:
        attributes = {"wwts.alert.metric": metric, "wwts.alert.value": value, "wwts.alert.threshold": threshold}
        request.span.add_event(ALERT, attributes)
        extra: dict[str, Any] = {
            "event": {"dataset": ALERT, "kind": "alert"},
            "wwts": {"input": result.path, "alert": {"metric": metric, "value": value, "threshold": threshold}},
        }
        if result.file:
            extra["file"] = {"path": result.file}
        extra.update(trace_fields(request.span.get_span_context()))
        self.logger.warning(message, extra=extra)


def _measure(metrics: PipelineMetrics, request: Request, result: Result) -> None:
    """The input's stage durations, its outcome and (if it led one) its forward pass's
    batch size, each in the context of the span the figure belongs to."""
    own = trace.set_span_in_context(request.span)
    model = {MODEL: result.model}
    labels = {**model, RUNTIME: result.runtime} if result.runtime else model
    for name, ns in result.durations_ns.items():
        stage = request.stages.get(name)
        metrics.stage(ns / 1e9, {STAGE: name, **labels}, trace.set_span_in_context(stage) if stage is not None else own)
    error = result.error
    metrics.image(
        {OUTCOME: fields.SUCCESS} if error is None else {OUTCOME: fields.FAILURE, ERROR_TYPE: fields.qualified_name(error)},
        own,
    )
    if request.batch:
        forward = request.stages.get(FORWARD)
        metrics.batch(request.batch, model, trace.set_span_in_context(forward) if forward is not None else own)


def _fail(span: Span, error: BaseException) -> None:
    """The semantic conventions' failed span: the exception event, `error.type`, and the
    message as the status description."""
    span.record_exception(error)
    span.set_attribute("error.type", fields.qualified_name(error))
    span.set_status(Status(StatusCode.ERROR, str(error)))


def _has_error_status(span: Span) -> bool:
    status = getattr(span, "status", None)
    return status is not None and status.status_code is StatusCode.ERROR

